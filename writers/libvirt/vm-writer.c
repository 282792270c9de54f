/* vmshadow — the VM writer (vm-writer.h, docs/vm-writer.md): identity and
 * the events of a backup session.
 *
 * Identify lists the domains (R7), reads each one's XML (R13) and checks
 * what R9 asks of an online backup; PrepareForSnapshot writes the domain
 * XML, captures every selected VM by its method (vm-online.c,
 * vm-saved-state.c) and publishes where each file's point-in-time image is
 * read; BackupComplete, Abort and BackupShutdown end the jobs and undo what
 * an uncommitted backup left behind (R12).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>

#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"

#include "cleanup.h"
#include "str.h"
#include "log.h"
#include "subprocess.h"
#include "vm-internal.h"
#include "vm-lvm.h"
#include "vm-rbd.h"

#define VM_SWTPM_DIR "/var/lib/libvirt/swtpm"

/* ---- helpers shared by the writer's files ---- */

const char *
vm_virt_error (void)
{
  const char *m = virGetLastErrorMessage ();
  return m && *m ? m : "unknown libvirt error";
}

int
vm_copy_file (const char *src, const char *dst)
{
  CLEANUP_CLOSE int in = open (src, O_RDONLY | O_CLOEXEC);
  struct vms_atomic_file out;
  char buf[65536];
  ssize_t n;

  if (in == -1) {
    vms_set_error (errno, "cannot open %s: %s", src, strerror (errno));
    return -1;
  }
  if (vms_atomic_file_open (&out, AT_FDCWD, dst, 0600) == -1)
    return -1;
  while ((n = read (in, buf, sizeof buf)) != 0) {
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 || vms_write_all (out.fd, buf, (size_t) n) == -1) {
      vms_set_error (errno, "copying %s to %s: %s", src, dst, strerror (errno));
      vms_atomic_file_discard (&out);
      return -1;
    }
  }
  return vms_atomic_file_commit (&out, 0);
}

int
vm_create_image (const char *path, const char *format, uint64_t size)
{
  char sz[32], why[512], how[128];
  struct vms_subprocess_result res = { 0 };
  int ok;

  snprintf (sz, sizeof sz, "%" PRIu64, size);
  const char *argv[] = { "qemu-img", "create", "-q", "-f", format, path, sz, NULL };
  const struct vms_subprocess_options o = {
    .argv = argv, .timeout_ms = 60000, .max_output = 4096, .max_errors = 4096,
  };
  if (vms_subprocess_run (&o, &res) == -1)
    return -1;
  ok = vms_subprocess_succeeded (&res);
  if (!ok)
    vms_set_error (EIO, "qemu-img create %s %s: %s: %s", format, path,
                   vms_subprocess_describe (&res, how, sizeof how),
                   vms_subprocess_error_tail (&res, 3, why, sizeof why));
  vms_subprocess_result_reset (&res);
  if (ok && chmod (path, 0600) == -1) {
    vms_set_error (errno, "cannot set the mode of %s: %s", path, strerror (errno));
    return -1;
  }
  return ok ? 0 : -1;
}

/* Can uid:gid pass through directory st (search permission)? */
static int
may_search (const struct stat *st, unsigned uid, unsigned gid)
{
  if (uid == 0)
    return 1;
  if (st->st_uid == uid)
    return (st->st_mode & S_IXUSR) != 0;
  if (st->st_gid == gid)
    return (st->st_mode & S_IXGRP) != 0;
  return (st->st_mode & S_IXOTH) != 0;
}

int
vm_qemu_dir (const struct vm_entry *vm, const char *dir, mode_t mode)
{
  CLEANUP_FREE char *p = strdup (dir);
  unsigned uid = 0, gid = 0;
  struct stat st;
  char *slash;

  if (p == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (vm->cfg.dac_label &&
      vm_dac_label_ids (vm->cfg.dac_label, &uid, &gid) == -1)
    return -1;
  if (mkdir (dir, 0700) == -1 && errno != EEXIST) {
    vms_set_error (errno, "cannot create directory %s: %s", dir,
                   strerror (errno));
    return -1;
  }
  if (lstat (dir, &st) == -1 || !S_ISDIR (st.st_mode) || st.st_uid != 0) {
    vms_set_error (EEXIST, "%s is not a directory of root's; remove it",
                   dir);
    return -1;
  }
  /* Root owns it; QEMU's group may enter (and, for the socket directory,
   * create its socket), nobody else. */
  if (chown (dir, 0, (gid_t) gid) == -1 || chmod (dir, mode) == -1) {
    vms_set_error (errno, "cannot set the owner or mode of %s: %s", dir,
                   strerror (errno));
    return -1;
  }
  /* Every directory above must let QEMU through. */
  while ((slash = strrchr (p, '/')) != NULL && slash != p) {
    *slash = '\0';
    if (stat (p, &st) == -1) {
      vms_set_error (errno, "cannot read %s: %s", p, strerror (errno));
      return -1;
    }
    if (!may_search (&st, uid, gid)) {
      vms_set_error (EACCES, "QEMU runs as %u:%u (libvirt's DAC label %s) "
                     "and cannot pass through %s (owner %u:%u, mode %04o), "
                     "so it cannot reach %s; give that directory search "
                     "permission (chmod o+x, or group %u and g+x), or use a "
                     "state/run directory QEMU can reach", uid, gid,
                     vm->cfg.dac_label, p, (unsigned) st.st_uid,
                     (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777),
                     dir, gid);
      return -1;
    }
  }
  return 0;
}

static void
vm_silent_error (void *opaque, virErrorPtr err)
{
  /* Errors are read with virGetLastError where they happen. */
}

/* ---- names ---- */

static const char *
state_name (int st)
{
  switch (st) {
  case VIR_DOMAIN_RUNNING: return "running";
  case VIR_DOMAIN_BLOCKED: return "blocked";
  case VIR_DOMAIN_PAUSED: return "paused";
  case VIR_DOMAIN_SHUTDOWN: return "shutting-down";
  case VIR_DOMAIN_SHUTOFF: return "shut-off";
  case VIR_DOMAIN_CRASHED: return "crashed";
  case VIR_DOMAIN_PMSUSPENDED: return "pm-suspended";
  default: return "unknown";
  }
}

static enum vm_run_state
run_state (int st)
{
  switch (st) {
  case VIR_DOMAIN_RUNNING: case VIR_DOMAIN_BLOCKED: return VM_STATE_RUNNING;
  case VIR_DOMAIN_PAUSED: return VM_STATE_PAUSED;
  case VIR_DOMAIN_SHUTOFF: return VM_STATE_OFF;
  default: return VM_STATE_OTHER;
  }
}

static const char *
run_state_name (enum vm_run_state s)
{
  switch (s) {
  case VM_STATE_RUNNING: return "running";
  case VM_STATE_PAUSED: return "paused";
  case VM_STATE_OFF: return "shut-off";
  case VM_STATE_OTHER: break;
  }
  return "other";
}

/* ---- entries ---- */

static void
entry_session_reset (struct vm_entry *vm)
{
  vm->selected = vm->frozen = vm->job_started = vm->checkpoint_created = 0;
  vm->job_end_asked = 0;
  vm->parent_redefined = 0;
  vm->offline_checked = 0;
  free (vm->checkpoint); vm->checkpoint = NULL;
  free (vm->parent); vm->parent = NULL;
  free (vm->previous); vm->previous = NULL;
  free (vm->incremental_reason); vm->incremental_reason = NULL;
  free (vm->socket); vm->socket = NULL;
  free (vm->socket_dir); vm->socket_dir = NULL;
  free (vm->scratch_dir); vm->scratch_dir = NULL;
  free (vm->error); vm->error = NULL;
  string_vector_free_all (&vm->full_disks);
  string_vector_free_all (&vm->full_reasons);
  for (size_t i = 0; i < vm->secret_files.len; i++)
    unlink (vm->secret_files.ptr[i]);
  string_vector_free_all (&vm->secret_files);
  free (vm->rbd_snap); vm->rbd_snap = NULL;
  string_vector_free_all (&vm->rbd_targets);
  string_vector_free_all (&vm->rbd_keys);
  vm->freeze_ms = 0;
  vm->cl_maint_on = vm->cl_pinned = 0;
  vm_cluster_meta_prev_clear (&vm->cl_maint_prev);
  vm->frozen_from_us = vm->frozen_until_us = 0;
  vm_guest_reset (vm);
}

static void
entry_free (struct vm_entry *vm)
{
  if (vm == NULL)
    return;
  entry_session_reset (vm);
  saved_state_free (vm);
  if (vm->dom)
    virDomainFree (vm->dom);
  free (vm->uuid); free (vm->name);
  vm_config_clear (&vm->cfg);
  free (vm->dir); free (vm->xml_path); free (vm->live_xml_path);
  string_vector_free_all (&vm->tpm_files);
  free (vm->cl_id); free (vm->cl_node);
  free (vm);
}

static void
entries_free (struct vm_writer *w)
{
  for (size_t i = 0; i < w->nr_vms; i++)
    entry_free (w->vms[i]);
  free (w->vms);
  w->vms = NULL;
  w->nr_vms = 0;
}

static struct vm_entry *
entry_find (struct vm_writer *w, const char *uuid)
{
  for (size_t i = 0; i < w->nr_vms; i++)
    if (strcmp (w->vms[i]->uuid, uuid) == 0)
      return w->vms[i];
  return NULL;
}

/* ---- Identify ---- */

int
vm_connect (struct vm_writer *w, vms_call *call)
{
  if (w->conn && virConnectIsAlive (w->conn) == 1)
    return 0;
  if (w->conn) {
    entries_free (w);
    virConnectClose (w->conn);
    w->conn = NULL;
  }
  w->conn = virConnectOpen (w->uri);
  if (w->conn == NULL)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                          "cannot connect to libvirt at %s: %s; is libvirtd "
                          "running (and is this the right URI, -c/--connect)?",
                          w->uri, vm_virt_error ());
  virConnSetErrorFunc (w->conn, NULL, vm_silent_error);
  return 0;
}

/* The domains to back up, in name order. */
static int
list_domains (struct vm_writer *w, vms_call *call, virDomainPtr **out,
              size_t *nout)
{
  virDomainPtr *doms = NULL;
  int n;

  if (w->wanted.len == 0) {
    n = virConnectListAllDomains (w->conn, &doms, 0);
    if (n < 0)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE,
                            "cannot list the domains at %s: %s", w->uri,
                            vm_virt_error ());
  }
  else {
    doms = calloc (w->wanted.len, sizeof *doms);
    if (doms == NULL)
      return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES,
                            "out of memory");
    for (n = 0; (size_t) n < w->wanted.len; n++) {
      const char *id = w->wanted.ptr[n];
      doms[n] = virDomainLookupByName (w->conn, id);
      if (doms[n] == NULL)
        doms[n] = virDomainLookupByUUIDString (w->conn, id);
      if (doms[n] == NULL) {
        for (int j = 0; j < n; j++)
          virDomainFree (doms[j]);
        free (doms);
        return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                              "no VM named \"%s\" at %s (neither a domain "
                              "name nor a UUID libvirt knows)", id, w->uri);
      }
    }
  }
  /* Name order, for a stable document. */
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && strcmp (virDomainGetName (doms[j - 1]),
                                     virDomainGetName (doms[j])) > 0; j--) {
      virDomainPtr t = doms[j];
      doms[j] = doms[j - 1];
      doms[j - 1] = t;
    }
  *out = doms;
  *nout = (size_t) n;
  return 0;
}

/* A pool volume disk: QEMU opens the volume's file or block device (a
 * logical, disk, iSCSI or ZFS pool's volume is a device), so it is read
 * like a file or block disk (R13, issue 11). Volumes of network pools
 * (rbd, gluster, iscsi-direct) name no host path: left out with the
 * reason, to be defined as network disks. */
static void
resolve_volume (struct vm_writer *w, struct vm_disk *d)
{
  virStoragePoolPtr pool;
  virStorageVolPtr vol = NULL;
  virStorageVolInfo info;
  char *path = NULL;

  if (d->source != VM_DISK_VOLUME || !d->included)
    return;
  pool = virStoragePoolLookupByName (w->conn, d->pool);
  if (pool)
    vol = virStorageVolLookupByName (pool, d->volume);
  if (vol && virStorageVolGetInfo (vol, &info) == 0)
    path = virStorageVolGetPath (vol);
  if (path && (info.type == VIR_STORAGE_VOL_FILE ||
               info.type == VIR_STORAGE_VOL_BLOCK) && path[0] == '/') {
    free (d->path);
    d->path = path;
    d->source = info.type == VIR_STORAGE_VOL_FILE ? VM_DISK_FILE
      : VM_DISK_BLOCK;
  }
  else {
    d->included = 0;
    if (path == NULL) {
      if (asprintf (&d->reason, "volume %s/%s of disk %s cannot be resolved "
                    "to a file or device: %s", d->pool, d->volume, d->target,
                    vm_virt_error ()) == -1)
        d->reason = NULL;
    }
    else if (asprintf (&d->reason, "volume %s (disk %s) of pool %s is a "
                       "network volume with no host path; define the disk as "
                       "<disk type='network'> to have it backed up",
                       path, d->target, d->pool) == -1)
      d->reason = NULL;
    free (path);
  }
  if (vol)
    virStorageVolFree (vol);
  if (pool)
    virStoragePoolFree (pool);
}

static void
find_tpm_files (const char *dir, string_vector *files, int depth)
{
  DIR *d = opendir (dir);
  struct dirent *e;

  if (d == NULL)
    return;
  while ((e = readdir (d)) != NULL) {
    struct stat st;
    char *p;

    if (e->d_name[0] == '.')
      continue;
    if (asprintf (&p, "%s/%s", dir, e->d_name) == -1)
      break;
    /* An entry gone since readdir (or unreadable) is skipped: st says
     * nothing then. */
    if (lstat (p, &st) == 0) {
      if (S_ISREG (st.st_mode) && string_vector_append (files, p) == 0)
        continue;
      if (S_ISDIR (st.st_mode) && depth < 3)
        find_tpm_files (p, files, depth + 1);
    }
    free (p);
  }
  closedir (d);
}

/* The device of path, or of its nearest existing ancestor. */
static int
stat_dev (const char *path, dev_t *dev)
{
  CLEANUP_FREE char *p = strdup (path);
  struct stat st;

  while (p && *p) {
    if (stat (p, &st) == 0) {
      *dev = st.st_dev;
      return 0;
    }
    char *slash = strrchr (p, '/');
    if (slash == NULL)
      break;
    if (slash == p) {
      p[1] = '\0';
      if (stat (p, &st) == 0) {
        *dev = st.st_dev;
        return 0;
      }
      break;
    }
    *slash = '\0';
  }
  return -1;
}

/* The R9 checks that need the running VM: agent, guest filesystems,
 * scratch space. Fills *f (strings owned by *owned). */
struct facts_store {
  char *agent_error, *fsinfo_error, *scratch_error;
  virDomainFSInfoPtr *info;
  int nr_info;
  struct vm_guest_fs *fs;
};

static void
facts_store_clear (struct facts_store *s)
{
  free (s->agent_error); free (s->fsinfo_error); free (s->scratch_error);
  for (int i = 0; i < s->nr_info; i++)
    virDomainFSInfoFree (s->info[i]);
  free (s->info);
  free (s->fs);
}

static void
gather_facts (struct vm_writer *w, struct vm_entry *vm, int st,
              int ask_agent, struct vm_facts *f, struct facts_store *s)
{
  dev_t scratch_dev = 0;

  memset (f, 0, sizeof *f);
  f->cfg = &vm->cfg;
  f->state = run_state (st);
  f->state_name = state_name (st);
  if (f->state != VM_STATE_RUNNING || !ask_agent)
    return;

  /* The agent is asked through guest-get-fsinfo, which libvirt bounds by
   * its own agent time-out; a raw guest-ping (virDomainQemuAgentCommand)
   * would taint the domain ("custom-ga-command"). */
  s->nr_info = virDomainGetFSInfo (vm->dom, &s->info, 0);
  if (s->nr_info >= 0)
    f->agent_ok = 1;
  else {
    s->nr_info = 0;
    s->agent_error = strdup (vm_virt_error ());
    f->agent_error = s->agent_error;
  }
  if (f->agent_ok) {
    {
      f->fsinfo_ok = 1;
      s->fs = calloc ((size_t) s->nr_info + 1, sizeof *s->fs);
      if (s->fs == NULL) {
        f->fsinfo_ok = 0;
        f->fsinfo_error = "out of memory";
      }
      else {
        for (int i = 0; i < s->nr_info; i++) {
          s->fs[i].mountpoint = s->info[i]->mountpoint;
          s->fs[i].type = s->info[i]->fstype;
          s->fs[i].disks = (const char *const *) s->info[i]->devAlias;
          s->fs[i].nr_disks = s->info[i]->ndevAlias;
        }
        f->fs = s->fs;
        f->nr_fs = (size_t) s->nr_info;
      }
    }
  }

  /* R9: the backup job's scratch files go to the state directory, which
   * must be on the filesystem of the VM's disk images. */
  f->scratch_same_fs = 1;
  if (stat_dev (w->state_dir, &scratch_dev) == -1) {
    f->scratch_same_fs = 0;
    if (asprintf (&s->scratch_error, "the scratch directory %s cannot be "
                  "reached", w->state_dir) == -1)
      s->scratch_error = NULL;
  }
  for (size_t i = 0; f->scratch_same_fs && i < vm->cfg.nr_disks; i++) {
    const struct vm_disk *d = &vm->cfg.disks[i];
    struct stat sb;

    /* Only disk files: a block device's node or a network disk says
     * nothing of where the images live (issue 11). */
    if (!d->included || d->source != VM_DISK_FILE)
      continue;
    if (stat (d->path, &sb) == -1) {
      f->scratch_same_fs = 0;
      if (asprintf (&s->scratch_error, "disk image %s cannot be reached: %s",
                    d->path, strerror (errno)) == -1)
        s->scratch_error = NULL;
    }
    else if (sb.st_dev != scratch_dev) {
      f->scratch_same_fs = 0;
      if (asprintf (&s->scratch_error, "the scratch space (%s) is not on the "
                    "filesystem of disk image %s; set the state directory "
                    "(VMSHADOW_VM_STATE_DIR) to one on that filesystem",
                    w->state_dir, d->path) == -1)
        s->scratch_error = NULL;
    }
  }
  f->scratch_error = s->scratch_error;
}

/* The most host space this VM's capture can take (the dry run says it):
 * copy-before-write copies each block of an included disk at most once into
 * its scratch file, so a disk's virtual size bounds it; a saved state adds
 * the guest's memory. A stopped VM is read as it is: nothing. */
static int
set_scratch_estimate (struct vm_writer *w, struct vm_entry *vm,
                      vms_component *c)
{
  uint64_t total = 0;

  if (vm->method != VM_METHOD_OFFLINE) {
    for (size_t i = 0; i < vm->cfg.nr_disks; i++) {
      const struct vm_disk *d = &vm->cfg.disks[i];
      virDomainBlockInfo bi;
      struct stat sb;
      uint64_t size;

      if (!d->included)
        continue;
      /* Issue 15: a qcow2 image's size from its header, not libvirt (three
       * QMP queries a disk, in series at Identify). */
      if (d->source == VM_DISK_FILE && d->format &&
          strcmp (d->format, "qcow2") == 0 &&
          vm_qcow2_virtual_size (d->path, &size) == 0)
        ;
      else if (virDomainGetBlockInfo (vm->dom, d->target, &bi, 0) == 0)
        size = bi.capacity;
      else if (stat (d->path, &sb) == 0)
        size = (uint64_t) sb.st_size;
      else
        continue;
      /* An estimate: sizes from outside saturate rather than wrap. */
      if (__builtin_add_overflow (total, size, &total))
        total = UINT64_MAX;
    }
    if (vm->method == VM_METHOD_SAVED_STATE) {
      virDomainInfo info;
      if (virDomainGetInfo (vm->dom, &info) == 0 &&
          __builtin_add_overflow (total, (uint64_t) info.memory * 1024, &total))
        total = UINT64_MAX;
    }
  }
  if (vms_component_set_int (c, VMS_VM_ATTR_SCRATCH_BYTES,
                             total > INT64_MAX ? INT64_MAX
                             : (int64_t) total) == -1)
    return -1;
  return vm->method == VM_METHOD_OFFLINE ? 0
    : vms_component_set_string (c, VMS_VM_ATTR_SCRATCH_DIR, vm->dir);
}

/* R22: the VM's Pacemaker resource, if it is one, on its component. */
static int
identify_cluster (struct vm_writer *w, struct vm_entry *vm, vms_component *c)
{
  const struct vm_cluster_rsc *r =
    vm_cluster_find (&w->cluster, w->uri, vm->uuid, vm->name);
  CLEANUP_FREE char *words = NULL;

  if (r == NULL)
    return 0;
  if ((vm->cl_id = strdup (r->id)) == NULL ||
      (r->node && (vm->cl_node = strdup (r->node)) == NULL) ||
      (words = vm_cluster_describe (r)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  vm->cl_monitor_scripts = r->monitor_scripts;
  vm->cl_in_maintenance = r->in_maintenance;
  return vms_component_set_string (c, VMS_ATTR_CLUSTER, words) == -1 ||
    vms_component_set_string (c, VMS_VM_ATTR_CLUSTER_RESOURCE, r->id) == -1 ||
    vms_component_set_string (c, VMS_VM_ATTR_CLUSTER_NODE,
                              r->node ? r->node : "") == -1 ? -1 : 0;
}


/* Issue 11: the pool of a disk that is a thin LV, recorded in the
 * component so that a restore which makes the LV again makes it thin.
 * Best effort: a device that is no LV, or a host without LVM, records
 * nothing (the restore then makes a thick LV). 0, or -1 with the error
 * set when the document cannot take it. */
static int
record_thin_pool (vms_component *c, const char *path)
{
  CLEANUP_FREE char *vg = NULL, *lv = NULL, *which = NULL, *out = NULL;
  CLEANUP_FREE char *pool = NULL, *key = NULL;

  if (vm_lv_from_path (path, &vg, &lv) == -1)
    return 0;
  if ((which = vms_strdup_printf ("%s/%s", vg, lv)) == NULL)
    return -1;
  const char *argv[] = { "lvs", "--reportformat", "json", "-o",
                         "lv_name,vg_name,lv_attr,pool_lv", which, NULL };
  if (vm_lvm_run (argv, &out) == -1 ||
      vm_lv_thin_pool (out, path, &pool) == -1) {
    vms_debug ("vm writer: no thin pool recorded for %s: %s", path,
               vms_get_error ());
    return 0;
  }
  if (pool == NULL)
    return 0;
  if ((key = vms_strdup_printf ("%s%s", VMS_VM_ATTR_THIN_POOL_PREFIX,
                                path)) == NULL)
    return -1;
  return vms_component_set_string (c, key, pool);
}

/* Whether a VM of "every VM" (none named) was undefined between the
 * listing and its Identify: then it is left out, as if it had not been
 * listed — a busy host (a cluster, transient VMs) defines and undefines
 * VMs at any time. A VM named on the command line that goes fails. */
static int
gone_meanwhile (const struct vm_writer *w, const char *name)
{
  if (w->wanted.len != 0 || virGetLastErrorCode () != VIR_ERR_NO_DOMAIN)
    return 0;
  vms_debug ("vm writer: vm \"%s\" was undefined after the host's VMs were "
             "listed: left out", name);
  return 1;
}

/* One VM → one component (R7): 0 when it is added, 1 when it went
 * meanwhile and is left out, -1 on failure. */
static int
identify_one (struct vm_writer *w, vms_call *call, virDomainPtr dom)
{
  struct vm_entry *vm = calloc (1, sizeof *vm);
  CLEANUP_FREE char *xml = NULL, *caption = NULL, *agent = NULL;
  CLEANUP_FREE char *pol = NULL;
  char uuid[VIR_UUID_STRING_BUFLEN];
  int st = VIR_DOMAIN_NOSTATE, why;
  struct vm_policy policy;
  struct vm_choice choice = { 0 };
  struct vm_facts facts;
  struct facts_store store = { 0 };
  vms_component *c;
  struct vm_entry **p;
  const char *name = virDomainGetName (dom);

  if (vm == NULL)
    goto oom;
  vm->dom = dom;
  if (virDomainGetUUIDString (dom, uuid) == -1 ||
      virDomainGetState (dom, &st, &why, 0) == -1) {
    if (gone_meanwhile (w, name))
      goto gone;
    vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\": cannot read its "
                   "state: %s", name, vm_virt_error ());
    goto fail;
  }
  vm->state_before = run_state (st);
  /* The disks in use: the live XML of a running VM (hot-plugged disks),
   * the configuration of a stopped one. */
  xml = virDomainGetXMLDesc (dom, vm->state_before == VM_STATE_OFF
                             ? VIR_DOMAIN_XML_INACTIVE : 0);
  if (xml == NULL) {
    if (gone_meanwhile (w, name))
      goto gone;
    vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\": cannot read its "
                   "XML: %s", name, vm_virt_error ());
    goto fail;
  }
  if (vm_config_parse (xml, strlen (xml), &vm->cfg) == -1) {
    vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": %s", name,
                   vms_get_error ());
    goto fail;
  }
  for (size_t i = 0; i < vm->cfg.nr_disks; i++)
    resolve_volume (w, &vm->cfg.disks[i]);
  if ((vm->uuid = strdup (uuid)) == NULL ||
      (vm->name = strdup (name)) == NULL ||
      asprintf (&vm->dir, "%s/%s", w->state_dir, uuid) == -1 ||
      asprintf (&vm->xml_path, "%s/domain.xml", vm->dir) == -1)
    goto oom;
  if (vm->state_before != VM_STATE_OFF &&
      asprintf (&vm->live_xml_path, "%s/domain-live.xml", vm->dir) == -1)
    goto oom;
  if (vm->cfg.tpm_emulator) {
    CLEANUP_FREE char *tdir = NULL;
    if (asprintf (&tdir, "%s/%s", VM_SWTPM_DIR, uuid) == -1)
      goto oom;
    find_tpm_files (tdir, &vm->tpm_files, 0);
  }

  /* The policy (issue 20): the options, the domain's metadata winning. A
   * malformed policy stops the backup before anything changes. */
  if (vm->cfg.policy_error) {
    vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": %s (the "
                   "<vmshadow:policy xmlns:vmshadow=\"%s\"/> element of its "
                   "<metadata>, see docs/vm-writer.md); nothing was changed",
                   name, vm->cfg.policy_error, VMS_VM_POLICY_NS);
    goto fail;
  }
  policy = vm_policy_for (&vm->cfg, w->method, w->fallback);

  /* R9. The agent is asked only when online may be chosen. */
  gather_facts (w, vm, st, policy.method == VMS_VM_METHOD_AUTO ||
                policy.method == VMS_VM_METHOD_ONLINE, &facts, &store);
  if (vm_method_choose (&facts, &policy, &choice) == -1) {
    facts_store_clear (&store);
    vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s",
                   choice.reason ? choice.reason : vms_get_error ());
    goto fail;
  }
  vm->method = choice.method;
  if (facts.state != VM_STATE_RUNNING)
    agent = vms_strdup_printf ("not asked: the VM is %s", facts.state_name);
  else if (policy.method != VMS_VM_METHOD_AUTO &&
           policy.method != VMS_VM_METHOD_ONLINE)
    agent = vms_strdup_printf ("not asked: the policy names the %s method",
                               vms_vm_method_name (policy.method));
  else if (facts.agent_ok)
    agent = vms_strdup_printf ("answers");
  else
    agent = vms_strdup_printf ("does not answer: %s", facts.agent_error
                               ? facts.agent_error : "no reason given");
  facts_store_clear (&store);
  if (agent == NULL ||
      (pol = vms_strdup_printf ("method=%s fallback=%s",
                                vms_vm_method_name (policy.method),
                                vms_vm_fallback_name (policy.fallback))) == NULL)
    goto oom;

  if (asprintf (&caption, "%s\\%s", vm->method == VM_METHOD_ONLINE ||
                vm->method == VM_METHOD_CRASH_CONSISTENT
                ? "Online" : "Offline", name) == -1) {
    caption = NULL;
    goto oom;
  }
  c = vms_metadata_add_component (vms_call_metadata (call), uuid, caption);
  if (c == NULL) {
    vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": %s", name,
                   vms_get_error ());
    goto fail;
  }
  if (vms_component_set_string (c, VMS_VM_ATTR_VM_NAME, name) == -1 ||
      vms_component_set_string (c, VMS_VM_ATTR_STATE_BEFORE,
                                run_state (st) == VM_STATE_OTHER
                                ? state_name (st)
                                : run_state_name (vm->state_before)) == -1 ||
      vms_component_set_string (c, VMS_VM_ATTR_METHOD,
                                vm_method_name (vm->method)) == -1 ||
      vms_component_set_string (c, VMS_VM_ATTR_METHOD_REASON,
                                choice.reason) == -1 ||
      vms_component_set_string (c, VMS_VM_ATTR_POLICY, pol) == -1 ||
      vms_component_set_string (c, VMS_VM_ATTR_POLICY_SOURCE,
                                policy.method_from_metadata &&
                                policy.fallback_from_metadata ? "metadata"
                                : policy.method_from_metadata ||
                                policy.fallback_from_metadata
                                ? "options and metadata" : "options") == -1 ||
      vms_component_set_string (c, VMS_VM_ATTR_AGENT, agent) == -1 ||
      (choice.fallback_reason &&
       vms_component_set_string (c, VMS_VM_ATTR_FALLBACK_REASON,
                                 choice.fallback_reason) == -1) ||
      set_scratch_estimate (w, vm, c) == -1)
    goto doc_fail;
  /* A stopped VM's network disk is read by a qemu-nbd of ours: one it
   * cannot read that way (a protocol or TLS it does not do) is named and
   * left out; a source it cannot make sense of fails the VM (issue 11). */
  for (size_t i = 0; vm->method == VM_METHOD_OFFLINE && i < vm->cfg.nr_disks; i++) {
    struct vm_disk *d = &vm->cfg.disks[i];
    char *graph;

    if (!d->included || d->source != VM_DISK_NETWORK)
      continue;
    graph = vm_disk_qemu_json (d, VMS_ACCESS_SECRET_ID);
    free (graph);
    if (graph)
      continue;
    if (vms_get_errno () != ENOTSUP) {
      vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": %s", name,
                     vms_get_error ());
      goto fail;
    }
    d->included = 0;
    if ((d->reason = vms_strdup_printf ("not read while the VM is stopped: %s; "
                                        "it is backed up while the VM runs "
                                        "(QEMU reads it then)",
                                        vms_get_error ())) == NULL)
      goto oom;
  }
  /* Issue 17: guest processing of an online VM. */
  if (vm->method == VM_METHOD_ONLINE) {
    CLEANUP_FREE char *gwhy = NULL;
    int g = vm_guest_identify (w, vm, c, &gwhy);
    if (g == -2)
      goto doc_fail;
    if (g == -1 && vm->guest_policy == VMS_VM_GUEST_REQUIRED) {
      vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\": guest processing "
                     "is required, but the guest side (%s) does not answer: %s",
                     name, VMS_VM_GUEST_PROGRAM, gwhy ? gwhy : "?");
      goto fail;
    }
    if (g == -1 && vm_guest_fell_back_at_identify (vm, c, gwhy ? gwhy : "?") == -1)
      goto doc_fail;
  }
  for (size_t i = 0; i < vm->cfg.nr_disks; i++) {
    const struct vm_disk *d = &vm->cfg.disks[i];
    CLEANUP_FREE char *key = NULL;

    if (!d->included) {
      if (vms_component_add_excluded (c, d->path, d->reason) == -1)
        goto doc_fail;
      continue;
    }
    if (d->source != VM_DISK_NETWORK && d->path[0] != '/') {
      vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": disk %s "
                     "has a relative path \"%s\"", name, d->target, d->path);
      goto fail;
    }
    if (vms_component_add_file (c, d->path, VMS_FILE_DISK,
                                d->format ? d->format : "raw",
                                VMS_QEMU_PROVIDER_NAME) == -1 ||
        asprintf (&key, "%s%s", VMS_VM_ATTR_DISK_TARGET_PREFIX,
                  d->path) == -1 ||
        vms_component_set_string (c, key, d->target) == -1 ||
        (d->source == VM_DISK_BLOCK && record_thin_pool (c, d->path) == -1))
      goto doc_fail;
  }
  for (size_t i = 0; i < vm->cfg.nr_excluded; i++)
    if (vms_component_add_excluded (c, vm->cfg.excluded[i].path,
                                    vm->cfg.excluded[i].reason) == -1)
      goto doc_fail;
  if (vms_component_add_file (c, vm->xml_path, VMS_FILE_PLAIN, NULL,
                              VMS_QEMU_PROVIDER_NAME) == -1 ||
      (vm->live_xml_path &&
       vms_component_add_file (c, vm->live_xml_path, VMS_FILE_PLAIN, NULL,
                               VMS_QEMU_PROVIDER_NAME) == -1))
    goto doc_fail;
  if (vm->method == VM_METHOD_SAVED_STATE &&
      saved_state_identify (w, vm, c) == -1)
    goto doc_fail;
  if (vm->cfg.nvram && vm->cfg.nvram[0] == '/' &&
      vms_component_add_file (c, vm->cfg.nvram, VMS_FILE_PLAIN, NULL,
                              VMS_QEMU_PROVIDER_NAME) == -1)
    goto doc_fail;
  for (size_t i = 0; i < vm->tpm_files.len; i++)
    if (vms_component_add_file (c, vm->tpm_files.ptr[i], VMS_FILE_PLAIN, NULL,
                                VMS_QEMU_PROVIDER_NAME) == -1)
      goto doc_fail;

  p = realloc (w->vms, (w->nr_vms + 1) * sizeof *p);
  if (p == NULL)
    goto oom;
  w->vms = p;
  p[w->nr_vms++] = vm;
  vms_debug ("vm writer: %s (%s): %s, %s", name, uuid,
             vm_method_name (vm->method), choice.reason);
  vm_choice_clear (&choice);
  return 0;

 doc_fail:
  vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": %s", name,
                 vms_get_error ());
  goto fail;
 oom:
  vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "vm \"%s\": out of "
                 "memory", name);
 fail:
  vm_choice_clear (&choice);
  if (vm)
    entry_free (vm);
  else
    virDomainFree (dom);
  return -1;
 gone:
  entry_free (vm);              /* (frees dom) */
  return 1;
}

/* Pacemaker's CIB, asked beside the VMs' agents (issue 15: cibadmin takes
 * 20-100 ms, as long as the agents' answers, and neither needs the other). */
struct cluster_scan {
  struct vm_cluster *cluster;
  int rc;
  char *error;
};

static void *
cluster_scan_thread (void *arg)
{
  struct cluster_scan *cs = arg;

  cs->rc = vm_cluster_scan (cs->cluster);
  if (cs->rc == -1)
    cs->error = strdup (vms_get_error ());
  return NULL;
}

static int
vm_identify (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  virDomainPtr *doms = NULL;
  size_t n = 0, i, left_out = 0;
  struct cluster_scan cs = { .cluster = &w->cluster };
  pthread_t scan;
  int scanning, r;

  if (w->restore)               /* restore: the stored documents decide (R5) */
    return vm_connect (w, call);
  for (i = 0; i < w->nr_vms; i++)
    if (w->vms[i]->job_started || w->vms[i]->frozen)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm writer: "
                            "Identify while vm \"%s\" is still being "
                            "captured", w->vms[i]->name);
  entries_free (w);
  /* R22: which of them are cluster resources (no cluster: none). */
  vm_cluster_clear (&w->cluster);
  xmlInitParser ();             /* before two threads parse XML */
  scanning = pthread_create (&scan, NULL, cluster_scan_thread, &cs) == 0;
  if (!scanning)
    cluster_scan_thread (&cs);
  r = vm_connect (w, call) == -1 || list_domains (w, call, &doms, &n) == -1
    ? -1 : 0;
  /* Issue 15: a backup session (not a listing or a dry run, which have
   * none) with a running VM will want the guard: it starts and connects
   * to libvirt while the VMs are identified, not only from
   * prepare-snapshot on. (The domain's id is known from the listing: no
   * call to libvirtd.) */
  for (i = 0; r == 0 && vms_call_session_id (call) && vms_call_is_backup (call)
         && i < n; i++)
    if (virDomainGetID (doms[i]) != (unsigned) -1) {
      vm_guard_prestart (w);
      break;
    }
  for (i = 0; r == 0 && i < n; i++) {
    int one = identify_one (w, call, doms[i]);
    if (one == -1)
      r = -1;
    else
      left_out += (size_t) one;
  }
  for (; i < n; i++)
    virDomainFree (doms[i]);
  free (doms);
  if (scanning)
    pthread_join (scan, NULL);
  if (r == 0 && cs.rc == -1)
    r = vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm writer: %s",
                       cs.error ? cs.error : "out of memory");
  for (i = 0; r == 0 && i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    vms_component *c = vms_document_find_component (vms_call_metadata (call),
                                                    NULL, vm->uuid);
    if (c == NULL || identify_cluster (w, vm, c) == -1)
      r = vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": %s",
                         vm->name, c ? vms_get_error ()
                         : "its component is gone");
  }
  free (cs.error);
  if (r == -1)
    return -1;
  /* Every listed VM is identified or was left out (gone meanwhile). */
  if (w->nr_vms + left_out != n)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm writer: %zu "
                          "of %zu VMs identified", w->nr_vms, n - left_out);
  return 0;
}

/* ---- a backup session ---- */

/* The VMs of this writer in the session, marked selected. */
static int
mark_selected (struct vm_writer *w, vms_call *call)
{
  size_t n = vms_call_component_count (call);

  for (size_t i = 0; i < w->nr_vms; i++)
    w->vms[i]->selected = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = vms_component_name (vms_call_component_at (call, i));
    struct vm_entry *vm = entry_find (w, name);
    if (vm == NULL)
      return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm writer: "
                            "component %s is no VM Identify found", name);
    vm->selected = 1;
  }
  return 0;
}

/* No other tool's job (a backup, a migration, a save, a block copy) on
 * any VM of the set (issue 20): checked before any guest is frozen or
 * paused, so that a busy VM fails the set with every guest untouched
 * rather than frozen while libvirt's job lock is waited for. The requester
 * waits for such jobs before the session (--wait); this closes the gap. */
static int
check_jobs (struct vm_writer *w, vms_call *call, const char *phase)
{
  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    CLEANUP_FREE char *why = NULL;
    int busy;

    if (!vm->selected)
      continue;
    busy = vm_domain_jobs (vm->dom, &why);
    if (busy == -1)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                            "at %s: %s", vm->name, phase, vms_get_error ());
    if (busy)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                            "at %s: %s; no guest was frozen or paused: retry "
                            "when it has ended, or use --wait", vm->name,
                            phase, why ? why : "another job runs on it");
  }
  return 0;
}

static int
vm_prepare_backup (void *data, vms_call *call)
{
  struct vm_writer *w = data;

  free (w->session_id);
  if ((w->session_id = strdup (vms_call_session_id (call))) == NULL)
    return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
  w->completed = 0;
  if (mark_selected (w, call) == -1)
    return -1;
  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    if (!vm->selected)
      continue;
    /* Search-only (0711) for QEMU to reach its scratch directory inside;
     * every file in it is root's, mode 0600 (issue 20). */
    if (vms_mkdir_p (vm->dir, 0711) == -1)
      return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": %s",
                            vm->name, vms_get_error ());
    if (chmod (vm->dir, 0711) == -1)
      return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": "
                            "cannot set the mode of %s: %s", vm->name,
                            vm->dir, strerror (errno));
    /* A disk image that is gone is the reason the VM cannot be backed up:
     * say so here, before any method is tried (R12: the set fails). */
    for (size_t d = 0; d < vm->cfg.nr_disks; d++) {
      const struct vm_disk *disk = &vm->cfg.disks[d];
      struct stat sb;
      if (disk->included && (disk->source == VM_DISK_FILE ||
                             disk->source == VM_DISK_BLOCK) &&
          stat (disk->path, &sb) == -1)
        return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\" "
                              "failed at prepare-backup: its disk %s %s "
                              "(%s) is missing: %s", vm->name,
                              disk->source == VM_DISK_FILE ? "image"
                              : "device", disk->path,
                              disk->target, strerror (errno));
    }
  }
  if (check_jobs (w, call, "prepare-backup") == -1)
    return -1;
  /* R22: before anything the cluster could mistake for a failure. */
  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    if (vm->selected && vm->cl_id && vm_cluster_backup_begin (w, vm) == -1)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                            "at prepare-backup: its cluster resource %s: %s; "
                            "nothing was paused or frozen", vm->name,
                            vm->cl_id, vms_get_error ());
  }
  return 0;
}

/* Write the VM's configuration into its state directory (R7). */
static int
save_config (struct vm_entry *vm)
{
  CLEANUP_FREE char *inactive = NULL, *live = NULL;

  inactive = virDomainGetXMLDesc (vm->dom, VIR_DOMAIN_XML_INACTIVE |
                                  VIR_DOMAIN_XML_SECURE);
  if (inactive == NULL) {
    vms_set_error (EIO, "cannot read its configuration: %s",
                   vm_virt_error ());
    return -1;
  }
  if (vms_write_file_atomic (AT_FDCWD, vm->xml_path, inactive,
                             strlen (inactive), 0600) == -1)
    return -1;
  if (vm->live_xml_path) {
    live = virDomainGetXMLDesc (vm->dom, VIR_DOMAIN_XML_SECURE);
    if (live == NULL) {
      vms_set_error (EIO, "cannot read its live XML: %s", vm_virt_error ());
      return -1;
    }
    if (vms_write_file_atomic (AT_FDCWD, vm->live_xml_path, live,
                               strlen (live), 0600) == -1)
      return -1;
  }
  return 0;
}

/* (vm_secret_file, vm-internal.h) The value of the libvirt secret a
 * network disk's <auth> names, written for qemu-nbd to <dir>/secret-<target>
 * (mode 0600, root's; a backup's are removed at BackupShutdown): the value as libvirt keeps it, an iSCSI password or
 * the raw bytes of a Ceph key (libvirt stores the key base64-decoded, and
 * QEMU's rbd driver base64-encodes its key-secret object itself: a file
 * holding the base64 text fails the cephx login, found with qemu-img on
 * the lab's Ceph). Returns the path (malloc'd) or NULL with the error
 * set. */
char *
vm_secret_file (virConnectPtr conn, const char *dir, const struct vm_disk *d)
{
  virSecretPtr sec = NULL;
  unsigned char *value = NULL;
  size_t len = 0;
  char *path = NULL;
  int ceph = d->secret_type && strcmp (d->secret_type, "ceph") == 0;
  int usage = ceph ? VIR_SECRET_USAGE_TYPE_CEPH
    : d->secret_type && strcmp (d->secret_type, "iscsi") == 0
    ? VIR_SECRET_USAGE_TYPE_ISCSI : -1;

  if (d->secret_uuid)
    sec = virSecretLookupByUUIDString (conn, d->secret_uuid);
  else if (d->secret_usage && usage != -1)
    sec = virSecretLookupByUsage (conn, usage, d->secret_usage);
  else {
    vms_set_error (EINVAL, "its <auth> names no secret by uuid, or by usage "
                   "of type iscsi or ceph");
    return NULL;
  }
  if (sec == NULL) {
    vms_set_error (ENOENT, "the libvirt secret %s it authenticates with "
                   "cannot be found: %s", d->secret_uuid ? d->secret_uuid
                   : d->secret_usage, vm_virt_error ());
    return NULL;
  }
  value = virSecretGetValue (sec, &len, 0);
  virSecretFree (sec);
  if (value == NULL) {
    vms_set_error (EACCES, "the value of the libvirt secret %s cannot be read "
                   "(a private secret?): %s", d->secret_uuid ? d->secret_uuid
                   : d->secret_usage, vm_virt_error ());
    return NULL;
  }
  if (asprintf (&path, "%s/secret-%s", dir, d->target) == -1) {
    path = NULL;
    vms_set_error (ENOMEM, "out of memory");
  }
  else if (vms_write_file_atomic (AT_FDCWD, path, (char *) value, len,
                                  0600) == -1) {
    unlink (path);
    free (path);
    path = NULL;
  }
  explicit_bzero (value, len);
  free (value);
  return path;
}

static char *
write_secret (struct vm_writer *w, struct vm_entry *vm,
              const struct vm_disk *d)
{
  char *path = vm_secret_file (w->conn, vm->dir, d), *copy;

  if (path == NULL)
    return NULL;
  if ((copy = strdup (path)) == NULL ||
      string_vector_append (&vm->secret_files, path) == -1) {
    unlink (path);
    free (path);
    free (copy);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return copy;
}

/* Set the component's string attribute prefix + path. */
static int
set_file_attr (vms_component *pc, const char *prefix, const char *path,
               const char *value)
{
  CLEANUP_FREE char *key = vms_strdup_printf ("%s%s", prefix, path);

  if (key == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return pc ? vms_component_set_string (pc, key, value) : 0;
}

/* The RBD snapshot name of this session: VMS_VM_CHECKPOINT_PREFIX and the
 * session id, in the characters Ceph and libvirt take as they are. */
static char *
rbd_snap_name (const char *session_id)
{
  char *s = vms_strdup_printf ("%s%s", VMS_VM_CHECKPOINT_PREFIX, session_id);

  for (char *p = s; p && *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
      *p = '_';
  return s;
}

/* Issue 11: a stopped VM's raw RBD disk d (key: its key file or NULL). A
 * snapshot of this backup is taken first and the disk read from it; when
 * the image holds our snapshot of an earlier backup, the extents changed
 * since are listed for the requester (VMS_ACCESS_CHANGED_LIST), with the
 * disk's own checkpoint (the snapshot) for the catalogue. *graph becomes
 * the snapshot's block graph. When the snapshot cannot be taken (a
 * read-only Ceph user, no librbd), the disk is read as it is, in full,
 * and full_reason says why: the VM is stopped, so that is consistent. */
static int
offline_rbd (struct vm_writer *w, struct vm_entry *vm, vms_component *pc,
             const struct vm_disk *d, const char *key, char **graph,
             char **list, char **base)
{
  struct vm_rbd_diff diff;
  struct vm_disk at;
  CLEANUP_FREE char *why = NULL;
  char *g;

  if (vm->rbd_snap == NULL && (vm->rbd_snap = rbd_snap_name (w->session_id)) == NULL)
    goto oom;
  if (vm_rbd_snapshot (d, key, vm->rbd_snap, vm->previous, &diff) == -1) {
    why = vms_strdup_printf ("no RBD snapshot could be taken (%s): read as it "
                             "is while the VM is stopped", vms_get_error ());
    vms_warn ("vm \"%s\", disk %s (%s): %s", vm->name, d->target, d->path,
              why ? why : "?");
    return why && set_file_attr (pc, VMS_ATTR_FILE_FULL_REASON_PREFIX, d->path,
                                 why) == 0 ? 0 : -1;
  }
  /* Ours now: removed at Abort, or kept as the next backup's base. */
  if (string_vector_append_copy (&vm->rbd_targets, d->target) == -1 ||
      string_vector_append_copy (&vm->rbd_keys, key ? key : "") == -1) {
    vm_rbd_diff_clear (&diff);
    goto oom;
  }
  if (vm_rbd_disk_at_snapshot (d, vm->rbd_snap, &at) == -1) {
    vm_rbd_diff_clear (&diff);
    return -1;
  }
  g = vm_disk_qemu_json (&at, d->auth_user ? VMS_ACCESS_SECRET_ID : NULL);
  free (at.source_name);
  if (g == NULL) {
    vm_rbd_diff_clear (&diff);
    return -1;
  }
  free (*graph);
  *graph = g;
  if (set_file_attr (pc, VMS_ATTR_FILE_CHECKPOINT_PREFIX, d->path, vm->rbd_snap) == -1 ||
      (diff.full_reason &&
       set_file_attr (pc, VMS_ATTR_FILE_FULL_REASON_PREFIX, d->path, diff.full_reason) == -1) ||
      (diff.how && set_file_attr (pc, VMS_ATTR_FILE_CHANGES_PREFIX, d->path, diff.how) == -1)) {
    vm_rbd_diff_clear (&diff);
    return -1;
  }
  if (diff.base) {
    if ((*list = vms_strdup_printf ("%s/changed-%s", vm->dir, d->target)) == NULL ||
        string_vector_append_copy (&vm->secret_files, *list) == -1) {
      vm_rbd_diff_clear (&diff);
      goto oom;
    }
    if (vm_rbd_write_extents (*list, &diff) == -1) {
      vm_rbd_diff_clear (&diff);
      return -1;
    }
    *base = diff.base;
    diff.base = NULL;
  }
  vm_rbd_diff_clear (&diff);
  return 0;
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

/* Issue 11: the RBD snapshots of this session's stopped VM: with undo (the
 * backup was not stored) ours of this session goes; else every older one
 * of ours, which is no base any more. Failures are warnings: the backup's
 * fate does not hang on them, and the next backup prefers its own base. */
static void
end_rbd_snapshots (struct vm_entry *vm, int undo)
{
  for (size_t i = 0; vm->rbd_snap && i < vm->rbd_targets.len; i++) {
    const struct vm_disk *d = vm_config_disk (&vm->cfg, vm->rbd_targets.ptr[i]);
    const char *key = vm->rbd_keys.ptr[i][0] ? vm->rbd_keys.ptr[i] : NULL;
    if (d && vm_rbd_remove_snapshots (d, key, undo ? NULL : vm->rbd_snap,
                                      undo ? vm->rbd_snap : NULL) == -1)
      vms_warn ("vm \"%s\", disk %s: %s; remove %s by hand (rbd snap rm)",
                vm->name, d->target, vms_get_error (),
                undo ? "it" : "the older vmshadow- snapshots");
  }
  free (vm->rbd_snap);
  vm->rbd_snap = NULL;
  string_vector_free_all (&vm->rbd_targets);
  string_vector_free_all (&vm->rbd_keys);
}

/* Publish the files that are read as they are: the configuration, and for
 * a stopped VM everything (pc: its component, for what each disk's read
 * is based on; issue 11). */
static int
publish_plain (struct vm_writer *w, struct vm_entry *vm, int all,
               vms_component *pc)
{
  if (qemu_exports_publish (w->exports, vm->uuid, vm->xml_path,
                            vm->xml_path) == -1 ||
      (vm->live_xml_path &&
       qemu_exports_publish (w->exports, vm->uuid, vm->live_xml_path,
                             vm->live_xml_path) == -1))
    return -1;
  if (!all)
    return 0;
  for (size_t i = 0; i < vm->cfg.nr_disks; i++) {
    const struct vm_disk *d = &vm->cfg.disks[i];
    CLEANUP_FREE char *graph = NULL, *secret = NULL;

    const char *not_rbd;
    CLEANUP_FREE char *list = NULL, *base = NULL;

    if (!d->included)
      continue;
    if (d->source != VM_DISK_NETWORK) {
      if (qemu_exports_publish (w->exports, vm->uuid, d->path, d->path) == -1 ||
          set_file_attr (pc, VMS_ATTR_FILE_FULL_REASON_PREFIX, d->path,
                         "the VM is stopped: no dirty bitmap is read from "
                         "its images") == -1)
        return -1;
      continue;
    }
    /* A stopped VM's network disk is read by its own protocol, with the
     * secret libvirt keeps for it (issue 11). */
    if ((graph = vm_disk_qemu_json (d, d->auth_user ? VMS_ACCESS_SECRET_ID
                                    : NULL)) == NULL ||
        (d->auth_user && (secret = write_secret (w, vm, d)) == NULL)) {
      vms_set_error (vms_get_errno (), "vm \"%s\", disk %s (%s): %s",
                     vm->name, d->target, d->path, vms_get_error ());
      return -1;
    }
    if (!vm_rbd_disk_eligible (d, &not_rbd)) {
      if (set_file_attr (pc, VMS_ATTR_FILE_FULL_REASON_PREFIX, d->path,
                         strcmp (not_rbd, "not an RBD disk") == 0
                         ? "the VM is stopped: its network disk is read as it is"
                         : not_rbd) == -1)
        return -1;
    }
    else if (offline_rbd (w, vm, pc, d, secret, &graph, &list, &base) == -1) {
      vms_set_error (vms_get_errno (), "vm \"%s\", disk %s (%s): %s",
                     vm->name, d->target, d->path, vms_get_error ());
      return -1;
    }
    if (qemu_exports_publish (w->exports, vm->uuid, d->path, graph) == -1 ||
        qemu_exports_set_image (w->exports, vm->uuid, d->path, secret) == -1 ||
        (list && qemu_exports_set_changes (w->exports, vm->uuid, d->path, list,
                                           base) == -1))
      return -1;
  }
  if (vm->cfg.nvram && vm->cfg.nvram[0] == '/' &&
      qemu_exports_publish (w->exports, vm->uuid, vm->cfg.nvram,
                            vm->cfg.nvram) == -1)
    return -1;
  for (size_t i = 0; i < vm->tpm_files.len; i++)
    if (qemu_exports_publish (w->exports, vm->uuid, vm->tpm_files.ptr[i],
                              vm->tpm_files.ptr[i]) == -1)
      return -1;
  return 0;
}

static int
current_state (struct vm_entry *vm, int *st)
{
  int why;
  if (virDomainGetState (vm->dom, st, &why, 0) == -1) {
    vms_set_error (EIO, "cannot read its state: %s", vm_virt_error ());
    return -1;
  }
  return 0;
}

static int
vm_prepare_snapshot (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  CLEANUP_FREE struct vm_entry **online = calloc (w->nr_vms + 1,
                                                  sizeof *online);
  size_t nr_online = 0;

  if (online == NULL)
    return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
  if (mark_selected (w, call) == -1 ||
      check_jobs (w, call, "prepare-snapshot") == -1)
    return -1;

  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    int st;

    if (!vm->selected)
      continue;
    /* The checkpoint of the VM's last backup, from the requester's
     * catalogue: an incremental starts there (a name without
     * VMS_VM_CHECKPOINT_PREFIX, or one libvirt does not know, means a full
     * backup, its reason in VMS_VM_ATTR_INCREMENTAL_REASON). */
    vms_component *pc = vms_call_component (call, vm->uuid);
    const char *prev = pc ? vms_component_get_string (pc, VMS_ATTR_PREVIOUS_CHECKPOINT) : NULL;
    free (vm->previous);
    vm->previous = prev ? strdup (prev) : NULL;
    if (current_state (vm, &st) == -1 || save_config (vm) == -1)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                            "at prepare-snapshot: %s", vm->name,
                            vms_get_error ());
    switch (vm->method) {
    case VM_METHOD_OFFLINE:
      if (run_state (st) != VM_STATE_OFF)
        return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                              "at prepare-snapshot: it was shut off at "
                              "Identify but is %s now; retry the backup",
                              vm->name, state_name (st));
      if (publish_plain (w, vm, 1, pc) == -1)
        return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "%s",
                              vms_get_error ());
      break;
    case VM_METHOD_SAVED_STATE: {
      CLEANUP_FREE char *why = NULL;
      if (publish_plain (w, vm, 0, NULL) == -1)
        return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "%s",
                              vms_get_error ());
      if (saved_state_prepare (w, call, vm, &why) == -1)
        return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                              "at prepare-snapshot: %s", vm->name,
                              why ? why : "saved-state capture failed");
      online[nr_online++] = vm;   /* captured with the online VMs */
      break;
    }
    case VM_METHOD_CRASH_CONSISTENT:
      /* Running or paused: no guest takes part, nothing is paused. */
      if (run_state (st) != VM_STATE_RUNNING &&
          run_state (st) != VM_STATE_PAUSED)
        return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                              "at prepare-snapshot: it was %s at Identify "
                              "but is %s now; retry the backup", vm->name,
                              run_state_name (vm->state_before),
                              state_name (st));
      if (publish_plain (w, vm, 0, NULL) == -1)
        return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "%s",
                              vms_get_error ());
      online[nr_online++] = vm;
      break;
    case VM_METHOD_ONLINE:
      if (run_state (st) != VM_STATE_RUNNING)
        return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                              "at prepare-snapshot: it was running at "
                              "Identify but is %s now; retry the backup",
                              vm->name, state_name (st));
      if (publish_plain (w, vm, 0, NULL) == -1)
        return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "%s",
                              vms_get_error ());
      online[nr_online++] = vm;
      break;
    }
  }
  if (nr_online)
    return vm_online_capture (w, call, online, nr_online);
  return 0;
}

static int
vm_post_snapshot (void *data, vms_call *call)
{
  struct vm_writer *w = data;

  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    CLEANUP_FREE char *why = NULL;

    if (vm->selected && vm->method == VM_METHOD_SAVED_STATE &&
        saved_state_post_snapshot (w, call, vm, &why) == -1)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                            "at post-snapshot: %s", vm->name,
                            why ? why : "no reason given");
    /* R22: the VM is back in its state; an offline VM stays in
     * maintenance while its images are read. */
    if (vm->selected && vm->method != VM_METHOD_OFFLINE &&
        vm_cluster_backup_unmaint (w, vm) == -1)
      return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed "
                            "at post-snapshot: %s", vm->name,
                            vms_get_error ());
  }
  return 0;
}

/* End every job; with undo, also thaw, delete this session's checkpoints
 * and resume what the saved-state method paused (an uncommitted backup).
 * Returns 0, or -1 with *report saying which VMs could not be undone. */
static int
end_session_work (struct vm_writer *w, int undo, const char *phase,
                  char **report)
{
  int r = 0;

  *report = NULL;
  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    CLEANUP_FREE char *why = NULL;
    const char *err = NULL;

    if (!vm->selected)
      continue;
    /* Issue 11: a stopped VM's RBD snapshots (only ours). */
    if (vm->rbd_snap)
      end_rbd_snapshots (vm, undo);
    if (vm->frozen && vm_online_thaw (vm) == -1)
      err = vms_get_error ();
    /* Issue 17: the guest writers hear of the outcome. */
    if (undo)
      vm_guest_abort (vm);
    if (vm_online_end_job (w, vm) == -1 && err == NULL)
      err = vm->error;
    if (undo && vm_online_delete_checkpoint (w, vm) == -1 && err == NULL)
      err = vm->error;
    if (vm->method == VM_METHOD_SAVED_STATE && undo &&
        saved_state_abort (w, vm, &why) == -1 && err == NULL)
      err = why;
    /* R22: maintenance and the pin end with the jobs, once the VM is back
     * in its state (never while it is still paused by us). */
    if (!(vm->method == VM_METHOD_SAVED_STATE && saved_state_pending (vm)) &&
        !vm->frozen && vm_cluster_backup_end (w, vm) == -1 && err == NULL)
      err = vms_get_error ();
    if (!vm->job_started && !vm->frozen && !vm->cl_maint_on &&
        !vm->cl_pinned &&
        !(vm->method == VM_METHOD_SAVED_STATE && saved_state_pending (vm)))
      vm_guard_disarm (w, vm);
    if (err) {
      char *n;
      r = -1;
      if (asprintf (&n, "%s%svm \"%s\" at %s: %s", *report ? *report : "",
                    *report ? "; " : "", vm->name, phase, err) != -1) {
        free (*report);
        *report = n;
      }
    }
  }
  return r;
}

/* After the copy, before the commit: a stopped VM must have stayed stopped
 * while its images were read, or the backup must not become visible. */
static int
vm_gather_status (void *data, vms_call *call)
{
  struct vm_writer *w = data;

  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    int st;
    if (vm->selected && vm->method == VM_METHOD_OFFLINE &&
        (current_state (vm, &st) == -1 || run_state (st) != VM_STATE_OFF))
      return vms_call_fail (call, VMS_FAILURE_INCONSISTENT_SNAPSHOT,
                            "vm \"%s\" was started while its images were "
                            "read, so the copy cannot be trusted; retry the "
                            "backup", vm->name);
  }
  /* Issue 15: every export has been read; QEMU ends the backup jobs while
   * the repository commits, and backup-complete (or abort) only waits for
   * their end. A job that cannot be asked to end is left to that wait,
   * which says why. */
  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    if (vm->selected && vm_online_end_job_begin (w, vm) == -1)
      vms_debug ("vm writer: %s: %s", vm->name, vm->error ? vm->error : "?");
  }
  return 0;
}

static int
vm_backup_complete (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  CLEANUP_FREE char *report = NULL;

  if (end_session_work (w, 0, "backup-complete", &report) == -1)
    return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "%s", report
                          ? report : "backup jobs would not end");
  w->completed = 1;
  /* Issue 17: BackupComplete comes after the commit; now the guest
   * writers may count their data as backed up (truncate logs, …). */
  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    CLEANUP_FREE char *why = NULL;
    if (vm->selected && vm_guest_complete (vm, &why) == -1) {
      char *n = vms_strdup_printf ("%s%svm \"%s\" at backup-complete: %s",
                                   report ? report : "", report ? "; " : "",
                                   vm->name, why ? why : "?");
      if (n) {
        free (report);
        report = n;
      }
    }
  }
  if (report)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s", report);
  return 0;
}

static int
vm_abort (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  CLEANUP_FREE char *report = NULL;

  if (end_session_work (w, !w->completed, "abort", &report) == -1)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s; clean up by "
                          "hand (virsh domjobabort, checkpoint-delete)",
                          report ? report : "undo failed");
  return 0;
}

static int
vm_backup_shutdown (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  CLEANUP_FREE char *report = NULL;
  int r = end_session_work (w, !w->completed, "backup-shutdown", &report);

  for (size_t i = 0; i < w->nr_vms; i++) {
    struct vm_entry *vm = w->vms[i];
    if (vm->selected && vm->method == VM_METHOD_SAVED_STATE)
      saved_state_end (w, vm);
    if (vm->scratch_dir && rmdir (vm->scratch_dir) == -1 && errno != ENOENT)
      vms_debug ("vm writer: cannot remove %s: %s", vm->scratch_dir,
                 strerror (errno));
    if (vm->socket)
      unlink (vm->socket);
    for (size_t k = 0; k < vm->secret_files.len; k++)
      if (unlink (vm->secret_files.ptr[k]) == -1 && errno != ENOENT)
        vms_warn ("vm writer: cannot remove the secret file %s: %s",
                  vm->secret_files.ptr[k], strerror (errno));
    if (vm->socket_dir && rmdir (vm->socket_dir) == -1 && errno != ENOENT)
      vms_debug ("vm writer: cannot remove %s: %s", vm->socket_dir,
                 strerror (errno));
    if (r == 0)
      entry_session_reset (vm);
  }
  if (w->session_run_dir && rmdir (w->session_run_dir) == -1 &&
      errno != ENOENT)
    vms_debug ("vm writer: cannot remove %s: %s", w->session_run_dir,
               strerror (errno));
  free (w->session_run_dir);
  w->session_run_dir = NULL;
  qemu_exports_withdraw (w->exports, NULL);
  if (r == -1)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s", report
                          ? report : "cleanup failed");
  return 0;
}

static void
vm_close (void *data)
{
  struct vm_writer *w = data;

  if (w == NULL)
    return;
  vm_guard_close (w);
  entries_free (w);
  vm_cluster_clear (&w->cluster);
  if (w->conn)
    virConnectClose (w->conn);
  qemu_exports_unref (w->exports);
  free (w->uri);
  string_vector_free_all (&w->wanted);
  free (w->state_dir);
  free (w->run_dir);
  free (w->session_id);
  free (w->session_run_dir);
  vm_restore_free (w->restore);
  free (w);
}

/* ---- cluster resources (R22, issue 18) ---- */

#define VM_CLUSTER_SETTLE_S 30

/* Whether the cluster could take this capture for a failure of the VM: it
 * is paused with its state saved, its images are read while it is off
 * (the cluster must not start it meanwhile), or the agent's monitor runs
 * scripts in a guest that may be frozen. A plain online capture changes
 * nothing VirtualDomain's monitor sees (virsh domstate). */
static int
cluster_could_mistake (const struct vm_entry *vm)
{
  switch (vm->method) {
  case VM_METHOD_SAVED_STATE:
  case VM_METHOD_OFFLINE:
    return 1;
  case VM_METHOD_ONLINE:
    return vm->cl_monitor_scripts;
  case VM_METHOD_CRASH_CONSISTENT:
    return 0;
  }
  return 1;
}

int
vm_cluster_backup_begin (struct vm_writer *w, struct vm_entry *vm)
{
  const char *here = w->cluster.local_node;

  /* The resource runs here: keep it here until the backup ends (a
   * migration would end the backup job; one asked for meanwhile waits). */
  if (vm->cl_node && here && strcmp (vm->cl_node, here) == 0) {
    if (vm_guard_cluster_pin (w, vm) == -1)
      return -1;
    if (vm_cluster_pin (vm->cl_id, here) == -1)
      return -1;
    vm->cl_pinned = 1;
  }
  else if (vm->cl_node && here) {
    vms_set_error (EBUSY, "the cluster runs it on node %s, not on this node "
                   "(%s)", vm->cl_node, here);
    return -1;
  }
  if (cluster_could_mistake (vm) && !vm->cl_in_maintenance) {
    /* What to put back is told to the guard before the change. */
    if (vm_cluster_meta_read (vm->cl_id, "maintenance", "true",
                              &vm->cl_maint_prev) == -1 ||
        vm_guard_cluster_maint (w, vm) == -1)
      return -1;
    vm->cl_maint_on = 1;
    if (vm_cluster_meta_apply (vm->cl_id, "maintenance", "true",
                               &vm->cl_maint_prev) == -1)
      return -1;
    /* Its recurring monitor is cancelled before the VM is touched. */
    if (vm_cluster_settle (VM_CLUSTER_SETTLE_S) == -1)
      return -1;
    vms_debug ("vm writer: resource %s in maintenance", vm->cl_id);
  }
  return 0;
}

int
vm_cluster_backup_unmaint (struct vm_writer *w, struct vm_entry *vm)
{
  if (!vm->cl_maint_on)
    return 0;
  if (vm_cluster_meta_restore (vm->cl_id, "maintenance",
                               &vm->cl_maint_prev) == -1)
    return -1;
  vm->cl_maint_on = 0;
  vm_guard_cluster_unmaint (vm);
  vms_debug ("vm writer: resource %s out of maintenance", vm->cl_id);
  return 0;
}

int
vm_cluster_backup_end (struct vm_writer *w, struct vm_entry *vm)
{
  int r = vm_cluster_backup_unmaint (w, vm);

  if (vm->cl_pinned) {
    if (vm_cluster_unpin (vm->cl_id) == -1)
      return -1;
    vm->cl_pinned = 0;
    vm_guard_cluster_unpin (vm);
  }
  return r;
}

static const struct vms_writer vm_writer = {
  .api_version = VMS_WRITER_API_VERSION,
  .struct_size = sizeof (struct vms_writer),
  .name = VMS_VM_WRITER_NAME,
  .id = VMS_VM_WRITER_ID,
  .identify = vm_identify,
  .prepare_backup = vm_prepare_backup,
  .prepare_snapshot = vm_prepare_snapshot,
  .gather_status = vm_gather_status,
  .post_snapshot = vm_post_snapshot,
  .abort = vm_abort,
  .backup_complete = vm_backup_complete,
  .backup_shutdown = vm_backup_shutdown,
  .pre_restore = vm_restore_pre,
  .post_restore = vm_restore_post,
  .close = vm_close,
};

int
vms_libvirt_add (vms_coordinator *coord, const struct vms_vm_options *opts)
{
  return vm_writer_add (coord, opts, NULL) ? 0 : -1;
}

struct vm_writer *
vm_writer_add (vms_coordinator *coord, const struct vms_vm_options *opts,
               struct vm_restore *restore)
{
  static const struct vms_vm_options none = { .method = VMS_VM_METHOD_AUTO };
  struct vm_writer *w;
  const char *env = getenv ("VMSHADOW_VM_STATE_DIR");

  if (opts == NULL)
    opts = &none;
  if (strcmp (vms_vm_method_name (opts->method), "auto") == 0 &&
      opts->method != VMS_VM_METHOD_AUTO) {
    vms_set_error (EINVAL, "vm writer: unknown method %d", (int) opts->method);
    vm_restore_free (restore);
    return NULL;
  }
  if (strcmp (vms_vm_fallback_name (opts->fallback), "crash-consistent") == 0
      && opts->fallback != VMS_VM_FALLBACK_CRASH_CONSISTENT) {
    vms_set_error (EINVAL, "vm writer: unknown fallback %d",
                   (int) opts->fallback);
    vm_restore_free (restore);
    return NULL;
  }
  if (virInitialize () == -1) {
    vms_set_error (EIO, "vm writer: libvirt cannot be initialised: %s",
                   vm_virt_error ());
    vm_restore_free (restore);
    return NULL;
  }
  virSetErrorFunc (NULL, vm_silent_error);
  if ((w = calloc (1, sizeof *w)) == NULL) {
    vm_restore_free (restore);
    goto oom;
  }
  w->restore = restore;
  w->method = opts->method;
  w->fallback = opts->fallback;
  w->full = opts->full;
  w->group = opts->group;
  w->guest = opts->guest;
  w->uri = strdup (opts->uri ? opts->uri : VMS_VM_DEFAULT_URI);
  w->state_dir = strdup (opts->state_dir ? opts->state_dir
                         : env && *env ? env : VMS_VM_DEFAULT_STATE_DIR);
  w->run_dir = strdup (opts->run_dir ? opts->run_dir : VMS_VM_DEFAULT_RUN_DIR);
  if (w->uri == NULL || w->state_dir == NULL || w->run_dir == NULL)
    goto oom;
  if (w->state_dir[0] != '/' || w->run_dir[0] != '/') {
    vms_set_error (EINVAL, "vm writer: the state directory (%s) and run "
                   "directory (%s) must be absolute paths", w->state_dir,
                   w->run_dir);
    vm_close (w);
    return NULL;
  }
  for (size_t i = 0; opts->vms && opts->vms[i]; i++) {
    char *s = strdup (opts->vms[i]);
    if (s == NULL || string_vector_append (&w->wanted, s) == -1) {
      free (s);
      goto oom;
    }
  }
  if ((w->exports = qemu_exports_new ()) == NULL) {
    vm_close (w);
    return NULL;
  }
  if (qemu_provider_add (coord, w->exports, VMS_QEMU_PROVIDER_NAME,
                         VMS_QEMU_PROVIDER_ID) == -1) {
    vm_close (w);
    return NULL;
  }
  if (vms_coordinator_add_writer (coord, &vm_writer, w) == -1) {
    vm_close (w);
    return NULL;
  }
  return w;
 oom:
  vm_close (w);
  vms_set_error (ENOMEM, "vm writer: out of memory");
  return NULL;
}

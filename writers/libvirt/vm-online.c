/* The capture of running and paused VMs (R8, R9, R10, R11; issue 20): for
 * every such VM of the set, one thread each, inside PrepareForSnapshot, the
 * VM is prepared (scratch files, guard, checkpoint: all VMs in parallel,
 * every VM ready before the first is frozen), then held still by its
 * method (capture_ops below) while QEMU begins a pull-mode libvirt backup
 * job (a copy-before-write point-in-time view of every disk in one
 * transaction); outside a consistency group, one frozen VM at a time (see
 * online_thread):
 *
 *   online:           freeze the guest's filesystems through its agent
 *                     (guest writers take part through qemu-ga's fsfreeze
 *                     hooks) → begin → thaw;
 *   crash-consistent: begin (no agent, no pause: the disks as a power cut
 *                     would leave them);
 *   saved state:      pause, memory to a file → begin (resumed at
 *                     PostSnapshot, vm-saved-state.c).
 *
 * With a consistency group (issue 17, vms_vm_options.group) the threads
 * meet at three barriers: every VM ready (its checkpoint made, its guard
 * armed) before the first freeze, so that the freezes start together and no
 * guest waits frozen for another's preparation; every VM held (guest
 * frozen, VM paused) before the first job begins; every job begun before
 * the first guest thaws. So the surely-frozen intervals of the guests share
 * a common instant, and the jobs' point-in-time views are all of that
 * instant. A VM that fails before it is ready keeps every guest from
 * freezing (in any set); one that fails before the second barrier keeps every job from
 * beginning; one that fails to begin fails the group (the requester ends
 * the jobs that began).
 *
 * The guest is thawed whatever happened in between. The job's NBD exports
 * (one per disk, named after the disk target, on a Unix socket) are what
 * the qemu provider hands the requester. The checkpoint makes the next
 * backup incremental: a disk whose bitmap is missing or broken is read in
 * full alone (libvirt's per-disk backupmode='full'), not the whole VM.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "log.h"
#include "str.h"
#include "subprocess.h"
#include "vm-internal.h"

#define ONLINE_MAX_SOCKET 107           /* sun_path less its NUL */
/* A backup job ends within milliseconds, but a QEMU starved of CPU (TCG,
 * a loaded host: seen in CI) has taken over 10 s to report its cancel. */
#define ONLINE_JOB_END_WAIT_MS 60000
#define ONLINE_THAW_TRIES 3

/* The barriers of a consistency group (issue 17), in the order the
 * threads meet them. */
enum group_barrier { GROUP_READY, GROUP_HELD, GROUP_BEGUN, GROUP_BARRIERS };

/* What the threads of a set share: the barriers (a set that is not a
 * consistency group meets only the first) and whether a VM failed. */
struct capture_group {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  size_t expected;              /* threads that meet (final once the
                                   creating thread lets go of lock) */
  size_t arrived[GROUP_BARRIERS];
  int failed;
  int grouped;                  /* a consistency group (issue 17) */
  /* Not grouped: one guest frozen at a time (see online_thread). */
  pthread_mutex_t window;
};

struct online_job {
  struct vm_writer *w;
  struct capture_group *group;
  struct vm_entry *vm;
  pthread_t thread;
  int started;
  size_t nr_disks;
  struct vm_job_disk *disks;
  string_vector scratch;        /* owned scratch paths (disks point in) */
  string_vector bitmaps;        /* targets with a bitmap in the parent */
  string_vector fw_from, fw_to; /* firmware state copied after thaw */
  enum vms_failure kind;
  char *error;
};

static void
job_clear (struct online_job *j)
{
  free (j->disks);
  string_vector_free_all (&j->scratch);
  string_vector_free_all (&j->bitmaps);
  string_vector_free_all (&j->fw_from);
  string_vector_free_all (&j->fw_to);
  free (j->error);
}

static void
job_fail (struct online_job *j, enum vms_failure kind, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
job_fail (struct online_job *j, enum vms_failure kind, const char *fmt, ...)
{
  va_list ap;

  if (j->error)
    return;                     /* keep the first reason */
  va_start (ap, fmt);
  if (vasprintf (&j->error, fmt, ap) == -1)
    j->error = NULL;
  va_end (ap);
  j->kind = kind;
}

static int
add_full_disk (struct vm_entry *vm, const char *target, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static int
add_full_disk (struct vm_entry *vm, const char *target, const char *fmt, ...)
{
  va_list ap;
  char *t = strdup (target), *why = NULL;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&why, fmt, ap);
  va_end (ap);
  if (t == NULL || r == -1 ||
      string_vector_append (&vm->full_disks, t) == -1) {
    free (t);
    if (r != -1)
      free (why);
    return -1;
  }
  if (string_vector_append (&vm->full_reasons, why) == -1) {
    free (why);
    return -1;
  }
  return 0;
}

/* A short id for this session's socket directory (FNV-1a of the session
 * id and our pid): Unix socket paths are limited to 107 bytes. */
static unsigned
short_id (const char *session_id)
{
  uint32_t h = 2166136261u;
  for (const char *p = session_id; *p; p++)
    h = (h ^ (unsigned char) *p) * 16777619u;
  return h ^ (uint32_t) getpid ();
}

/* Checkpoint names carry the prefix and nothing libvirt would refuse. */
static char *
checkpoint_name (const char *session_id)
{
  char *s;

  if (asprintf (&s, "%s%s", VMS_VM_CHECKPOINT_PREFIX, session_id) == -1)
    return NULL;
  for (char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
      *p = '_';
  return s;
}

/* Whether the qcow2 image at path holds a persistent bitmap named name:
 * `qemu-img info -U` (shared: the image is open in QEMU). 1 yes, 0 no or
 * unknown (*why set, malloc'd). */
static int
image_has_bitmap (const char *path, const char *name, char **why)
{
  const char *argv[] = { "qemu-img", "info", "-U", "--output=json", path,
                         NULL };
  struct vms_subprocess_options o = { .argv = argv, .timeout_ms = 30000 };
  struct vms_subprocess_result res = { 0 };
  json_object *info = NULL, *fs, *data, *bitmaps;
  char how[128], tail[512];
  int found = 0;

  if (vms_subprocess_run (&o, &res) == -1) {
    *why = vms_strdup_printf ("%s", vms_get_error ());
    return 0;
  }
  if (!vms_subprocess_succeeded (&res)) {
    *why = vms_strdup_printf ("qemu-img info %s: %s: %s", path,
                              vms_subprocess_describe (&res, how, sizeof how),
                              vms_subprocess_error_tail (&res, 2, tail,
                                                         sizeof tail));
    vms_subprocess_result_reset (&res);
    return 0;
  }
  info = res.out ? json_tokener_parse (res.out) : NULL;
  if (info && json_object_object_get_ex (info, "format-specific", &fs) &&
      json_object_object_get_ex (fs, "data", &data) &&
      json_object_object_get_ex (data, "bitmaps", &bitmaps) &&
      json_object_is_type (bitmaps, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length (bitmaps); i++) {
      json_object *b = json_object_array_get_idx (bitmaps, i), *n;
      if (json_object_object_get_ex (b, "name", &n) &&
          json_object_is_type (n, json_type_string) &&
          strcmp (json_object_get_string (n), name) == 0)
        found = 1;
    }
  }
  if (!found)
    *why = vms_strdup_printf ("its image %s has no bitmap %s", path, name);
  json_object_put (info);
  vms_subprocess_result_reset (&res);
  return found;
}

/* R22, issue 18: the previous checkpoint is gone from libvirt — the cluster
 * (VirtualDomain) undefines a domain before every start, and with it
 * libvirt's checkpoint metadata — but the qcow2 images keep their
 * bitmaps. Redefine the checkpoint the repository's catalogue names with
 * the disks whose image still holds its bitmap; libvirt validates them
 * (REDEFINE_VALIDATE). A disk without it is left out: it is read in full
 * alone (plan_disks). Returns the checkpoint, or NULL with *why. */
static virDomainCheckpointPtr
redefine_checkpoint (struct vm_entry *vm, const char *prev, char **why)
{
  CLEANUP_FREE struct vm_job_disk *disks = calloc (vm->cfg.nr_disks + 1,
                                                   sizeof *disks);
  CLEANUP_FREE char *xml = NULL;
  virDomainCheckpointPtr cp;
  size_t any = 0;

  if (disks == NULL)
    return NULL;
  for (size_t i = 0; i < vm->cfg.nr_disks; i++) {
    const struct vm_disk *d = &vm->cfg.disks[i];
    CLEANUP_FREE char *no = NULL;
    disks[i].target = d->target;
    if (d->included && d->source == VM_DISK_FILE && d->format &&
        strcmp (d->format, "qcow2") == 0 &&
        image_has_bitmap (d->path, prev, &no)) {
      disks[i].bitmap = 1;
      any++;
    }
    else if (no)
      vms_debug ("vm writer: %s: %s", vm->name, no);
  }
  if (any == 0) {
    *why = vms_strdup_printf ("no disk image holds its bitmap any more");
    return NULL;
  }
  /* (the time of the redefinition: the catalogue keeps the name only) */
  xml = vm_checkpoint_redefine_xml (prev, (long long) time (NULL), disks,
                                    vm->cfg.nr_disks);
  if (xml == NULL)
    return NULL;
  cp = virDomainCheckpointCreateXML (vm->dom, xml,
                                     VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE |
                                     VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE);
  if (cp == NULL) {
    *why = vms_strdup_printf ("libvirt refused to redefine it: %s",
                              vm_virt_error ());
    return NULL;
  }
  vms_debug ("vm writer: %s: checkpoint %s redefined from the repository's "
             "catalogue (%zu disk(s) with its bitmap)", vm->name, prev, any);
  vm->parent_redefined = 1;
  return cp;
}

/* Decide whether the VM's backup is incremental (vm->parent) and which
 * disks have a bitmap in the parent (j->bitmaps). Never fails the VM: any
 * doubt means a full read, with the reason kept. */
static void
choose_parent (struct online_job *j)
{
  struct vm_writer *w = j->w;
  struct vm_entry *vm = j->vm;
  const char *prev = NULL;
  virDomainCheckpointPtr cp;
  char *xml;

  if (w->full) {
    vm->incremental_reason = strdup ("a full backup was asked for");
    return;
  }
  prev = vm->previous;
  if (prev == NULL || *prev == '\0') {
    vm->incremental_reason = strdup ("no previous backup of this VM");
    return;
  }
  if (strncmp (prev, VMS_VM_CHECKPOINT_PREFIX,
               strlen (VMS_VM_CHECKPOINT_PREFIX)) != 0) {
    if (asprintf (&vm->incremental_reason, "the previous checkpoint \"%s\" "
                  "is not vmshadow's (no \"%s\" prefix)", prev,
                  VMS_VM_CHECKPOINT_PREFIX) == -1)
      vm->incremental_reason = NULL;
    return;
  }
  cp = virDomainCheckpointLookupByName (vm->dom, prev, 0);
  if (cp == NULL) {
    CLEANUP_FREE char *gone = strdup (vm_virt_error ()), *why = NULL;
    cp = redefine_checkpoint (vm, prev, &why);
    if (cp == NULL) {
      if (asprintf (&vm->incremental_reason, "the previous checkpoint \"%s\" "
                    "no longer exists in libvirt (%s) and cannot be redefined "
                    "from the repository's catalogue: %s", prev,
                    gone ? gone : "", why ? why : "out of memory") == -1)
        vm->incremental_reason = NULL;
      return;
    }
  }
  xml = virDomainCheckpointGetXMLDesc (cp, 0);
  virDomainCheckpointFree (cp);
  if (xml == NULL ||
      vm_checkpoint_bitmaps (xml, strlen (xml), &j->bitmaps) == -1) {
    if (asprintf (&vm->incremental_reason, "the previous checkpoint \"%s\" "
                  "cannot be read: %s", prev,
                  xml ? vms_get_error () : vm_virt_error ()) == -1)
      vm->incremental_reason = NULL;
    free (xml);
    return;
  }
  free (xml);
  vm->parent = strdup (prev);
}

/* Where the job's scratch file of a disk is (malloc'd, or NULL). */
static char *
scratch_path (const struct vm_entry *vm, const char *target)
{
  return vms_strdup_printf ("%s/%s.qcow2", vm->scratch_dir, target);
}

/* Issue 15: the job's scratch files are made before the freeze and the job
 * begun with REUSE_EXTERNAL: else libvirt creates each one inside the
 * freeze window (the file, then a qcow2 blockdev-create job: ~20 ms a disk
 * under TCG here). A qcow2 of the disk's virtual size (QEMU's backup job
 * wants the sizes equal), without a backing file in its header: libvirt
 * gives QEMU the disk as its backing node. Libvirt leaves such files to
 * us: remove_scratch. */
struct scratch_make {
  const char *path;
  uint64_t size;
  int rc, errnum;
  char *error;                  /* its failure (malloc'd) */
};

static void *
scratch_make_one (void *p)
{
  struct scratch_make *m = p;

  if ((m->rc = vm_create_image (m->path, "qcow2", m->size)) == -1) {
    m->errnum = vms_get_errno ();
    m->error = vms_get_error () ? strdup (vms_get_error ()) : NULL;
  }
  return NULL;
}

/* Each file is one `qemu-img create` (~25 ms, mostly its start), each in a
 * thread of its own: a VM's disks cost one of them, not their sum, and the
 * job's thread arms the guard and makes the checkpoint meanwhile
 * (scratch_finish waits for them). */
struct scratch_set {
  struct scratch_make *m;
  pthread_t *th;
  int *started;
  size_t n;
};

static void
scratch_set_free (struct scratch_set *s)
{
  for (size_t i = 0; i < s->n; i++)
    free (s->m[i].error);
  free (s->m);
  free (s->th);
  free (s->started);
  memset (s, 0, sizeof *s);
}

static int
scratch_start (struct online_job *j, struct scratch_set *s)
{
  memset (s, 0, sizeof *s);
  s->m = calloc (j->nr_disks + 1, sizeof *s->m);
  s->th = calloc (j->nr_disks + 1, sizeof *s->th);
  s->started = calloc (j->nr_disks + 1, sizeof *s->started);
  if (s->m == NULL || s->th == NULL || s->started == NULL) {
    scratch_set_free (s);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  /* Every size first: libvirt's calls, not beside the checkpoint's job.
   * A qcow2 image's from its header (issue 15: each virDomainGetBlockInfo
   * is three QMP queries in libvirtd, 2-8 ms, in series before the
   * checkpoint); each file's thread starts as soon as its size is known.
   * (One whose thread did not start is made by scratch_finish.) */
  for (size_t i = 0; i < j->nr_disks; i++) {
    const struct vm_job_disk *jd = &j->disks[i];
    const struct vm_disk *d = &j->vm->cfg.disks[i];
    uint64_t size;

    if (!jd->backup)
      continue;
    if (!(d->source == VM_DISK_FILE && d->format &&
          strcmp (d->format, "qcow2") == 0 &&
          vm_qcow2_virtual_size (d->path, &size) == 0)) {
      virDomainBlockInfo bi;
      if (virDomainGetBlockInfo (j->vm->dom, jd->target, &bi, 0) == -1) {
        vms_set_error (EIO, "cannot read the size of disk %s: %s", jd->target,
                       vm_virt_error ());
        for (size_t k = 0; k < s->n; k++)
          if (s->started[k])
            pthread_join (s->th[k], NULL);
        scratch_set_free (s);   /* (files made are removed with the rest) */
        return -1;
      }
      size = bi.capacity;
    }
    s->m[s->n].path = jd->scratch;
    s->m[s->n].size = size;
    s->started[s->n] = pthread_create (&s->th[s->n], NULL, scratch_make_one,
                                       &s->m[s->n]) == 0;
    s->n++;
  }
  return 0;
}

/* Waits for every file; the first failure by disk order is the one said. */
static int
scratch_finish (struct scratch_set *s)
{
  int r = 0;

  for (size_t i = 0; i < s->n; i++) {
    if (s->started[i])
      pthread_join (s->th[i], NULL);
    else
      scratch_make_one (&s->m[i]);
  }
  for (size_t i = 0; i < s->n && r == 0; i++)
    if (s->m[i].rc == -1) {
      vms_set_error (s->m[i].errnum, "%s", s->m[i].error ? s->m[i].error
                     : "out of memory");
      r = -1;
    }
  scratch_set_free (s);
  return r;
}

/* The scratch files, once no job of ours can use them. (When vmshadow is
 * killed, the guard ends the job and removes them: vm_guard_arm tells it
 * the scratch directory.) */
static void
remove_scratch (struct vm_entry *vm)
{
  if (vm->scratch_dir == NULL)
    return;
  for (size_t i = 0; i < vm->cfg.nr_disks; i++) {
    CLEANUP_FREE char *path = NULL;
    if (!vm->cfg.disks[i].included)
      continue;
    path = scratch_path (vm, vm->cfg.disks[i].target);
    if (path && unlink (path) == -1 && errno != ENOENT)
      vms_warn ("vm writer: %s: cannot remove the scratch file %s: %s",
                vm->name, path, strerror (errno));
  }
}

/* The job's disks: every disk of the VM, in the XML's order. */
static int
plan_disks (struct online_job *j, unsigned sid)
{
  struct vm_entry *vm = j->vm;
  int any_incremental = 0;

  j->nr_disks = vm->cfg.nr_disks;
  j->disks = calloc (j->nr_disks + 1, sizeof *j->disks);
  if (j->disks == NULL)
    return -1;
  for (size_t i = 0; i < vm->cfg.nr_disks; i++) {
    const struct vm_disk *d = &vm->cfg.disks[i];
    struct vm_job_disk *jd = &j->disks[i];
    int qcow2 = d->format && strcmp (d->format, "qcow2") == 0;
    char *scratch;

    jd->target = d->target;
    if (!d->included)
      continue;
    jd->backup = 1;
    jd->bitmap = qcow2;
    if ((scratch = scratch_path (vm, d->target)) == NULL)
      return -1;
    if (string_vector_append (&j->scratch, scratch) == -1) {
      free (scratch);
      return -1;
    }
    jd->scratch = scratch;
    if (vm->parent == NULL)
      continue;
    if (!qcow2) {
      /* Issue 11: say how a raw disk is read and why. */
      if (add_full_disk (vm, d->target, "read in full, only changed chunks "
                         "stored: a %s %s keeps no persistent dirty bitmap "
                         "(QEMU keeps them only in qcow2 images)",
                         d->format ? d->format : "raw",
                         d->source == VM_DISK_BLOCK ? "host block device"
                         : d->source == VM_DISK_NETWORK ? "network disk"
                         : "image") == -1)
        return -1;
    }
    else if (!string_vector_contains (&j->bitmaps, d->target)) {
      if (add_full_disk (vm, d->target, "the previous checkpoint %s has no "
                         "bitmap for this disk", vm->parent) == -1)
        return -1;
    }
    else {
      jd->incremental = 1;
      any_incremental = 1;
    }
  }
  if (vm->parent && !any_incremental) {
    if (asprintf (&vm->incremental_reason, "no disk has a bitmap in the "
                  "previous checkpoint %s", vm->parent) == -1)
      vm->incremental_reason = NULL;
    free (vm->parent);
    vm->parent = NULL;
  }
  (void) sid;
  return 0;
}

int
vm_online_thaw (struct vm_entry *vm)
{
  for (int t = 0; t < ONLINE_THAW_TRIES; t++) {
    if (virDomainFSThaw (vm->dom, NULL, 0, 0) >= 0) {
      vm->frozen = 0;
      vm_guard_thawed (vm);
      return 0;
    }
    if (t + 1 < ONLINE_THAW_TRIES) {
      struct timespec ts = { 0, 200 * 1000 * 1000 };
      nanosleep (&ts, NULL);
    }
  }
  vms_set_error (EIO, "the guest could not be thawed (it may still be "
                 "frozen; run virsh domfsthaw %s): %s", vm->name,
                 vm_virt_error ());
  return -1;
}

/* Begin the job, switching a disk whose bitmap libvirt finds missing or
 * broken to a full read and trying again (inside the freeze window: each
 * try is one round trip). */
static int
begin_job (struct online_job *j, const char *cp_xml)
{
  struct vm_entry *vm = j->vm;

  for (size_t tries = 0; tries <= j->nr_disks + 1; tries++) {
    CLEANUP_FREE char *bxml = vm_backup_xml (vm->socket, vm->parent,
                                             j->disks, j->nr_disks);
    CLEANUP_FREE char *disk = NULL;
    virErrorPtr err;
    int changed = 0;

    if (bxml == NULL)
      return -1;
    vms_debug ("vm writer: %s: backup XML:\n%s", vm->name, bxml);
    if (virDomainBackupBegin (vm->dom, bxml, cp_xml,
                              VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL) == 0)
      return 0;
    err = virGetLastError ();
    if (err == NULL || err->code != VIR_ERR_CHECKPOINT_INCONSISTENT ||
        vm->parent == NULL) {
      vms_set_error (EIO, "the backup job did not begin: %s",
                     vm_virt_error ());
      return -1;
    }
    disk = vm_inconsistent_disk (err->message);
    for (size_t i = 0; i < j->nr_disks; i++) {
      struct vm_job_disk *jd = &j->disks[i];
      if (!jd->incremental || (disk && strcmp (disk, jd->target) != 0))
        continue;
      jd->incremental = 0;
      changed = 1;
      if (add_full_disk (vm, jd->target, "its bitmap of checkpoint %s is "
                         "missing or broken (%s)", vm->parent,
                         err->message ? err->message : "") == -1) {
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
    }
    if (!changed) {
      vms_set_error (EIO, "the backup job did not begin: %s",
                     vm_virt_error ());
      return -1;
    }
    int any = 0;
    for (size_t i = 0; i < j->nr_disks; i++)
      any |= j->disks[i].incremental;
    if (!any) {
      if (asprintf (&vm->incremental_reason, "every disk's bitmap of "
                    "checkpoint %s is missing or broken", vm->parent) == -1)
        vm->incremental_reason = NULL;
      free (vm->parent);
      vm->parent = NULL;
    }
  }
  vms_set_error (EIO, "the backup job did not begin after dropping every "
                 "broken bitmap");
  return -1;
}

/* Copy the firmware state after thaw: small files, and the copy is what
 * the requester reads. */
static void
copy_firmware (struct online_job *j)
{
  for (size_t i = 0; i < j->fw_from.len && !j->error; i++)
    if (vm_copy_file (j->fw_from.ptr[i], j->fw_to.ptr[i]) == -1)
      job_fail (j, VMS_FAILURE_RETRYABLE, "copying firmware state: %s",
                vms_get_error ());
}

/* ---- what each method does around the job's begin (issue 20) ----
 *
 * Every method that runs a backup job begins it the same way; they differ
 * only in how the VM is held still while it begins, and in what the
 * capture records. One row per method; vm_online_capture runs them all in
 * parallel. */

/* Online (R10): the guest's filesystems are frozen through its agent
 * (qemu-ga runs the fsfreeze hooks: a hook failing is a veto). */
static int
hold_freeze (struct online_job *j)
{
  j->vm->frozen = 1;
  if (virDomainFSFreeze (j->vm->dom, NULL, 0, 0) < 0) {
    job_fail (j, VMS_FAILURE_RETRYABLE, "the guest filesystems did not "
              "freeze (a guest writer may have vetoed): %s", vm_virt_error ());
    return -1;
  }
  return 0;
}

/* Always called after hold_freeze, also when it failed: qemu-ga may have
 * frozen some filesystems. */
static int
release_thaw (struct online_job *j)
{
  if (vm_online_thaw (j->vm) == -1) {
    job_fail (j, VMS_FAILURE_NON_RETRYABLE, "%s", vms_get_error ());
    return -1;
  }
  return 0;
}

/* Saved state (R8): pause and write the state file; no guest takes part,
 * nothing to thaw. The VM is returned to its state at PostSnapshot. */
static int
hold_pause (struct online_job *j)
{
  if (saved_state_stop (j->w, j->vm) == -1) {
    job_fail (j, VMS_FAILURE_RETRYABLE, "%s", vms_get_error ());
    return -1;
  }
  return 0;
}

struct capture_ops {
  enum vm_method method;
  /* Before the begin; NULL: nothing (crash-consistent: the job's one
   * transaction is the instant a power cut would have left). */
  int (*hold) (struct online_job *j);
  /* After the begin, whenever hold was called; NULL: nothing. */
  int (*release) (struct online_job *j);
  int timed;                    /* hold → release is freeze_window_ms */
  int incremental;              /* dirty bitmaps are loaded: may read only
                                   what changed */
};

static const struct capture_ops capture_ops[] = {
  { VM_METHOD_ONLINE, hold_freeze, release_thaw, 1, 1 },
  { VM_METHOD_CRASH_CONSISTENT, NULL, NULL, 0, 1 },
  /* While QEMU writes the state file it hands the images over (inactive),
   * and their dirty bitmaps are not loaded until the VM runs again. */
  { VM_METHOD_SAVED_STATE, hold_pause, NULL, 0, 0 },
};

static const struct capture_ops *
ops_of (enum vm_method m)
{
  for (size_t i = 0; i < sizeof capture_ops / sizeof capture_ops[0]; i++)
    if (capture_ops[i].method == m)
      return &capture_ops[i];
  return NULL;                  /* offline: no job */
}

/* Meet the set's other threads at barrier k; failed: this VM failed.
 * Returns 1 when a VM of the set failed (this one or another). A set that
 * is not a group meets at GROUP_READY only; else: whether this one
 * failed. */
static int
group_meet (struct online_job *j, enum group_barrier k, int failed)
{
  struct capture_group *g = j->group;
  int r;

  if (!g->grouped && k != GROUP_READY)
    return failed;
  pthread_mutex_lock (&g->lock);
  if (failed)
    g->failed = 1;
  g->arrived[k]++;
  pthread_cond_broadcast (&g->cond);
  while (g->arrived[k] < g->expected)
    pthread_cond_wait (&g->cond, &g->lock);
  r = g->failed;
  pthread_mutex_unlock (&g->lock);
  return r;
}

static int64_t
realtime_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The guest writers' freeze budget (issue 17): the hook kills a writer
 * still running after it; $VMSHADOW_GUEST_FREEZE_BUDGET_MS, default 10 s. */
static int64_t
guest_freeze_budget_ms (void)
{
  const char *e = getenv ("VMSHADOW_GUEST_FREEZE_BUDGET_MS");
  char *end;
  long long v;
  if (e == NULL || *e == '\0')
    return 10000;
  errno = 0;
  v = strtoll (e, &end, 10);
  if (errno || *end || v < 100 || v > 600000)
    return 10000;
  return v;
}

static void *
online_thread (void *arg)
{
  struct online_job *j = arg;
  struct vm_entry *vm = j->vm;
  const struct capture_ops *ops = ops_of (vm->method);
  CLEANUP_FREE char *cp_xml = NULL, *desc = NULL;
  int any_bitmap = 0;
  int64_t t_start = vms_now_us (), t0, t1, t_held = 0, t_met0 = 0;
  int64_t t_begun = 0, t_met1 = 0;

  int held = 0, failed = 0;
  struct scratch_set scratch = { 0 };

  /* Every thread of a group meets every barrier, also after a failure. */
  if (ops == NULL) {
    job_fail (j, VMS_FAILURE_NON_RETRYABLE, "the %s method runs no backup "
              "job", vm_method_name (vm->method));
    failed = 1;
  }
  for (size_t i = 0; i < j->nr_disks; i++)
    any_bitmap |= j->disks[i].bitmap;
  if (!failed && any_bitmap && vm->checkpoint) {
    if (asprintf (&desc, "vmshadow backup %s", j->w->session_id) == -1)
      desc = NULL;
    cp_xml = vm_checkpoint_xml (vm->checkpoint, desc, j->disks, j->nr_disks);
    if (cp_xml == NULL) {
      job_fail (j, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
      failed = 1;
    }
  }
  if (!failed && scratch_start (j, &scratch) == -1) {
    job_fail (j, VMS_FAILURE_RETRYABLE, "the backup job's scratch files "
              "could not be made: %s", vms_get_error ());
    failed = 1;
  }
  /* While they are made: the guard armed (it knows the scratch directory,
   * the job's socket and the checkpoint's name before either exists: R4),
   * then the checkpoint. */
  if (!failed && vm_guard_arm (j->w, vm) == -1) {
    job_fail (j, VMS_FAILURE_RETRYABLE, "the guard could not be armed: %s",
              vms_get_error ());
    failed = 1;
  }
  /* Issue 15: a frozen guest's new checkpoint is made just before the
   * freeze, not in the job's transaction inside the window (libvirt writes
   * and fsyncs its metadata file there). Its bitmaps then record from a
   * moment before the job's point in time, so the next incremental backup
   * reads what changed since a little before this one: a superset of
   * what it must read, never less. On any failure it is deleted
   * (checkpoint_created), by the guard too (armed with its name). */
  if (!failed && cp_xml && ops->timed) {
    int64_t t_cp = vms_now_us ();
    virDomainCheckpointPtr cp = virDomainCheckpointCreateXML (vm->dom, cp_xml,
                                                              0);
    vms_debug ("vm writer: %s: checkpoint %s created in %" PRId64 " ms",
               vm->name, vm->checkpoint, (vms_now_us () - t_cp) / 1000);
    if (cp == NULL) {
      job_fail (j, VMS_FAILURE_RETRYABLE, "the new checkpoint %s could not "
                "be created: %s", vm->checkpoint, vm_virt_error ());
      failed = 1;
    }
    else {
      virDomainCheckpointFree (cp);
      vm->checkpoint_created = 1;
      free (cp_xml);
      cp_xml = NULL;
    }
  }

  if (scratch.m) {
    if (scratch_finish (&scratch) == -1 && !failed) {
      job_fail (j, VMS_FAILURE_RETRYABLE, "the backup job's scratch files "
                "could not be made: %s", vms_get_error ());
      failed = 1;
    }
    vms_debug ("vm writer: %s: scratch files made", vm->name);
  }

  /* Issue 17: every VM of the set ready before the first freeze (the
   * checkpoint's creation takes each VM a different time, and in another
   * VM's window it slows libvirtd). One that failed keeps every guest from
   * freezing: the set fails whole (R12). */
  if (group_meet (j, GROUP_READY, failed) && !failed) {
    job_fail (j, VMS_FAILURE_RETRYABLE, "another VM of its %s failed before "
              "the guests were frozen", j->group->grouped
              ? "consistency group" : "set");
    failed = 1;
  }
  /* Issue 15: outside a group, one freeze window at a time. Nothing ties
   * the VMs' instants together, and windows side by side only slow each
   * other down: the agents, libvirtd's begins and the TCG guests share the
   * host's CPUs (three VMs, 5 runs at load ~3: the largest window 327-468
   * ms side by side, 226-286 ms one at a time). The set's capture takes
   * longer (~0.25 s for three); each VM is frozen for less. */
  int serial = !failed && !j->group->grouped && ops->timed;
  if (serial)
    pthread_mutex_lock (&j->group->window);
  t0 = vms_now_us ();
  if (!failed && ops->hold) {
    held = 1;
    if (ops->hold (j) == -1)
      failed = 1;               /* j->error says why */
    else if (ops->timed)
      vm->frozen_from_us = realtime_us ();
    t_held = vms_now_us ();
  }
  /* Issue 17: the guest writers vetoed the freeze (or ran past their
   * budget). Thawed at once; their own words replace the agent's; "tried"
   * goes on crash-consistent, saying so. */
  if (failed && held && vm->guest_active) {
    CLEANUP_FREE char *veto = NULL;
    ops->release (j);
    held = 0;
    veto = vm_guest_read_status (vm);
    if (vm->guest_policy == VMS_VM_GUEST_TRIED && !vm->frozen) {
      vm_guest_fell_back (vm, veto ? veto : j->error);
      vm_guest_abort (vm);
      free (j->error);
      j->error = NULL;
      vm->method = VM_METHOD_CRASH_CONSISTENT;
      failed = 0;
    }
    else if (veto) {
      free (j->error);
      j->error = vms_strdup_printf ("the guest writers vetoed the freeze: %s",
                                    veto);
    }
  }
  /* Every VM of the group held before the first job begins. */
  int met0 = group_meet (j, GROUP_HELD, failed);
  t_met0 = vms_now_us ();
  if (met0) {
    if (!failed)
      job_fail (j, VMS_FAILURE_RETRYABLE, "another VM of its consistency "
                "group failed before the backup jobs began");
    failed = 1;
  }
  else if (begin_job (j, cp_xml) == -1) {
    job_fail (j, VMS_FAILURE_RETRYABLE, "%s", vms_get_error ());
    failed = 1;
  }
  else {
    vm->job_started = 1;
    if (cp_xml != NULL)
      vm->checkpoint_created = 1;
    vm_guard_job_started (j->w, vm);
    t_begun = vms_now_us ();
  }
  /* Every job of the group begun before the first thaw. */
  if (group_meet (j, GROUP_BEGUN, failed) && !failed)
    job_fail (j, VMS_FAILURE_RETRYABLE, "another VM of its consistency "
              "group failed to begin its backup job");
  t_met1 = vms_now_us ();
  if (held && ops->timed && vm->frozen_from_us)
    vm->frozen_until_us = realtime_us ();
  if (held && ops->release)
    ops->release (j);
  t1 = vms_now_us ();
  if (serial)
    pthread_mutex_unlock (&j->group->window);
  if (ops && ops->timed && held)
    vm->freeze_ms = (t1 - t0 + 999) / 1000;
  /* Issue 17: what the guest writers did at freeze and thaw (R5). */
  if (held && vm->guest_active && !vm->frozen)
    free (vm_guest_read_status (vm));
  if (!vm->checkpoint_created) {
    free (vm->checkpoint);
    vm->checkpoint = NULL;
  }
  if (!j->error)
    copy_firmware (j);
  if (ops == NULL)
    return NULL;
  /* Issues 15, 17: what the window holds, step by step (hold: the agent's
   * freeze; wait: a group's barriers; begin: the job's begin; release: the
   * thaw), and what came just before it. */
  vms_debug ("vm writer: %s: %s capture, %" PRId64 " ms (hold %" PRId64
             " ms, wait %" PRId64 " ms, begin %" PRId64 " ms, wait %" PRId64
             " ms, release %" PRId64 " ms; before it: %" PRId64 " ms)%s%s",
             vm->name, vm_method_name (vm->method), (t1 - t0 + 999) / 1000,
             t_held ? (t_held - t0) / 1000 : 0,
             t_held ? (t_met0 - t_held) / 1000 : 0,
             t_begun ? (t_begun - t_met0) / 1000 : 0,
             t_begun ? (t_met1 - t_begun) / 1000 : 0,
             t_met1 ? (t1 - t_met1) / 1000 : 0, (t0 - t_start) / 1000,
             j->error ? ", failed: " : "", j->error ? j->error : "");
  return NULL;
}

/* Everything slow before any guest is frozen: names, directories,
 * previous checkpoint, disk plan. */
static int
prepare_job (struct online_job *j, unsigned sid, size_t index)
{
  struct vm_writer *w = j->w;
  struct vm_entry *vm = j->vm;

  if ((vm->checkpoint = checkpoint_name (w->session_id)) == NULL)
    goto oom;
  if (asprintf (&vm->socket_dir, "%s/%zu", w->session_run_dir, index) == -1) {
    vm->socket_dir = NULL;
    goto oom;
  }
  if (asprintf (&vm->socket, "%s/nbd.sock", vm->socket_dir) == -1) {
    vm->socket = NULL;
    goto oom;
  }
  if (strlen (vm->socket) > ONLINE_MAX_SOCKET) {
    job_fail (j, VMS_FAILURE_NON_RETRYABLE, "the NBD socket path %s is longer "
              "than %d bytes; use a shorter run directory", vm->socket,
              ONLINE_MAX_SOCKET);
    return -1;
  }
  if (asprintf (&vm->scratch_dir, "%s/scratch-%08x", vm->dir, sid) == -1) {
    vm->scratch_dir = NULL;
    goto oom;
  }
  /* Issue 20: QEMU, not root on a stock host, creates the socket and
   * opens the scratch files (libvirt labels the files, not directories). */
  if (vm_qemu_dir (vm, vm->socket_dir, 0770) == -1 ||
      vm_qemu_dir (vm, vm->scratch_dir, 0750) == -1) {
    job_fail (j, VMS_FAILURE_NON_RETRYABLE, "%s", vms_get_error ());
    return -1;
  }
  if (ops_of (vm->method) && !ops_of (vm->method)->incremental) {
    /* The job begun then can only read every disk in full (capture_ops).
     * Its new checkpoint still lets a later backup be incremental. */
    if (asprintf (&vm->incremental_reason, "a %s capture reads every disk "
                  "in full (QEMU's dirty bitmaps are not loaded while the "
                  "state is saved)", vm_method_name (vm->method)) == -1)
      vm->incremental_reason = NULL;
  }
  else
    choose_parent (j);
  if (plan_disks (j, sid) == -1)
    goto oom;
  /* Firmware state: copies in the VM's state directory. */
  const char *fw[1] = { vm->cfg.nvram };
  for (size_t i = 0; i < 1 + vm->tpm_files.len; i++) {
    const char *src = i == 0 ? fw[0] : vm->tpm_files.ptr[i - 1];
    char *from, *to;
    if (src == NULL || src[0] != '/')
      continue;
    const char *base = strrchr (src, '/') + 1;
    from = strdup (src);
    if (from == NULL ||
        asprintf (&to, "%s/firmware-%zu-%s", vm->dir, i, base) == -1) {
      free (from);
      goto oom;
    }
    if (string_vector_append (&j->fw_from, from) == -1) {
      free (from);
      free (to);
      goto oom;
    }
    if (string_vector_append (&j->fw_to, to) == -1) {
      free (to);
      goto oom;
    }
  }
  return 0;
 oom:
  job_fail (j, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
  return -1;
}

/* After a good capture: attributes (R5) and exports. */
static int
record_job (struct online_job *j, vms_call *call)
{
  struct vm_writer *w = j->w;
  struct vm_entry *vm = j->vm;
  vms_component *c = vms_call_component (call, vm->uuid);

  if (c == NULL ||
      vms_component_set_string (c, VMS_VM_ATTR_METHOD,
                                vm_method_name (vm->method)) == -1 ||
      vm_guest_record (vm, c) == -1 ||
      (ops_of (vm->method) && ops_of (vm->method)->timed &&
       vms_component_set_int (c, VMS_VM_ATTR_FREEZE_WINDOW_MS,
                              vm->freeze_ms) == -1) ||
      (vm->frozen_from_us && vm->frozen_until_us &&
       (vms_component_set_int (c, VMS_ATTR_FROZEN_FROM_US,
                               vm->frozen_from_us) == -1 ||
        vms_component_set_int (c, VMS_ATTR_FROZEN_UNTIL_US,
                               vm->frozen_until_us) == -1)) ||
      (w->group && vms_component_set_int (c, VMS_ATTR_GROUP, 1) == -1) ||
      vms_component_set_string (c, VMS_VM_ATTR_BACKUP_TYPE,
                                vm->parent ? "incremental" : "full") == -1 ||
      (vm->checkpoint &&
       vms_component_set_string (c, VMS_VM_ATTR_CHECKPOINT,
                                 vm->checkpoint) == -1) ||
      (vm->parent &&
       vms_component_set_string (c, VMS_VM_ATTR_PARENT_CHECKPOINT,
                                 vm->parent) == -1) ||
      (vm->incremental_reason &&
       vms_component_set_string (c, VMS_VM_ATTR_INCREMENTAL_REASON,
                                 vm->incremental_reason) == -1) ||
      (vm->parent && vm->parent_redefined &&
       vms_component_set_string (c, VMS_VM_ATTR_PARENT_REDEFINED,
                                 "redefined from the repository's catalogue "
                                 "(libvirt had forgotten it)") == -1))
    return -1;
  for (size_t i = 0; i < j->nr_disks; i++) {
    const struct vm_job_disk *jd = &j->disks[i];
    const struct vm_disk *d = &vm->cfg.disks[i];
    CLEANUP_FREE char *access = NULL, *key = NULL;

    if (!jd->backup)
      continue;
    if (asprintf (&access, "nbd+unix:///%s?socket=%s", jd->target,
                  vm->socket) == -1) {
      access = NULL;
      return -1;
    }
    if (qemu_exports_publish (w->exports, vm->uuid, d->path, access) == -1)
      return -1;
    if (vm->parent && jd->incremental) {
      CLEANUP_FREE char *ctx = NULL;
      if (asprintf (&key, "%s%s", VMS_VM_ATTR_DIRTY_CONTEXT_PREFIX,
                    d->path) == -1 ||
          asprintf (&ctx, "qemu:dirty-bitmap:backup-%s", jd->target) == -1 ||
          vms_component_set_string (c, key, ctx) == -1 ||
          qemu_exports_set_changes (w->exports, vm->uuid, d->path, ctx,
                                    vm->parent) == -1)
        return -1;
    }
  }
  for (size_t i = 0; vm->parent && i < vm->full_disks.len; i++) {
    const struct vm_disk *d = vm_config_disk (&vm->cfg, vm->full_disks.ptr[i]);
    CLEANUP_FREE char *key = NULL;
    if (d == NULL)
      continue;
    if (asprintf (&key, "%s%s", VMS_VM_ATTR_DISK_FULL_REASON_PREFIX,
                  d->path) == -1 ||
        vms_component_set_string (c, key, vm->full_reasons.ptr[i]) == -1)
      return -1;
  }
  for (size_t i = 0; i < j->fw_from.len; i++)
    if (qemu_exports_publish (w->exports, vm->uuid, j->fw_from.ptr[i],
                              j->fw_to.ptr[i]) == -1)
      return -1;
  return 0;
}

int
vm_online_capture (struct vm_writer *w, vms_call *call,
                   struct vm_entry **vms, size_t n)
{
  CLEANUP_FREE struct online_job *jobs = calloc (n, sizeof *jobs);
  CLEANUP_FREE char *report = NULL;
  unsigned sid = short_id (w->session_id);
  enum vms_failure kind = VMS_FAILURE_NONE;
  struct capture_group group = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
    .expected = n, .grouped = w->group,
    .window = PTHREAD_MUTEX_INITIALIZER,
  };
  size_t nr_failed = 0;

  if (jobs == NULL)
    return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
  if (w->session_run_dir == NULL &&
      asprintf (&w->session_run_dir, "%s/%08x", w->run_dir, sid) == -1) {
    w->session_run_dir = NULL;
    return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
  }
  /* The session's directory: searchable (QEMU reaches its own VM's
   * directory in it), not listable. */
  if (vms_mkdir_p (w->run_dir, 0755) == -1 ||
      (mkdir (w->session_run_dir, 0711) == -1 && errno != EEXIST) ||
      chmod (w->session_run_dir, 0711) == -1)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm writer: cannot "
                          "make the socket directory %s: %s",
                          w->session_run_dir, strerror (errno));

  for (size_t i = 0; i < n; i++) {
    jobs[i].w = w;
    jobs[i].vm = vms[i];
    jobs[i].group = &group;
  }
  /* The guard connects to libvirt while the jobs are prepared (issue 15:
   * its start was a step of its own before the freeze), if Identify has
   * not started it already. */
  vm_guard_prestart (w);
  /* Slow preparation first, so that the freeze windows hold only the
   * freeze, the job's begin and the thaw. */
  for (size_t i = 0; i < n; i++)
    if (prepare_job (&jobs[i], sid, i) == -1)
      goto collect;
  /* Issue 17: the guest writers' prepare-backup, before any freeze. */
  for (size_t i = 0; i < n; i++) {
    struct vm_entry *vm = jobs[i].vm;
    CLEANUP_FREE char *why = NULL;
    if (vm->method != VM_METHOD_ONLINE || !vm->guest_active ||
        vm_guest_prepare (vm, guest_freeze_budget_ms (), &why) == 0)
      continue;
    if (vm->guest_policy == VMS_VM_GUEST_TRIED) {
      vm_guest_fell_back (vm, why ? why : "?");
      vm_guest_abort (vm);
      vm->method = VM_METHOD_CRASH_CONSISTENT;
      vm->guest_active = 0;     /* no freeze, no hook results to read */
      continue;
    }
    job_fail (&jobs[i], VMS_FAILURE_RETRYABLE, "%s", why ? why : "the guest "
              "writers' prepare-backup failed");
    goto collect;
  }
  /* The threads wait at the first barrier until they are all
   * started (or the ones that could not be are no longer expected): the
   * creating thread holds the lock until then. */
  pthread_mutex_lock (&group.lock);
  for (size_t i = 0; i < n; i++) {
    int e = pthread_create (&jobs[i].thread, NULL, online_thread, &jobs[i]);
    if (e) {
      job_fail (&jobs[i], VMS_FAILURE_OUT_OF_RESOURCES, "cannot start a "
                "thread: %s", strerror (e));
      group.expected = i;
      group.failed = 1;
      break;
    }
    jobs[i].started = 1;
  }
  pthread_cond_broadcast (&group.cond);
  pthread_mutex_unlock (&group.lock);
  for (size_t i = 0; i < n; i++)
    if (jobs[i].started)
      pthread_join (jobs[i].thread, NULL);

 collect:
  for (size_t i = 0; i < n; i++) {
    struct online_job *j = &jobs[i];
    if (!j->error && j->started && record_job (j, call) == -1)
      job_fail (j, VMS_FAILURE_OUT_OF_RESOURCES, "recording the capture: %s",
                vms_get_error ());
    if (j->error) {
      char *r;
      nr_failed++;
      if (kind == VMS_FAILURE_NONE)
        kind = j->kind;
      free (j->vm->error);
      j->vm->error = strdup (j->error);
      if (asprintf (&r, "%s%svm \"%s\" failed at prepare-snapshot: %s",
                    report ? report : "", report ? "; " : "", j->vm->name,
                    j->error) != -1) {
        free (report);
        report = r;
      }
    }
  }
  for (size_t i = 0; i < n; i++)
    job_clear (&jobs[i]);
  if (nr_failed)
    return vms_call_fail (call, kind, "%s", report ? report : "failed");
  return 0;
}

/* Is the domain's active backup job ours (its NBD socket is ours)? */
static int
job_is_ours (struct vm_entry *vm)
{
  CLEANUP_FREE char *xml = virDomainBackupGetXMLDesc (vm->dom, 0);
  return xml != NULL && vm->socket != NULL && strstr (xml, vm->socket) != NULL;
}

/* Ask libvirt to end the job (it ends once QEMU has cancelled the export's
 * block jobs). Sets vm->job_end_asked; clears job_started when the job is
 * gone already. */
static int
end_job_ask (struct vm_writer *w, struct vm_entry *vm)
{
  if (!virDomainIsActive (vm->dom) || !job_is_ours (vm)) {
    vm->job_started = 0;        /* the VM stopped or the job ended already */
    vm_guard_disarm (w, vm);
    return 0;
  }
  if (virDomainAbortJob (vm->dom) == -1 && job_is_ours (vm)) {
    free (vm->error);
    if (asprintf (&vm->error, "its backup job would not end: %s",
                  vm_virt_error ()) == -1)
      vm->error = NULL;
    return -1;
  }
  vm->job_end_asked = 1;
  return 0;
}

int
vm_online_end_job_begin (struct vm_writer *w, struct vm_entry *vm)
{
  if (!vm->job_started || vm->job_end_asked)
    return 0;
  if (end_job_ask (w, vm) == -1)
    return -1;
  vms_debug ("vm writer: %s: backup job asked to end", vm->name);
  return 0;
}

static int
end_job_wait (struct vm_writer *w, struct vm_entry *vm)
{
  int64_t start;
  long step_ms = 1;

  if (!vm->job_started)
    return 0;
  if (!vm->job_end_asked) {
    if (end_job_ask (w, vm) == -1)
      return -1;
    if (!vm->job_started)
      return 0;
  }
  start = vms_now_ms ();
  while (virDomainIsActive (vm->dom) == 1 && job_is_ours (vm)) {
    /* Asked after 1, 2, 4, 8, then every 10 ms: the job usually ends
     * within a few (issue 15: a fixed 50 ms step, later 10 ms, was a share
     * of an incremental's fixed cost). */
    struct timespec ts = { 0, step_ms * 1000 * 1000 };
    int64_t now = vms_now_ms ();
    if (now - start > ONLINE_JOB_END_WAIT_MS) {
      free (vm->error);
      if (asprintf (&vm->error, "its backup job did not end within %d s",
                    ONLINE_JOB_END_WAIT_MS / 1000) == -1)
        vm->error = NULL;
      return -1;
    }
    nanosleep (&ts, NULL);
    step_ms = step_ms * 2 > 10 ? 10 : step_ms * 2;
  }
  vm->job_started = 0;
  vm->job_end_asked = 0;
  vms_debug ("vm writer: %s: backup job ended (waited %" PRId64 " ms)",
             vm->name, vms_now_ms () - start);
  return 0;
}

int
vm_online_end_job (struct vm_writer *w, struct vm_entry *vm)
{
  if (end_job_wait (w, vm) == -1)
    return -1;
  remove_scratch (vm);
  return 0;
}

int
vm_online_delete_checkpoint (struct vm_writer *w, struct vm_entry *vm)
{
  virDomainCheckpointPtr cp;

  if (!vm->checkpoint_created || vm->checkpoint == NULL)
    return 0;
  if (strncmp (vm->checkpoint, VMS_VM_CHECKPOINT_PREFIX,
               strlen (VMS_VM_CHECKPOINT_PREFIX)) != 0)
    return 0;                   /* never another tool's checkpoint */
  cp = virDomainCheckpointLookupByName (vm->dom, vm->checkpoint, 0);
  if (cp == NULL) {
    vm->checkpoint_created = 0;
    return 0;
  }
  if (virDomainCheckpointDelete (cp, 0) == -1) {
    free (vm->error);
    if (asprintf (&vm->error, "its new checkpoint %s could not be deleted: "
                  "%s", vm->checkpoint, vm_virt_error ()) == -1)
      vm->error = NULL;
    virDomainCheckpointFree (cp);
    return -1;
  }
  virDomainCheckpointFree (cp);
  vm->checkpoint_created = 0;
  vms_debug ("vm writer: %s: deleted checkpoint %s", vm->name,
             vm->checkpoint);
  (void) w;
  return 0;
}

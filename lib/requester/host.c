/* The host's writers and providers (R1), and what the files of the
 * requester share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

#include "exec-writer.h"
#include "file-provider.h"
#include "requester-internal.h"
#include "vm-writer.h"
#include "vmshadow/error.h"

/* The sockets qemu:///system is served on: the monolithic libvirtd's, or
 * the modular QEMU daemon's (virtqemud; issue 20). When one is there (or a
 * URI is given), probe_vms adds the VM writer. */
static const char *const libvirt_sockets[] = {
  "/run/libvirt/libvirt-sock",
  "/run/libvirt/virtqemud-sock",
};

static int
libvirt_present (void)
{
  for (size_t i = 0; i < sizeof libvirt_sockets / sizeof *libvirt_sockets; i++)
    if (access (libvirt_sockets[i], F_OK) == 0)
      return 1;
  return 0;
}

const char *
vms_default_writers_dir (void)
{
  return VMS_EXEC_WRITERS_DIR;
}

char *
req_strdup (const char *s, int *oom)
{
  char *r = s ? strdup (s) : NULL;
  if (s && r == NULL)
    *oom = 1;
  return r;
}

int
vms_requester_check_dir (const char *dir, char *why, size_t len)
{
  CLEANUP_FREE char *prefix = strdup (dir);
  CLEANUP_FREE char *last = strdup (dir[0] == '/' ? "/" : ".");
  size_t n = strlen (dir), start = 0;
  int missing = 0;
  struct stat st;

  if (prefix == NULL || last == NULL) {
    snprintf (why, len, "out of memory");
    return -1;
  }
  if (n == 0) {
    snprintf (why, len, "an empty path is no directory");
    return -1;
  }
  /* Each part in turn: dir[start..i) is the part, dir[0..i) the path up to
   * and including it. */
  for (size_t i = 0; i <= n; i++) {
    if (i < n && dir[i] != '/')
      continue;
    size_t plen = i - start;
    int dotdot = plen == 2 && dir[start] == '.' && dir[start + 1] == '.';
    int skip = plen == 0 || (plen == 1 && dir[start] == '.');
    start = i + 1;
    if (skip)
      continue;
    memcpy (prefix, dir, i);
    prefix[i] = '\0';
    if (missing) {
      if (dotdot) {
        snprintf (why, len, "'..' comes after a directory that does not exist "
                  "yet, in %s", prefix);
        return -1;
      }
      continue;
    }
    if (stat (prefix, &st) == -1) {
      if (errno != ENOENT) {
        snprintf (why, len, "cannot look at %s: %s", prefix, strerror (errno));
        return -1;
      }
      /* It and what follows would be made in last. */
      if (access (last, W_OK | X_OK) == -1) {
        snprintf (why, len, "it does not exist and cannot be created in %s (%s)",
                  last, strerror (errno));
        return -1;
      }
      missing = 1;
      continue;
    }
    if (!S_ISDIR (st.st_mode)) {
      snprintf (why, len, "%s is not a directory", prefix);
      return -1;
    }
    free (last);
    if ((last = strdup (prefix)) == NULL) {
      snprintf (why, len, "out of memory");
      return -1;
    }
  }
  if (!missing && access (dir, W_OK | X_OK) == -1) {
    snprintf (why, len, "the directory is not writable (%s)", strerror (errno));
    return -1;
  }
  return 0;
}

int
vms_requester_sweep (void)
{
  int scratch = vms_file_provider_sweep (NULL), nbd = vms_nbd_sweep ();
  if (scratch == -1 || nbd == -1)
    return -1;
  return scratch + nbd;
}

vms_coordinator *
vms_requester_host (const struct vms_host_options *o)
{
  return req_host (o, REQ_HOST_EXEC | REQ_HOST_VMS, NULL);
}

vms_coordinator *
req_host (const struct vms_host_options *o, unsigned what,
          const char *const *only_vms)
{
  vms_coordinator *coord = vms_coordinator_new ();
  int vms = (what & REQ_HOST_VMS) &&
    (only_vms || o->all_vms || (o->vms && o->vms[0]) ||
     (o->probe_vms && (o->libvirt_uri || libvirt_present ())));

  if (coord == NULL)
    return NULL;
  /* Writers first, then providers in the order they are asked (R1). */
  if (((what & REQ_HOST_EXEC) && !o->no_exec_writers &&
       vms_exec_writers_load (coord, o->writers_dir) == -1) ||
      vms_file_provider_add (coord, NULL) == -1)
    goto fail;
  if (vms) {
    int method = vms_vm_method_from_name (o->method ? o->method : "auto");
    int fallback = vms_vm_fallback_from_name (o->fallback ? o->fallback
                                              : "crash-consistent");
    if (method == -1) {
      vms_set_error (EINVAL, "unknown capture method \"%s\" (auto, online, "
                     "crash-consistent or saved-state)", o->method);
      goto fail;
    }
    int guest = vms_vm_guest_from_name (o->guest_processing ? o->guest_processing
                                        : "off");
    if (guest == -1) {
      vms_set_error (EINVAL, "unknown guest processing \"%s\" (required, "
                     "tried or off)", o->guest_processing);
      goto fail;
    }
    if (fallback == -1) {
      vms_set_error (EINVAL, "unknown fallback \"%s\" (crash-consistent, "
                     "saved-state or fail)", o->fallback);
      goto fail;
    }
    const struct vms_vm_options vm = {
      .uri = o->libvirt_uri,
      .vms = only_vms ? only_vms : o->all_vms ? NULL : o->vms,
      .method = method,
      .full = o->full,
      .fallback = fallback,
      .group = o->group,
      .guest = guest,
    };
    if (vms_libvirt_add (coord, &vm) == -1)
      goto fail;
  }
  return coord;
 fail:
  vms_coordinator_free (coord);
  return NULL;
}

void
req_progress_start (struct req_progress *rp, const char *writer_id,
                    const char *component, const char *path)
{
  rp->p = (struct vms_progress) {
    .writer_id = writer_id, .component = component, .path = path,
  };
}

void
req_progress_bytes (void *opaque, uint64_t done, uint64_t total)
{
  struct req_progress *rp = opaque;
  rp->p.done = done;
  rp->p.total = total;
  if (rp->fn)
    rp->fn (rp->opaque, &rp->p);
}

void
req_progress_end (struct req_progress *rp)
{
  rp->p.end = 1;
  if (rp->fn)
    rp->fn (rp->opaque, &rp->p);
}

/* ---- The VM writer's restore hook (writers/libvirt, docs/restore.md) ---- */

static void *
vm_hook_add (vms_coordinator *coord, const struct vms_restore_request *rq,
             const char *const *components, const char *to,
             const vms_document *bcd, const vms_document *const *md,
             size_t nr_md)
{
  const struct vms_vm_restore_options ro = {
    .uri = rq->libvirt_uri,
    .vms = components,
    .to = to,
    .new_name = rq->new_name,
    .replace = rq->replace,
    .write_devices = rq->write_devices,
    .existing = rq->existing,
    .start = rq->start,
    .network_map = rq->network_map,
  };
  return vms_libvirt_add_for_restore (coord, &ro, bcd, md, nr_md);
}

/* Issue 20: each VM's stored domain XML, read from the repository for the
 * plan (a copy's new MACs and paths are in it). A file too large for a
 * domain XML is left to PostRestore. */
static int
vm_hook_prepare (void *h, vms_repo *repo, const vms_manifest *m)
{
  /* Every file's size, for the plan (issue 11: a device smaller than its
   * disk is refused before anything changes). */
  for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    if (vms_manifest_file (m, i, &f, &size) == 0 && f.writer_id &&
        strcmp (f.writer_id, VMS_VM_WRITER_ID) == 0 &&
        vms_vm_restore_selected (h, f.component))
      vms_vm_restore_set_size (h, f.component, f.path, size);
  }
  for (size_t i = 0; i < vms_vm_restore_count (h); i++) {
    struct vms_vm_restore_result res;
    const char *path = vms_vm_restore_config_path (h, i);
    CLEANUP_FREE char *buf = NULL;
    vms_index *idx;
    int k;

    if (path == NULL || vms_vm_restore_result (h, i, &res) == -1 ||
        (k = vms_manifest_find_file (m, res.uuid, path)) == -1)
      continue;
    if ((idx = vms_manifest_load_index (repo, m, (size_t) k)) == NULL) {
      vms_set_error (vms_get_errno (), "backup %s cannot be restored: the "
                     "index of %s is damaged: %s", vms_manifest_backup_id (m),
                     path, vms_get_error ());
      return -1;
    }
    uint64_t size = vms_index_size (idx);
    int big = size > (16u << 20);
    if (!big &&
        ((buf = malloc (size + 1)) == NULL ||
         vms_repo_read (repo, idx, buf, size, 0) == -1 ||
         vms_vm_restore_set_config (h, i, buf, size) == -1)) {
      vms_index_free (idx);
      vms_set_error (vms_get_errno (), "backup %s cannot be restored: %s "
                     "cannot be read: %s", vms_manifest_backup_id (m), path,
                     buf ? vms_get_error () : "out of memory");
      return -1;
    }
    vms_index_free (idx);
  }
  return 0;
}

static int
vm_hook_plan (void *h)
{
  return vms_vm_restore_plan (h);
}

static int
vm_hook_selected (void *h, const char *component)
{
  return vms_vm_restore_selected (h, component);
}

static const char *
vm_hook_target (void *h, const char *component, const char *path)
{
  return vms_vm_restore_target (h, component, path);
}

static int
vm_hook_into (void *h, const char *component, const char *path, char **graph,
              char **secret_file)
{
  return vms_vm_restore_into (h, component, path, graph, secret_file);
}

static size_t
vm_hook_count (void *h)
{
  return vms_vm_restore_count (h);
}

static const char *
vm_hook_component (void *h, size_t i)
{
  struct vms_vm_restore_result res;
  return vms_vm_restore_result (h, i, &res) == 0 ? res.uuid : NULL;
}

static char **
strings_dup (const char *const *v, size_t n, int *oom)
{
  char **r = calloc (n ? n : 1, sizeof *r);
  if (r == NULL) {
    *oom = 1;
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    r[i] = req_strdup (v[i], oom);
  return r;
}

static void
vm_hook_result (void *h, size_t i, struct vms_restored_component *c, int *oom)
{
  struct vms_vm_restore_result res;

  if (vms_vm_restore_result (h, i, &res) == -1) {
    c->ok = 0;
    return;
  }
  c->kind = req_strdup ("vm", oom);
  c->name = req_strdup (res.name, oom);
  c->ok = res.error == NULL && res.defined;
  c->defined = res.defined;
  c->state = req_strdup (res.state, oom);
  c->resumed = res.resumed;
  c->error = req_strdup (res.error, oom);
  c->notes = strings_dup (res.notes, res.nr_notes, oom);
  c->nr_notes = c->notes ? res.nr_notes : 0;
  c->disconnected = strings_dup (res.disconnected, res.nr_disconnected, oom);
  c->nr_disconnected = c->disconnected ? res.nr_disconnected : 0;
  c->changes = calloc (res.nr_changes + 1, sizeof *c->changes);
  if (c->changes == NULL)
    *oom = 1;
  for (size_t k = 0; c->changes && k < res.nr_changes; k++) {
    struct vms_vm_restore_change ch;
    if (vms_vm_restore_change (h, i, k, &ch) == -1)
      break;
    c->changes[k].action = req_strdup (ch.action, oom);
    c->changes[k].object = req_strdup (ch.object, oom);
    c->changes[k].detail = req_strdup (ch.detail, oom);
    c->nr_changes++;
  }
}

static const char *
vm_hook_define_name (void *h, const char *component)
{
  return vms_vm_restore_define_name (h, component);
}

static const char *
vm_hook_define_uuid (void *h, const char *component)
{
  return vms_vm_restore_define_uuid (h, component);
}

/* req_instant_disk and vms_vm_instant_disk have the same fields. */
static struct vms_vm_instant_disk *
vm_instant_disks (const struct req_instant_disk *d, size_t n)
{
  struct vms_vm_instant_disk *v = calloc (n + 1, sizeof *v);
  if (v == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    v[i] = (struct vms_vm_instant_disk) {
      .path = d[i].path, .overlay = d[i].overlay, .socket = d[i].socket,
      .final = d[i].final, .format = d[i].format,
    };
  return v;
}

static int
vm_hook_set_instant (void *h, const char *component,
                     const struct req_instant_disk *d, size_t n,
                     const char *final_xml)
{
  CLEANUP_FREE struct vms_vm_instant_disk *v = vm_instant_disks (d, n);
  return v ? vms_vm_restore_set_instant (h, component, v, n, final_xml) : -1;
}

int
req_host_instant_move (const char *uri, const char *uuid,
                       const struct req_instant_disk *d, size_t n,
                       uint64_t bandwidth, const char *final_xml,
                       req_instant_progress_fn fn, void *opaque)
{
  CLEANUP_FREE struct vms_vm_instant_disk *v = vm_instant_disks (d, n);
  return v ? vms_vm_instant_move (uri, uuid, v, n, bandwidth, final_xml, fn,
                                  opaque) : -1;
}

int
req_host_instant_remove (const char *uri, const char *uuid,
                         const struct req_instant_disk *d, size_t n)
{
  CLEANUP_FREE struct vms_vm_instant_disk *v = vm_instant_disks (d, n);
  return v ? vms_vm_instant_remove (uri, uuid, v, n) : -1;
}

int
req_host_instant_running (const char *uri, const char *uuid)
{
  return vms_vm_instant_running (uri, uuid);
}

int
req_host_instant_await_agent (const char *uri, const char *uuid, int64_t timeout_ms)
{
  return vms_vm_instant_await_agent (uri, uuid, timeout_ms);
}

int
req_host_instant_existing (const char *uri, const char *uuid, char **xml,
                           int *running)
{
  return vms_vm_instant_existing (uri, uuid, xml, running);
}

int
req_host_instant_put_back (const char *uri, const char *xml, int start)
{
  return vms_vm_instant_put_back (uri, xml, start);
}

int
req_host_qemu_ids (const char *uri, unsigned *uid, unsigned *gid)
{
  return vms_libvirt_qemu_ids (uri, uid, gid);
}

static const struct req_restore_hook vm_restore_hook = {
  .writer_id = VMS_VM_WRITER_ID,
  .add = vm_hook_add,
  .prepare = vm_hook_prepare,
  .plan = vm_hook_plan,
  .selected = vm_hook_selected,
  .target = vm_hook_target,
  .into = vm_hook_into,
  .count = vm_hook_count,
  .component = vm_hook_component,
  .result = vm_hook_result,
  .define_name = vm_hook_define_name,
  .define_uuid = vm_hook_define_uuid,
  .set_instant = vm_hook_set_instant,
};

const struct req_restore_hook *const req_host_restore_hooks[] = {
  &vm_restore_hook,
  NULL,
};

int
vms_requester_guest_install (const char *uri, const char *vm,
                             const char *program, char **answer)
{
  const char *env = getenv ("VMSHADOW_GUEST_BINARY");

  if (program == NULL)
    program = env && *env ? env : VMS_GUEST_BINARY;
  if (program[0] != '/') {
    vms_set_error (EINVAL, "the guest side's program must be an absolute "
                   "path, not \"%s\"", program);
    return -1;
  }
  return vms_libvirt_guest_install (uri, vm, program, answer);
}

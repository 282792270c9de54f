/* A restore session end to end, as a Hyper-V host restores its VMs
 * (R14–R21), driven only by the documents stored with the backup (R5).
 *
 * Everything that can be checked is checked before the session starts, so
 * that bad input changes nothing: the backup and its manifest, the VMs
 * asked for, the target directory, every index and every chunk's presence.
 * Then: PreRestore (the VM writer turns the VMs off and undefines them) →
 * each VM's files written (vms_extract: original format, holes kept, every
 * chunk verified, temporary name until complete) → file restore status per
 * VM (R6) → PostRestore (defined, linked, reconnected, started/resumed).
 */
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "requester-internal.h"
#include "vm-writer.h"
#include "vmshadow/error.h"

/* --to DIR must be a directory we can write, or be creatable. */
static int
check_target_dir (const char *dir)
{
  char why[PATH_MAX + 200];
  if (vms_requester_check_dir (dir, why, sizeof why) == -1) {
    vms_set_error (EINVAL, "cannot restore to %s: %s; nothing was changed",
                   dir, why);
    return -1;
  }
  return 0;
}

/* Issue 20: every chunk of the VMs being restored is read and re-hashed
 * (vms_repo_chunk_get with verify) before any VM is turned off or any file
 * changed, so a damaged backup changes nothing. */
static int
preflight (vms_repo *repo, const vms_manifest *m, const vms_vm_restore *r)
{
  CLEANUP_FREE void *buf = malloc (VMS_CHUNK_SIZE);

  if (buf == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    if (vms_manifest_file (m, i, &f, &size) == -1)
      return -1;
    if (f.writer_id == NULL || strcmp (f.writer_id, VMS_VM_WRITER_ID) != 0 ||
        !vms_vm_restore_selected (r, f.component))
      continue;
    vms_index *idx = vms_manifest_load_index (repo, m, i);
    if (idx == NULL) {
      vms_set_error (vms_get_errno (), "backup %s cannot be restored: the "
                     "index of %s is damaged: %s", vms_manifest_backup_id (m),
                     f.path, vms_get_error ());
      return -1;
    }
    for (uint64_t c = 0; c < vms_index_chunk_count (idx); c++) {
      const struct vms_digest *d = vms_index_get (idx, c);
      if (vms_digest_is_zero (d))
        continue;
      if (vms_repo_chunk_get (repo, d, buf, vms_index_chunk_len (idx, c), 1) == -1) {
        char hex[65];
        int e = vms_get_errno ();
        vms_digest_hex (d, hex);
        vms_set_error (e, "backup %s cannot be restored: chunk %s of %s (at "
                       "offset %" PRIu64 ") is %s: %s; run 'vmshadow verify'",
                       vms_manifest_backup_id (m), hex, f.path,
                       c * (uint64_t) VMS_CHUNK_SIZE,
                       e == ENOENT ? "missing from the repository" : "damaged",
                       vms_get_error ());
        vms_index_free (idx);
        return -1;
      }
    }
    vms_index_free (idx);
  }
  return 0;
}

/* Leftovers of an interrupted extract to target (".NAME.vms-XXXXXX"). */
static void
remove_leftovers (const char *target)
{
  CLEANUP_FREE char *pat = NULL;
  const char *slash = strrchr (target, '/');
  glob_t g;

  if (slash == NULL ||
      asprintf (&pat, "%.*s/.%s.vms-??????", (int) (slash - target), target,
                slash + 1) == -1)
    return;
  if (glob (pat, GLOB_NOSORT, NULL, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++)
      unlink (g.gl_pathv[i]);
    globfree (&g);
  }
}

/* What one restore run carries. */
struct restore_run {
  vms_repo *repo;
  const vms_manifest *m;
  vms_session *s;
  const vms_vm_restore *r;
  struct req_progress progress;
  /* Every file written (or not), in manifest order. */
  struct vms_restored_file *files;
  const char **file_component;  /* borrowed from the manifest */
  size_t nr_files;
  int oom;
};

/* Write every file of one component; returns its file restore status. */
static enum vms_restore_status
restore_component (struct restore_run *rr, const char *writer_id,
                   const char *component)
{
  size_t written = 0, failed = 0;

  for (size_t i = 0; i < vms_manifest_file_count (rr->m); i++) {
    struct vms_stored_file f;
    uint64_t size;

    if (vms_manifest_file (rr->m, i, &f, &size) == -1 ||
        f.writer_id == NULL || strcmp (f.writer_id, writer_id) != 0 ||
        strcmp (f.component, component) != 0)
      continue;
    struct vms_restored_file *d = &rr->files[rr->nr_files];
    rr->file_component[rr->nr_files++] = f.component;
    const char *target = vms_vm_restore_target (rr->r, component, f.path);
    d->path = req_strdup (f.path, &rr->oom);
    d->size = size;
    d->format = req_strdup (f.kind == VMS_FILE_DISK && f.format ? f.format : "raw",
                            &rr->oom);
    d->target = req_strdup (target, &rr->oom);
    d->outcome = VMS_FILE_NOT_WRITTEN;
    if (failed)
      continue;               /* this component is not put back anyway (R17) */
    if (target == NULL) {
      d->outcome = VMS_FILE_FAILED;
      d->error = req_strdup ("the writer gives no place for this file", &rr->oom);
      failed++;
      continue;
    }
    vms_index *idx = vms_manifest_load_index (rr->repo, rr->m, i);
    req_progress_start (&rr->progress, writer_id, component, target);
    remove_leftovers (target);
    if (idx == NULL ||
        vms_extract (rr->repo, idx, target, d->format ? d->format : "raw", 1,
                     req_progress_bytes, &rr->progress) == -1) {
      d->outcome = VMS_FILE_FAILED;
      d->error = req_strdup (vms_get_error (), &rr->oom);
      failed++;
    }
    else {
      d->outcome = VMS_FILE_WRITTEN;
      written++;
    }
    req_progress_end (&rr->progress);
    vms_index_free (idx);
  }
  return failed == 0 ? VMS_RESTORE_ALL
    : written == 0 ? VMS_RESTORE_NONE : VMS_RESTORE_FAILED;
}

/* Write every file of the VMs being restored; set each VM's status (R6). */
static void
restore_files (struct restore_run *rr, const vms_document *bcd)
{
  size_t nc = vms_document_component_count (bcd, VMS_VM_WRITER_ID);

  for (size_t c = 0; c < nc; c++) {
    const char *uuid = vms_component_name (vms_document_component
                                           (bcd, VMS_VM_WRITER_ID, c));
    if (!vms_vm_restore_selected (rr->r, uuid))
      continue;
    enum vms_restore_status st = restore_component (rr, VMS_VM_WRITER_ID, uuid);
    if (vms_session_set_restore_status (rr->s, VMS_VM_WRITER_ID, uuid, st) == -1)
      vms_warn ("restore: %s", vms_get_error ());
  }
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

/* The outcome of every VM, with its files. */
static void
report_vms (struct restore_run *rr, struct vms_restore_report *rep)
{
  size_t n = vms_vm_restore_count (rr->r);

  rep->components = calloc (n ? n : 1, sizeof *rep->components);
  if (rep->components == NULL) {
    rr->oom = 1;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    struct vms_vm_restore_result res;
    if (vms_vm_restore_result (rr->r, i, &res) == -1)
      continue;
    struct vms_restored_component *c = &rep->components[rep->nr_components++];
    c->writer_id = req_strdup (VMS_VM_WRITER_ID, &rr->oom);
    c->component = req_strdup (res.uuid, &rr->oom);
    c->kind = req_strdup ("vm", &rr->oom);
    c->name = req_strdup (res.name, &rr->oom);
    c->ok = res.error == NULL && res.defined;
    c->defined = res.defined;
    c->state = req_strdup (res.state, &rr->oom);
    c->resumed = res.resumed;
    c->error = req_strdup (res.error, &rr->oom);
    c->notes = strings_dup (res.notes, res.nr_notes, &rr->oom);
    c->nr_notes = c->notes ? res.nr_notes : 0;
    c->disconnected = strings_dup (res.disconnected, res.nr_disconnected, &rr->oom);
    c->nr_disconnected = c->disconnected ? res.nr_disconnected : 0;
    c->changes = calloc (res.nr_changes + 1, sizeof *c->changes);
    for (size_t k = 0; c->changes && k < res.nr_changes; k++) {
      struct vms_vm_restore_change ch;
      if (vms_vm_restore_change (rr->r, i, k, &ch) == -1)
        break;
      c->changes[k].action = req_strdup (ch.action, &rr->oom);
      c->changes[k].object = req_strdup (ch.object, &rr->oom);
      c->changes[k].detail = req_strdup (ch.detail, &rr->oom);
      c->nr_changes++;
    }
    if (c->changes == NULL)
      rr->oom = 1;
    /* The files move from the run into the component. */
    c->files = calloc (rr->nr_files + 1, sizeof *c->files);
    if (c->files == NULL) {
      rr->oom = 1;
      continue;
    }
    for (size_t k = 0; k < rr->nr_files; k++)
      if (rr->file_component[k] && strcasecmp (rr->file_component[k], res.uuid) == 0) {
        c->files[c->nr_files++] = rr->files[k];
        memset (&rr->files[k], 0, sizeof rr->files[k]);
        rr->file_component[k] = NULL;
      }
  }
}

/* A relative --to is relative to the working directory. */
static int
absolute_dir (const char *dir, char out[PATH_MAX])
{
  char cwd[PATH_MAX];

  if (dir[0] == '/') {
    if (snprintf (out, PATH_MAX, "%s", dir) < PATH_MAX)
      return 0;
  }
  else if (getcwd (cwd, sizeof cwd) != NULL &&
           snprintf (out, PATH_MAX, "%s/%s", cwd, dir) < PATH_MAX)
    return 0;
  vms_set_error (ENAMETOOLONG, "--to %s: path too long", dir);
  return -1;
}

struct vms_restore_report *
vms_requester_restore (vms_repo *repo, const struct vms_restore_request *rq)
{
  int64_t t0 = vms_now_ms ();
  char to[PATH_MAX];
  vms_manifest *m = NULL;
  vms_coordinator *coord = NULL;
  const vms_document **md = NULL;
  struct vms_restore_report *rep = NULL;
  struct restore_run rr = {
    .repo = repo,
    .progress = { .fn = rq->progress, .opaque = rq->progress_opaque },
  };

  if (rq->to && (absolute_dir (rq->to, to) == -1 || check_target_dir (to) == -1))
    return NULL;
  m = vms_manifest_open (repo, rq->backup_id);
  if (m == NULL) {
    vms_set_error (vms_get_errno (), "cannot restore backup %s: %s; nothing "
                   "was changed (see 'vmshadow list')", rq->backup_id,
                   vms_get_error ());
    goto out;
  }
  rr.m = m;
  const vms_document *bcd = vms_manifest_components (m);
  if (bcd == NULL) {
    vms_set_error (EINVAL, "backup %s has no backup components document: it "
                   "cannot be restored (R5)", rq->backup_id);
    goto out;
  }
  size_t nm = vms_manifest_metadata_count (m);
  size_t nf = vms_manifest_file_count (m);
  if ((md = calloc (nm ? nm : 1, sizeof *md)) == NULL ||
      (rr.files = calloc (nf + 1, sizeof *rr.files)) == NULL ||
      (rr.file_component = calloc (nf + 1, sizeof *rr.file_component)) == NULL ||
      (rep = calloc (1, sizeof *rep)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < nm; i++)
    md[i] = vms_manifest_metadata (m, i);

  if ((coord = vms_coordinator_new ()) == NULL)
    goto out;
  const struct vms_vm_restore_options ro = {
    .uri = rq->libvirt_uri,
    .vms = rq->vms,
    .to = rq->to ? to : NULL,
    .new_name = rq->new_name,
    .replace = rq->replace,
    .existing = rq->existing,
    .start = rq->start,
    .network_map = rq->network_map,
  };
  /* Issue 20: every change planned (and refused if need be) first. */
  rr.r = vms_libvirt_add_for_restore (coord, &ro, bcd, md, nm);
  if (rr.r == NULL || vms_vm_restore_plan (rr.r) == -1 ||
      preflight (repo, m, rr.r) == -1) {
    vms_set_error (vms_get_errno (), "%s; nothing was changed", vms_get_error ());
    goto out;
  }
  if (rq->dry_run) {
    rep->dry_run = 1;
    goto report;
  }
  if ((rr.s = vms_restore_session_new (coord, bcd, md, nm)) == NULL)
    goto out;
  if (vms_session_pre_restore (rr.s) == -1) {
    struct vms_session_failure f;
    if (vms_session_failure (rr.s, &f) == 0)
      vms_set_error (EPERM, "%s", f.message);
    goto out;
  }
  /* R16: PreRestore finished everywhere; now the files. */
  restore_files (&rr, bcd);
  if (vms_session_post_restore (rr.s) == -1) {
    struct vms_session_failure f;
    if (vms_session_failure (rr.s, &f) == 0)
      rep->error = req_strdup (f.message, &rr.oom);
  }
 report:
  report_vms (&rr, rep);
  rep->backup_id = req_strdup (vms_manifest_backup_id (m), &rr.oom);
  if (rr.oom) {
    vms_set_error (ENOMEM, "out of memory writing the report of the restore");
    goto out;
  }
  rep->outcome = rep->error ? VMS_OUTCOME_FAILURE : VMS_OUTCOME_SUCCESS;
  for (size_t i = 0; !rep->dry_run && i < rep->nr_components; i++)
    if (!rep->components[i].ok)
      rep->outcome = VMS_OUTCOME_FAILURE;
  rep->elapsed_ms = vms_now_ms () - t0;
  goto done;

 out:
  vms_restore_report_free (rep);
  rep = NULL;
 done:
  for (size_t i = 0; i < rr.nr_files; i++) {
    free (rr.files[i].path);
    free (rr.files[i].target);
    free (rr.files[i].format);
    free (rr.files[i].error);
  }
  free (rr.files);
  free (rr.file_component);
  vms_session_free (rr.s);
  vms_coordinator_free (coord);
  free (md);
  vms_manifest_free (m);
  return rep;
}

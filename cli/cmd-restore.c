/* vmshadow restore: put the VMs of a backup back as a Hyper-V host does
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
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "log.h"
#include "vm-writer.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

struct file_done {
  const char *component;        /* borrowed from the manifest */
  const char *path, *target, *format;
  uint64_t size;
  int status;                   /* 0 written, -1 failed, 1 not tried */
  char *error;
};

/* --to DIR must be a directory we can write, or be creatable. */
static int
check_target_dir (const char *dir)
{
  char why[PATH_MAX + 200];
  if (cli_check_dir (dir, why, sizeof why) == -1) {
    fprintf (stderr, "vmshadow restore: cannot restore to %s: %s; nothing was "
             "changed\n", cli_text (dir), cli_text (why));
    return -1;
  }
  return 0;
}

/* Every index loads and every chunk is there (a cheap check: content is
 * verified while writing). */
static int
preflight (vms_repo *repo, const vms_manifest *m, const vms_vm_restore *r)
{
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
      if (!vms_digest_is_zero (d) && vms_repo_chunk_exists (repo, d) != 1) {
        char hex[65];
        vms_digest_hex (d, hex);
        vms_index_free (idx);
        vms_set_error (ENOENT, "backup %s cannot be restored: chunk %s of %s "
                       "(at offset %" PRIu64 ") is missing from the "
                       "repository; run 'vmshadow verify'",
                       vms_manifest_backup_id (m), hex, f.path,
                       c * (uint64_t) VMS_CHUNK_SIZE);
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

/* Write every file of the VMs being restored; set each VM's status (R6). */
static void
restore_files (vms_repo *repo, const vms_manifest *m, vms_session *s,
               const vms_vm_restore *r, const vms_document *bcd,
               struct file_done *done, size_t *nr_done)
{
  size_t nc = vms_document_component_count (bcd, VMS_VM_WRITER_ID);

  for (size_t c = 0; c < nc; c++) {
    const char *uuid = vms_component_name (vms_document_component
                                           (bcd, VMS_VM_WRITER_ID, c));
    size_t written = 0, failed = 0;

    if (!vms_vm_restore_selected (r, uuid))
      continue;
    for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
      struct vms_stored_file f;
      uint64_t size;
      struct file_done *d;

      if (vms_manifest_file (m, i, &f, &size) == -1 ||
          strcmp (f.writer_id, VMS_VM_WRITER_ID) != 0 ||
          strcmp (f.component, uuid) != 0)
        continue;
      d = &done[(*nr_done)++];
      d->component = f.component;
      d->path = f.path;
      d->size = size;
      d->format = f.kind == VMS_FILE_DISK && f.format ? f.format : "raw";
      d->target = vms_vm_restore_target (r, uuid, f.path);
      d->status = 1;
      if (failed)
        continue;               /* this VM is not defined anyway (R17) */
      if (d->target == NULL) {
        d->status = -1;
        d->error = strdup ("the VM writer gives no place for this file");
        failed++;
        continue;
      }
      vms_index *idx = vms_manifest_load_index (repo, m, i);
      struct progress prog;
      progress_init (&prog, d->target);
      remove_leftovers (d->target);
      if (idx == NULL ||
          vms_extract (repo, idx, d->target, d->format, 1, progress_update,
                       &prog) == -1) {
        d->status = -1;
        d->error = strdup (vms_get_error ());
        failed++;
      }
      else {
        d->status = 0;
        written++;
      }
      progress_done (&prog);
      vms_index_free (idx);
    }
    enum vms_restore_status st = failed == 0 ? VMS_RESTORE_ALL
      : written == 0 ? VMS_RESTORE_NONE : VMS_RESTORE_FAILED;
    if (vms_session_set_restore_status (s, VMS_VM_WRITER_ID, uuid, st) == -1)
      vms_warn ("restore: %s", vms_get_error ());
  }
}

static const char *
file_status_name (int st)
{
  return st == 0 ? "written" : st < 0 ? "failed" : "not written";
}

static int
report (const vms_manifest *m, const vms_vm_restore *r,
        const struct file_done *done, size_t nr_done, int64_t ms, int json,
        const char *session_error)
{
  size_t n = vms_vm_restore_count (r), bad = 0;
  json_object *out = json ? json_object_new_object () : NULL;
  json_object *list = json ? json_object_new_array () : NULL;

  if (!json)
    printf ("Restore of backup %s:\n", cli_text (vms_manifest_backup_id (m)));
  for (size_t i = 0; i < n; i++) {
    struct vms_vm_restore_result res;
    if (vms_vm_restore_result (r, i, &res) == -1)
      continue;
    int ok = res.error == NULL && res.defined;
    bad += !ok;
    if (json) {
      json_object *v = json_object_new_object ();
      json_object *files = json_object_new_array ();
      json_object *notes = json_object_new_array ();
      json_object *disc = json_object_new_array ();
      json_object_object_add (v, "uuid", json_object_new_string (res.uuid));
      json_object_object_add (v, "name", json_object_new_string (res.name));
      json_object_object_add (v, "status", json_object_new_string (ok ? "restored" : "failed"));
      json_object_object_add (v, "defined", json_object_new_boolean (res.defined));
      json_object_object_add (v, "state", json_object_new_string (res.state));
      json_object_object_add (v, "resumed", json_object_new_boolean (res.resumed));
      if (res.error)
        json_object_object_add (v, "error", json_object_new_string (res.error));
      for (size_t k = 0; k < nr_done; k++) {
        if (strcasecmp (done[k].component, res.uuid) != 0)
          continue;
        json_object *f = json_object_new_object ();
        json_object_object_add (f, "path", json_object_new_string (done[k].path));
        if (done[k].target)
          json_object_object_add (f, "target", json_object_new_string (done[k].target));
        json_object_object_add (f, "format", json_object_new_string (done[k].format));
        json_object_object_add (f, "size", json_object_new_int64 ((int64_t) done[k].size));
        json_object_object_add (f, "status", json_object_new_string (file_status_name (done[k].status)));
        if (done[k].error)
          json_object_object_add (f, "error", json_object_new_string (done[k].error));
        json_object_array_add (files, f);
      }
      for (size_t k = 0; k < res.nr_notes; k++)
        json_object_array_add (notes, json_object_new_string (res.notes[k]));
      for (size_t k = 0; k < res.nr_disconnected; k++)
        json_object_array_add (disc, json_object_new_string (res.disconnected[k]));
      json_object_object_add (v, "files", files);
      json_object_object_add (v, "notes", notes);
      json_object_object_add (v, "disconnected", disc);
      json_object_array_add (list, v);
      continue;
    }
    printf ("  vm \"%s\" (%s): %s, %s\n", cli_text (res.name), cli_text (res.uuid),
            ok ? "restored" : "FAILED",
            res.resumed ? "resumed from its saved state" : cli_text (res.state));
    if (res.error)
      printf ("    error: %s\n", cli_message (res.error));
    for (size_t k = 0; k < nr_done; k++) {
      char b[32];
      if (strcasecmp (done[k].component, res.uuid) != 0)
        continue;
      if (done[k].status < 0)
        printf ("    file %s: FAILED: %s\n", cli_text (done[k].path),
                done[k].error ? cli_message (done[k].error) : "?");
      else if (done[k].status > 0)
        printf ("    file %s: not written\n", cli_text (done[k].path));
      else
        printf ("    file %s -> %s (%s, %s)\n", cli_text (done[k].path),
                cli_text (done[k].target), cli_text (done[k].format),
                cli_bytes (done[k].size, b));
    }
    for (size_t k = 0; k < res.nr_notes; k++)
      printf ("    %s\n", cli_message (res.notes[k]));
    for (size_t k = 0; k < res.nr_disconnected; k++)
      printf ("    interface %s\n", cli_text (res.disconnected[k]));
  }
  if (json) {
    json_object_object_add (out, "backup_id", json_object_new_string (vms_manifest_backup_id (m)));
    json_object_object_add (out, "state", json_object_new_string (bad || session_error ? "failed" : "complete"));
    if (session_error)
      json_object_object_add (out, "error", json_object_new_string (session_error));
    json_object_object_add (out, "vms", list);
    json_object_object_add (out, "elapsed_ms", json_object_new_int64 (ms));
    cli_print_json (out);
  }
  else
    printf ("%zu of %zu VM%s restored in %.1f s.\n", n - bad, n,
            n == 1 ? "" : "s", (double) ms / 1000.0);
  return bad ? -1 : 0;
}

int
cmd_restore (const struct options *opts, int argc, char **argv)
{
  int64_t t0 = vms_now_ms ();
  int rc = EXIT_FAILURE;
  char to[PATH_MAX];
  vms_repo *repo = NULL;
  vms_manifest *m = NULL;
  vms_coordinator *coord = NULL;
  vms_session *s = NULL;
  struct file_done *done = NULL;
  size_t nr_done = 0;
  const vms_document **md = NULL;

  if (argc != 1) {
    fprintf (stderr, "vmshadow restore: give one BACKUP (see 'vmshadow "
             "list'), not %d arguments\n", argc);
    return EXIT_USAGE;
  }
  if (opts->to) {
    if (opts->to[0] == '/')
      snprintf (to, sizeof to, "%s", opts->to);
    else {
      char cwd[PATH_MAX];
      if (getcwd (cwd, sizeof cwd) == NULL ||
          snprintf (to, sizeof to, "%s/%s", cwd, opts->to) >= (int) sizeof to) {
        fprintf (stderr, "vmshadow restore: --to %s: path too long\n", cli_text (opts->to));
        return EXIT_USAGE;
      }
    }
    if (check_target_dir (to) == -1)
      return EXIT_FAILURE;
  }

  repo = vms_repo_open (opts->repo_dir, 0);
  if (repo == NULL)
    return cli_fail ("restore");
  m = vms_manifest_open (repo, argv[0]);
  if (m == NULL) {
    fprintf (stderr, "vmshadow restore: cannot restore backup %s: %s; "
             "nothing was changed (see 'vmshadow list')\n", cli_text (argv[0]),
             cli_message (vms_get_error ()));
    goto out;
  }
  const vms_document *bcd = vms_manifest_components (m);
  if (bcd == NULL) {
    fprintf (stderr, "vmshadow restore: backup %s has no backup components "
             "document: it cannot be restored (R5)\n", cli_text (argv[0]));
    goto out;
  }
  size_t nm = vms_manifest_metadata_count (m);
  if ((md = calloc (nm ? nm : 1, sizeof *md)) == NULL ||
      (done = calloc (vms_manifest_file_count (m) + 1, sizeof *done)) == NULL) {
    fprintf (stderr, "vmshadow restore: out of memory\n");
    goto out;
  }
  for (size_t i = 0; i < nm; i++)
    md[i] = vms_manifest_metadata (m, i);

  if ((coord = vms_coordinator_new ()) == NULL) {
    cli_fail ("restore");
    goto out;
  }
  const struct vms_vm_restore_options ro = {
    .uri = opts->connect,
    .vms = opts->vms,
    .to = opts->to ? to : NULL,
    .new_name = opts->new_name,
    .start = opts->start,
    .network_map = opts->network_map,
  };
  vms_vm_restore *r = vms_libvirt_add_for_restore (coord, &ro, bcd, md, nm);
  if (r == NULL) {
    fprintf (stderr, "vmshadow restore: %s; nothing was changed\n",
             cli_message (vms_get_error ()));
    goto out;
  }
  if (preflight (repo, m, r) == -1) {
    fprintf (stderr, "vmshadow restore: %s; nothing was changed\n",
             cli_message (vms_get_error ()));
    goto out;
  }
  if ((s = vms_restore_session_new (coord, bcd, md, nm)) == NULL) {
    cli_fail ("restore");
    goto out;
  }
  if (vms_session_pre_restore (s) == -1) {
    struct vms_session_failure f;
    fprintf (stderr, "vmshadow restore: %s\n", cli_message (vms_session_failure (s, &f) == 0
                                                     ? f.message : vms_get_error ()));
    goto out;
  }
  /* R16: PreRestore finished everywhere; now the files. */
  restore_files (repo, m, s, r, bcd, done, &nr_done);
  const char *post_error = NULL;
  if (vms_session_post_restore (s) == -1) {
    struct vms_session_failure f;
    if (vms_session_failure (s, &f) == 0)
      post_error = f.message;
  }
  if (report (m, r, done, nr_done, vms_now_ms () - t0, opts->json,
              post_error) == 0 && post_error == NULL)
    rc = EXIT_SUCCESS;
  else if (!opts->json)
    fprintf (stderr, "vmshadow restore: not every VM was restored (see "
             "above)\n");

 out:
  for (size_t i = 0; i < nr_done; i++)
    free (done[i].error);
  free (done);
  vms_session_free (s);
  vms_coordinator_free (coord);
  free (md);
  vms_manifest_free (m);
  vms_repo_close (repo);
  return rc;
}

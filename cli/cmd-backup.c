/* vmshadow backup: one backup session over every writer of the host (R2),
 * the shadow copies read into the repository, and the backup committed
 * only when every file is stored (R12) — before BackupComplete tells the
 * writers their data is safe. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

struct component_total {
  const char *writer;
  const char *component;
  size_t files;
  uint64_t size, bytes_read, bytes_stored;
  int64_t ms;
};

/* Say which writer failed, where and why (R4), on stderr or in JSON. */
static void
report_failure (vms_session *s, json_object *out)
{
  struct vms_session_failure f;
  json_object *writers = json_object_new_array ();

  if (out == NULL && vms_session_failure (s, &f) == 0) {
    /* The message already names the writer or provider that failed. */
    fprintf (stderr, "vmshadow backup: no backup was made: %s (%s, at %s)\n",
             f.message, vms_failure_name (f.kind), vms_event_name (f.phase));
  }
  for (size_t i = 0; i < vms_session_writer_count (s); i++) {
    struct vms_writer_status st;
    vms_session_writer_status (s, i, &st);
    const char *state = vms_writer_state_name (st.state, st.failed_at);
    if (out) {
      json_object *w = json_object_new_object ();
      json_object_object_add (w, "name", json_object_new_string (st.name));
      json_object_object_add (w, "state", json_object_new_string (state));
      json_object_object_add (w, "failure", json_object_new_string (
                                vms_failure_name (st.failure)));
      if (st.message)
        json_object_object_add (w, "message", json_object_new_string (st.message));
      json_object_array_add (writers, w);
    }
    else if (st.state == VMS_WRITER_FAILED)
      fprintf (stderr, "  writer \"%s\": %s, %s%s\n", st.name, state,
               vms_failure_name (st.failure),
               st.failure == VMS_FAILURE_RETRYABLE || st.failure == VMS_FAILURE_TIMEOUT
               ? " (may be retried)" : "");
  }
  if (out) {
    json_object_object_add (out, "writers", writers);
    if (vms_session_failure (s, &f) == 0) {
      json_object *fo = json_object_new_object ();
      json_object_object_add (fo, "culprit", json_object_new_string (f.culprit));
      json_object_object_add (fo, "provider", json_object_new_boolean (f.is_provider));
      json_object_object_add (fo, "phase", json_object_new_string (vms_event_name (f.phase)));
      json_object_object_add (fo, "kind", json_object_new_string (vms_failure_name (f.kind)));
      json_object_object_add (fo, "message", json_object_new_string (f.message));
      json_object_object_add (out, "failure", fo);
    }
  }
  else
    json_object_put (writers);
}

/* Read one file of the snapshot set into the repository. */
static vms_index *
store_file (vms_repo *repo, const char *access, const struct vms_file_info *info,
            struct vms_copy_stats *stats, struct progress *prog)
{
  struct vms_source src = { 0 };
  vms_nbd_export *export = NULL;
  vms_index *idx;

  /* Disk images go through a read-only NBD export: it decodes qcow2 and
   * tells holes and zeros by block status. */
  if (info->kind == VMS_FILE_DISK) {
    export = vms_nbd_export_open (access, info->format, NULL);
    if (export == NULL)
      return NULL;
    src.nbd_uri = vms_nbd_export_uri (export);
  }
  else
    src.path = access;
  idx = vms_copy_to_repo (repo, &src, stats, progress_update, prog);
  vms_nbd_export_close (export);
  return idx;
}

static int
copy_snapshot_set (vms_repo *repo, vms_session *s, vms_repo_txn *txn,
                   struct component_total **totals, size_t *nr_totals)
{
  const vms_document *bcd = vms_session_components (s);

  for (size_t w = 0; w < vms_components_writer_count (bcd); w++) {
    const char *wid = vms_components_writer_id (bcd, w);
    size_t nc = vms_document_component_count (bcd, wid);
    for (size_t c = 0; c < nc; c++) {
      vms_component *comp = vms_document_component (bcd, wid, c);
      struct component_total *t;
      struct component_total *list = realloc (*totals, (*nr_totals + 1) * sizeof *list);
      if (list == NULL) {
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
      *totals = list;
      t = &list[(*nr_totals)++];
      memset (t, 0, sizeof *t);
      t->writer = vms_components_writer_name (bcd, w);
      t->component = vms_component_name (comp);
      int64_t t0 = vms_now_ms ();

      for (size_t f = 0; f < vms_component_file_count (comp); f++) {
        struct vms_file_info info;
        struct vms_copy_stats stats = { 0 };
        struct progress prog;
        vms_component_file (comp, f, &info);
        const char *access = vms_session_file_access (s, wid, t->component, info.path);
        if (access == NULL)
          return -1;
        progress_init (&prog, info.path);
        vms_index *idx = store_file (repo, access, &info, &stats, &prog);
        progress_done (&prog);
        if (idx == NULL) {
          vms_set_error (vms_get_errno (), "cannot store %s of component \"%s\": %s",
                         info.path, t->component, vms_get_error ());
          return -1;
        }
        const struct vms_stored_file stored = {
          .writer_id = wid, .component = t->component, .path = info.path,
          .kind = info.kind, .format = info.format,
          .bytes_read = stats.bytes_read, .bytes_stored = stats.bytes_stored,
        };
        int r = vms_repo_txn_add_file (txn, &stored, idx);
        vms_index_free (idx);
        if (r == -1)
          return -1;
        t->files++;
        t->size += stats.size;
        t->bytes_read += stats.bytes_read;
        t->bytes_stored += stats.bytes_stored;
      }
      t->ms = vms_now_ms () - t0;
    }
  }
  return 0;
}

static void
print_summary (const char *id, const struct component_total *t, size_t n,
               int64_t ms, int json)
{
  char b1[32], b2[32], b3[32];
  uint64_t read = 0, stored = 0;

  for (size_t i = 0; i < n; i++) {
    read += t[i].bytes_read;
    stored += t[i].bytes_stored;
  }
  if (json) {
    json_object *out = json_object_new_object ();
    json_object *list = json_object_new_array ();
    json_object_object_add (out, "backup_id", json_object_new_string (id));
    json_object_object_add (out, "state", json_object_new_string ("complete"));
    for (size_t i = 0; i < n; i++) {
      json_object *c = json_object_new_object ();
      json_object_object_add (c, "writer", json_object_new_string (t[i].writer));
      json_object_object_add (c, "component", json_object_new_string (t[i].component));
      json_object_object_add (c, "files", json_object_new_int64 ((int64_t) t[i].files));
      json_object_object_add (c, "size", json_object_new_int64 ((int64_t) t[i].size));
      json_object_object_add (c, "bytes_read", json_object_new_int64 ((int64_t) t[i].bytes_read));
      json_object_object_add (c, "bytes_stored", json_object_new_int64 ((int64_t) t[i].bytes_stored));
      json_object_object_add (c, "elapsed_ms", json_object_new_int64 (t[i].ms));
      json_object_array_add (list, c);
    }
    json_object_object_add (out, "components", list);
    json_object_object_add (out, "bytes_read", json_object_new_int64 ((int64_t) read));
    json_object_object_add (out, "bytes_stored", json_object_new_int64 ((int64_t) stored));
    json_object_object_add (out, "elapsed_ms", json_object_new_int64 (ms));
    cli_print_json (out);
    return;
  }
  printf ("Backup %s complete.\n", id);
  for (size_t i = 0; i < n; i++)
    printf ("  %s / %s: %zu file%s, %s, read %s, stored %s, %.1f s\n",
            t[i].writer, t[i].component, t[i].files, t[i].files == 1 ? "" : "s",
            cli_bytes (t[i].size, b1), cli_bytes (t[i].bytes_read, b2),
            cli_bytes (t[i].bytes_stored, b3), (double) t[i].ms / 1000.0);
  printf ("Read %s, stored %s new, in %.1f s.\n", cli_bytes (read, b1),
          cli_bytes (stored, b2), (double) ms / 1000.0);
}

int
cmd_backup (const struct options *opts, int argc, char **argv)
{
  int64_t t0 = vms_now_ms ();
  struct component_total *totals = NULL;
  size_t nr_totals = 0;
  int rc = EXIT_FAILURE;

  if (argc > 0) {
    fprintf (stderr, "vmshadow backup: backing up named VMs ('%s') needs the "
             "VM writer, which this version does not have yet; run "
             "'vmshadow backup' to back up every writer's components\n", argv[0]);
    return EXIT_USAGE;
  }
  vms_repo *repo = vms_repo_open (opts->repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE);
  if (repo == NULL)
    return cli_fail ("backup");
  vms_coordinator *coord = cli_load_coordinator (opts);
  if (coord == NULL) {
    vms_repo_close (repo);
    return cli_fail ("backup");
  }
  if (vms_coordinator_writer_count (coord) == 0) {
    fprintf (stderr, "vmshadow backup: this host has no writers, so there is "
             "nothing to back up (add exec writers to %s)\n",
             opts->writers_dir ? opts->writers_dir : "the writers directory");
    goto out;
  }

  vms_session *s = vms_backup_session_new (coord, NULL);
  vms_repo_txn *txn = NULL;
  if (s == NULL) {
    cli_fail ("backup");
    goto out;
  }
  if (vms_session_identify (s) == -1 ||
      vms_session_prepare_backup (s) == -1 ||
      vms_session_do_snapshot_set (s) == -1)
    goto failed;

  /* R12: everything is stored before the backup becomes visible. */
  txn = vms_repo_txn_begin (repo, vms_session_id (s));
  if (txn == NULL ||
      copy_snapshot_set (repo, s, txn, &totals, &nr_totals) == -1) {
    vms_session_abort (s, vms_get_error ());
    goto failed;
  }
  {
    size_t nm = vms_session_metadata_count (s);
    const vms_document **md = calloc (nm ? nm : 1, sizeof *md);
    for (size_t i = 0; md && i < nm; i++)
      md[i] = vms_session_metadata (s, i);
    int r = md ? vms_repo_txn_commit (txn, vms_session_components (s), md, nm, NULL) : -1;
    free (md);
    if (r == -1) {
      vms_session_abort (s, vms_get_error ());
      goto failed;
    }
  }
  if (vms_session_backup_complete (s, 1) == -1) {
    /* The data was captured consistently and is stored; a writer could not
     * finish its own post-backup work (e.g. log truncation). */
    fprintf (stderr, "vmshadow backup: backup %s is stored, but a writer failed "
             "at BackupComplete:\n", vms_session_id (s));
    report_failure (s, NULL);
    goto done;
  }
  print_summary (vms_session_id (s), totals, nr_totals, vms_now_ms () - t0, opts->json);
  rc = EXIT_SUCCESS;
  goto done;

 failed:
  if (opts->json) {
    json_object *outj = json_object_new_object ();
    json_object_object_add (outj, "state", json_object_new_string ("failed"));
    report_failure (s, outj);
    cli_print_json (outj);
  }
  else {
    struct vms_session_failure f;
    if (vms_session_failure (s, &f) == -1)
      cli_fail ("backup");
    report_failure (s, NULL);
  }
 done:
  vms_repo_txn_free (txn);
  vms_session_free (s);
 out:
  free (totals);
  vms_coordinator_free (coord);
  vms_repo_close (repo);
  return rc;
}

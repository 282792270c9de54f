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
#include "vm-writer.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

struct component_total {
  const char *writer;
  const char *component;
  const char *caption;
  const char *method;           /* VM writer: online|saved-state|offline */
  int64_t freeze_window_ms;     /* -1 when none */
  int64_t downtime_ms;          /* -1 when none */
  const vms_component *comp;    /* for its excluded files (R13) */
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
             cli_message (f.message), vms_failure_name (f.kind), vms_event_name (f.phase));
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
      fprintf (stderr, "  writer \"%s\": %s, %s%s\n", cli_text (st.name), state,
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

/* What the repository knows of each VM's last backup: the checkpoint its
 * incremental can start from, and the backup that holds its parent
 * indexes. Checkpoints belong to vmshadow's catalogue, not to libvirtd. */
struct previous {
  char *uuid, *checkpoint, *backup_id;
};
struct previous_list {
  struct previous *v;
  size_t n;
};

static void
previous_load (vms_repo *repo, struct previous_list *list)
{
  char **ids = NULL;
  size_t n = 0;

  if (vms_repo_list (repo, &ids, &n) == -1)
    return;                     /* no history: every VM gets a full backup */
  for (size_t i = n; i-- > 0; ) {     /* newest first */
    vms_manifest *m = vms_manifest_open (repo, ids[i]);
    const vms_document *bcd = m ? vms_manifest_components (m) : NULL;
    size_t nc = bcd ? vms_document_component_count (bcd, VMS_VM_WRITER_ID) : 0;
    for (size_t c = 0; c < nc; c++) {
      vms_component *comp = vms_document_component (bcd, VMS_VM_WRITER_ID, c);
      const char *cp = vms_component_get_string (comp, VMS_VM_ATTR_CHECKPOINT);
      const char *uuid = vms_component_name (comp);
      int known = 0;
      for (size_t k = 0; k < list->n; k++)
        known |= strcmp (list->v[k].uuid, uuid) == 0;
      if (known || cp == NULL)
        continue;
      struct previous *v = realloc (list->v, (list->n + 1) * sizeof *v);
      if (v == NULL)
        break;
      list->v = v;
      v[list->n].uuid = strdup (uuid);
      v[list->n].checkpoint = strdup (cp);
      v[list->n].backup_id = strdup (ids[i]);
      list->n++;
    }
    vms_manifest_free (m);
  }
  for (size_t i = 0; i < n; i++)
    free (ids[i]);
  free (ids);
}

static void
previous_free (struct previous_list *list)
{
  for (size_t i = 0; i < list->n; i++) {
    free (list->v[i].uuid);
    free (list->v[i].checkpoint);
    free (list->v[i].backup_id);
  }
  free (list->v);
}

static const struct previous *
previous_find (const struct previous_list *list, const char *uuid)
{
  for (size_t i = 0; i < list->n; i++)
    if (strcmp (list->v[i].uuid, uuid) == 0)
      return &list->v[i];
  return NULL;
}

static const char *
previous_checkpoint (void *opaque, const char *uuid)
{
  const struct previous *p = previous_find (opaque, uuid);
  return p ? p->checkpoint : NULL;
}

/* The index of the same file in the VM's previous backup, for an
 * incremental; NULL when there is none (the file is then read in full). */
static vms_index *
parent_index (vms_repo *repo, const struct previous_list *prev,
              const char *uuid, const char *path)
{
  const struct previous *p = previous_find (prev, uuid);
  vms_manifest *m = p ? vms_manifest_open (repo, p->backup_id) : NULL;
  vms_index *idx = NULL;
  int i = m ? vms_manifest_find_file (m, uuid, path) : -1;
  if (i >= 0)
    idx = vms_manifest_load_index (repo, m, (size_t) i);
  vms_manifest_free (m);
  return idx;
}

/* Read one file of the snapshot set into the repository. */
static vms_index *
store_file (vms_repo *repo, const char *access, const struct vms_file_info *info,
            const char *dirty_context, const vms_index *parent,
            struct vms_copy_stats *stats, struct progress *prog)
{
  struct vms_source src = { 0 };
  vms_nbd_export *export = NULL;
  vms_index *idx;

  if (strncmp (access, "nbd+unix://", 11) == 0) {
    /* A running VM's backup job already exports its point-in-time disk. */
    src.nbd_uri = access;
    if (dirty_context && parent) {
      src.dirty_context = dirty_context;
      src.parent = parent;
    }
  }
  else if (info->kind == VMS_FILE_DISK) {
    /* Other disk images go through a read-only NBD export: it decodes
     * qcow2 and tells holes and zeros by block status. */
    export = vms_nbd_export_open (access, info->format, NULL);
    if (export == NULL)
      return NULL;
    src.nbd_uri = vms_nbd_export_uri (export);
  }
  else
    src.path = access;
  idx = vms_copy_to_repo (repo, &src, stats, progress_update, prog);
  if (idx == NULL && src.dirty_context && vms_get_errno () == ENOENT) {
    /* The disk's bitmap is missing: this disk alone is read in full. */
    vms_warn ("%s: no dirty bitmap (%s); reading this disk in full",
              info->path, vms_get_error ());
    src.dirty_context = NULL;
    src.parent = NULL;
    memset (stats, 0, sizeof *stats);
    idx = vms_copy_to_repo (repo, &src, stats, progress_update, prog);
  }
  vms_nbd_export_close (export);
  return idx;
}

static int
copy_snapshot_set (vms_repo *repo, vms_session *s, vms_repo_txn *txn,
                   const struct previous_list *prev,
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
      t->caption = vms_component_caption (comp);
      t->comp = comp;
      t->method = vms_component_get_string (comp, VMS_VM_ATTR_METHOD);
      t->freeze_window_ms = vms_component_get_int (comp, VMS_VM_ATTR_FREEZE_WINDOW_MS, -1);
      t->downtime_ms = vms_component_get_int (comp, "downtime_ms", -1);
      int64_t t0 = vms_now_ms ();

      for (size_t f = 0; f < vms_component_file_count (comp); f++) {
        struct vms_file_info info;
        struct vms_copy_stats stats = { 0 };
        struct progress prog;
        vms_component_file (comp, f, &info);
        const char *access = vms_session_file_access (s, wid, t->component, info.path);
        if (access == NULL)
          return -1;
        char key[4200];
        snprintf (key, sizeof key, "%s%s", VMS_VM_ATTR_DIRTY_CONTEXT_PREFIX, info.path);
        const char *dirty = vms_component_get_string (comp, key);
        vms_index *parent = dirty ? parent_index (repo, prev, t->component, info.path) : NULL;
        progress_init (&prog, info.path);
        vms_index *idx = store_file (repo, access, &info, dirty, parent, &stats, &prog);
        progress_done (&prog);
        vms_index_free (parent);
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
      json_object_object_add (c, "caption", json_object_new_string (t[i].caption));
      if (t[i].method)
        json_object_object_add (c, "method", json_object_new_string (t[i].method));
      if (t[i].freeze_window_ms >= 0)
        json_object_object_add (c, "freeze_window_ms", json_object_new_int64 (t[i].freeze_window_ms));
      if (t[i].downtime_ms >= 0)
        json_object_object_add (c, "downtime_ms", json_object_new_int64 (t[i].downtime_ms));
      json_object *excl = json_object_new_array ();
      for (size_t e = 0; e < vms_component_excluded_count (t[i].comp); e++) {
        json_object *x = json_object_new_object ();
        json_object_object_add (x, "path", json_object_new_string (
                                  vms_component_excluded_path (t[i].comp, e)));
        json_object_object_add (x, "reason", json_object_new_string (
                                  vms_component_excluded_reason (t[i].comp, e)));
        json_object_array_add (excl, x);
      }
      json_object_object_add (c, "excluded", excl);
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
  printf ("Backup %s complete.\n", cli_text (id));
  for (size_t i = 0; i < n; i++) {
    char how[96] = "";
    if (t[i].method && t[i].freeze_window_ms >= 0)
      snprintf (how, sizeof how, " (%s, freeze window %" PRId64 " ms)",
                cli_text (t[i].method), t[i].freeze_window_ms);
    else if (t[i].method && t[i].downtime_ms >= 0)
      snprintf (how, sizeof how, " (%s, downtime %" PRId64 " ms)",
                cli_text (t[i].method), t[i].downtime_ms);
    else if (t[i].method)
      snprintf (how, sizeof how, " (%s)", cli_text (t[i].method));
    printf ("  %s%s: %zu file%s, %s, read %s, stored %s, %.1f s\n",
            cli_text (*t[i].caption ? t[i].caption : t[i].component), how,
            t[i].files, t[i].files == 1 ? "" : "s",
            cli_bytes (t[i].size, b1), cli_bytes (t[i].bytes_read, b2),
            cli_bytes (t[i].bytes_stored, b3), (double) t[i].ms / 1000.0);
    /* R13: what was left out, and that it must be backed up otherwise. */
    for (size_t e = 0; e < vms_component_excluded_count (t[i].comp); e++)
      printf ("    not backed up: %s: %s\n",
              cli_text (vms_component_excluded_path (t[i].comp, e)),
              cli_text (vms_component_excluded_reason (t[i].comp, e)));
  }
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

  struct previous_list prev = { NULL, 0 };
  vms_repo *repo = NULL;
  vms_coordinator *coord = NULL;

  /* Every argument is checked before anything changes: the repository is
   * made only once the writers are loaded and its path can be made whole
   * (issue 9, item 9). */
  if (opts->all && argc > 0) {
    fprintf (stderr, "vmshadow backup: give --all or VM names, not both\n");
    return EXIT_USAGE;
  }
  if ((coord = cli_load_coordinator (opts)) == NULL)
    return cli_fail ("backup");
  /* The directory vms_repo_open takes for NULL (repo.h). */
  const char *dir = opts->repo_dir ? opts->repo_dir : getenv (VMS_REPO_DIR_ENV);
  char why[4200];
  if (dir == NULL || *dir == '\0')
    dir = VMS_REPO_DEFAULT_DIR;
  if (cli_check_dir (dir, why, sizeof why) == -1) {
    fprintf (stderr, "vmshadow backup: cannot use %s as the repository: %s; "
             "nothing was changed\n", cli_text (dir), cli_text (why));
    goto out;
  }
  if ((repo = vms_repo_open (dir, VMS_REPO_CREATE | VMS_REPO_WRITE)) == NULL) {
    cli_fail ("backup");
    goto out;
  }
  /* VMs take part when asked for: --all, or by name (R7: one component
   * per VM). Host applications (exec writers) always do. */
  if (opts->all || argc > 0) {
    argv[argc] = NULL;          /* argv is NULL-terminated: a VM list */
    previous_load (repo, &prev);
    const struct vms_vm_options vm = {
      .uri = opts->connect,
      .vms = argc > 0 ? (const char *const *) argv : NULL,
      .method = vms_vm_method_from_name (opts->method ? opts->method : "auto"),
      .full = opts->full,
      .previous_checkpoint = previous_checkpoint,
      .previous_opaque = &prev,
    };
    if (vms_libvirt_add (coord, &vm) == -1) {
      cli_fail ("backup");
      goto out;
    }
  }
  if (vms_coordinator_writer_count (coord) == 0) {
    fprintf (stderr, "vmshadow backup: nothing to back up: no exec writers, and "
             "no VMs asked for (use --all or name VMs)\n");
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
      copy_snapshot_set (repo, s, txn, &prev, &totals, &nr_totals) == -1) {
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
             "at BackupComplete:\n", cli_text (vms_session_id (s)));
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
  previous_free (&prev);
  vms_coordinator_free (coord);
  vms_repo_close (repo);
  return rc;
}

/* A backup session end to end (R1, R2, R12): one consistency set over the
 * writers of a coordinator, the shadow copies read into the repository,
 * every writer asked whether its capture is still good, and the backup
 * committed only then — before BackupComplete tells the writers their data
 * is safe. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "log.h"
#include "requester-internal.h"
#include "str.h"
#include "vm-writer.h"
#include "vmshadow/error.h"

/* What the backup of one set needs as it goes. */
struct backup_run {
  vms_repo *repo;
  vms_session *s;
  vms_repo_txn *txn;
  struct req_progress progress;
  struct vms_backup_set *set;
  double cbt_sample;            /* the request's, or from the environment */
  const char *job;              /* the request's job, or NULL */
  int oom;
};

/* The index of the file in the backup that recorded checkpoint base (the
 * base of its changed extents), or NULL: then it is read in full. */
static vms_index *
parent_index (struct backup_run *b, const char *wid, const char *component,
              const char *path, const char *base)
{
  CLEANUP_FREE char *cp = NULL, *id = NULL;
  vms_manifest *m = NULL;
  vms_index *idx = NULL;
  int i = -1;

  if (vms_repo_last_checkpoint (b->repo, wid, component, path, &cp, &id) == 1 &&
      strcmp (cp, base) == 0 && (m = vms_manifest_open (b->repo, id)) != NULL &&
      (i = vms_manifest_find_file (m, component, path)) >= 0)
    idx = vms_manifest_load_index (b->repo, m, (size_t) i);
  vms_manifest_free (m);
  if (idx == NULL)
    vms_warn ("%s: no stored backup of it at checkpoint %s; reading it in full",
              path, base);
  return idx;
}

/* The share of unchanged chunks an incremental re-reads to check the
 * bitmap (issue 21): $VMSHADOW_CBT_SAMPLE, a fraction from 0 to 1 or
 * "off"; unset: the data path's default. */
static double
cbt_sample (void)
{
  const char *s = getenv ("VMSHADOW_CBT_SAMPLE");
  char *end;
  double v;

  if (s == NULL || *s == '\0')
    return 0;
  if (strcmp (s, "off") == 0)
    return -1;
  errno = 0;
  v = strtod (s, &end);
  if (errno || *end || !(v > 0 && v <= 1)) {
    vms_warn ("ignoring VMSHADOW_CBT_SAMPLE=%s: not \"off\" or a fraction "
              "above 0 up to 1", s);
    return 0;
  }
  return v;
}

/* Most changed extents a list may name (issue 11): 16 M lines, a few
 * hundred MiB of text; an RBD diff of a 64 TiB image in 4 MiB objects. */
#define CHANGED_LIST_MAX_BYTES (UINT64_C (512) << 20)

/* The changed extents the writer listed in path (VMS_ACCESS_CHANGED_LIST):
 * "OFFSET LENGTH" lines, decimal, ascending, not overlapping, each length
 * above 0 — checked byte by byte. NULL with the error set; *n = 0 and a
 * non-NULL array for an empty list. */
static struct vms_extent *
read_changed_list (const char *path, size_t *n)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  CLEANUP_FREE char *text = NULL;
  struct vms_extent *v = NULL;
  size_t len = 0, cap = 0, nr = 0;
  struct stat st;
  ssize_t got;
  uint64_t end = 0;
  char *p;

  *n = 0;
  if (fd == -1 || fstat (fd, &st) == -1) {
    vms_set_error (errno, "cannot open the list of changed extents %s: %s",
                   path, strerror (errno));
    return NULL;
  }
  if (!S_ISREG (st.st_mode) || (uint64_t) st.st_size > CHANGED_LIST_MAX_BYTES) {
    vms_set_error (EINVAL, "the list of changed extents %s is not a regular "
                   "file of at most %" PRIu64 " bytes", path,
                   CHANGED_LIST_MAX_BYTES);
    return NULL;
  }
  if ((text = malloc ((size_t) st.st_size + 1)) == NULL)
    goto oom;
  while (len < (size_t) st.st_size &&
         (got = read (fd, text + len, (size_t) st.st_size - len)) > 0)
    len += (size_t) got;
  text[len] = '\0';
  for (p = text; *p; ) {
    uint64_t f[2];
    for (int k = 0; k < 2; k++) {
      if (*p < '0' || *p > '9')
        goto bad;
      f[k] = 0;
      for (; *p >= '0' && *p <= '9'; p++)
        if (__builtin_mul_overflow (f[k], 10, &f[k]) ||
            __builtin_add_overflow (f[k], (uint64_t) (*p - '0'), &f[k]))
          goto bad;
      if (*p++ != (k == 0 ? ' ' : '\n'))
        goto bad;
    }
    if (f[1] == 0 || f[0] < end || __builtin_add_overflow (f[0], f[1], &end))
      goto bad;
    if (nr == cap) {
      size_t c = cap ? cap * 2 : 64;
      struct vms_extent *q = realloc (v, c * sizeof *q);
      if (q == NULL)
        goto oom;
      v = q;
      cap = c;
    }
    v[nr++] = (struct vms_extent) { .offset = f[0], .length = f[1] };
  }
  if (v == NULL && (v = malloc (sizeof *v)) == NULL)
    goto oom;
  *n = nr;
  return v;
 bad:
  free (v);
  vms_set_error (EINVAL, "the list of changed extents %s is malformed at "
                 "byte %zu (wanted ascending, disjoint \"OFFSET LENGTH\" "
                 "lines)", path, (size_t) (p - text));
  return NULL;
 oom:
  free (v);
  vms_set_error (ENOMEM, "out of memory");
  return NULL;
}

/* How a disk was read and why (issue 11): both malloc'd, why NULL unless
 * it was read in full. */
struct read_how {
  char *how, *why;
};

/* Why a disk with no changed extents to read was read in full: the
 * writer's word, else the component's. */
static char *
full_reason (const vms_component *comp, const char *path)
{
  CLEANUP_FREE char *key = vms_strdup_printf ("%s%s", VMS_ATTR_FILE_FULL_REASON_PREFIX, path);
  const char *why = key ? vms_component_get_string (comp, key) : NULL;

  if (why == NULL)
    why = vms_component_get_string (comp, VMS_VM_ATTR_INCREMENTAL_REASON);
  if (why == NULL)
    why = vms_component_get_string (comp, VMS_ATTR_PREVIOUS_CHECKPOINT) == NULL
      ? "no earlier backup of it to start from"
      : "its writer offers no changed extents for it";
  return strdup (why);
}

/* Read one file of the snapshot set into the repository, as the provider's
 * access says: over its NBD export (only the changed extents when it
 * offers them and the parent is stored), through a read-only NBD export of
 * a disk image (only the listed changed extents when there is a list, as
 * for a stopped VM's RBD disk, and the parent is stored), or directly. */
static vms_index *
store_file (struct backup_run *b, const char *wid, const vms_component *comp,
            const struct vms_access *a, const struct vms_file_info *info,
            struct vms_copy_stats *stats, struct read_how *rh)
{
  const char *component = vms_component_name (comp);
  struct vms_source src = { 0 };
  vms_nbd_export *export = NULL;
  vms_index *idx, *parent = NULL;
  CLEANUP_FREE struct vms_extent *changed = NULL;
  CLEANUP_FREE char *why = NULL;
  size_t nr_changed = 0;

  if (a->uri) {
    src.nbd_uri = a->uri;
    if ((a->flags & VMS_ACCESS_CHANGED_EXTENTS) &&
        (parent = parent_index (b, wid, component, info->path, a->base)) != NULL) {
      src.dirty_context = a->changed_extents;
      src.parent = parent;
      src.cbt_sample = b->cbt_sample;
    }
    else if (a->flags & VMS_ACCESS_CHANGED_EXTENTS)
      why = vms_strdup_printf ("the repository holds no backup of it at "
                               "checkpoint %s", a->base);
  }
  else if (a->image) {
    /* Issue 11: the writer listed what changed since base (an RBD diff). */
    if ((a->flags & VMS_ACCESS_CHANGED_LIST) &&
        (parent = parent_index (b, wid, component, info->path, a->base)) != NULL) {
      changed = read_changed_list (a->changed_extents, &nr_changed);
      if (changed == NULL) {
        why = vms_strdup_printf ("its list of changed extents cannot be used: %s",
                                 vms_get_error ());
        vms_warn ("%s: %s; reading it in full", info->path, why ? why : "?");
        vms_index_free (parent);
        parent = NULL;
      }
      else {
        src.changed = changed;
        src.nr_changed = nr_changed;
        src.parent = parent;
        src.cbt_sample = b->cbt_sample;
      }
    }
    else if (a->flags & VMS_ACCESS_CHANGED_LIST)
      why = vms_strdup_printf ("the repository holds no backup of it at "
                               "snapshot %s", a->base);
    /* A disk that is no file (a stopped VM's network disk, issue 11):
     * qemu-nbd reads it by its own protocol, read-only. */
    export = vms_nbd_export_open_graph (a->image, a->secret_file, info->path);
    if (export == NULL) {
      vms_index_free (parent);
      return NULL;
    }
    src.nbd_uri = vms_nbd_export_uri (export);
  }
  else if (info->kind == VMS_FILE_DISK) {
    /* Other disk images go through a read-only NBD export: it decodes
     * qcow2 and tells holes and zeros by block status. */
    export = vms_nbd_export_open (a->path, info->format, NULL);
    if (export == NULL)
      return NULL;
    src.nbd_uri = vms_nbd_export_uri (export);
  }
  else
    src.path = a->path;
  vms_debug ("copying %s%s", info->path, parent ? " (changed extents)" : "");
  idx = vms_copy_to_repo (b->repo, &src, stats, req_progress_bytes, &b->progress);
  if (idx == NULL && src.dirty_context && vms_get_errno () == ENOENT) {
    /* The disk's bitmap is missing: this disk alone is read in full. */
    vms_warn ("%s: no dirty bitmap (%s); reading this disk in full",
              info->path, vms_get_error ());
    free (why);
    why = vms_strdup_printf ("its dirty bitmap is missing (%s)", vms_get_error ());
    src.dirty_context = NULL;
    src.parent = NULL;
    memset (stats, 0, sizeof *stats);
    idx = vms_copy_to_repo (b->repo, &src, stats, req_progress_bytes, &b->progress);
  }
  /* Issue 11: how it was read, and why. */
  if (idx && info->kind == VMS_FILE_DISK) {
    CLEANUP_FREE char *key = vms_strdup_printf ("%s%s", VMS_ATTR_FILE_CHANGES_PREFIX,
                                                info->path);
    const char *detail = key ? vms_component_get_string (comp, key) : NULL;
    const char *tracking = src.changed ? "rbd diff" : "dirty bitmap";
    if ((src.dirty_context || src.changed) && stats->full_reread) {
      rh->how = strdup ("full read");
      rh->why = vms_strdup_printf ("the %s since %s was wrong: %" PRIu64 " of %"
                                   PRIu64 " sampled unchanged chunks differed "
                                   "from that backup (the repository stored "
                                   "only the changes)", tracking, a->base,
                                   stats->cbt_differed, stats->cbt_sampled);
    }
    else if (src.dirty_context || src.changed)
      rh->how = vms_strdup_printf ("%s since %s%s%s%s", tracking, a->base,
                                   detail ? " (" : "", detail ? detail : "",
                                   detail ? ")" : "");
    else {
      rh->how = strdup ("full read");
      rh->why = why ? strdup (why) : full_reason (comp, info->path);
    }
    if (rh->how == NULL || (strcmp (rh->how, "full read") == 0 && rh->why == NULL)) {
      vms_index_free (idx);
      idx = NULL;
      vms_set_error (ENOMEM, "out of memory");
    }
  }
  vms_index_free (parent);
  vms_nbd_export_close (export);
  return idx;
}

/* What the writer says of the capture, and what it left out (R13). */
static void
describe_component (struct backup_run *b, struct vms_component_report *t,
                    const char *wid, const char *wname, const vms_component *comp)
{
  size_t ne = vms_component_excluded_count (comp);

  t->writer_id = req_strdup (wid, &b->oom);
  t->writer = req_strdup (wname, &b->oom);
  t->component = req_strdup (vms_component_name (comp), &b->oom);
  t->caption = req_strdup (vms_component_caption (comp), &b->oom);
  t->method = req_strdup (vms_component_get_string (comp, VMS_ATTR_METHOD), &b->oom);
  t->freeze_window_ms = vms_component_get_int (comp, VMS_ATTR_FREEZE_WINDOW_MS, -1);
  t->downtime_ms = vms_component_get_int (comp, VMS_ATTR_DOWNTIME_MS, -1);
  t->frozen_from_us = vms_component_get_int (comp, VMS_ATTR_FROZEN_FROM_US, -1);
  t->frozen_until_us = vms_component_get_int (comp, VMS_ATTR_FROZEN_UNTIL_US, -1);
  t->grouped = vms_component_get_int (comp, VMS_ATTR_GROUP, 0) == 1;
  t->incremental = vms_component_get_string (comp, VMS_ATTR_PREVIOUS_CHECKPOINT) != NULL;
  t->guest_processing = req_strdup (vms_component_get_string (comp, VMS_ATTR_GUEST_PROCESSING),
                                    &b->oom);
  t->excluded = calloc (ne ? ne : 1, sizeof *t->excluded);
  if (t->excluded == NULL) {
    b->oom = 1;
    return;
  }
  for (size_t e = 0; e < ne; e++) {
    t->excluded[e].path = req_strdup (vms_component_excluded_path (comp, e), &b->oom);
    t->excluded[e].reason = req_strdup (vms_component_excluded_reason (comp, e), &b->oom);
  }
  t->nr_excluded = ne;
}

/* Issue 21: the file's dirty bitmap was wrong; it was read in full. */
static int
note_cbt_wrong (struct vms_component_report *t, const char *path,
                const struct vms_copy_stats *st)
{
  struct vms_cbt_report *v = realloc (t->cbt_wrong, (t->nr_cbt_wrong + 1) * sizeof *v);
  char *p = strdup (path);

  if (v == NULL || p == NULL) {
    free (p);
    if (v)
      t->cbt_wrong = v;
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  t->cbt_wrong = v;
  v[t->nr_cbt_wrong++] = (struct vms_cbt_report) {
    .path = p, .sampled = st->cbt_sampled, .differed = st->cbt_differed,
  };
  vms_debug ("changed-block tracking was wrong for %s: %" PRIu64 " of %" PRIu64
             " sampled chunks differed; read in full", path, st->cbt_differed,
             st->cbt_sampled);
  return 0;
}

/* Issue 11: how a disk was read, and why. */
static int
note_read (struct vms_component_report *t, const char *path,
           struct read_how *rh, const struct vms_copy_stats *st)
{
  struct vms_read_report *v = realloc (t->reads, (t->nr_reads + 1) * sizeof *v);
  char *p = strdup (path);

  if (v == NULL || p == NULL) {
    free (p);
    if (v)
      t->reads = v;
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  t->reads = v;
  v[t->nr_reads++] = (struct vms_read_report) {
    .path = p, .how = rh->how, .why = rh->why, .size = st->size,
    .bytes_read = st->bytes_read, .sampled = st->cbt_sampled,
  };
  rh->how = rh->why = NULL;
  return 0;
}

static int
copy_component (struct backup_run *b, const char *wid, vms_component *comp,
                struct vms_component_report *t)
{
  int64_t t0 = vms_now_ms ();
  const char *name = vms_component_name (comp);

  for (size_t f = 0; f < vms_component_file_count (comp); f++) {
    struct vms_file_info info;
    struct vms_copy_stats stats = { 0 };
    vms_component_file (comp, f, &info);
    struct vms_access a;
    if (vms_session_file_access_get (b->s, wid, name, info.path, &a) == -1)
      return -1;
    req_progress_start (&b->progress, wid, name, info.path);
    struct read_how rh = { 0 };
    vms_index *idx = store_file (b, wid, comp, &a, &info, &stats, &rh);
    req_progress_end (&b->progress);
    if (idx && rh.how && note_read (t, info.path, &rh, &stats) == -1) {
      vms_index_free (idx);
      idx = NULL;
    }
    free (rh.how);
    free (rh.why);
    if (idx == NULL) {
      const char *caption = vms_component_caption (comp);
      vms_set_error (vms_get_errno (), "cannot store %s of component \"%s\"%s%s%s: %s",
                     info.path, name, caption ? " (" : "", caption ? caption : "",
                     caption ? ")" : "", vms_get_error ());
      return -1;
    }
    CLEANUP_FREE char *ckey = vms_strdup_printf ("%s%s", VMS_ATTR_FILE_CHECKPOINT_PREFIX,
                                                 info.path);
    const char *file_checkpoint = ckey ? vms_component_get_string (comp, ckey) : NULL;
    const struct vms_stored_file stored = {
      .writer_id = wid, .component = name, .path = info.path,
      .kind = info.kind, .format = info.format,
      .bytes_read = stats.bytes_read, .bytes_stored = stats.bytes_stored,
      /* The catalogue: where this file's next incremental may start (its
       * own checkpoint, issue 11, else the component's). */
      .checkpoint = file_checkpoint ? file_checkpoint
        : vms_component_get_string (comp, VMS_ATTR_CHECKPOINT),
    };
    if (stats.cbt_differed > 0 && note_cbt_wrong (t, info.path, &stats) == -1)
      return -1;
    int r = vms_repo_txn_add_file (b->txn, &stored, idx);
    vms_index_free (idx);
    if (r == -1)
      return -1;
    t->files++;
    t->size += stats.size;
    t->bytes_read += stats.bytes_read;
    t->bytes_stored += stats.bytes_stored;
  }
  t->elapsed_ms = vms_now_ms () - t0;
  b->set->bytes_read += t->bytes_read;
  b->set->bytes_stored += t->bytes_stored;
  return 0;
}

static int
copy_snapshot_set (struct backup_run *b)
{
  const vms_document *bcd = vms_session_components (b->s);
  size_t n = 0;

  for (size_t w = 0; w < vms_components_writer_count (bcd); w++)
    n += vms_document_component_count (bcd, vms_components_writer_id (bcd, w));
  b->set->components = calloc (n ? n : 1, sizeof *b->set->components);
  if (b->set->components == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t w = 0; w < vms_components_writer_count (bcd); w++) {
    const char *wid = vms_components_writer_id (bcd, w);
    size_t nc = vms_document_component_count (bcd, wid);
    for (size_t c = 0; c < nc; c++) {
      vms_component *comp = vms_document_component (bcd, wid, c);
      struct vms_component_report *t = &b->set->components[b->set->nr_components++];
      describe_component (b, t, wid, vms_components_writer_name (bcd, w), comp);
      if (copy_component (b, wid, comp, t) == -1)
        return -1;
    }
  }
  return 0;
}

/* The manifest's attrs: the disks whose tracking was wrong (`show` says
 * it), {"cbt_wrong": [{"component", "path", "sampled", "differed"}]}; how
 * each disk was read (issue 11), {"reads": [{"component", "path", "how",
 * "why" (full reads), "bytes_read", "sampled"}]}; and
 * the configured job that made the backup (issue 19), {"job": NAME}; NULL
 * when there is neither (errno 0) or on ENOMEM. */
static char *
backup_attrs_json (const struct vms_backup_set *set, const char *job)
{
  json_object *list = NULL, *reads = NULL, *top;
  char *text;

  errno = 0;
  for (size_t i = 0; i < set->nr_components; i++) {
    const struct vms_component_report *t = &set->components[i];
    for (size_t k = 0; k < t->nr_cbt_wrong; k++) {
      json_object *o = json_object_new_object ();
      if (list == NULL)
        list = json_object_new_array ();
      json_object_object_add (o, "component", json_object_new_string (t->component));
      json_object_object_add (o, "path", json_object_new_string (t->cbt_wrong[k].path));
      json_object_object_add (o, "sampled",
                              json_object_new_int64 ((int64_t) t->cbt_wrong[k].sampled));
      json_object_object_add (o, "differed",
                              json_object_new_int64 ((int64_t) t->cbt_wrong[k].differed));
      json_object_array_add (list, o);
    }
  }
  for (size_t i = 0; i < set->nr_components; i++) {
    const struct vms_component_report *t = &set->components[i];
    for (size_t k = 0; k < t->nr_reads; k++) {
      json_object *o = json_object_new_object ();
      if (reads == NULL)
        reads = json_object_new_array ();
      json_object_object_add (o, "component", json_object_new_string (t->component));
      json_object_object_add (o, "path", json_object_new_string (t->reads[k].path));
      json_object_object_add (o, "how", json_object_new_string (t->reads[k].how));
      if (t->reads[k].why)
        json_object_object_add (o, "why", json_object_new_string (t->reads[k].why));
      json_object_object_add (o, "bytes_read",
                              json_object_new_int64 ((int64_t) t->reads[k].bytes_read));
      json_object_object_add (o, "sampled",
                              json_object_new_int64 ((int64_t) t->reads[k].sampled));
      json_object_array_add (reads, o);
    }
  }
  if (list == NULL && reads == NULL && job == NULL)
    return NULL;
  top = json_object_new_object ();
  if (list)
    json_object_object_add (top, "cbt_wrong", list);
  if (reads)
    json_object_object_add (top, "reads", reads);
  if (job)
    json_object_object_add (top, "job", json_object_new_string (job));
  text = strdup (json_object_to_json_string_ext (top, JSON_C_TO_STRING_PLAIN));
  json_object_put (top);
  if (text == NULL)
    errno = ENOMEM;
  return text;
}

static int
commit (struct backup_run *b)
{
  size_t nm = vms_session_metadata_count (b->s);
  const vms_document **md = calloc (nm ? nm : 1, sizeof *md);
  int r;

  if (md == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < nm; i++)
    md[i] = vms_session_metadata (b->s, i);
  char *attrs = backup_attrs_json (b->set, b->job);
  if (attrs == NULL && errno == ENOMEM) {
    free (md);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  vms_debug ("backup %s: committing", vms_session_id (b->s));
  r = vms_repo_txn_commit (b->txn, vms_session_components (b->s), md, nm, attrs);
  if (r == 0)
    vms_debug ("backup %s: committed", vms_session_id (b->s));
  free (attrs);
  free (md);
  return r;
}

/* Who failed, where and why (R4), and every writer's state. */
static void
record_failure (struct backup_run *b)
{
  struct vms_session_failure f;
  size_t n = vms_session_writer_count (b->s);

  if (vms_session_failure (b->s, &f) == 0) {
    b->set->failure.failed = 1;
    b->set->failure.culprit = req_strdup (f.culprit, &b->oom);
    b->set->failure.is_provider = f.is_provider;
    b->set->failure.phase = f.phase;
    b->set->failure.kind = f.kind;
    b->set->failure.message = req_strdup (f.message, &b->oom);
  }
  else {
    b->set->failure.failed = 1;
    b->set->failure.message = req_strdup (vms_get_error (), &b->oom);
  }
  b->set->writers = calloc (n ? n : 1, sizeof *b->set->writers);
  if (b->set->writers == NULL) {
    b->oom = 1;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    struct vms_writer_status st;
    struct vms_writer_report *w = &b->set->writers[i];
    vms_session_writer_status (b->s, i, &st);
    w->name = req_strdup (st.name, &b->oom);
    w->id = req_strdup (st.id, &b->oom);
    w->state = req_strdup (vms_writer_state_name (st.state, st.failed_at), &b->oom);
    w->writer_state = st.state;
    w->failure = st.failure;
    w->message = req_strdup (st.message, &b->oom);
  }
  b->set->nr_writers = n;
}

/* Each component's last checkpoint, from the repository's catalogue, for
 * its writer to start an incremental from (VSS's previous backup stamp). */
static int
hand_previous_checkpoints (struct backup_run *b)
{
  const vms_document *bcd = vms_session_components (b->s);

  for (size_t w = 0; w < vms_components_writer_count (bcd); w++) {
    const char *wid = vms_components_writer_id (bcd, w);
    for (size_t c = 0; c < vms_document_component_count (bcd, wid); c++) {
      const char *name = vms_component_name (vms_document_component (bcd, wid, c));
      CLEANUP_FREE char *cp = NULL;
      int r = vms_repo_last_checkpoint (b->repo, wid, name, NULL, &cp, NULL);
      if (r == -1 ||
          (r == 1 && vms_session_set_previous_checkpoint (b->s, wid, name, cp) == -1)) {
        vms_session_abort (b->s, vms_get_error ());
        return -1;
      }
    }
  }
  return 0;
}

/* What storing chunks needs, loaded while the snapshot is taken (issue
 * 15: the capture mostly waits on the hypervisor and the guest; the first
 * chunk stored would load it otherwise, holding up the copy). A failure
 * is the copy's to report: it tries again. */
static void *
prepare_store (void *arg)
{
  vms_repo *repo = arg;
  int64_t t0 = vms_now_ms ();

  if (vms_repo_prepare_store (repo) == -1)
    vms_debug ("preparing the repository to store chunks: %s", vms_get_error ());
  else
    vms_debug ("repository prepared to store chunks in %" PRId64 " ms",
               vms_now_ms () - t0);
  return NULL;
}

/* One consistency set: every writer of coord in one session. */
static void
backup_set (struct backup_run *b, vms_coordinator *coord)
{
  int64_t t0 = vms_now_ms ();
  struct vms_backup_set *set = b->set;
  pthread_t prep;
  int prepping, r;

  set->state = VMS_SET_FAILED;
  b->s = vms_backup_session_new (coord, NULL);
  if (b->s == NULL) {
    set->failure.failed = 1;
    set->failure.message = req_strdup (vms_get_error (), &b->oom);
    goto out;
  }
  set->backup_id = req_strdup (vms_session_id (b->s), &b->oom);
  if (vms_session_identify (b->s) == -1 ||
      vms_session_prepare_backup (b->s) == -1 ||
      hand_previous_checkpoints (b) == -1)
    goto failed;
  /* Nothing else uses the repository until the thread is joined. */
  prepping = pthread_create (&prep, NULL, prepare_store, b->repo) == 0;
  r = vms_session_do_snapshot_set (b->s);
  if (prepping)
    pthread_join (prep, NULL);
  if (r == -1)
    goto failed;

  /* R12: everything is stored before the backup becomes visible. */
  b->txn = vms_repo_txn_begin (b->repo, vms_session_id (b->s));
  if (b->txn == NULL || copy_snapshot_set (b) == -1) {
    vms_session_abort (b->s, vms_get_error ());
    goto failed;
  }
  /* Every writer still vouches for its capture (else it stays invisible). */
  if (vms_session_gather_status (b->s) == -1)
    goto failed;
  if (commit (b) == -1) {
    vms_session_abort (b->s, vms_get_error ());
    goto failed;
  }
  if (vms_session_backup_complete (b->s, 1) == -1) {
    /* The data was captured consistently and is stored; a writer could not
     * finish its own post-backup work (e.g. log truncation). */
    set->state = VMS_SET_STORED_WITH_ERRORS;
    goto failed;
  }
  set->state = VMS_SET_COMPLETE;
  goto out;

 failed:
  record_failure (b);
 out:
  vms_repo_txn_free (b->txn);
  b->txn = NULL;
  vms_session_free (b->s);
  b->s = NULL;
  set->elapsed_ms = vms_now_ms () - t0;
}

/* How one set ended, as a run's outcome. */
static enum vms_outcome
set_outcome (const struct vms_backup_set *set)
{
  if (set->state == VMS_SET_FAILED)
    return VMS_OUTCOME_FAILURE;
  if (set->state == VMS_SET_STORED_WITH_ERRORS)
    return VMS_OUTCOME_WARNINGS;
  /* R13: what was left out must be backed up otherwise: a look is needed. */
  for (size_t i = 0; i < set->nr_components; i++)
    if (set->components[i].nr_excluded)
      return VMS_OUTCOME_WARNINGS;
  /* Issue 21: stored whole, but the host's tracking needs a look. */
  for (size_t i = 0; i < set->nr_components; i++)
    if (set->components[i].nr_cbt_wrong)
      return VMS_OUTCOME_WARNINGS;
  return VMS_OUTCOME_SUCCESS;
}

static enum vms_outcome
run_outcome (const struct vms_backup_report *r)
{
  size_t failed = 0, warned = 0;

  for (size_t i = 0; i < r->nr_sets; i++) {
    enum vms_outcome o = set_outcome (&r->sets[i]);
    failed += o == VMS_OUTCOME_FAILURE;
    warned += o == VMS_OUTCOME_WARNINGS;
  }
  if (failed == r->nr_sets)
    return VMS_OUTCOME_FAILURE;
  if (failed)
    return VMS_OUTCOME_PARTIAL;
  return warned ? VMS_OUTCOME_WARNINGS : VMS_OUTCOME_SUCCESS;
}

/* Open (or make) the repository for writing; with wait_ms, a writer lock
 * another process holds is waited for (polled) that long. */
static vms_repo *
open_repo (const char *dir, int64_t wait_ms)
{
  int64_t deadline = vms_now_ms () + wait_ms;
  int said = 0;

  for (;;) {
    vms_repo *repo = vms_repo_open (dir, VMS_REPO_CREATE | VMS_REPO_WRITE);
    if (repo || vms_get_errno () != EBUSY || wait_ms <= 0)
      return repo;
    if (vms_now_ms () >= deadline) {
      vms_set_error (EBUSY, "%s; waited %" PRId64 " s for it, giving up",
                     vms_get_error (), wait_ms / 1000);
      return NULL;
    }
    if (!said++)
      vms_warn ("%s; waiting (up to %" PRId64 " s)", vms_get_error (),
                wait_ms / 1000);
    struct timespec ts = { .tv_sec = 0, .tv_nsec = 500 * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
}

/* The sets of an --each run: the exec writers' (if there are any), then
 * one per VM. names: the VMs, NULL-terminated (malloc'd). */
static int
each_vms (const struct vms_backup_request *rq, char ***names, size_t *n)
{
  if (rq->host.all_vms)
    return vms_libvirt_list_vms (rq->host.libvirt_uri, names, n);
  *n = 0;
  while (rq->host.vms && rq->host.vms[*n])
    (*n)++;
  *names = calloc (*n + 1, sizeof **names);
  if (*names == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < *n; i++)
    if (((*names)[i] = strdup (rq->host.vms[i])) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  return 0;
}

/* --wait: before set i's session starts, wait for other tools' jobs on
 * its VMs to end (the writer only checks, in PrepareForBackup and again
 * before any guest is frozen; waiting there would run into the event
 * budget). */
static int
wait_jobs (const struct vms_backup_request *rq, size_t i, int exec_set,
           char **names)
{
  if (rq->each) {
    if (i < (size_t) exec_set)
      return 0;
    const char *only[] = { names[i - (size_t) exec_set], NULL };
    return vms_libvirt_wait_jobs (rq->host.libvirt_uri, only, rq->host.wait_ms);
  }
  if (!rq->host.all_vms && !(rq->host.vms && rq->host.vms[0]))
    return 0;
  return vms_libvirt_wait_jobs (rq->host.libvirt_uri,
                                rq->host.all_vms ? NULL : rq->host.vms,
                                rq->host.wait_ms);
}

static void
free_names (char **v)
{
  for (size_t i = 0; v && v[i]; i++)
    free (v[i]);
  free (v);
}

struct vms_backup_report *
vms_requester_backup (vms_repo *repo, const struct vms_backup_request *rq)
{
  int64_t t0 = vms_now_ms ();
  vms_coordinator *own = NULL, *coord = rq->coord;
  vms_repo *own_repo = NULL;
  struct vms_backup_report *r = NULL;
  char **names = NULL;
  size_t nr_names = 0, nr_sets = 1;
  int oom = 0, exec_set = 0;

  if (rq->each) {
    /* One set per VM (issue 20); the exec writers' set first, when the
     * host has any. Every set's writers are loaded before anything is
     * made, as for one set. */
    if (coord) {
      vms_set_error (EINVAL, "one set per VM needs the host's writers, not a "
                     "coordinator of the caller's");
      goto out;
    }
    if (each_vms (rq, &names, &nr_names) == -1)
      goto out;
    coord = own = req_host (&rq->host, REQ_HOST_EXEC, NULL);
    if (coord == NULL)
      goto out;
    if (vms_coordinator_writer_count (coord) == 0) {
      vms_coordinator_free (own);
      coord = own = NULL;
    }
    exec_set = coord != NULL;
    nr_sets = nr_names + (size_t) exec_set;
    if (nr_sets == 0) {
      vms_set_error (ENOENT, "nothing to back up: no exec writers, and no VMs "
                     "%s", rq->host.all_vms ? "on this host" : "asked for "
                     "(use --all or name VMs)");
      goto out;
    }
  }
  else {
    if (coord == NULL) {
      /* VMs take part when asked for: all, or by name (R7: one component
       * per VM). Host applications (exec writers) always do. */
      coord = own = vms_requester_host (&rq->host);
      if (coord == NULL)
        goto out;
    }
    if (vms_coordinator_writer_count (coord) == 0) {
      vms_set_error (ENOENT, "nothing to back up: no exec writers, and no VMs "
                     "asked for (use --all or name VMs)");
      goto out;
    }
  }
  if (repo == NULL) {
    /* The directory vms_repo_open takes for NULL (repo.h), checked before
     * anything is made (issue 9, item 9). */
    const char *dir = rq->repo_dir ? rq->repo_dir : getenv (VMS_REPO_DIR_ENV);
    char why[4200];
    if (dir == NULL || *dir == '\0')
      dir = VMS_REPO_DEFAULT_DIR;
    if (vms_requester_check_dir (dir, why, sizeof why) == -1) {
      vms_set_error (EINVAL, "cannot use %s as the repository: %s; nothing "
                     "was changed", dir, why);
      goto out;
    }
    if ((repo = own_repo = open_repo (dir, rq->host.wait_ms)) == NULL)
      goto out;
  }
  r = calloc (1, sizeof *r);
  if (r == NULL || (r->sets = calloc (nr_sets, sizeof *r->sets)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  r->each = rq->each;
  for (size_t i = 0; i < nr_sets; i++) {
    struct backup_run b = {
      .repo = repo, .set = &r->sets[i], .job = rq->job,
      .cbt_sample = rq->cbt_sample ? rq->cbt_sample : cbt_sample (),
      .progress = { .fn = rq->progress, .opaque = rq->progress_opaque },
    };
    r->nr_sets = i + 1;
    if (rq->each && i >= (size_t) exec_set) {
      /* The VM's own set: its writer, for it alone. */
      const char *vm = names[i - (size_t) exec_set];
      const char *only[] = { vm, NULL };
      vms_coordinator_free (own);
      own = NULL;
      r->sets[i].vm = req_strdup (vm, &b.oom);
      coord = own = req_host (&rq->host, REQ_HOST_VMS, only);
      if (coord == NULL) {
        r->sets[i].state = VMS_SET_FAILED;
        r->sets[i].failure.failed = 1;
        r->sets[i].failure.message = req_strdup (vms_get_error (), &b.oom);
        oom |= b.oom;
        continue;
      }
      vms_debug ("backing up vm \"%s\" as a set of its own (%zu of %zu)", vm,
                i + 1, nr_sets);
    }
    if (rq->host.wait_ms > 0 && wait_jobs (rq, i, exec_set, names) == -1) {
      /* Still busy when the wait ran out: the set fails untouched. */
      r->sets[i].state = VMS_SET_FAILED;
      r->sets[i].failure.failed = 1;
      r->sets[i].failure.message = req_strdup (vms_get_error (), &b.oom);
      oom |= b.oom;
      continue;
    }
    backup_set (&b, coord);
    oom |= b.oom;
  }
  if (oom) {
    vms_set_error (ENOMEM, "out of memory writing the report of backup %s",
                   r->sets[0].backup_id ? r->sets[0].backup_id : "?");
    goto out;
  }
  r->outcome = run_outcome (r);
  r->elapsed_ms = vms_now_ms () - t0;
  free_names (names);
  vms_coordinator_free (own);
  vms_repo_close (own_repo);
  return r;

 out:
  free_names (names);
  vms_backup_report_free (r);
  vms_coordinator_free (own);
  vms_repo_close (own_repo);
  return NULL;
}

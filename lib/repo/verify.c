/* Verify: every manifest, document and index of every backup (or of one)
 * parses, and every chunk they reference is there and sound; deep also
 * reads and re-hashes each chunk. A chunk is checked once however many
 * backups share it, and a bad one is reported at every place that
 * references it, so the report says which backups, files and offsets it
 * damages.
 *
 * Version 2 checks a pack at a time (issue 14: on S3 one GET per chunk
 * was 8,319 requests per GiB verified): the walk of the backups only
 * collects the distinct chunks to check; they are then sorted by pack
 * and offset and each pack is read once, in ranged reads of at most
 * VERIFY_WINDOW bytes (deep; one stat per pack otherwise), its chunks
 * checked from memory; a read that fails sends its chunks to the
 * one-chunk path, which says exactly what is wrong with each. Only when
 * a chunk was bad are the backups walked again, to report it at every
 * place that uses it. Memory: one window, and per distinct chunk its set
 * entry and location.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "cleanup.h"
#include "fs-util.h"
#include "log.h"
#include "crypt.h"
#include "repo-internal.h"
#include "storage.h"
#include "vector.h"
#include "vmshadow/error.h"

/* Deep verify of version 2 reads a pack in windows of at most this many
 * bytes (a default 30 MiB pack in one), joining blobs apart by at most
 * VERIFY_GAP (a sample leaves gaps: reading them costs less than another
 * request). */
#define VERIFY_WINDOW ((size_t) 32 << 20)
#define VERIFY_GAP ((uint64_t) 1 << 20)

struct verify {
  vms_repo *repo;
  int deep;
  int by_pack;                  /* version 2: chunks checked a pack at a time */
  int reporting;                /* the second walk: chunk problems only */
  vms_repo_report_fn report;
  void *opaque;
  int problems;
  /* value: 0 sound, 1 + index in errors when bad; by pack, -len while
   * still to be checked (len: the chunk's length, 1..VMS_CHUNK_SIZE). */
  struct digest_set seen;
  uint64_t sample;              /* of 2^64: chunks checked; UINT64_MAX all */
  uint64_t seed;
  string_vector errors;
  uint64_t bad;                 /* chunks found bad */
  char *placed;                 /* second walk: errors[i] said where used */
  uint8_t *buf;
  struct progress *pg;          /* recorded on the host; NULL: not */
  int unreachable;              /* stopped: the storage out of reach */
};

static int unreachable (int e);
static int stop_unreachable (struct verify *v, int e);

static void __attribute__ ((format (printf, 2, 3)))
problem (struct verify *v, const char *fmt, ...)
{
  char line[4096];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  v->problems++;
  if (v->report)
    v->report (v->opaque, line);
}

/* errno e says the repository's storage is out of reach (an S3
 * endpoint, a RADOS cluster: once the backend's own retries gave up),
 * which says nothing about the data (issue 12). */
static int
unreachable (int e)
{
  switch (e) {
  case ETIMEDOUT: case ECONNREFUSED: case ECONNRESET: case ECONNABORTED:
  case EHOSTUNREACH: case EHOSTDOWN: case ENETUNREACH: case ENETDOWN:
  case ENETRESET: case ENOTCONN: case ESHUTDOWN: case EAGAIN:
    return 1;
  default:
    return 0;
  }
}

/* If the error set (errno e) is the storage out of reach: the verify
 * stops, rather than call what it could not read damaged; its record is
 * kept for a resume. 1 then (the error said again), else 0. */
static int
stop_unreachable (struct verify *v, int e)
{
  if (!unreachable (e))
    return 0;
  CLEANUP_FREE char *why = strdup (vms_get_error () ? vms_get_error () : "");
  v->unreachable = 1;
  vms_set_error (e, "verify stopped: repository %s could not be read (%s); "
                 "nothing was counted damaged for it%s", v->repo->path,
                 why ? why : "out of memory", v->pg ? ", and 'verify "
                 "--resume' with the same options continues where it "
                 "stopped" : "");
  return 1;
}

/* Record the outcome r (0, or -1 with the error set) of checking the
 * chunk of e. -1 on out of memory, or when the repository is out of
 * reach (nothing recorded of the chunk). */
static int
settle (struct verify *v, struct digest_set_entry *e, int r)
{
  if (r == 0) {
    e->value = 0;
    return 0;
  }
  if (stop_unreachable (v, vms_get_errno ()))
    return -1;
  e->value = 0;
  char *msg = strdup (vms_get_error ());
  if (msg == NULL || string_vector_append (&v->errors, msg) == -1) {
    free (msg);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  e->value = (int) v->errors.len;
  v->bad++;
  return 0;
}

/* Check the chunk of e (len bytes) by itself. */
static int
check_alone (struct verify *v, struct digest_set_entry *e, size_t len)
{
  int r = v->deep ? chunk_store_read (v->repo, &e->d, v->buf, len,
                                      CHUNK_REDERIVE)
    : chunk_store_check (v->repo, &e->d, len);
  return settle (v, e, r);
}

/* The check result of chunk d: NULL if sound (or not checked yet), else
 * the reason. -1 on an internal error (out of memory). */
static int
check_chunk (struct verify *v, const struct vms_digest *d, size_t len,
             const char **why)
{
  int added;
  struct digest_set_entry *e = digest_set_add (&v->seen, d, &added);

  *why = NULL;
  if (e == NULL)
    return -1;
  if (v->reporting)
    added = 0;                  /* (new since the first walk: unchecked) */
  if (added && v->sample != UINT64_MAX) {
    /* In the sample? A keyed mix of the id (SHA-256 output is uniform,
     * the key makes each run's sample another). */
    uint64_t x;
    memcpy (&x, d->b + 8, sizeof x);
    x ^= v->seed;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    if (x > v->sample)
      added = 0;                /* not checked: counts as sound here */
  }
  if (added && v->by_pack && len > 0 && len <= VMS_CHUNK_SIZE)
    e->value = -(int) len;      /* checked later, with its pack */
  else if (added && check_alone (v, e, len) == -1)
    return -1;
  if (e->value > 0) {
    *why = v->errors.ptr[e->value - 1];
    if (v->placed)
      v->placed[e->value - 1] = 1;
  }
  return 0;
}

/* After the second walk: a bad chunk that no backup it could read names
 * any more (pruned meanwhile, its index unreadable now) is still damage,
 * said by its id: a verify never ends "no problems" having found some. */
static void
report_unplaced (struct verify *v)
{
  for (size_t i = 0; i < v->seen.cap; i++) {
    const struct digest_set_entry *e = &v->seen.e[i];
    char hex[65];
    if (!e->used || e->value <= 0 || v->placed[e->value - 1])
      continue;
    vms_digest_hex (&e->d, hex);
    problem (v, "chunk %s: %s (no backup verify could read again names it)",
             hex, v->errors.ptr[e->value - 1]);
  }
}

/* One backup: its manifest, documents and indexes (said on the first
 * walk only) and the chunks they name. */
static int
verify_backup (struct verify *v, const char *id)
{
  CLEANUP (vms_manifest_free) vms_manifest *m = vms_manifest_open (v->repo, id);

  if (m == NULL) {
    if (stop_unreachable (v, vms_get_errno ()))
      return -1;
    if (!v->reporting)
      problem (v, "%s", vms_get_error ());
    return 0;
  }
  /* What show and restore read besides the manifest: the backup
   * components document (issue 9, item 5). */
  const vms_document *bcd = vms_manifest_components (m);
  if (bcd == NULL && !v->reporting)
    problem (v, "backup %s has no backup components document: show cannot "
             "say what its files belong to and restore cannot use it (R5)", id);
  for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
    const struct manifest_file *f = manifest_file_at (m, i);
    CLEANUP (vms_index_free) vms_index *idx =
      vms_manifest_load_index (v->repo, m, i);
    if (idx == NULL) {
      if (stop_unreachable (v, vms_get_errno ()))
        return -1;
      if (!v->reporting)
        problem (v, "%s", vms_get_error ());
      continue;
    }
    for (uint64_t c = 0; c < vms_index_chunk_count (idx); c++) {
      const struct vms_digest *d = vms_index_get (idx, c);
      const char *why;
      if (vms_digest_is_zero (d))
        continue;
      if (check_chunk (v, d, vms_index_chunk_len (idx, c), &why) == -1)
        return -1;
      /* By pack, bad chunks are said on the second walk, all of them. */
      if (why && (!v->by_pack || v->reporting))
        problem (v, "backup %s, component %s, file %s, offset %" PRIu64 ": %s",
                 id, f->component, f->path, c * (uint64_t) VMS_CHUNK_SIZE, why);
    }
  }
  return 0;
}

/* ---- version 2: a pack at a time ---- */

struct pending {
  struct pack_loc loc;
  struct digest_set_entry *e;
};
DEFINE_VECTOR_TYPE (pending_vector, struct pending);

static int
pending_cmp (const void *a, const void *b)
{
  const struct pending *x = a, *y = b;
  int c = memcmp (x->loc.pack_id, y->loc.pack_id, 16);
  if (c)
    return c;
  return x->loc.offset < y->loc.offset ? -1 : x->loc.offset > y->loc.offset;
}

static size_t
pending_len (const struct pending *p)
{
  return (size_t) -p->e->value;
}

/* A read of pack name failed (errno): when for the storage out of reach,
 * stop at once (not again chunk by chunk, each with the backend's
 * retries). */
static int
pack_unreachable (struct verify *v, const char *name)
{
  int e = errno;
  if (!unreachable (e))
    return 0;
  vms_set_error (e, "pack %s cannot be read: %s", name, repo_errstr (e));
  return stop_unreachable (v, vms_get_errno ());
}

/* The pending chunks p[0..n) of one pack, deep: read in windows, each
 * chunk checked from its window. */
static int
verify_pack_deep (struct verify *v, const char *name, struct pending *p,
                  size_t n, uint8_t **win)
{
  size_t ov = v->repo->blob_overhead;

  for (size_t i = 0, j; i < n; i = j) {
    uint64_t start = p[i].loc.offset;
    uint64_t end = start + p[i].loc.slen + ov;
    for (j = i + 1; j < n; j++) {
      uint64_t e2 = (uint64_t) p[j].loc.offset + p[j].loc.slen + ov;
      if (p[j].loc.offset > end + VERIFY_GAP ||
          (e2 > end ? e2 : end) - start > VERIFY_WINDOW)
        break;
      if (e2 > end)
        end = e2;
    }
    if (*win == NULL && (*win = malloc (VERIFY_WINDOW)) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    /* A window is never more than VERIFY_WINDOW: a blob is at most a
     * chunk and its header, far below it. */
    assert (end - start <= VERIFY_WINDOW);
    int ok = storage_get (v->repo->store, name, start, (size_t) (end - start),
                          *win) == 0;
    if (!ok && pack_unreachable (v, name))
      return -1;
    for (size_t k = i; k < j; k++) {
      int r = ok ? settle (v, p[k].e, chunk_store_check_at
                           (v->repo, &p[k].e->d, pending_len (&p[k]),
                            &p[k].loc, UINT64_MAX,
                            *win + (p[k].loc.offset - start), v->buf))
        : check_alone (v, p[k].e, pending_len (&p[k]));
      if (r == -1)
        return -1;
    }
  }
  return 0;
}

/* The same without --deep: the pack's size, once. */
static int
verify_pack_size (struct verify *v, const char *name, struct pending *p,
                  size_t n)
{
  struct storage_stat st;
  int ok = storage_stat (v->repo->store, name, &st) == 0;

  if (!ok && pack_unreachable (v, name))
    return -1;
  for (size_t k = 0; k < n; k++) {
    int r = ok ? settle (v, p[k].e, chunk_store_check_at
                         (v->repo, &p[k].e->d, pending_len (&p[k]),
                          &p[k].loc, st.size, NULL, NULL))
      : check_alone (v, p[k].e, pending_len (&p[k]));
    if (r == -1)
      return -1;
  }
  return 0;
}

/* ---- progress recorded on the host (issue 12: resume) ----
 *
 * Packs are checked in pack id order, so one id says how far a verify
 * got: every pack up to it is done. The record also keeps what must be
 * the same for a resume to skip them (the selection, the sample's key, a
 * hash of every chunk to check with its place) and the bad chunks found,
 * to be reported again. It lives on the host, never in the repository. */

#define PROGRESS_FORMAT "vmshadow-verify-progress"
#define PROGRESS_MAX ((off_t) 64 << 20)         /* bytes a record may have */
#define PROGRESS_WHY_MAX 4096

struct progress {
  struct vms_verify_run *run;
  vms_repo *repo;
  int dirfd;                    /* <state>/verify; -1: no longer recorded */
  int lock_fd;
  char name[80];                /* <repository id>.json */
  const char *backup_id;
  int deep;
  unsigned percent;
  uint64_t seed;
  int loaded;                   /* a record was read back (resume) */
  uint8_t fp[32];               /* the record's chunk hash, then this run's */
  int have_through;
  uint8_t through[16];          /* the last pack done */
  uint64_t packs, packs_done;
  json_object *bad;             /* [{"chunk", "why"}] up to through */
  struct timespec last;
  int warned;
};

static const char *
state_name (const struct progress *pg)
{
  return pg->run->state_dir ? pg->run->state_dir : "the state directory";
}

static void
progress_free (struct progress *pg)
{
  if (pg == NULL)
    return;
  if (pg->dirfd >= 0)
    close (pg->dirfd);
  if (pg->lock_fd >= 0)
    close (pg->lock_fd);            /* releases the lock */
  json_object_put (pg->bad);
  free (pg);
}

/* The repository id names the record: only one that is a plain name. */
static int
id_is_name (const char *id)
{
  size_t n = strlen (id);
  if (n < 8 || n > 64)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return 0;
  return 1;
}

/* Open <state>/verify (made 0700) and take the repository's lock there.
 * 0, or -1 with the error set. */
static int
progress_lock (struct progress *pg)
{
  char lock[80];

  if (!id_is_name (pg->repo->id)) {
    vms_set_error (EINVAL, "repository %s has no usable id (\"%s\") to name "
                   "its verify progress record", pg->repo->path, pg->repo->id);
    return -1;
  }
  snprintf (pg->name, sizeof pg->name, "%s.json", pg->repo->id);
  snprintf (lock, sizeof lock, "%s.lock", pg->repo->id);
  pg->dirfd = vms_mkdir_private_at (pg->run->state_dirfd, "verify");
  if (pg->dirfd == -1) {
    vms_set_error (errno, "cannot open %s/verify: %s", state_name (pg),
                   vms_fs_errstr (errno));
    return -1;
  }
  pg->lock_fd = vms_open_beneath (pg->dirfd, lock, O_RDWR | O_CREAT, 0600);
  if (pg->lock_fd == -1) {
    vms_set_error (errno, "cannot open %s/verify/%s: %s", state_name (pg),
                   lock, vms_fs_errstr (errno));
    return -1;
  }
  /* The lock file goes when the verify ends: one taken on a file
   * removed meanwhile is no lock (that verify ended). */
  struct stat a, b;
  int r = flock (pg->lock_fd, LOCK_EX | LOCK_NB);
  if (r == 0 && (fstat (pg->lock_fd, &a) == -1 ||
                 fstatat (pg->dirfd, lock, &b, AT_SYMLINK_NOFOLLOW) == -1 ||
                 a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
    close (pg->lock_fd);
    pg->lock_fd = -1;
    vms_set_error (EWOULDBLOCK, "another verify of repository %s started "
                   "or ended meanwhile on this host (%s/verify/%s)",
                   pg->repo->path, state_name (pg), lock);
    return -1;
  }
  if (r == -1) {
    int e = errno;
    if (e == EWOULDBLOCK)
      vms_set_error (e, "another verify of repository %s runs on this host "
                     "(it holds %s/verify/%s)", pg->repo->path,
                     state_name (pg), lock);
    else
      vms_set_error (e, "cannot lock %s/verify/%s: %s", state_name (pg), lock,
                     strerror (e));
    return -1;
  }
  return 0;
}

static int
int_field (json_object *o, const char *key, int64_t lo, int64_t hi,
           int64_t *out)
{
  json_object *v;
  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_int))
    return -1;
  errno = 0;
  *out = json_object_get_int64 (v);
  return errno == 0 && *out >= lo && *out <= hi ? 0 : -1;
}

/* Read the record back. 0 loaded, 1 none, -1 with the error set
 * (unreadable, malformed, another repository or selection). */
static int
progress_load (struct progress *pg)
{
  const char *bad = NULL;
  CLEANUP_FREE char *text = NULL;
  json_object *root = NULL, *v;
  struct stat st;
  int64_t n;
  uint8_t seed[8];
  int fd = vms_open_beneath (pg->dirfd, pg->name, O_RDONLY, 0);

  if (fd == -1 && errno == ENOENT)
    return 1;
  if (fd == -1) {
    vms_set_error (errno, "cannot open the verify progress record %s/verify/%s: "
                   "%s", state_name (pg), pg->name, vms_fs_errstr (errno));
    return -1;
  }
  if (fstat (fd, &st) == -1 || st.st_size > PROGRESS_MAX ||
      (text = malloc ((size_t) st.st_size + 1)) == NULL ||
      read (fd, text, (size_t) st.st_size) != st.st_size) {
    close (fd);
    vms_set_error (EIO, "cannot read the verify progress record %s/verify/%s "
                   "(at most %lld bytes)", state_name (pg), pg->name,
                   (long long) PROGRESS_MAX);
    return -1;
  }
  close (fd);
  text[st.st_size] = '\0';
  if (strlen (text) != (size_t) st.st_size)
    bad = "binary";
  else if ((root = json_tokener_parse (text)) == NULL ||
           !json_object_is_type (root, json_type_object))
    bad = "not a JSON object";
  else if (!json_object_object_get_ex (root, "format", &v) ||
           !json_object_is_type (v, json_type_string) ||
           strcmp (json_object_get_string (v), PROGRESS_FORMAT) != 0 ||
           int_field (root, "version", 1, 1, &n) == -1)
    bad = "not a " PROGRESS_FORMAT " of version 1";
  else if (!json_object_object_get_ex (root, "repository", &v) ||
           !json_object_is_type (v, json_type_string))
    bad = "no repository";
  else if (strcmp (json_object_get_string (v), pg->repo->id) != 0)
    bad = "another repository's";
  if (bad)
    goto malformed;

  /* The selection: the same, or refused (never another's skipped). */
  json_object *b = NULL, *d = NULL;
  int64_t pct = 0;
  if (!json_object_object_get_ex (root, "backup", &b) ||
      !(b == NULL || json_object_is_type (b, json_type_string)) ||
      !json_object_object_get_ex (root, "deep", &d) ||
      !json_object_is_type (d, json_type_boolean) ||
      int_field (root, "sample_percent", 1, 100, &pct) == -1) {
    bad = "no selection (backup, deep, sample_percent)";
    goto malformed;
  }
  const char *rb = b ? json_object_get_string (b) : NULL;
  int rdeep = json_object_get_boolean (d);
  if ((rb == NULL) != (pg->backup_id == NULL) ||
      (rb && strcmp (rb, pg->backup_id) != 0) || rdeep != pg->deep ||
      (unsigned) pct != pg->percent) {
    char was[512];
    snprintf (was, sizeof was, "verify%s%s%s%s", rb ? " " : "", rb ? rb : "",
              rdeep ? " --deep" : "", "");
    if (pct < 100)
      snprintf (was + strlen (was), sizeof was - strlen (was),
                " --sample %d", (int) pct);
    vms_set_error (EINVAL, "the interrupted verify of repository %s was "
                   "'%s' (recorded in %s/verify/%s): resume it with those "
                   "options and --resume, or run verify without --resume to "
                   "start again", pg->repo->path, was, state_name (pg),
                   pg->name);
    json_object_put (root);
    return -1;
  }

  int64_t packs, done;
  if (crypt_unhex_member (root, "sample_key", seed, sizeof seed) == -1 ||
      crypt_unhex_member (root, "chunks", pg->fp, sizeof pg->fp) == -1 ||
      int_field (root, "packs", 0, INT64_MAX, &packs) == -1 ||
      int_field (root, "packs_done", 0, packs, &done) == -1 ||
      !json_object_object_get_ex (root, "done_through", &v) ||
      (done > 0) != (v != NULL) ||
      (v && crypt_unhex_member (root, "done_through", pg->through, 16) == -1)) {
    bad = "no sample_key, chunks, packs, packs_done or done_through";
    goto malformed;
  }
  memcpy (&pg->seed, seed, sizeof pg->seed);
  pg->packs = (uint64_t) packs;
  pg->packs_done = (uint64_t) done;
  pg->have_through = v != NULL;
  if (!json_object_object_get_ex (root, "bad", &v) ||
      !json_object_is_type (v, json_type_array)) {
    bad = "no list of bad chunks";
    goto malformed;
  }
  for (size_t i = 0; i < json_object_array_length (v); i++) {
    json_object *e = json_object_array_get_idx (v, i), *w;
    uint8_t dg[VMS_DIGEST_LEN];
    if (!json_object_is_type (e, json_type_object) ||
        crypt_unhex_member (e, "chunk", dg, sizeof dg) == -1 ||
        !json_object_object_get_ex (e, "why", &w) ||
        !json_object_is_type (w, json_type_string) ||
        json_object_get_string_len (w) == 0 ||
        json_object_get_string_len (w) > PROGRESS_WHY_MAX) {
      bad = "a bad chunk without its id (64 hex digits) or reason";
      goto malformed;
    }
  }
  pg->bad = json_object_get (v);
  pg->loaded = 1;
  json_object_put (root);
  return 0;

 malformed:
  json_object_put (root);
  vms_set_error (EBADMSG, "the verify progress record %s/verify/%s is "
                 "malformed (%s): remove it, or run verify without --resume "
                 "to start again", state_name (pg), pg->name, bad);
  return -1;
}

/* Write the record (aside, then renamed). A failure is said once and the
 * verify goes on: the last record written still holds (it only says less
 * is done). */
static void
progress_save (struct progress *pg)
{
  char fp[65], seed[17], through[33];
  uint8_t sb[8];

  if (pg->dirfd == -1)
    return;
  memcpy (sb, &pg->seed, sizeof sb);
  crypt_hex (sb, sizeof sb, seed);
  crypt_hex (pg->fp, sizeof pg->fp, fp);
  crypt_hex (pg->through, sizeof pg->through, through);
  json_object *o = json_object_new_object ();
  json_object_object_add (o, "format", json_object_new_string (PROGRESS_FORMAT));
  json_object_object_add (o, "version", json_object_new_int (1));
  json_object_object_add (o, "repository", json_object_new_string (pg->repo->id));
  json_object_object_add (o, "backup", pg->backup_id ?
                          json_object_new_string (pg->backup_id) : NULL);
  json_object_object_add (o, "deep", json_object_new_boolean (pg->deep));
  json_object_object_add (o, "sample_percent", json_object_new_int ((int) pg->percent));
  json_object_object_add (o, "sample_key", json_object_new_string (seed));
  json_object_object_add (o, "chunks", json_object_new_string (fp));
  json_object_object_add (o, "packs", json_object_new_int64 ((int64_t) pg->packs));
  json_object_object_add (o, "packs_done", json_object_new_int64 ((int64_t) pg->packs_done));
  json_object_object_add (o, "done_through", pg->have_through ?
                          json_object_new_string (through) : NULL);
  json_object_object_add (o, "bad", json_object_get (pg->bad));
  const char *text = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN);
  int r = text ? vms_write_file_atomic (pg->dirfd, pg->name, text,
                                        strlen (text), 0600) : -1;
  json_object_put (o);
  clock_gettime (CLOCK_MONOTONIC, &pg->last);
  if (r == -1 && !pg->warned) {
    pg->warned = 1;
    vms_warn ("verify: its progress could not be recorded in %s/verify "
              "(an interruption resumes from the last record): %s",
              state_name (pg), text ? vms_get_error () : "out of memory");
  }
  if (r == 0 && pg->run->saved)
    pg->run->saved (pg->run->opaque, pg->packs_done);
}

static int
progress_due (const struct progress *pg)
{
  struct timespec now;
  clock_gettime (CLOCK_MONOTONIC, &now);
  int64_t ms = (int64_t) (now.tv_sec - pg->last.tv_sec) * 1000 +
    (now.tv_nsec - pg->last.tv_nsec) / 1000000;
  return ms >= (int64_t) pg->run->save_ms;
}

/* The hash of what a verify checks: every pending chunk with its place
 * (sorted). Another after a backup was committed or pruned, or gc moved
 * or dropped a chunk. */
static int
progress_hash (const struct pending *p, size_t n, uint8_t out[32])
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned len = 0;
  int ok = ctx && EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL);

  for (size_t i = 0; ok && i < n; i++) {
    uint8_t b[VMS_DIGEST_LEN + 16 + 12];
    memcpy (b, p[i].e->d.b, VMS_DIGEST_LEN);
    memcpy (b + VMS_DIGEST_LEN, p[i].loc.pack_id, 16);
    repo_put_le32 (b + VMS_DIGEST_LEN + 16, p[i].loc.offset);
    repo_put_le32 (b + VMS_DIGEST_LEN + 20, p[i].loc.slen);
    repo_put_le32 (b + VMS_DIGEST_LEN + 24, p[i].loc.plen);
    ok = EVP_DigestUpdate (ctx, b, sizeof b);
  }
  ok = ok && EVP_DigestFinal_ex (ctx, out, &len) && len == 32;
  EVP_MD_CTX_free (ctx);
  if (!ok)
    vms_set_error (EIO, "SHA-256 failed (OpenSSL)");
  return ok ? 0 : -1;
}

/* After the walk, the pending chunks p[0..n) sorted into packs: this
 * run's hash. A record read back of the same chunks settles those of its
 * packs done as it found them (*skip: how many entries); one of other
 * chunks is dropped. Then the first record is written. */
static int
progress_begin (struct verify *v, struct pending *p, size_t n, size_t packs,
                size_t *skip)
{
  struct progress *pg = v->pg;
  struct vms_verify_run *run = pg->run;
  uint8_t fp[32];

  *skip = 0;
  if (progress_hash (p, n, fp) == -1)
    return -1;
  if (pg->loaded && (memcmp (fp, pg->fp, sizeof fp) != 0 ||
                     pg->packs != packs)) {
    snprintf (run->note, sizeof run->note, "repository %s changed since the "
              "interrupted verify (a backup committed or pruned, or gc ran): "
              "checking from the beginning", v->repo->path);
    pg->loaded = pg->have_through = 0;
    pg->packs_done = 0;
    json_object_put (pg->bad);
    pg->bad = NULL;
  }
  memcpy (pg->fp, fp, sizeof fp);
  pg->packs = packs;
  if (pg->bad == NULL && (pg->bad = json_object_new_array ()) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (pg->loaded) {
    run->resumed = 1;
    run->packs_before = pg->packs_done;
    while (pg->have_through && *skip < n &&
           memcmp (p[*skip].loc.pack_id, pg->through, 16) <= 0)
      p[(*skip)++].e->value = 0;
    for (size_t i = 0; i < json_object_array_length (pg->bad); i++) {
      json_object *b = json_object_array_get_idx (pg->bad, i), *w;
      struct vms_digest d;
      int added;
      crypt_unhex_member (b, "chunk", d.b, sizeof d.b);   /* checked when read */
      json_object_object_get_ex (b, "why", &w);
      struct digest_set_entry *e = digest_set_add (&v->seen, &d, &added);
      char *msg;
      if (e == NULL) {
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
      if (added || e->value != 0) {
        vms_set_error (EBADMSG, "the verify progress record %s/verify/%s "
                       "names a bad chunk it had not checked (or twice): "
                       "remove it, or run verify without --resume to start "
                       "again", state_name (pg), pg->name);
        return -1;
      }
      if (asprintf (&msg, "%s (found before the interruption)",
                    json_object_get_string (w)) == -1) {
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
      if (string_vector_append (&v->errors, msg) == -1) {
        free (msg);
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
      e->value = (int) v->errors.len;
      v->bad++;
      run->bad_before++;
    }
  }
  progress_save (pg);
  return 0;
}

/* One pack done (its chunks p[0..n) settled): its bad chunks kept, the
 * record written when due. */
static int
progress_pack_done (struct verify *v, const struct pending *p, size_t n)
{
  struct progress *pg = v->pg;

  for (size_t k = 0; k < n; k++) {
    if (p[k].e->value <= 0)
      continue;
    char hex[65];
    json_object *b = json_object_new_object ();
    vms_digest_hex (&p[k].e->d, hex);
    if (b == NULL ||
        json_object_object_add (b, "chunk", json_object_new_string (hex)) ||
        json_object_object_add (b, "why", json_object_new_string_len
                                (v->errors.ptr[p[k].e->value - 1],
                                 (int) strnlen (v->errors.ptr[p[k].e->value - 1],
                                                PROGRESS_WHY_MAX))) ||
        json_object_array_add (pg->bad, b)) {
      json_object_put (b);
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  }
  memcpy (pg->through, p[0].loc.pack_id, 16);
  pg->have_through = 1;
  pg->packs_done++;
  if (pg->packs_done == pg->packs || progress_due (pg))
    progress_save (pg);
  return 0;
}

/* The verify ended: done (r 0), the record goes; failed, it is kept (as
 * far as it got) for a resume. */
static void
progress_end (struct progress *pg, int r)
{
  if (pg == NULL)
    return;
  if (r == 0 && pg->dirfd >= 0 && unlinkat (pg->dirfd, pg->name, 0) == -1 &&
      errno != ENOENT)
    vms_warn ("verify: cannot remove its progress record %s/verify/%s: %s",
              state_name (pg), pg->name, strerror (errno));
  else if (r != 0 && pg->bad)
    progress_save (pg);
  if (pg->lock_fd >= 0) {
    char lock[80];
    snprintf (lock, sizeof lock, "%s.lock", pg->repo->id);
    unlinkat (pg->dirfd, lock, 0);      /* while held: nothing left behind */
  }
  progress_free (pg);
}

/* Check every chunk the walk left to check, a pack at a time. */
static int
verify_packs (struct verify *v)
{
  pending_vector pv = empty_vector;
  uint8_t *win = NULL;
  int r = 0;

  for (size_t i = 0; r == 0 && i < v->seen.cap; i++) {
    struct digest_set_entry *e = &v->seen.e[i];
    struct pending p = { .e = e };
    if (!e->used || e->value >= 0)
      continue;
    int found = pack_lookup (v->repo, &e->d, &p.loc);
    if (found == -1)
      r = -1;
    else if (found == 0)
      r = check_alone (v, e, (size_t) -e->value);   /* says "missing" */
    else
      r = pending_vector_append (&pv, p);
  }
  size_t packs = 0, skip = 0;
  if (r == 0)
    qsort (pv.ptr, pv.len, sizeof *pv.ptr, pending_cmp);
  for (size_t i = 0; r == 0 && i < pv.len; i++)
    packs += i == 0 || memcmp (pv.ptr[i].loc.pack_id,
                               pv.ptr[i - 1].loc.pack_id, 16) != 0;
  if (r == 0 && v->pg)
    r = progress_begin (v, pv.ptr, pv.len, packs, &skip);
  if (r == 0 && v->pg)
    v->pg->run->packs = packs;
  /* (the first skip entries: packs done before an interruption) */
  for (size_t i = skip, j; r == 0 && i < pv.len; i = j) {
    char name[64];
    for (j = i + 1; j < pv.len && memcmp (pv.ptr[j].loc.pack_id,
                                          pv.ptr[i].loc.pack_id, 16) == 0; j++)
      ;
    pack_object_name (pv.ptr[i].loc.pack_id, name);
    r = v->deep ? verify_pack_deep (v, name, pv.ptr + i, j - i, &win)
      : verify_pack_size (v, name, pv.ptr + i, j - i);
    if (r == 0 && v->pg) {
      v->pg->run->packs_checked++;
      r = progress_pack_done (v, pv.ptr + i, j - i);
    }
  }
  free (win);
  pending_vector_reset (&pv);
  return r;
}

/* ---- an encrypted repository without its key (R28) ----
 *
 * What can be checked without the key: every pack's header, tail and the
 * checksum over it (SHA-256 or XXH3-128 by pack format version: bit rot, a
 * cut or a lost write, not an attacker, who can recompute it), the
 * framing of its sealed trailer; the framing and
 * length of every other sealed object. Contents are not authenticated:
 * the report's last line says so. */

static void
check_pack (struct verify *v, const char *name, const uint8_t *b, size_t len)
{
  char bad[160];

  /* Either pack format version (SHA-256 or XXH3-128 in its tail). */
  if (pack_check_whole (b, len, bad, sizeof bad) == -1) {
    problem (v, "pack %s %s", name, bad);
    return;
  }
  if (!(repo_get_le32 (b + 12) & PACK_FLAG_ENCRYPTED))
    problem (v, "pack %s is not marked encrypted in an encrypted "
             "repository", name);
  const uint8_t *tail = b + len - PACK_TAIL_SIZE;
  uint64_t toff = repo_get_le64 (tail), tlen = repo_get_le64 (tail + 8);
  if (toff < PACK_HEADER_SIZE || toff > len - PACK_TAIL_SIZE ||
      tlen != len - PACK_TAIL_SIZE - toff) {
    problem (v, "pack %s is corrupt (its trailer is out of place)", name);
    return;
  }
  const char *why = crypt_envelope_problem (b + toff, (size_t) tlen);
  if (why == NULL && (tlen - ENVELOPE_OVERHEAD) % SEGMENT_ENTRY_SIZE != 0)
    why = "a length no trailer has";
  if (why)
    problem (v, "pack %s: its sealed trailer is %s", name, why);
}

static int
verify_structure (struct verify *v)
{
  vms_repo *repo = v->repo;
  string_vector l = empty_vector;
  uint64_t objects = 0, packs = 0;
  int r = 0;

  if (storage_list (repo->store, "", storage_collect_names, &l) != 0) {
    vms_set_error (errno, "repository %s: cannot list its objects: %s",
                   repo->path, repo_errstr (errno));
    stop_unreachable (v, vms_get_errno ());
    r = -1;
  }
  for (size_t i = 0; r == 0 && i < l.len; i++) {
    const char *name = l.ptr[i];
    int pack = strncmp (name, "packs/", 6) == 0;
    if (!pack && !storage_crypt_sealed_name (name))
      continue;
    struct storage *raw = storage_crypt_inner (repo->store);
    CLEANUP_FREE void *buf = NULL;
    size_t len;
    if (storage_get_all (raw, name, (size_t) 1 << 31, &buf, &len) == -1) {
      int e = errno;
      vms_set_error (e, "object %s cannot be read: %s", name, repo_errstr (e));
      if (stop_unreachable (v, vms_get_errno ())) {
        r = -1;
        break;
      }
      if (e != ENOENT)          /* gone meanwhile (gc): nothing to check */
        problem (v, "%s", vms_get_error ());
      continue;
    }
    if (pack) {
      packs++;
      check_pack (v, name, buf, len);
      continue;
    }
    objects++;
    const char *why = crypt_envelope_problem (buf, len);
    if (why)
      problem (v, "object %s is %s", name, why);
  }
  string_vector_free_all (&l);
  if (r == 0 && v->report) {
    char line[512];
    snprintf (line, sizeof line, "checked without the key: %" PRIu64
              " packs (checksums, framing) and %" PRIu64 " sealed objects "
              "(framing); contents were not authenticated (verify --deep "
              "with key %s does)", packs, objects, repo->key_fp);
    v->report (v->opaque, line);
  }
  return r;
}

/* With the key, deep: every pack's sealed trailer opens for its pack
 * (the blobs are authenticated as the backups' chunks are read). */
static int
verify_trailers (struct verify *v)
{
  vms_repo *repo = v->repo;
  string_vector l = empty_vector;
  int r = 0;

  if (storage_list (repo->store, "packs/", storage_collect_names, &l) != 0) {
    vms_set_error (errno, "repository %s: cannot list packs/: %s",
                   repo->path, repo_errstr (errno));
    stop_unreachable (v, vms_get_errno ());
    r = -1;
  }
  for (size_t i = 0; r == 0 && i < l.len; i++) {
    const char *name = l.ptr[i];
    struct storage_stat st;
    uint8_t head[PACK_HEADER_SIZE], tail[PACK_TAIL_SIZE];
    char aad[256], why[160];
    int gone = storage_stat (repo->store, name, &st) == -1;
    int bad = !gone &&
      (st.size < PACK_HEADER_SIZE + PACK_TAIL_SIZE + ENVELOPE_OVERHEAD ||
       storage_get (repo->store, name, 0, PACK_HEADER_SIZE, head) == -1 ||
       storage_get (repo->store, name, st.size - PACK_TAIL_SIZE,
                    PACK_TAIL_SIZE, tail) == -1);
    if ((gone || bad) && pack_unreachable (v, name)) {
      r = -1;
      break;
    }
    if (gone)
      continue;                 /* gone meanwhile (gc) */
    if (bad) {
      problem (v, "pack %s is corrupt (too short for a pack)", name);
      continue;
    }
    /* Both pack format versions place the trailer alike; a later one
     * might not. */
    if (pack_check_version (repo_get_le32 (head + 8), why, sizeof why) == -1) {
      problem (v, "pack %s %s", name, why);
      continue;
    }
    uint64_t toff = repo_get_le64 (tail), tlen = repo_get_le64 (tail + 8);
    if (toff < PACK_HEADER_SIZE || tlen < ENVELOPE_OVERHEAD ||
        tlen > (uint64_t) 1 << 30 ||
        toff + tlen != st.size - PACK_TAIL_SIZE) {
      problem (v, "pack %s is corrupt (its trailer is out of place)", name);
      continue;
    }
    uint8_t *t = malloc ((size_t) tlen), *out = malloc ((size_t) tlen);
    if (t == NULL || out == NULL) {
      free (t);
      free (out);
      vms_set_error (ENOMEM, "out of memory");
      r = -1;
      break;
    }
    int got = storage_get (repo->store, name, toff, (size_t) tlen, t) == 0;
    if (!got && pack_unreachable (v, name))
      r = -1;
    else if (!got ||
             crypt_open (repo->key->k_enc, aad,
                         crypt_aad (aad, sizeof aad, repo->id, "trailer", name),
                         t, (size_t) tlen, out) == -1)
      problem (v, "pack %s: its trailer %s", name, errno == EKEYREJECTED
               ? "failed authentication (altered, or another pack's)"
               : repo_errstr (errno));
    free (t);
    free (out);
  }
  string_vector_free_all (&l);
  return r;
}

int
vms_repo_verify (vms_repo *repo, const char *backup_id, int deep,
                 vms_repo_report_fn report, void *opaque)
{
  return vms_repo_verify_sample (repo, backup_id, deep, 100, report, opaque);
}

int
vms_repo_verify_sample (vms_repo *repo, const char *backup_id, int deep,
                        unsigned percent, vms_repo_report_fn report,
                        void *opaque)
{
  return vms_repo_verify_run (repo, backup_id, deep, percent, NULL, report,
                              opaque);
}

/* The record of run, when there is one (v->pg), opened, locked and (to
 * resume) read back; v->seed is its sample's key. 0 or -1. */
static int
progress_open (struct verify *v, const char *backup_id, unsigned percent,
               struct vms_verify_run *run)
{
  vms_repo *repo = v->repo;
  int keyless = repo->encrypted && repo->key == NULL;

  int hard = run->resume == 1;       /* 2: only if there is one to resume */
  if (hard && (keyless || !v->by_pack || run->state_dirfd < 0)) {
    vms_set_error (EINVAL, "repository %s: %s", repo->path, keyless ?
                   "the structure check without the key is not resumed "
                   "(run it again)" : !v->by_pack ? "a verify of a version 1 "
                   "repository checks chunk by chunk and is not resumed "
                   "('vmshadow repo upgrade' moves it to version 2)"
                   : "no state directory to resume a verify from");
    return -1;
  }
  if (keyless || !v->by_pack || run->state_dirfd < 0)
    return 0;
  struct progress *pg = calloc (1, sizeof *pg);
  if (pg == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  *pg = (struct progress) { .run = run, .repo = repo, .dirfd = -1,
                            .lock_fd = -1, .backup_id = backup_id,
                            .deep = v->deep, .percent = percent,
                            .seed = v->seed };
  if (progress_lock (pg) == -1) {
    progress_free (pg);
    if (hard)
      return -1;
    snprintf (run->note, sizeof run->note, "its progress is not recorded "
              "(an interruption cannot be resumed): %s", vms_get_error ());
    return 0;
  }
  if (run->resume) {
    int l = progress_load (pg);
    /* Resume if same: a record of another selection (the job's options
     * changed) or a malformed one is dropped, not a failure every night. */
    if (l == -1 && !hard && (vms_get_errno () == EINVAL ||
                             vms_get_errno () == EBADMSG)) {
      snprintf (run->note, sizeof run->note, "%s: checking from the "
                "beginning", vms_get_error ());
      /* (what a malformed record left half read, forgotten) */
      pg->seed = v->seed;
      pg->packs = pg->packs_done = 0;
      pg->have_through = 0;
      l = 2;
      if (unlinkat (pg->dirfd, pg->name, 0) == -1 && errno != ENOENT) {
        vms_set_error (errno, "cannot remove the verify progress record "
                       "%s/verify/%s: %s", state_name (pg), pg->name,
                       strerror (errno));
        l = -1;
      }
    }
    if (l == -1) {
      progress_free (pg);
      return -1;
    }
    if (l == 1 && hard)
      snprintf (run->note, sizeof run->note, "no interrupted verify of "
                "repository %s is recorded on this host: checking from the "
                "beginning", repo->path);
    else if (l == 0)
      v->seed = pg->seed;       /* the same sample */
  }
  else if (unlinkat (pg->dirfd, pg->name, 0) == -1 && errno != ENOENT) {
    vms_set_error (errno, "cannot remove the verify progress record "
                   "%s/verify/%s: %s", state_name (pg), pg->name,
                   strerror (errno));
    progress_free (pg);
    return -1;
  }
  v->pg = pg;
  return 0;
}

int
vms_repo_verify_run (vms_repo *repo, const char *backup_id, int deep,
                     unsigned percent, struct vms_verify_run *run,
                     vms_repo_report_fn report, void *opaque)
{
  struct verify v = { .repo = repo, .deep = deep, .report = report,
                      .opaque = opaque, .errors = empty_vector,
                      .sample = UINT64_MAX, .by_pack = repo->version >= 2 };

  if (run) {
    run->resumed = 0;
    run->packs = run->packs_before = run->packs_checked = run->bad_before = 0;
    run->note[0] = '\0';
    run->unreachable = 0;
  }
  if (percent == 0 || percent > 100) {
    vms_set_error (EINVAL, "a verify sample is 1 to 100 percent, not %u",
                   percent);
    return -1;
  }
  if (percent < 100) {
    v.sample = UINT64_MAX / 100 * percent;
    if (getrandom (&v.seed, sizeof v.seed, 0) != sizeof v.seed) {
      vms_set_error (errno, "cannot get random bytes: %s", strerror (errno));
      return -1;
    }
  }
  if (run && progress_open (&v, backup_id, percent, run) == -1)
    return -1;
  struct repo_backup *b = NULL;
  size_t nr = 0;
  int r = 0;

  if (repo->encrypted && repo->key == NULL) {
    if (deep || backup_id || percent < 100) {
      vms_set_error (EINVAL, "repository %s is encrypted and was opened "
                     "without its key %s: only the whole structure can be "
                     "checked (no --deep, --sample or backup)", repo->path,
                     repo->key_fp);
      return -1;
    }
    r = verify_structure (&v);
    if (run)
      run->unreachable = v.unreachable;
    return r == -1 ? -1 : v.problems;
  }
  if (deep && (v.buf = malloc (VMS_CHUNK_SIZE)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    progress_free (v.pg);
    return -1;
  }
  if (backup_id) {
    /* Fails on an invalid id or a backup that is not there at all. */
    vms_manifest *m = manifest_load (repo, backup_id);
    if (m == NULL && (vms_get_errno () == ENOENT || vms_get_errno () == EINVAL)) {
      free (v.buf);
      progress_free (v.pg);
      return -1;
    }
    vms_manifest_free (m);
    r = verify_backup (&v, backup_id);
  }
  else if (repo_list_backups (repo, &b, &nr) == -1) {
    stop_unreachable (&v, vms_get_errno ());
    r = -1;
  }
  else
    for (size_t i = 0; i < nr && r == 0; i++)
      r = verify_backup (&v, b[i].id);
  if (r == 0 && v.by_pack)
    r = verify_packs (&v);
  /* A bad chunk found a pack at a time is said where it is used. */
  if (r == 0 && v.by_pack && v.bad > 0) {
    v.reporting = 1;
    if ((v.placed = calloc (v.errors.len, 1)) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      r = -1;
    }
    if (r == 0 && backup_id)
      r = verify_backup (&v, backup_id);
    for (size_t i = 0; backup_id == NULL && i < nr && r == 0; i++)
      r = verify_backup (&v, b[i].id);
    if (r == 0)
      report_unplaced (&v);
  }
  if (r == 0 && deep && backup_id == NULL && percent == 100 &&
      repo->encrypted && repo->key)
    r = verify_trailers (&v);

  if (run)
    run->unreachable = v.unreachable;
  progress_end (v.pg, r);
  repo_backups_free (b, nr);
  digest_set_free (&v.seen);
  string_vector_free_all (&v.errors);
  free (v.placed);
  free (v.buf);
  return r == -1 ? -1 : v.problems;
}

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
#include <sys/random.h>

#include "cleanup.h"
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
  uint8_t *buf;
};

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

/* Record the outcome r (0, or -1 with the error set) of checking the
 * chunk of e. -1 on out of memory. */
static int
settle (struct verify *v, struct digest_set_entry *e, int r)
{
  e->value = 0;
  if (r == 0)
    return 0;
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
  if (e->value > 0)
    *why = v->errors.ptr[e->value - 1];
  return 0;
}

/* One backup: its manifest, documents and indexes (said on the first
 * walk only) and the chunks they name. */
static int
verify_backup (struct verify *v, const char *id)
{
  CLEANUP (vms_manifest_free) vms_manifest *m = vms_manifest_open (v->repo, id);

  if (m == NULL) {
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
  if (r == 0)
    qsort (pv.ptr, pv.len, sizeof *pv.ptr, pending_cmp);
  for (size_t i = 0, j; r == 0 && i < pv.len; i = j) {
    char name[64];
    for (j = i + 1; j < pv.len && memcmp (pv.ptr[j].loc.pack_id,
                                          pv.ptr[i].loc.pack_id, 16) == 0; j++)
      ;
    pack_object_name (pv.ptr[i].loc.pack_id, name);
    r = v->deep ? verify_pack_deep (v, name, pv.ptr + i, j - i, &win)
      : verify_pack_size (v, name, pv.ptr + i, j - i);
  }
  free (win);
  pending_vector_reset (&pv);
  return r;
}

/* ---- an encrypted repository without its key (R28) ----
 *
 * What can be checked without the key: every pack's header, tail and the
 * SHA-256 over it (bit rot, a cut or a lost write: not an attacker, who can
 * recompute it), the framing of its sealed trailer; the framing and
 * length of every other sealed object. Contents are not authenticated:
 * the report's last line says so. */

struct names {
  char **v;
  size_t n, cap;
};

static int
names_add (void *opaque, const char *name)
{
  struct names *l = opaque;
  if (l->n == l->cap) {
    size_t ncap = l->cap ? l->cap * 2 : 64;
    char **nv = realloc (l->v, ncap * sizeof *nv);
    if (nv == NULL)
      return -1;
    l->v = nv;
    l->cap = ncap;
  }
  if ((l->v[l->n] = strdup (name)) == NULL)
    return -1;
  l->n++;
  return 0;
}

static void
check_pack (struct verify *v, const char *name, const uint8_t *b, size_t len)
{
  uint8_t sum[VMS_DIGEST_LEN];

  if (len < PACK_HEADER_SIZE + PACK_TAIL_SIZE ||
      memcmp (b, PACK_MAGIC, 8) != 0 ||
      repo_get_le32 (b + 8) != PACK_VERSION) {
    problem (v, "pack %s is not a pack (%s)", name,
             len < PACK_HEADER_SIZE + PACK_TAIL_SIZE ? "too short"
             : "bad magic or version");
    return;
  }
  if (!(repo_get_le32 (b + 12) & PACK_FLAG_ENCRYPTED))
    problem (v, "pack %s is not marked encrypted in an encrypted "
             "repository", name);
  const uint8_t *tail = b + len - PACK_TAIL_SIZE;
  uint64_t toff = repo_get_le64 (tail), tlen = repo_get_le64 (tail + 8);
  if (repo_sha256 (b, len - PACK_TAIL_SIZE, sum) == 0 &&
      memcmp (sum, tail + 16, VMS_DIGEST_LEN) != 0) {
    problem (v, "pack %s is corrupt (checksum mismatch: damaged or cut "
             "short)", name);
    return;
  }
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
  struct names l = { 0 };
  uint64_t objects = 0, packs = 0;
  int r = 0;

  if (storage_list (repo->store, "", names_add, &l) != 0) {
    vms_set_error (errno, "repository %s: cannot list its objects: %s",
                   repo->path, repo_errstr (errno));
    r = -1;
  }
  for (size_t i = 0; r == 0 && i < l.n; i++) {
    const char *name = l.v[i];
    int pack = strncmp (name, "packs/", 6) == 0;
    if (!pack && !storage_crypt_sealed_name (name))
      continue;
    struct storage *raw = storage_crypt_inner (repo->store);
    CLEANUP_FREE void *buf = NULL;
    size_t len;
    if (storage_get_all (raw, name, (size_t) 1 << 31, &buf, &len) == -1) {
      if (errno != ENOENT)      /* gone meanwhile (gc): nothing to check */
        problem (v, "object %s cannot be read: %s", name,
                 repo_errstr (errno));
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
  for (size_t i = 0; i < l.n; i++)
    free (l.v[i]);
  free (l.v);
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
  struct names l = { 0 };
  int r = 0;

  if (storage_list (repo->store, "packs/", names_add, &l) != 0) {
    vms_set_error (errno, "repository %s: cannot list packs/: %s",
                   repo->path, repo_errstr (errno));
    r = -1;
  }
  for (size_t i = 0; r == 0 && i < l.n; i++) {
    const char *name = l.v[i];
    struct storage_stat st;
    uint8_t tail[PACK_TAIL_SIZE];
    char aad[256];
    if (storage_stat (repo->store, name, &st) == -1)
      continue;                 /* gone meanwhile (gc) */
    if (st.size < PACK_HEADER_SIZE + PACK_TAIL_SIZE + ENVELOPE_OVERHEAD ||
        storage_get (repo->store, name, st.size - PACK_TAIL_SIZE,
                     PACK_TAIL_SIZE, tail) == -1) {
      problem (v, "pack %s is corrupt (too short for a pack)", name);
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
    if (storage_get (repo->store, name, toff, (size_t) tlen, t) == -1 ||
        crypt_open (repo->key->k_enc, aad,
                    crypt_aad (aad, sizeof aad, repo->id, "trailer", name),
                    t, (size_t) tlen, out) == -1)
      problem (v, "pack %s: its trailer %s", name, errno == EKEYREJECTED
               ? "failed authentication (altered, or another pack's)"
               : repo_errstr (errno));
    free (t);
    free (out);
  }
  for (size_t i = 0; i < l.n; i++)
    free (l.v[i]);
  free (l.v);
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
  struct verify v = { .repo = repo, .deep = deep, .report = report,
                      .opaque = opaque, .errors = empty_vector,
                      .sample = UINT64_MAX, .by_pack = repo->version >= 2 };

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
    return r == -1 ? -1 : v.problems;
  }
  if (deep && (v.buf = malloc (VMS_CHUNK_SIZE)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (backup_id) {
    /* Fails on an invalid id or a backup that is not there at all. */
    vms_manifest *m = manifest_load (repo, backup_id);
    if (m == NULL && (vms_get_errno () == ENOENT || vms_get_errno () == EINVAL)) {
      free (v.buf);
      return -1;
    }
    vms_manifest_free (m);
    r = verify_backup (&v, backup_id);
  }
  else if (repo_list_backups (repo, &b, &nr) == -1)
    r = -1;
  else
    for (size_t i = 0; i < nr && r == 0; i++)
      r = verify_backup (&v, b[i].id);
  if (r == 0 && v.by_pack)
    r = verify_packs (&v);
  /* A bad chunk found a pack at a time is said where it is used. */
  if (r == 0 && v.by_pack && v.bad > 0) {
    v.reporting = 1;
    if (backup_id)
      r = verify_backup (&v, backup_id);
    for (size_t i = 0; backup_id == NULL && i < nr && r == 0; i++)
      r = verify_backup (&v, b[i].id);
  }
  if (r == 0 && deep && backup_id == NULL && percent == 100 &&
      repo->encrypted && repo->key)
    r = verify_trailers (&v);

  repo_backups_free (b, nr);
  digest_set_free (&v.seen);
  string_vector_free_all (&v.errors);
  free (v.buf);
  return r == -1 ? -1 : v.problems;
}

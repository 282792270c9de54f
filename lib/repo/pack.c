/* Format version 2's packs and repository index (docs/repository-format.md
 * "Version 2"): chunks are appended as blobs to this process's open pack
 * (in memory, up to the repository's pack size), which is put as one
 * object packs/ab/<pack-id> followed by an index segment index/<segment-id>
 * naming its chunks; the repository index — every segment, loaded on first
 * use into one hash table — gives pack, offset and length for a chunk id,
 * so reading a chunk is one ranged get.
 *
 * Thread-safe: the datapath stores chunks from several threads. One mutex
 * guards the table and the open pack; hashing and compression happen
 * before (chunk-store.c), outside it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <json-c/json.h>
#include <xxhash.h>

#include "bulk-mem.h"
#include "cleanup.h"
#include "crypt.h"
#include "repo-internal.h"
#include "storage.h"
#include "vector.h"
#include "vmshadow/error.h"

/* One chunk in the table: 48 bytes. pack is the pack's number + 1 (0: an
 * empty slot). */
struct pidx_entry {
  struct vms_digest d;
  uint32_t pack;
  uint32_t offset;
  uint32_t slen;
  uint32_t plen_form;           /* plen | form << 31 */
};

enum pack_state { PACK_STORED = 0, PACK_OPEN = 1, PACK_FAILED = 2 };

/* A pack written as it fills goes to its writer in pieces of a quarter
 * pack, at most 4 MiB (so two such buffers, not two whole packs, are
 * held: issue 15). */
#define PACK_STAGE_MAX ((size_t) 4 << 20)
#define PACK_STAGE_SIZE(repo) \
  ((repo)->pack_size / 4 < PACK_STAGE_MAX ? (size_t) (repo)->pack_size / 4 \
   : PACK_STAGE_MAX)

struct pack_info {
  uint8_t id[16];
  int state;
  /* Named by a gc/condemned-* list (issue 12, rules 2-5): a writer does
   * not deduplicate against it; a copy elsewhere is preferred. */
  uint8_t condemned;
  /* gc: 1 listed in packs/, 0 not, -1 not known (readers, writers). */
  int8_t listed;
  /* Lock extension (issue 14, R29; pack_extend_used): put by this
   * process (its retention is this session's already); named by a file
   * index of the backup being committed. */
  uint8_t ours;
  uint8_t used;
  /* Named by an index segment table_load read (pack_adopt). */
  uint8_t named;
  /* In a repository with a retention: the segments (numbers + 1 in
   * repo_packs.seg_names) that name this pack, from table_load. */
  uint32_t *segs;
  uint32_t nsegs, segs_cap;
};

/* A blob of the open pack, for its trailer and segment. */
struct open_blob {
  struct vms_digest d;
  uint32_t offset, slen, plen;
  uint8_t form;
};

struct repo_packs {
  pthread_mutex_t lock;
  int loaded;
  struct pidx_entry *tab;
  size_t cap, len;
  struct pack_info *packs;      /* by number */
  size_t npacks, packs_cap;
  uint32_t *pslots;             /* pack id hash -> number + 1 */
  size_t pslots_cap;
  /* The open pack. */
  uint32_t open_no;             /* number + 1, 0 when none */
  uint8_t *buf;
  size_t buf_len, buf_cap;
  struct open_blob *blobs;
  size_t nblobs, blobs_cap;
  /* The pack being put (lock released meanwhile): number + 1, 0 when
   * none; its bytes, readable until the put is done. */
  uint32_t fl_no;
  uint8_t *fl_buf;
  size_t fl_len;
  pthread_cond_t fl_done;
  uint8_t *spare;               /* the other pack buffer */
  size_t spare_cap;
  /* Packs written as they fill, when the store offers writers (issue 15:
   * peak memory): the open pack's bytes before base are in its writer
   * already and buf holds [base, base + buf_len); every PACK_STAGE_SIZE
   * bytes buf is appended to the writer (the lock released meanwhile),
   * and the tail's XXH3-128 is taken as the bytes go. w NULL: the pack is
   * held whole in buf and put at once (base 0), as before. */
  struct storage_writer *w;
  XXH3_state_t *hctx;
  uint64_t base;
  /* The piece being appended (st_busy; at most one, in pack order, and
   * never beside a pack in flight, so that two buffers are all there
   * is): readable from st_buf until appended. */
  int st_busy;
  uint32_t st_no;
  uint8_t *st_buf;
  uint64_t st_off;
  size_t st_len;
  uint64_t fl_base;             /* where fl_buf starts in its pack */
  /* A pack or segment of this process that could not be put: its chunks
   * are not stored, so no commit may follow (pack_flush fails). */
  int failed;
  char failed_msg[512];
  /* The segments table_load read, in a repository with a retention (for
   * pack_info.segs; issue 14). */
  char **seg_names;
  size_t nseg_names;
};

/* ---- little endian ---- */

static void
hex (const uint8_t *b, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

void
pack_object_name (const uint8_t id[16], char name[64])
{
  char h[33];
  hex (id, 16, h);
  snprintf (name, 64, "packs/%.2s/%s", h, h);
}

static int
random_id (uint8_t id[16])
{
  if (getrandom (id, 16, 0) != 16) {
    vms_set_error (errno, "cannot get random bytes for an object id: %s",
                   strerror (errno));
    return -1;
  }
  return 0;
}

/* ---- state ---- */

static struct repo_packs *
packs_get (vms_repo *repo)
{
  struct repo_packs *rp = __atomic_load_n (&repo->packs, __ATOMIC_ACQUIRE);
  if (rp)
    return rp;
  rp = calloc (1, sizeof *rp);
  if (rp == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  pthread_mutex_init (&rp->lock, NULL);
  pthread_cond_init (&rp->fl_done, NULL);
  struct repo_packs *none = NULL;
  if (!__atomic_compare_exchange_n (&repo->packs, &none, rp, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    pthread_mutex_destroy (&rp->lock);
    pthread_cond_destroy (&rp->fl_done);
    free (rp);
    rp = none;
  }
  return rp;
}

static void
table_clear (struct repo_packs *rp)
{
  for (size_t i = 0; i < rp->npacks; i++)
    free (rp->packs[i].segs);
  for (size_t i = 0; i < rp->nseg_names; i++)
    free (rp->seg_names[i]);
  free (rp->seg_names);
  rp->seg_names = NULL;
  rp->nseg_names = 0;
  free (rp->tab);
  free (rp->packs);
  free (rp->pslots);
  rp->tab = NULL;
  rp->packs = NULL;
  rp->pslots = NULL;
  rp->cap = rp->len = rp->npacks = rp->packs_cap = rp->pslots_cap = 0;
  rp->loaded = 0;
}

void
pack_state_free (vms_repo *repo)
{
  struct repo_packs *rp = repo->packs;
  if (rp == NULL)
    return;
  table_clear (rp);
  if (rp->w)
    rp->w->abort (rp->w);
  XXH3_freeState (rp->hctx);
  free (rp->buf);
  free (rp->spare);
  free (rp->blobs);
  pthread_mutex_destroy (&rp->lock);
  pthread_cond_destroy (&rp->fl_done);
  free (rp);
  repo->packs = NULL;
}

static size_t
digest_slot (const struct pidx_entry *tab, size_t cap, const struct vms_digest *d)
{
  uint64_t h;
  memcpy (&h, d->b, sizeof h);
  size_t i = (size_t) h & (cap - 1);
  while (tab[i].pack && memcmp (tab[i].d.b, d->b, VMS_DIGEST_LEN) != 0)
    i = (i + 1) & (cap - 1);
  return i;
}

/* The slot of d, added empty if absent (its pack 0). NULL on OOM. */
static struct pidx_entry *
table_slot (struct repo_packs *rp, const struct vms_digest *d)
{
  /* An existing entry never moves: gc rewrites entries while it walks
   * the table. */
  if (rp->cap > 0) {
    struct pidx_entry *e = &rp->tab[digest_slot (rp->tab, rp->cap, d)];
    if (e->pack)
      return e;
  }
  if ((rp->len + 1) * 4 > rp->cap * 3) {
    size_t ncap = rp->cap ? rp->cap * 2 : 4096;
    struct pidx_entry *nt = calloc (ncap, sizeof *nt);
    if (nt == NULL) {
      vms_set_error (ENOMEM, "out of memory for an index of %zu chunks",
                     rp->len);
      return NULL;
    }
    for (size_t i = 0; i < rp->cap; i++)
      if (rp->tab[i].pack)
        nt[digest_slot (nt, ncap, &rp->tab[i].d)] = rp->tab[i];
    free (rp->tab);
    rp->tab = nt;
    rp->cap = ncap;
  }
  return &rp->tab[digest_slot (rp->tab, rp->cap, d)];
}

static size_t
pack_hash_slot (const struct repo_packs *rp, const uint32_t *slots, size_t cap,
                const uint8_t id[16])
{
  uint64_t h;
  memcpy (&h, id, sizeof h);
  size_t i = (size_t) h & (cap - 1);
  while (slots[i] && memcmp (rp->packs[slots[i] - 1].id, id, 16) != 0)
    i = (i + 1) & (cap - 1);
  return i;
}

/* The number + 1 of pack id, added (state) if new; 0 on OOM. */
static uint32_t
pack_number (struct repo_packs *rp, const uint8_t id[16], int state)
{
  if (rp->pslots_cap && rp->pslots[pack_hash_slot (rp, rp->pslots,
                                                   rp->pslots_cap, id)])
    return rp->pslots[pack_hash_slot (rp, rp->pslots, rp->pslots_cap, id)];
  if (rp->npacks >= UINT32_MAX - 1) {
    vms_set_error (E2BIG, "too many packs");
    return 0;
  }
  if (rp->npacks == rp->packs_cap) {
    size_t ncap = rp->packs_cap ? rp->packs_cap * 2 : 256;
    struct pack_info *np = realloc (rp->packs, ncap * sizeof *np);
    if (np == NULL)
      goto oom;
    rp->packs = np;
    rp->packs_cap = ncap;
  }
  if ((rp->npacks + 1) * 2 > rp->pslots_cap) {
    size_t ncap = rp->pslots_cap ? rp->pslots_cap * 2 : 512;
    uint32_t *ns = calloc (ncap, sizeof *ns);
    if (ns == NULL)
      goto oom;
    for (size_t i = 0; i < rp->pslots_cap; i++)
      if (rp->pslots[i])
        ns[pack_hash_slot (rp, ns, ncap, rp->packs[rp->pslots[i] - 1].id)] =
          rp->pslots[i];
    free (rp->pslots);
    rp->pslots = ns;
    rp->pslots_cap = ncap;
  }
  memcpy (rp->packs[rp->npacks].id, id, 16);
  rp->packs[rp->npacks].state = state;
  rp->packs[rp->npacks].condemned = 0;
  rp->packs[rp->npacks].listed = -1;
  rp->packs[rp->npacks].ours = state == PACK_OPEN;
  rp->packs[rp->npacks].used = 0;
  rp->packs[rp->npacks].named = 0;
  rp->packs[rp->npacks].segs = NULL;
  rp->packs[rp->npacks].nsegs = rp->packs[rp->npacks].segs_cap = 0;
  rp->npacks++;
  rp->pslots[pack_hash_slot (rp, rp->pslots, rp->pslots_cap, id)] =
    (uint32_t) rp->npacks;
  return (uint32_t) rp->npacks;
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return 0;
}

/* ---- segments ---- */

static void
entry_encode (uint8_t *e, const struct vms_digest *d, const uint8_t pack[16],
              uint32_t offset, uint32_t slen, uint32_t plen, uint8_t form)
{
  memset (e, 0, SEGMENT_ENTRY_SIZE);
  memcpy (e, d->b, VMS_DIGEST_LEN);
  memcpy (e + 32, pack, 16);
  repo_put_le32 (e + 48, offset);
  repo_put_le32 (e + 52, slen);
  repo_put_le32 (e + 56, plen);
  e[60] = form;
}

/* Check one entry of a segment or trailer (untrusted): 0 or -1. */
static int
entry_check (const uint8_t *e)
{
  uint32_t offset = repo_get_le32 (e + 48), slen = repo_get_le32 (e + 52);
  uint32_t plen = repo_get_le32 (e + 56);
  uint8_t form = e[60];

  if (form > CHUNK_FORM_ZSTD || plen == 0 || plen > VMS_CHUNK_SIZE ||
      slen == 0 || offset < PACK_HEADER_SIZE)
    return -1;
  if (form == CHUNK_FORM_RAW ? slen != plen : slen >= plen)
    return -1;
  if (e[61] || e[62] || e[63])
    return -1;
  return 0;
}

static int
entry_cmp (const void *a, const void *b)
{
  return memcmp (a, b, VMS_DIGEST_LEN);
}

/* A segment image of n entries (64 bytes each, sorted here). */
int
segment_build (uint8_t *entries, size_t n, void **out, size_t *len)
{
  size_t body = SEGMENT_HEADER_SIZE + n * SEGMENT_ENTRY_SIZE;
  uint8_t *b = malloc (body + VMS_DIGEST_LEN);

  if (b == NULL) {
    vms_set_error (ENOMEM, "out of memory for an index segment");
    return -1;
  }
  if (n)
    qsort (entries, n, SEGMENT_ENTRY_SIZE, entry_cmp);
  memcpy (b, SEGMENT_MAGIC, 8);
  repo_put_le32 (b + 8, SEGMENT_VERSION);
  repo_put_le32 (b + 12, (uint32_t) n);
  if (n)
    memcpy (b + SEGMENT_HEADER_SIZE, entries, n * SEGMENT_ENTRY_SIZE);
  if (repo_sha256 (b, body, b + body) == -1) {
    free (b);
    return -1;
  }
  *out = b;
  *len = body + VMS_DIGEST_LEN;
  return 0;
}

/* Check a segment image (untrusted): the count of its entries, or -1 with
 * EBADMSG and why in the error, naming it. */
int64_t
segment_check (const uint8_t *b, size_t len, const char *name)
{
  uint8_t sum[VMS_DIGEST_LEN];

  if (len < SEGMENT_HEADER_SIZE + VMS_DIGEST_LEN ||
      memcmp (b, SEGMENT_MAGIC, 8) != 0) {
    vms_set_error (EBADMSG, "index segment %s is not an index segment (%s)",
                   name, len < SEGMENT_HEADER_SIZE + VMS_DIGEST_LEN
                   ? "too short" : "bad magic");
    return -1;
  }
  if (repo_get_le32 (b + 8) != SEGMENT_VERSION) {
    vms_set_error (EBADMSG, "index segment %s has version %" PRIu32 "; this "
                   "vmshadow reads version %d", name, repo_get_le32 (b + 8),
                   SEGMENT_VERSION);
    return -1;
  }
  uint64_t n = repo_get_le32 (b + 12);
  if ((uint64_t) len != SEGMENT_HEADER_SIZE + n * SEGMENT_ENTRY_SIZE
      + VMS_DIGEST_LEN) {
    vms_set_error (EBADMSG, "index segment %s is %zu bytes; %" PRIu64
                   " entries need %" PRIu64, name, len, n,
                   SEGMENT_HEADER_SIZE + n * SEGMENT_ENTRY_SIZE + VMS_DIGEST_LEN);
    return -1;
  }
  if (repo_sha256 (b, len - VMS_DIGEST_LEN, sum) == -1)
    return -1;
  if (memcmp (sum, b + len - VMS_DIGEST_LEN, VMS_DIGEST_LEN) != 0) {
    vms_set_error (EBADMSG, "index segment %s is corrupt (checksum mismatch)",
                   name);
    return -1;
  }
  for (uint64_t i = 0; i < n; i++) {
    const uint8_t *e = b + SEGMENT_HEADER_SIZE + i * SEGMENT_ENTRY_SIZE;
    if (entry_check (e) == -1 ||
        (i > 0 && memcmp (e - SEGMENT_ENTRY_SIZE, e, VMS_DIGEST_LEN) > 0)) {
      vms_set_error (EBADMSG, "index segment %s is corrupt (entry %" PRIu64
                     " is %s)", name, i, entry_check (e) == -1
                     ? "out of range" : "out of order");
      return -1;
    }
  }
  return (int64_t) n;
}

/* Which of two packs holding a chunk the table keeps: one that exists
 * and is not condemned, then a condemned one, then one gc found gone. */
static int
pack_rank (const struct repo_packs *rp, uint32_t no)
{
  const struct pack_info *p = &rp->packs[no - 1];
  return p->listed == 0 ? 0 : p->condemned ? 1 : 2;
}

/* Note that segment seg (number + 1) names pack no (issue 14). */
static int
pack_seg_add (struct repo_packs *rp, uint32_t no, uint32_t seg)
{
  struct pack_info *p = &rp->packs[no - 1];
  if (p->nsegs && p->segs[p->nsegs - 1] == seg)
    return 0;
  if (p->nsegs == p->segs_cap) {
    uint32_t ncap = p->segs_cap ? p->segs_cap * 2 : 1;
    uint32_t *ns = realloc (p->segs, ncap * sizeof *ns);
    if (ns == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    p->segs = ns;
    p->segs_cap = ncap;
  }
  p->segs[p->nsegs++] = seg;
  return 0;
}

/* Add a checked segment's entries to the table: where a chunk is in two
 * packs, either is right (both hold it); the better ranked one
 * (pack_rank) stays, else the first. seg: the segment's number + 1 in
 * seg_names, noted on each pack it names (0: not noted). */
static int
table_add_segment (struct repo_packs *rp, const uint8_t *b, size_t n,
                   uint32_t seg)
{
  for (size_t i = 0; i < n; i++) {
    const uint8_t *e = b + SEGMENT_HEADER_SIZE + i * SEGMENT_ENTRY_SIZE;
    struct vms_digest d;
    memcpy (d.b, e, VMS_DIGEST_LEN);
    struct pidx_entry *slot = table_slot (rp, &d);
    if (slot == NULL)
      return -1;
    uint32_t no = pack_number (rp, e + 32, PACK_STORED);
    if (no == 0)
      return -1;
    rp->packs[no - 1].named = 1;
    if (seg && pack_seg_add (rp, no, seg) == -1)
      return -1;
    if (slot->pack && pack_rank (rp, slot->pack) >= pack_rank (rp, no))
      continue;
    if (slot->pack == 0)
      rp->len++;
    slot->d = d;
    slot->pack = no;
    slot->offset = repo_get_le32 (e + 48);
    slot->slen = repo_get_le32 (e + 52);
    slot->plen_form = repo_get_le32 (e + 56) | (uint32_t) e[60] << 31;
  }
  return 0;
}

/* ---- condemned lists (gc/condemned-<32 hex>, rules 2-5) ---- */

struct condemned_gen {
  char *name;
  uint8_t (*packs)[16];
  size_t npacks;
  string_vector sessions;       /* "sessions/<id>" names */
  int has_sessions;             /* the sessions were recorded */
};

static void
gens_free (struct condemned_gen *g, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free (g[i].name);
    free (g[i].packs);
    string_vector_free_all (&g[i].sessions);
  }
  free (g);
}

static int
hex_id (const char *h, uint8_t id[16])
{
  if (strlen (h) != 32)
    return -1;
  for (size_t i = 0; i < 32; i++) {
    char c = h[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0)
      return -1;
    if (i % 2 == 0) id[i / 2] = (uint8_t) (v << 4);
    else id[i / 2] |= (uint8_t) v;
  }
  return 0;
}

/* Parse a condemned list (untrusted): 0, or -1 with EBADMSG. */
static int
gen_parse (const char *text, struct condemned_gen *g)
{
  json_object *root = json_tokener_parse (text), *v, *a;
  int r = -1;

  if (root == NULL || !json_object_is_type (root, json_type_object) ||
      !json_object_object_get_ex (root, "format", &v) ||
      !json_object_is_type (v, json_type_string) ||
      strcmp (json_object_get_string (v), "vmshadow-gc-condemned") != 0 ||
      !json_object_object_get_ex (root, "packs", &a) ||
      !json_object_is_type (a, json_type_array))
    goto out;
  size_t n = json_object_array_length (a);
  g->packs = malloc ((n ? n : 1) * sizeof *g->packs);
  if (g->packs == NULL)
    goto out;
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx (a, i);
    if (!json_object_is_type (e, json_type_string) ||
        hex_id (json_object_get_string (e), g->packs[i]) == -1)
      goto out;
  }
  g->npacks = n;
  if (json_object_object_get_ex (root, "sessions", &a) &&
      json_object_is_type (a, json_type_array)) {
    g->has_sessions = 1;
    for (size_t i = 0; i < json_object_array_length (a); i++) {
      json_object *e = json_object_array_get_idx (a, i);
      char name[64];
      uint8_t id[16];
      if (!json_object_is_type (e, json_type_string) ||
          hex_id (json_object_get_string (e), id) == -1)
        goto out;
      snprintf (name, sizeof name, "sessions/%s", json_object_get_string (e));
      if (string_vector_append_copy (&g->sessions, name) == -1)
        goto out;
    }
  }
  r = 0;
 out:
  json_object_put (root);
  if (r == -1)
    errno = EBADMSG;
  return r;
}

/* Every condemned list. strict (gc): a list that cannot be read or
 * parsed is an error. Otherwise (a reader or writer) a corrupt one is
 * skipped — gc never deletes what it names while it is corrupt, so
 * deduplicating against its packs is safe — but a read error is not. */
static int
gens_read (vms_repo *repo, int strict, struct condemned_gen **out, size_t *nout)
{
  string_vector l = empty_vector;
  struct condemned_gen *g = NULL;
  size_t n = 0;

  *out = NULL;
  *nout = 0;
  if (storage_list (repo->store, "gc/condemned-", storage_collect_names,
                    &l) != 0) {
    vms_set_error (errno, "repository %s: cannot list gc/: %s", repo->path,
                   repo_errstr (errno));
    string_vector_free_all (&l);
    return -1;
  }
  g = calloc (l.len ? l.len : 1, sizeof *g);
  if (g == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    string_vector_free_all (&l);
    return -1;
  }
  for (size_t i = 0; i < l.len; i++) {
    CLEANUP_FREE char *text = NULL;
    size_t len;
    if (storage_get_all (repo->store, l.ptr[i], MAX_MANIFEST_BYTES,
                         (void **) &text, &len) == -1) {
      if (errno == ENOENT)
        continue;               /* its generation was finished meanwhile */
      vms_set_error (errno, "repository %s: cannot read %s: %s", repo->path,
                     l.ptr[i], repo_errstr (errno));
      goto fail;
    }
    struct condemned_gen *x = &g[n];
    if (strlen (text) != len || gen_parse (text, x) == -1) {
      free (x->packs);
      string_vector_free_all (&x->sessions);
      memset (x, 0, sizeof *x);
      if (!strict)
        continue;
      vms_set_error (EBADMSG, "gc stopped before removing anything: "
                     "repository %s: %s is corrupt (remove it only when no "
                     "backup runs)", repo->path, l.ptr[i]);
      goto fail;
    }
    x->name = l.ptr[i];
    l.ptr[i] = NULL;
    n++;
  }
  string_vector_free_all (&l);
  *out = g;
  *nout = n;
  return 0;
 fail:
  string_vector_free_all (&l);
  gens_free (g, n);
  return -1;
}

/* Flag the packs of every condemned list in the table. */
static int
mark_condemned (struct repo_packs *rp, const struct condemned_gen *g, size_t n)
{
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < g[i].npacks; j++) {
      uint32_t no = pack_number (rp, g[i].packs[j], PACK_STORED);
      if (no == 0)
        return -1;
      rp->packs[no - 1].condemned = 1;
    }
  return 0;
}

/* Load every index segment (lock held), after the condemned lists (rule
 * 2: a writer reads them after its lease is put, before it trusts the
 * index). segments: if not NULL, gets the names read. */
static int
table_load (vms_repo *repo, struct repo_packs *rp, string_vector *segments)
{
  string_vector l = empty_vector;
  struct condemned_gen *g;
  size_t ng;

  if (gens_read (repo, 0, &g, &ng) == -1)
    return -1;
  int mr = mark_condemned (rp, g, ng);
  gens_free (g, ng);
  if (mr == -1) {
    table_clear (rp);
    return -1;
  }

  if (storage_list (repo->store, "index/", storage_collect_names, &l) != 0) {
    vms_set_error (errno, "repository %s: cannot list index/: %s", repo->path,
                   repo_errstr (errno));
    string_vector_free_all (&l);
    return -1;
  }
  /* A segment listed but gone when read was compacted away by a gc
   * meanwhile: the merged segments holding its entries were put before
   * it was deleted, so a new listing shows them (read what it adds). */
  int vanished = 0, relists = 0;
  for (size_t i = 0; ; i++) {
    if (i == l.len) {
      if (!vanished || relists++ == 8)
        break;
      vanished = 0;
      string_vector again = empty_vector;
      if (storage_list (repo->store, "index/", storage_collect_names,
                        &again) != 0) {
        vms_set_error (errno, "repository %s: cannot list index/: %s",
                       repo->path, repo_errstr (errno));
        string_vector_free_all (&again);
        goto fail;
      }
      for (size_t a = 0; a < again.len; a++) {
        int seen = 0;
        for (size_t k = 0; k < l.len && !seen; k++)
          seen = strcmp (l.ptr[k], again.ptr[a]) == 0;
        if (!seen && string_vector_append_copy (&l, again.ptr[a]) == -1) {
          string_vector_free_all (&again);
          vms_set_error (ENOMEM, "out of memory");
          goto fail;
        }
      }
      string_vector_free_all (&again);
      if (i == l.len)
        break;
    }
    CLEANUP_FREE void *buf = NULL;
    size_t len;
    if (storage_get_all (repo->store, l.ptr[i], (size_t) 1 << 31, &buf,
                         &len) == -1) {
      if (errno == ENOENT) {
        vanished = 1;           /* compacted away meanwhile */
        continue;
      }
      vms_set_error (errno, "repository %s: cannot read %s: %s", repo->path,
                     l.ptr[i], repo_errstr (errno));
      goto fail;
    }
    int64_t n = segment_check (buf, len, l.ptr[i]);
    if (n == -1) {
      vms_set_error (vms_get_errno (), "repository %s: %s", repo->path,
                     vms_get_error ());
      goto fail;
    }
    if (table_add_segment (rp, buf, (size_t) n,
                           repo->retention_days ? (uint32_t) i + 1 : 0) == -1)
      goto fail;
  }
  rp->loaded = 1;
  if (segments)
    *segments = l;
  else if (repo->retention_days) {
    /* Kept: pack_info.segs names them by number (issue 14). */
    rp->seg_names = l.ptr;
    rp->nseg_names = l.len;
  }
  else
    string_vector_free_all (&l);
  return 0;
 fail:
  string_vector_free_all (&l);
  table_clear (rp);
  return -1;
}

static int
ensure_loaded (vms_repo *repo, struct repo_packs *rp)
{
  return rp->loaded ? 0 : table_load (repo, rp, NULL);
}

/* ---- lookups ---- */

static void
slot_loc (const struct repo_packs *rp, const struct pidx_entry *e,
          struct pack_loc *loc)
{
  memcpy (loc->pack_id, rp->packs[e->pack - 1].id, 16);
  loc->offset = e->offset;
  loc->slen = e->slen;
  loc->plen = e->plen_form & 0x7fffffffu;
  loc->form = (uint8_t) (e->plen_form >> 31);
}

/* The live entry of d (lock held), or NULL: an entry of a pack that
 * failed to be put is no entry. */
static struct pidx_entry *
find (struct repo_packs *rp, const struct vms_digest *d)
{
  if (rp->cap == 0)
    return NULL;
  struct pidx_entry *e = &rp->tab[digest_slot (rp->tab, rp->cap, d)];
  if (e->pack == 0 || rp->packs[e->pack - 1].state == PACK_FAILED)
    return NULL;
  return e;
}

/* The entry a writer may deduplicate against (rule 2): not in a
 * condemned pack (the table prefers any other copy, so a chunk found
 * only in condemned packs is stored again). */
static struct pidx_entry *
find_dedup (struct repo_packs *rp, const struct vms_digest *d)
{
  struct pidx_entry *e = find (rp, d);
  return e && !rp->packs[e->pack - 1].condemned ? e : NULL;
}

static int
lookup (vms_repo *repo, const struct vms_digest *d, struct pack_loc *loc,
        int dedup)
{
  struct repo_packs *rp = packs_get (repo);
  int r;

  if (rp == NULL)
    return -1;
  pthread_mutex_lock (&rp->lock);
  if (ensure_loaded (repo, rp) == -1)
    r = -1;
  else {
    struct pidx_entry *e = dedup ? find_dedup (rp, d) : find (rp, d);
    if (e)
      slot_loc (rp, e, loc);
    r = e != NULL;
  }
  pthread_mutex_unlock (&rp->lock);
  return r;
}

int
pack_lookup (vms_repo *repo, const struct vms_digest *d, struct pack_loc *loc)
{
  return lookup (repo, d, loc, 0);
}

int
pack_lookup_dedup (vms_repo *repo, const struct vms_digest *d,
                   struct pack_loc *loc)
{
  return lookup (repo, d, loc, 1);
}

int
pack_preload (vms_repo *repo)
{
  struct repo_packs *rp = packs_get (repo);
  int r;

  if (rp == NULL)
    return -1;
  pthread_mutex_lock (&rp->lock);
  r = ensure_loaded (repo, rp);
  pthread_mutex_unlock (&rp->lock);
  return r;
}

int
pack_reload (vms_repo *repo)
{
  struct repo_packs *rp = packs_get (repo);
  int r = 0;

  if (rp == NULL)
    return -1;
  pthread_mutex_lock (&rp->lock);
  /* A writer's table holds what it has not put yet: never dropped. */
  if (rp->open_no == 0 && rp->fl_no == 0 && !rp->failed) {
    table_clear (rp);
    r = table_load (repo, rp, NULL);
  }
  pthread_mutex_unlock (&rp->lock);
  return r;
}

int
pack_read_blob (vms_repo *repo, const struct pack_loc *loc, void *buf)
{
  struct repo_packs *rp = packs_get (repo);
  char name[64];

  if (rp == NULL) {
    errno = ENOMEM;
    return -1;
  }
  size_t n = loc->slen + repo->blob_overhead;
  pthread_mutex_lock (&rp->lock);
  /* Still in memory: in the pack this process fills, or in the one it is
   * putting; or written already to the open pack's writer. */
  for (;;) {
    const uint8_t *mem = NULL;
    size_t mem_len = 0;
    uint64_t mem_base = 0;
    if (rp->open_no &&
        memcmp (rp->packs[rp->open_no - 1].id, loc->pack_id, 16) == 0) {
      if (loc->offset >= rp->base)
        mem = rp->buf, mem_len = rp->buf_len, mem_base = rp->base;
      else if (rp->st_busy && rp->st_no == rp->open_no &&
               loc->offset >= rp->st_off)
        mem = rp->st_buf, mem_len = rp->st_len, mem_base = rp->st_off;
      else {
        /* Appended to its writer (nobody frees it while we hold the
         * lock: only a flush or a failure does, under the lock). */
        int r = rp->w->read (rp->w, loc->offset, n, buf);
        pthread_mutex_unlock (&rp->lock);
        return r;
      }
    }
    else if (rp->fl_no &&
             memcmp (rp->packs[rp->fl_no - 1].id, loc->pack_id, 16) == 0) {
      if (loc->offset >= rp->fl_base)
        mem = rp->fl_buf, mem_len = rp->fl_len, mem_base = rp->fl_base;
      else {
        /* In its writer, which the put commits: read it once stored. */
        uint32_t no = rp->fl_no;
        while (rp->fl_no == no)
          pthread_cond_wait (&rp->fl_done, &rp->lock);
        continue;
      }
    }
    if (mem) {
      uint64_t in = loc->offset - mem_base;
      int ok = in + n <= mem_len;
      if (ok)
        memcpy (buf, mem + in, n);
      pthread_mutex_unlock (&rp->lock);
      if (!ok)
        errno = EBADMSG;
      return ok ? 0 : -1;
    }
    break;
  }
  pthread_mutex_unlock (&rp->lock);
  pack_object_name (loc->pack_id, name);
  return storage_get (repo->store, name, loc->offset, n, buf);
}

/* ---- writing ---- */

/* Record the first failure: no commit may follow (pack_flush). */
static void
note_failure (struct repo_packs *rp)
{
  if (!rp->failed) {
    rp->failed = 1;
    snprintf (rp->failed_msg, sizeof rp->failed_msg, "%s", vms_get_error ());
  }
}

/* Mark the open pack failed (its chunks are not stored) and drop it. */
static void
open_pack_fail (struct repo_packs *rp)
{
  if (rp->open_no)
    rp->packs[rp->open_no - 1].state = PACK_FAILED;
  if (rp->w)
    rp->w->abort (rp->w);
  rp->w = NULL;
  XXH3_freeState (rp->hctx);
  rp->hctx = NULL;
  rp->open_no = 0;
  rp->base = 0;
  rp->buf_len = 0;
  rp->nblobs = 0;
  note_failure (rp);
}

/* The segment of the open pack's blobs (its trailer may be sealed, so
 * the entries are encoded again). */
static int
segment_build_from (struct repo_packs *rp, const uint8_t *id, void **seg,
                    size_t *seg_len)
{
  uint8_t *e = malloc (rp->nblobs ? rp->nblobs * SEGMENT_ENTRY_SIZE : 1);
  if (e == NULL) {
    vms_set_error (ENOMEM, "out of memory for an index segment");
    return -1;
  }
  for (size_t i = 0; i < rp->nblobs; i++) {
    const struct open_blob *b = &rp->blobs[i];
    entry_encode (e + i * SEGMENT_ENTRY_SIZE, &b->d, id, b->offset, b->slen,
                  b->plen, b->form);
  }
  int r = segment_build (e, rp->nblobs, seg, seg_len);
  free (e);
  return r;
}

/* The error of a failed put or sync (errno): what the call was doing, or
 * the object that failed when it is an earlier lazy put of a backend
 * that writes in the background (RADOS; issue 12). */
static void
put_error (vms_repo *repo, const char *what)
{
  int e = errno;
  char other[STORAGE_NAME_MAX + 1];

  if (storage_failed_name (repo->store, other, sizeof other) == 0)
    vms_set_error (e, "repository %s: %s while writing %s", repo->path,
                   repo_errstr (e), other);
  else
    vms_set_error (e, "repository %s: %s while %s", repo->path,
                   repo_errstr (e), what);
}

/* The tail's checksum of the pack name whose first hashed bytes are buf
 * (those before its tail, which follows them): their XXH3-128, canonical
 * (big endian), then 16 zero bytes. h: the state that has taken the bytes
 * of the pack before buf, or NULL when buf is all of them. */
static int
tail_seal (XXH3_state_t *h, uint8_t *buf, size_t hashed, const char *name)
{
  XXH128_hash_t sum;
  XXH128_canonical_t c;

  if (h == NULL)
    sum = XXH3_128bits (buf, hashed);
  else if (XXH3_128bits_update (h, buf, hashed) == XXH_OK)
    sum = XXH3_128bits_digest (h);
  else {
    vms_set_error (EIO, "XXH3-128 of pack %s failed", name);
    return -1;
  }
  XXH128_canonicalFromHash (&c, sum);
  memcpy (buf + hashed + 16, c.digest, 16);
  memset (buf + hashed + 32, 0, 16);
  return 0;
}

/* Put the open pack, then its segment (lock held; released while the
 * objects are written, so that other threads fill the next pack
 * meanwhile: at most one pack is in flight, so at most two pack buffers
 * exist). full: only if the open pack is still full once the pack in
 * flight is out — while this thread waited, another may have put out the
 * pack it filled and opened the next (issue 12: such a waiter used to put
 * that next pack out after a few chunks, so a backup wrote 1-5 packs more
 * than its bytes need, more the slower the store). */
static int
flush_locked (vms_repo *repo, struct repo_packs *rp, int full)
{
  char name[64], seg_name[64], h[33];
  uint8_t seg_id[16];
  void *seg = NULL;
  size_t seg_len;

  while (rp->fl_no || rp->st_busy)
    pthread_cond_wait (&rp->fl_done, &rp->lock);
  if (rp->open_no == 0)
    return 0;
  if (full && rp->base + rp->buf_len < repo->pack_size)
    return 0;
  const uint8_t *id = rp->packs[rp->open_no - 1].id;
  /* Trailer: the pack's own index; then the tail. */
  size_t tsize = rp->nblobs * SEGMENT_ENTRY_SIZE;
  /* Encrypted: the trailer is sealed in place, its pack's name bound in. */
  size_t tenv = repo->encrypted ? ENVELOPE_HEADER_LEN : 0;
  size_t need = rp->buf_len + tsize + repo->blob_overhead + PACK_TAIL_SIZE;
  if (need > rp->buf_cap) {
    uint8_t *nb = realloc (rp->buf, need);
    if (nb == NULL) {
      vms_set_error (ENOMEM, "out of memory for a pack");
      goto fail;
    }
    rp->buf = nb;
    rp->buf_cap = need;
  }
  size_t trailer_at = rp->buf_len;
  uint64_t trailer_off = rp->base + trailer_at;
  rp->buf_len += tenv;
  for (size_t i = 0; i < rp->nblobs; i++) {
    const struct open_blob *b = &rp->blobs[i];
    entry_encode (rp->buf + rp->buf_len, &b->d, id, b->offset, b->slen,
                  b->plen, b->form);
    rp->buf_len += SEGMENT_ENTRY_SIZE;
  }
  if (repo->encrypted) {
    char aad[256];
    pack_object_name (id, name);
    if (crypt_seal (repo->key->k_enc, aad,
                    crypt_aad (aad, sizeof aad, repo->id, "trailer", name),
                    rp->buf + trailer_at + tenv, tsize,
                    rp->buf + trailer_at) == -1)
      goto fail;
    rp->buf_len += ENVELOPE_TAG_LEN;
    tsize += ENVELOPE_OVERHEAD;
  }
  uint8_t *tail = rp->buf + rp->buf_len;
  repo_put_le64 (tail, trailer_off);
  repo_put_le64 (tail + 8, tsize);
  /* The tail's checksum is computed below, once the lock is released: a
   * second pass over every stored byte (32 MiB a pack), which held up
   * every other thread's chunk while it ran (issue 15). Nobody writes
   * the pack's bytes any more; readers (pack_read_blob) copy blobs only. */
  size_t hashed = rp->buf_len;
  rp->buf_len += PACK_TAIL_SIZE;
  /* Its segment: the trailer's entries, sorted. */
  if (random_id (seg_id) == -1 ||
      segment_build_from (rp, id, &seg, &seg_len) == -1)
    goto fail;
  pack_object_name (id, name);
  hex (seg_id, 16, h);
  snprintf (seg_name, sizeof seg_name, "index/%s", h);

  /* In flight: readable from memory until put (pack_read_blob). */
  uint32_t no = rp->open_no;
  uint8_t pid[16];
  memcpy (pid, id, 16);         /* rp->packs may move once unlocked */
  uint8_t *buf = rp->buf;
  size_t len = rp->buf_len, cap = rp->buf_cap;
  struct storage_writer *w = rp->w;
  XXH3_state_t *hctx = rp->hctx;
  rp->fl_no = no;
  rp->fl_buf = buf;
  rp->fl_len = len;
  rp->fl_base = rp->base;
  rp->w = NULL;
  rp->hctx = NULL;
  rp->base = 0;
  rp->buf = rp->spare;
  rp->buf_cap = rp->spare_cap;
  rp->spare = NULL;
  rp->spare_cap = 0;
  rp->open_no = 0;
  rp->buf_len = 0;
  rp->nblobs = 0;
  pthread_mutex_unlock (&rp->lock);

  int r = 0;
  char what[192];
  /* Recorded before it can be stored (sync: a rerun adopts it). */
  if (repo->pack_put_hook && repo->pack_put_hook (repo, pid, 0,
                                                  repo->pack_put_opaque) == -1) {
    if (w)
      w->abort (w);
    XXH3_freeState (hctx);
    r = -1;
  }
  else if (w) {
    /* Its last piece: the trailer and the tail, then in place. */
    if (tail_seal (hctx, buf, hashed, name) == -1) {
      w->abort (w);
      r = -1;
    }
    else if (w->append (w, buf, len) == -1) {
      vms_set_error (errno, "repository %s: %s while writing pack %s",
                     repo->path, repo_errstr (errno), name);
      w->abort (w);
      r = -1;
    }
    else if (w->commit (w) == -1) {
      vms_set_error (errno, "repository %s: %s while writing pack %s",
                     repo->path, repo_errstr (errno), name);
      r = -1;
    }
    XXH3_freeState (hctx);
  }
  else if (tail_seal (NULL, buf, hashed, name) == -1)
    r = -1;
  else if (storage_put (repo->store, name, buf, len, STORAGE_PUT_LAZY) == -1) {
    int e = errno;
    snprintf (what, sizeof what, "writing pack %s", name);
    errno = e;
    put_error (repo, what);
    r = -1;
  }
  if (r == 0 && repo->pack_put_hook)
    (void) repo->pack_put_hook (repo, pid, 1, repo->pack_put_opaque);
  if (r == -1)
    ;
  else if (storage_put (repo->store, seg_name, seg, seg_len,
                        STORAGE_PUT_LAZY) == -1) {
    int e = errno;
    snprintf (what, sizeof what, "writing index segment %s (of pack %s)",
              seg_name, name);
    errno = e;
    put_error (repo, what);
    r = -1;
  }
  free (seg);

  pthread_mutex_lock (&rp->lock);
  rp->packs[no - 1].state = r == 0 ? PACK_STORED : PACK_FAILED;
  if (r == -1)
    note_failure (rp);
  rp->spare = buf;
  rp->spare_cap = cap;
  rp->fl_no = 0;
  rp->fl_buf = NULL;
  rp->fl_len = 0;
  rp->fl_base = 0;
  pthread_cond_broadcast (&rp->fl_done);
  return r;
 fail:
  free (seg);
  open_pack_fail (rp);
  return -1;
}

/* Append the open pack's buffer to its writer (lock held; released while
 * the bytes are hashed and written, so that the other threads fill the
 * next piece meanwhile). One piece at a time and in order: the tail's
 * XXH3-128 is taken as they go. */
static int
stage_out_locked (vms_repo *repo, struct repo_packs *rp)
{
  char name[64];

  while (rp->fl_no || rp->st_busy)
    pthread_cond_wait (&rp->fl_done, &rp->lock);
  /* Another thread may have put it out, or the pack, meanwhile. */
  if (rp->open_no == 0 || rp->w == NULL || rp->buf_len < PACK_STAGE_SIZE (repo))
    return 0;
  uint32_t no = rp->open_no;
  struct storage_writer *w = rp->w;
  XXH3_state_t *hctx = rp->hctx;
  uint8_t *buf = rp->buf;
  size_t len = rp->buf_len, cap = rp->buf_cap;
  pack_object_name (rp->packs[no - 1].id, name);
  rp->st_busy = 1;
  rp->st_no = no;
  rp->st_buf = buf;
  rp->st_off = rp->base;
  rp->st_len = len;
  rp->base += len;
  rp->buf = rp->spare;
  rp->buf_cap = rp->spare_cap;
  rp->spare = NULL;
  rp->spare_cap = 0;
  rp->buf_len = 0;
  pthread_mutex_unlock (&rp->lock);

  int r = 0;
  if (XXH3_128bits_update (hctx, buf, len) != XXH_OK) {
    vms_set_error (EIO, "XXH3-128 of pack %s failed", name);
    r = -1;
  }
  else if (w->append (w, buf, len) == -1) {
    vms_set_error (errno, "repository %s: %s while writing pack %s",
                   repo->path, repo_errstr (errno), name);
    r = -1;
  }

  pthread_mutex_lock (&rp->lock);
  rp->spare = buf;
  rp->spare_cap = cap;
  rp->st_busy = 0;
  rp->st_buf = NULL;
  rp->st_len = 0;
  /* Its chunks are not stored: no commit may follow. */
  if (r == -1 && rp->open_no == no)
    open_pack_fail (rp);
  pthread_cond_broadcast (&rp->fl_done);
  return r;
}

/* Append a blob (lock held); force: even if d is indexed (gc's repack,
 * which moves d). */
static int
append_locked (vms_repo *repo, struct repo_packs *rp,
               const struct vms_digest *d, int form, const void *blob,
               size_t slen, size_t plen, int force, uint64_t *stored)
{
  if (stored)
    *stored = 0;
  if (!force && find_dedup (rp, d))
    return 0;
  if (rp->open_no == 0) {
    uint8_t id[16];
    if (random_id (id) == -1)
      return -1;
    uint32_t no = pack_number (rp, id, PACK_OPEN);
    if (no == 0)
      return -1;
    rp->open_no = no;
    rp->base = 0;
    rp->buf_len = PACK_HEADER_SIZE;
    rp->nblobs = 0;
    /* Written as it fills where the store can (issue 15). */
    char name[64];
    pack_object_name (id, name);
    rp->w = storage_writer_open (repo->store, name, STORAGE_PUT_LAZY);
    if (rp->w == NULL && errno != ENOTSUP) {
      vms_set_error (errno, "repository %s: %s while writing pack %s",
                     repo->path, repo_errstr (errno), name);
      open_pack_fail (rp);
      return -1;
    }
    if (rp->w && ((rp->hctx = XXH3_createState ()) == NULL ||
                  XXH3_128bits_reset (rp->hctx) != XXH_OK)) {
      vms_set_error (ENOMEM, "out of memory for the checksum of pack %s",
                     name);
      open_pack_fail (rp);
      return -1;
    }
  }
  /* 4 KiB aligned when that costs under 1 % of the blob. */
  size_t pad = (4096 - (rp->base + rp->buf_len) % 4096) % 4096;
  /* blob holds slen bytes of content and, encrypted, its envelope. */
  size_t blen = slen + repo->blob_overhead;
  if (pad * 100 >= blen)
    pad = 0;
  size_t need = rp->buf_len + pad + blen;
  if (need > rp->buf_cap) {
    /* A pack written in pieces needs a piece and a blob: at once, on huge
     * pages (bulk-mem.h; growing it page by page cost a backup's workers
     * ~25 ms of page faults, issue 15). A pack held whole grows. */
    size_t ncap = rp->buf_cap ? rp->buf_cap
      : rp->w ? PACK_STAGE_SIZE (repo) + ((size_t) 1 << 20) : (size_t) 1 << 20;
    while (ncap < need)
      ncap *= 2;
    uint8_t *nb = rp->buf ? realloc (rp->buf, ncap) : vms_bulk_alloc (ncap);
    if (nb == NULL) {
      vms_set_error (ENOMEM, "out of memory for a pack");
      return -1;
    }
    vms_bulk_advise (nb, ncap);
    rp->buf = nb;
    rp->buf_cap = ncap;
  }
  if (rp->nblobs == rp->blobs_cap) {
    size_t ncap = rp->blobs_cap ? rp->blobs_cap * 2 : 512;
    struct open_blob *nb = realloc (rp->blobs, ncap * sizeof *nb);
    if (nb == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    rp->blobs = nb;
    rp->blobs_cap = ncap;
  }
  if (rp->base == 0 && rp->buf_len == PACK_HEADER_SIZE) {
    memcpy (rp->buf, PACK_MAGIC, 8);
    repo_put_le32 (rp->buf + 8, PACK_VERSION);
    /* flags: bit 0, encrypted (blobs and trailer sealed). */
    repo_put_le32 (rp->buf + 12, repo->encrypted ? PACK_FLAG_ENCRYPTED : 0);
  }
  memset (rp->buf + rp->buf_len, 0, pad);
  rp->buf_len += pad;
  uint32_t offset = (uint32_t) (rp->base + rp->buf_len);
  memcpy (rp->buf + rp->buf_len, blob, blen);
  rp->buf_len += blen;
  rp->blobs[rp->nblobs++] = (struct open_blob) {
    .d = *d, .offset = offset, .slen = (uint32_t) slen,
    .plen = (uint32_t) plen, .form = (uint8_t) form,
  };
  struct pidx_entry *slot = table_slot (rp, d);
  if (slot == NULL)
    return -1;
  if (slot->pack == 0)
    rp->len++;
  slot->d = *d;
  slot->pack = rp->open_no;
  slot->offset = offset;
  slot->slen = (uint32_t) slen;
  slot->plen_form = (uint32_t) plen | (uint32_t) form << 31;
  if (stored)
    *stored = blen;
  if (rp->base + rp->buf_len >= repo->pack_size)
    return flush_locked (repo, rp, 1);
  if (rp->w && rp->buf_len >= PACK_STAGE_SIZE (repo))
    return stage_out_locked (repo, rp);
  return 0;
}

int
pack_add_blob (vms_repo *repo, const struct vms_digest *d, int form,
               const void *blob, size_t slen, size_t plen, uint64_t *stored)
{
  struct repo_packs *rp = packs_get (repo);
  int r;

  if (rp == NULL)
    return -1;
  pthread_mutex_lock (&rp->lock);
  r = ensure_loaded (repo, rp);
  if (r == 0)
    r = append_locked (repo, rp, d, form, blob, slen, plen, 0, stored);
  pthread_mutex_unlock (&rp->lock);
  return r;
}

int
pack_flush (vms_repo *repo)
{
  struct repo_packs *rp = repo->packs;
  int r = 0;

  if (rp == NULL)
    return 0;                   /* nothing stored */
  pthread_mutex_lock (&rp->lock);
  if (flush_locked (repo, rp, 0) == -1)
    r = -1;
  /* Another thread's pack may still be in flight. */
  while (rp->fl_no)
    pthread_cond_wait (&rp->fl_done, &rp->lock);
  if (r == -1)
    ;
  else if (rp->failed) {
    vms_set_error (EIO, "repository %s: a pack of this backup could not be "
                   "stored: %s", repo->path, rp->failed_msg);
    r = -1;
  }
  /* Every pack and segment put lazily so far is durable from here on:
   * only then may a manifest name their chunks. */
  else if (storage_sync (repo->store) == -1) {
    put_error (repo, "flushing packs");
    rp->failed = 1;
    snprintf (rp->failed_msg, sizeof rp->failed_msg, "%s", vms_get_error ());
    r = -1;
  }
  pthread_mutex_unlock (&rp->lock);
  return r;
}

/* ---- a pack's header and tail, checked (verify, adoption) ---- */

int
pack_check_version (uint32_t version, char *why, size_t size)
{
  if (version == PACK_VERSION_SHA256 || version == PACK_VERSION)
    return 0;
  snprintf (why, size, "has pack format version %" PRIu32 ", %s (this one "
            "reads versions %d and %d)", version, version > PACK_VERSION
            ? "newer than this vmshadow reads: read it with the vmshadow "
            "that wrote it or a later one" : "which no vmshadow writes",
            PACK_VERSION_SHA256, PACK_VERSION);
  return -1;
}

int
pack_check_whole (const uint8_t *b, size_t len, char *why, size_t size)
{
  if (len < PACK_HEADER_SIZE + PACK_TAIL_SIZE) {
    snprintf (why, size, "is not a pack (too short)");
    return -1;
  }
  if (memcmp (b, PACK_MAGIC, 8) != 0) {
    snprintf (why, size, "is not a pack (bad magic)");
    return -1;
  }
  uint32_t version = repo_get_le32 (b + 8);
  if (pack_check_version (version, why, size) == -1)
    return -1;
  size_t hashed = len - PACK_TAIL_SIZE;
  const uint8_t *sum = b + hashed + 16;
  int same;
  if (version == PACK_VERSION_SHA256) {
    uint8_t d[VMS_DIGEST_LEN];
    if (repo_sha256 (b, hashed, d) == -1) {
      snprintf (why, size, "could not be checked (%s)", vms_get_error ());
      return -1;
    }
    same = memcmp (d, sum, VMS_DIGEST_LEN) == 0;
  }
  else {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash (&c, XXH3_128bits (b, hashed));
    same = memcmp (c.digest, sum, 16) == 0;
  }
  if (!same) {
    snprintf (why, size, "is corrupt (checksum mismatch: damaged or cut "
              "short)");
    return -1;
  }
  static const uint8_t zero[16];
  if (version != PACK_VERSION_SHA256 && memcmp (sum + 16, zero, 16) != 0) {
    snprintf (why, size, "is corrupt (its tail's reserved bytes are not "
              "zero)");
    return -1;
  }
  return 0;
}

/* ---- adoption (issue 14: a sync killed between a pack and its segment) ----
 *
 * Safe against a concurrent gc as deduplication is (rule 2 of
 * "Concurrency"): this process loaded the condemned lists after its lease
 * was put, and adopts no pack they name; a gc that condemns the pack later
 * records this session and deletes nothing before it ended and a fresh
 * mark saw its manifest, put after the segment this writes. */

int
pack_adopt (vms_repo *repo, const uint8_t id[16], uint64_t *chunks,
            const char **why)
{
  struct repo_packs *rp = packs_get (repo);
  char name[64], seg_name[64], h[33];
  uint8_t *b = NULL, *trailer = NULL, *plain = NULL, *e = NULL, *out = NULL;
  void *seg = NULL;
  size_t len, n = 0, ne = 0, seg_len;
  uint8_t seg_id[16];
  char why_bad[160];
  int r = -1;

  *chunks = 0;
  *why = NULL;
  if (rp == NULL)
    return -1;
  pack_object_name (id, name);
  pthread_mutex_lock (&rp->lock);
  if (ensure_loaded (repo, rp) == -1) {
    pthread_mutex_unlock (&rp->lock);
    return -1;
  }
  uint32_t no = rp->pslots_cap
    ? rp->pslots[pack_hash_slot (rp, rp->pslots, rp->pslots_cap, id)] : 0;
  if (no && rp->packs[no - 1].named)
    *why = "a segment names it";
  else if (no && rp->packs[no - 1].condemned)
    *why = "a gc has condemned it";
  pthread_mutex_unlock (&rp->lock);
  if (*why)
    return 0;

  /* Read whole: at most a pack (its size and the trailer's framing). */
  if (storage_get_all (repo->store, name, (size_t) repo->pack_size + (4u << 20),
                       (void **) &b, &len) == -1) {
    if (errno == ENOENT) {
      *why = "it was never stored";
      return 0;
    }
    vms_set_error (errno, "repository %s: cannot read pack %s: %s",
                   repo->path, name, repo_errstr (errno));
    return -1;
  }
#define BAD(what) do { vms_set_error (EBADMSG, "repository %s: pack %s is " \
                                      "not sound (%s)", repo->path, name, \
                                      what); goto out; } while (0)
  /* Either pack format version: a pack an older vmshadow put. */
  if (pack_check_whole (b, len, why_bad, sizeof why_bad) == -1) {
    vms_set_error (EBADMSG, "repository %s: pack %s %s", repo->path, name,
                   why_bad);
    goto out;
  }
  if (repo_get_le32 (b + 12) != (repo->encrypted ? PACK_FLAG_ENCRYPTED : 0u))
    BAD ("its header's flags");
  size_t hashed = len - PACK_TAIL_SIZE;
  uint64_t toff = repo_get_le64 (b + hashed), tlen = repo_get_le64 (b + hashed + 8);
  size_t tenv = repo->encrypted ? ENVELOPE_OVERHEAD : 0;
  if (toff < PACK_HEADER_SIZE || toff > hashed || tlen != hashed - toff ||
      tlen < tenv || (tlen - tenv) % SEGMENT_ENTRY_SIZE)
    BAD ("its trailer is out of place");
  trailer = b + toff;
  n = (size_t) ((tlen - tenv) / SEGMENT_ENTRY_SIZE);
  if (repo->encrypted) {
    char aad[256];
    if ((plain = malloc (tlen ? (size_t) tlen : 1)) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto out;
    }
    if (crypt_open (repo->key->k_enc, aad,
                    crypt_aad (aad, sizeof aad, repo->id, "trailer", name),
                    trailer, (size_t) tlen, plain) == -1)
      BAD ("its trailer does not open");
    trailer = plain;
  }
  if ((e = malloc (n ? n * SEGMENT_ENTRY_SIZE : 1)) == NULL ||
      (out = malloc (VMS_CHUNK_SIZE)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    const uint8_t *t = trailer + i * SEGMENT_ENTRY_SIZE;
    struct vms_digest d;
    struct pack_loc loc;
    if (entry_check (t) == -1 || memcmp (t + 32, id, 16) != 0)
      BAD ("an entry of its trailer");
    memcpy (d.b, t, VMS_DIGEST_LEN);
    memcpy (loc.pack_id, id, 16);
    loc.offset = repo_get_le32 (t + 48);
    loc.slen = repo_get_le32 (t + 52);
    loc.plen = repo_get_le32 (t + 56);
    loc.form = t[60];
    if ((uint64_t) loc.offset + loc.slen + repo->blob_overhead > toff)
      BAD ("a blob past its trailer");
    /* Every blob against its id, as verify --deep reads a chunk. */
    if (chunk_store_check_at (repo, &d, loc.plen, &loc, UINT64_MAX,
                              b + loc.offset, out) == -1)
      goto out;
    pthread_mutex_lock (&rp->lock);
    int have = find_dedup (rp, &d) != NULL;
    pthread_mutex_unlock (&rp->lock);
    if (!have)
      memcpy (e + ne++ * SEGMENT_ENTRY_SIZE, t, SEGMENT_ENTRY_SIZE);
  }
#undef BAD
  if (ne == 0) {
    *why = "the index has all its chunks";
    r = 0;
    goto out;
  }
  if (random_id (seg_id) == -1 || segment_build (e, ne, &seg, &seg_len) == -1)
    goto out;
  hex (seg_id, 16, h);
  snprintf (seg_name, sizeof seg_name, "index/%s", h);
  /* Lazily, as a pack's segment: the commit's sync makes it durable
   * before any manifest names its chunks. */
  if (storage_put (repo->store, seg_name, seg, seg_len, STORAGE_PUT_LAZY) == -1) {
    char what[160];
    int err = errno;
    snprintf (what, sizeof what, "writing index segment %s (of adopted pack "
              "%s)", seg_name, name);
    errno = err;
    put_error (repo, what);
    goto out;
  }
  pthread_mutex_lock (&rp->lock);
  r = table_add_segment (rp, seg, ne, 0);
  pthread_mutex_unlock (&rp->lock);
  if (r == 0) {
    *chunks = ne;
    r = 1;
  }
 out:
  free (seg);
  free (out);
  free (e);
  free (plain);
  free (b);
  return r;
}

/* ---- lock extension (issue 14, R29) ----
 *
 * A backup on a repository with a retention names chunks stored by older
 * sessions (deduplicated, or taken unchanged from its parent's index),
 * whose packs and index segments are retained only until their own
 * sessions' dates. Before its manifest is put (R12: last), every such
 * object is retained until this session's date too, so that the backup is
 * as immutable as its own manifest says. */

int
pack_note_used (vms_repo *repo, const vms_index *idx)
{
  struct repo_packs *rp;
  int r = 0;

  if (repo->retention_days == 0 || repo->version < 2)
    return 0;
  if ((rp = packs_get (repo)) == NULL)
    return -1;
  pthread_mutex_lock (&rp->lock);
  if (ensure_loaded (repo, rp) == -1)
    r = -1;
  else {
    uint64_t n = vms_index_chunk_count (idx);
    for (uint64_t c = 0; c < n; c++) {
      const struct vms_digest *d = vms_index_get (idx, c);
      if (d == NULL || vms_digest_is_zero (d))
        continue;
      struct pidx_entry *e = find (rp, d);
      if (e)
        rp->packs[e->pack - 1].used = 1;
    }
  }
  pthread_mutex_unlock (&rp->lock);
  return r;
}

static int
extend_one (vms_repo *repo, const char *name, const char *backup_id,
            uint64_t *extended)
{
  int r = storage_extend_retention (repo->store, name, NULL);

  if (r == -1) {
    int e = errno;
    vms_set_error (e, "repository %s: cannot extend the Object Lock "
                   "retention of %s, which backup %s needs: %s%s (not "
                   "committed)", repo->path, name, backup_id,
                   repo_errstr (e), e == EACCES ? " (the credentials need "
                   "s3:GetObjectRetention and s3:PutObjectRetention)" : "");
    return -1;
  }
  *extended += (uint64_t) r;
  return 0;
}

int
pack_extend_used (vms_repo *repo, const char *backup_id, uint64_t *extended)
{
  struct repo_packs *rp = repo->packs;
  string_vector names = empty_vector;
  uint8_t *seg_seen = NULL;
  int r = 0;

  *extended = 0;
  if (repo->retention_days == 0 || repo->version < 2)
    return 0;
  /* The packs (and their segments) of older sessions it names. */
  if (rp) {
    pthread_mutex_lock (&rp->lock);
    seg_seen = calloc (rp->nseg_names + 1, 1);
    if (seg_seen == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      r = -1;
    }
    for (size_t i = 0; r == 0 && i < rp->npacks; i++) {
      struct pack_info *p = &rp->packs[i];
      if (!p->used || p->ours)
        continue;
      char name[64];
      pack_object_name (p->id, name);
      if (string_vector_append_copy (&names, name) == -1)
        r = -1;
      for (uint32_t k = 0; r == 0 && k < p->nsegs; k++)
        if (p->segs[k] <= rp->nseg_names && !seg_seen[p->segs[k]]) {
          seg_seen[p->segs[k]] = 1;
          if (string_vector_append_copy (&names,
                                         rp->seg_names[p->segs[k] - 1]) == -1)
            r = -1;
        }
    }
    for (size_t i = 0; i < rp->npacks; i++)
      rp->packs[i].used = 0;
    pthread_mutex_unlock (&rp->lock);
    free (seg_seen);
    if (r == -1) {
      string_vector_free_all (&names);
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  }
  /* Every backup needs the config, and the keys of an encrypted one. */
  if (string_vector_append_copy (&names, "config") == -1 ||
      storage_list (repo->store, "keys/", storage_collect_names, &names) != 0) {
    vms_set_error (errno, "repository %s: cannot list keys/: %s", repo->path,
                   repo_errstr (errno));
    string_vector_free_all (&names);
    return -1;
  }
  for (size_t i = 0; r == 0 && i < names.len; i++)
    r = extend_one (repo, names.ptr[i], backup_id, extended);
  string_vector_free_all (&names);
  return r;
}

/* ---- gc (docs/repository-format.md "Version 2", "Concurrency") ----
 *
 * Two phases, so that gc runs beside any number of backups (issue 12):
 * phase 1 marks from every manifest and condemns the packs that hold no
 * live chunk (after copying the live chunks of mostly dead packs
 * elsewhere), in gc/condemned-<id>, then records the sessions whose
 * leases exist once that list is visible; phase 2, for a list whose
 * recorded sessions have all ended or expired, marks again from every
 * manifest and deletes the condemned packs that no live chunk needs.
 * One gc at a time: gc/lease. */

struct gc_pack {
  uint64_t live_bytes, dead_bytes;
  uint64_t live_chunks, dead_chunks;
  int64_t mtime;
  uint64_t size;
  int64_t retain_until;         /* Object Lock (issue 14); 0: none */
  int needed;                   /* a live chunk's entry names it */
  int condemn, repack, del, drop;
};

static int
pack_id_from_name (const char *name, uint8_t id[16])
{
  /* packs/ab/<32 hex> */
  if (strlen (name) != 6 + 3 + 32 || strncmp (name, "packs/", 6) != 0 ||
      name[8] != '/' || strncmp (name + 6, name + 9, 2) != 0)
    return -1;
  return hex_id (name + 9, id);
}

/* A pack is repacked when less than this share of its blob bytes is
 * live. */
#define REPACK_LIVE_PERCENT 50

/* Compacted segments hold at most this many entries each. */
#define COMPACT_SEGMENT_ENTRIES (1u << 20)

/* What gc loads: the condemned lists, the segments (kept, for
 * compaction), the packs listed, the table ranked by them. */
struct gc_state {
  struct condemned_gen *gens;
  size_t ngens;
  string_vector segments;
  uint8_t **segbuf;
  size_t *segn;                 /* entries of each */
  int64_t *segret;              /* retain-until of each (issue 14); 0: none */
  string_vector pack_names;
  struct gc_pack *gp;           /* by pack number - 1 */
  size_t npacks;
};

static void
gc_state_free (struct repo_packs *rp, struct gc_state *st)
{
  gens_free (st->gens, st->ngens);
  for (size_t i = 0; i < st->segments.len; i++)
    free (st->segbuf[i]);
  free (st->segbuf);
  free (st->segn);
  free (st->segret);
  string_vector_free_all (&st->segments);
  string_vector_free_all (&st->pack_names);
  free (st->gp);
  memset (st, 0, sizeof *st);
  table_clear (rp);
}

static int
add_all_segments (struct repo_packs *rp, struct gc_state *st)
{
  for (size_t i = 0; i < st->segments.len; i++)
    if (st->segbuf[i] &&
        table_add_segment (rp, st->segbuf[i], st->segn[i], 0) == -1)
      return -1;
  return 0;
}

/* Load the state (lock held): condemned lists, then segments, then the
 * listing of packs/ (a pack is put before its segment, so a segment's
 * pack that is not listed is gone), then the table, ranked. */
static int
gc_load (vms_repo *repo, struct repo_packs *rp, struct gc_state *st)
{
  table_clear (rp);
  if (gens_read (repo, 1, &st->gens, &st->ngens) == -1 ||
      mark_condemned (rp, st->gens, st->ngens) == -1)
    return -1;
  if (storage_list (repo->store, "index/", storage_collect_names,
                    &st->segments) != 0) {
    vms_set_error (errno, "repository %s: cannot list index/: %s", repo->path,
                   repo_errstr (errno));
    return -1;
  }
  st->segbuf = calloc (st->segments.len + 1, sizeof *st->segbuf);
  st->segn = calloc (st->segments.len + 1, sizeof *st->segn);
  st->segret = calloc (st->segments.len + 1, sizeof *st->segret);
  if (st->segbuf == NULL || st->segn == NULL || st->segret == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < st->segments.len; i++) {
    void *buf;
    size_t len;
    if (storage_get_all (repo->store, st->segments.ptr[i], (size_t) 1 << 31,
                         &buf, &len) == -1) {
      if (errno == ENOENT)
        continue;
      vms_set_error (errno, "repository %s: cannot read %s: %s", repo->path,
                     st->segments.ptr[i], repo_errstr (errno));
      return -1;
    }
    st->segbuf[i] = buf;
    /* Under a retention, a segment still retained is neither merged nor
     * deleted (issue 14): one HEAD each, only in such a repository. */
    struct storage_stat sst;
    if (repo->retention_days &&
        storage_stat (repo->store, st->segments.ptr[i], &sst) == 0)
      st->segret[i] = sst.retain_until;
    int64_t n = segment_check (buf, len, st->segments.ptr[i]);
    if (n == -1) {
      vms_set_error (vms_get_errno (), "gc stopped before removing anything: "
                     "repository %s: %s", repo->path, vms_get_error ());
      return -1;
    }
    st->segn[i] = (size_t) n;
    if (table_add_segment (rp, buf, (size_t) n, 0) == -1)
      return -1;
  }
  if (storage_list (repo->store, "packs/", storage_collect_names,
                    &st->pack_names) != 0) {
    vms_set_error (errno, "repository %s: cannot list packs/: %s", repo->path,
                   repo_errstr (errno));
    return -1;
  }
  for (size_t i = 0; i < st->pack_names.len; i++) {
    uint8_t id[16];
    if (pack_id_from_name (st->pack_names.ptr[i], id) == 0 &&
        pack_number (rp, id, PACK_STORED) == 0)
      return -1;
  }
  st->npacks = rp->npacks;
  st->gp = calloc (st->npacks + 1, sizeof *st->gp);
  if (st->gp == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t p = 0; p < st->npacks; p++)
    rp->packs[p].listed = 0;
  for (size_t i = 0; i < st->pack_names.len; i++) {
    uint8_t id[16];
    struct storage_stat sst;
    if (pack_id_from_name (st->pack_names.ptr[i], id) == -1)
      continue;                 /* not a pack's name: not ours */
    uint32_t no = pack_number (rp, id, PACK_STORED);
    if (storage_stat (repo->store, st->pack_names.ptr[i], &sst) == -1)
      continue;                 /* gone meanwhile */
    rp->packs[no - 1].listed = 1;
    st->gp[no - 1].mtime = sst.mtime;
    st->gp[no - 1].size = sst.size;
    st->gp[no - 1].retain_until = sst.retain_until;
  }
  /* Again, now that it is known which packs exist. */
  if (add_all_segments (rp, st) == -1)
    return -1;
  return 0;
}

/* Per pack: the live and dead chunks its table entries name. */
static void
gc_count (struct repo_packs *rp, struct gc_state *st,
          const struct digest_set *live)
{
  for (size_t i = 0; i < rp->cap; i++) {
    const struct pidx_entry *e = &rp->tab[i];
    if (e->pack == 0 || e->pack > st->npacks)
      continue;
    struct gc_pack *g = &st->gp[e->pack - 1];
    if (digest_set_contains (live, &e->d)) {
      g->live_bytes += e->slen;
      g->live_chunks++;
      g->needed = 1;
    }
    else {
      g->dead_bytes += e->slen;
      g->dead_chunks++;
    }
  }
}

/* The session leases there are now, but this process's own. */
static int
list_sessions (vms_repo *repo, string_vector *out)
{
  string_vector l = empty_vector;
  char own[64] = "";

  if (repo->session)
    snprintf (own, sizeof own, "sessions/%s", lease_id (repo->session));
  if (storage_list (repo->store, "sessions/", storage_collect_names, &l) != 0) {
    vms_set_error (errno, "repository %s: cannot list sessions/: %s",
                   repo->path, repo_errstr (errno));
    string_vector_free_all (&l);
    return -1;
  }
  for (size_t i = 0; i < l.len; i++)
    if (strcmp (l.ptr[i], own) != 0
        && string_vector_append_copy (out, l.ptr[i]) == -1) {
      string_vector_free_all (&l);
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  string_vector_free_all (&l);
  return 0;
}

/* Put condemned list name: its packs and (has_sessions) sessions. */
static int
gen_put (vms_repo *repo, const char *name, uint8_t (*packs)[16], size_t np,
         const string_vector *sessions, unsigned flags)
{
  size_t cap = 128 + np * 36 + (sessions ? sessions->len * 36 : 0);
  CLEANUP_FREE char *t = malloc (cap);
  size_t n = 0;
  char h[33];

  if (t == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  n += (size_t) snprintf (t + n, cap - n, "{\"format\": \"vmshadow-gc-condemned\", "
                          "\"version\": 1, \"packs\": [");
  for (size_t i = 0; i < np; i++) {
    hex (packs[i], 16, h);
    n += (size_t) snprintf (t + n, cap - n, "%s\"%s\"", i ? "," : "", h);
  }
  if (sessions) {
    n += (size_t) snprintf (t + n, cap - n, "], \"sessions\": [");
    for (size_t i = 0; i < sessions->len; i++)
      n += (size_t) snprintf (t + n, cap - n, "%s\"%s\"", i ? "," : "",
                              sessions->ptr[i] + 9);
    n += (size_t) snprintf (t + n, cap - n, "]}\n");
  }
  else
    n += (size_t) snprintf (t + n, cap - n, "], \"sessions\": null}\n");
  if (storage_put (repo->store, name, t, n, flags) == -1) {
    vms_set_error (errno, "repository %s: %s while writing %s", repo->path,
                   repo_errstr (errno), name);
    return -1;
  }
  return 0;
}

/* Record the sessions of condemned list g, listed now that it is
 * visible (rule 5: any session not among them read the list before it
 * referenced anything, rule 2). */
static int
gen_record_sessions (vms_repo *repo, struct condemned_gen *g)
{
  if (list_sessions (repo, &g->sessions) == -1 ||
      gen_put (repo, g->name, g->packs, g->npacks, &g->sessions, 0) == -1)
    return -1;
  g->has_sessions = 1;
  return 0;
}

/* 1 when every session recorded for g has ended or expired. */
static int
gen_ready (vms_repo *repo, const struct condemned_gen *g, int64_t now,
           size_t *waiting)
{
  *waiting = 0;
  for (size_t i = 0; i < g->sessions.len; i++) {
    struct lease_info li;
    if (lease_read (repo, g->sessions.ptr[i], now, &li) == -1) {
      if (errno == ENOENT)
        continue;
      vms_set_error (errno, "repository %s: cannot read %s: %s", repo->path,
                     g->sessions.ptr[i], repo_errstr (errno));
      return -1;
    }
    if (!li.expired)
      (*waiting)++;
  }
  return *waiting == 0;
}

/* Phase 1: condemn (and first repack). */
static int
gc_phase1 (vms_repo *repo, struct repo_packs *rp, struct gc_state *st,
           const struct digest_set *live, int64_t grace, int64_t now,
           size_t *condemned)
{
  uint8_t (*packs)[16] = NULL;
  size_t np = 0;
  uint8_t *blob = NULL;
  int r = -1;

  gc_count (rp, st, live);
  for (size_t p = 0; p < st->npacks; p++) {
    struct gc_pack *g = &st->gp[p];
    if (rp->packs[p].listed != 1 || rp->packs[p].condemned ||
        (grace > 0 && now - g->mtime < grace))
      continue;
    int dead = g->live_chunks == 0, mostly = !dead &&
      g->live_bytes * 100 < (g->live_bytes + g->dead_bytes) * REPACK_LIVE_PERCENT;
    /* Object Lock (issue 14, R29): a pack still retained is neither
     * condemned nor repacked (its copy would only add to it): kept, and
     * counted, until its date has passed. */
    if ((dead || mostly) && g->retain_until > now) {
      repo_note_kept (repo, g->size, g->retain_until);
      continue;
    }
    if (dead)
      g->condemn = 1;
    else if (mostly)
      g->repack = g->condemn = 1;
  }
  /* Repack: the live chunks of those packs into new packs (with their
   * segments); then no live entry names the old ones. */
  blob = malloc (VMS_CHUNK_SIZE + repo->blob_overhead);
  packs = malloc ((st->npacks + 1) * sizeof *packs);
  if (blob == NULL || packs == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  int repacked = 0;
  for (size_t i = 0; i < rp->cap; i++) {
    struct pidx_entry *e = &rp->tab[i];
    if (e->pack == 0 || e->pack > st->npacks || !st->gp[e->pack - 1].repack ||
        !digest_set_contains (live, &e->d))
      continue;
    struct pack_loc loc;
    char name[64];
    slot_loc (rp, e, &loc);
    pack_object_name (loc.pack_id, name);
    /* Encrypted: moved sealed, as it is (its identity is its id). */
    if (storage_get (repo->store, name, loc.offset,
                     loc.slen + repo->blob_overhead, blob) == -1) {
      char h[65];
      vms_digest_hex (&e->d, h);
      vms_set_error (errno, "gc stopped: cannot read chunk %s from pack %s "
                     "to repack it: %s; nothing was removed", h, name,
                     repo_errstr (errno));
      goto out;
    }
    struct vms_digest d = e->d;
    if (append_locked (repo, rp, &d, loc.form, blob, loc.slen, loc.plen, 1,
                       NULL) == -1)
      goto out;
    repacked = 1;
  }
  if (repacked && flush_locked (repo, rp, 0) == -1)
    goto out;
  for (size_t p = 0; p < st->npacks; p++)
    if (st->gp[p].condemn)
      memcpy (packs[np++], rp->packs[p].id, 16);
  if (np) {
    /* The copies are durable before their originals are condemned. */
    if (repacked && storage_sync (repo->store) == -1) {
      put_error (repo, "flushing repacked packs");
      goto out;
    }
    uint8_t gid[16];
    char h[33], name[64];
    if (random_id (gid) == -1)
      goto out;
    hex (gid, 16, h);
    snprintf (name, sizeof name, "gc/condemned-%s", h);
    /* Exclusive, then the sessions there are once it is visible. */
    if (gen_put (repo, name, packs, np, NULL, STORAGE_PUT_EXCLUSIVE) == -1)
      goto out;
    struct condemned_gen g = { .name = name, .packs = packs, .npacks = np };
    int rr = gen_record_sessions (repo, &g);
    string_vector_free_all (&g.sessions);
    if (rr == -1)
      goto out;
  }
  *condemned = np;
  r = 0;
 out:
  free (blob);
  free (packs);
  return r;
}

/* Put one compacted segment of n entries (lazily; the caller syncs). */
static int
compact_put (vms_repo *repo, uint8_t *entries, size_t n)
{
  CLEANUP_FREE void *seg = NULL;
  size_t len;
  uint8_t id[16];
  char h[33], name[64];

  if (random_id (id) == -1 || segment_build (entries, n, &seg, &len) == -1)
    return -1;
  hex (id, 16, h);
  snprintf (name, sizeof name, "index/%s", h);
  /* Not retained: it indexes only packs whose retention has ended (those
   * of retained segments stay in them, issue 14). */
  if (storage_put (repo->store, name, seg, len,
                   STORAGE_PUT_LAZY | STORAGE_PUT_NO_RETAIN) == -1) {
    vms_set_error (errno, "repository %s: %s while writing index segment "
                   "%s", repo->path, repo_errstr (errno), name);
    return -1;
  }
  return 0;
}

/* Phase 2 compaction: the loaded segments merged, without the entries of
 * dropped packs. Every other entry stays, duplicates included: a chunk in
 * two kept packs stays indexed in both. */
static int
gc_compact (vms_repo *repo, struct repo_packs *rp, struct gc_state *st,
            int64_t now)
{
  uint8_t *entries = malloc ((size_t) COMPACT_SEGMENT_ENTRIES * SEGMENT_ENTRY_SIZE);
  size_t n = 0;
  int r = -1;

  if (entries == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t s = 0; s < st->segments.len; s++)
    for (size_t i = 0; st->segbuf[s] && st->segret[s] <= now &&
         i < st->segn[s]; i++) {
      const uint8_t *e = st->segbuf[s] + SEGMENT_HEADER_SIZE + i * SEGMENT_ENTRY_SIZE;
      uint32_t no = pack_number (rp, e + 32, PACK_STORED);
      if (no == 0)
        goto out;
      if (no <= st->npacks && st->gp[no - 1].drop)
        continue;
      memcpy (entries + n * SEGMENT_ENTRY_SIZE, e, SEGMENT_ENTRY_SIZE);
      if (++n == COMPACT_SEGMENT_ENTRIES) {
        if (compact_put (repo, entries, n) == -1)
          goto out;
        n = 0;
      }
    }
  if (n && compact_put (repo, entries, n) == -1)
    goto out;
  r = 0;
 out:
  free (entries);
  return r;
}

/* Phase 2: the condemned lists whose sessions have all ended; a fresh
 * mark; their packs that no live chunk needs deleted; the index
 * compacted without them. */
static int
gc_phase2 (vms_repo *repo, struct repo_packs *rp, struct repo_lease *gc_lease,
           int (*mark) (vms_repo *, struct digest_set *), int64_t now,
           uint64_t *removed, uint64_t *freed)
{
  struct gc_state st = { 0 };
  struct condemned_gen *gens = NULL;
  struct digest_set live = { 0 };
  size_t ngens = 0, nready = 0;
  int *ready = NULL;
  int r = -1;

  if (gens_read (repo, 1, &gens, &ngens) == -1)
    return -1;
  ready = calloc (ngens + 1, sizeof *ready);
  if (ready == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < ngens; i++) {
    size_t waiting;
    /* A list whose sessions were never recorded (its gc was stopped):
     * the sessions there are now include every one that was there then
     * and is still running. */
    if (!gens[i].has_sessions && gen_record_sessions (repo, &gens[i]) == -1)
      goto out;
    int rr = gen_ready (repo, &gens[i], now, &waiting);
    if (rr == -1)
      goto out;
    ready[i] = rr;
    nready += (size_t) rr;
  }
  if (nready == 0) {
    r = 0;
    goto out;
  }
  /* This gc must still be the only one before it deletes. */
  if (lease_ok (gc_lease) == -1)
    goto out;
  /* Marked again, now that every session that could have missed the
   * condemnation has ended: a manifest put meanwhile keeps its packs. */
  if (mark (repo, &live) == -1 || gc_load (repo, rp, &st) == -1)
    goto out;
  gc_count (rp, &st, &live);
  int any = 0;
  for (size_t i = 0; i < ngens; i++) {
    if (!ready[i])
      continue;
    for (size_t j = 0; j < gens[i].npacks; j++) {
      uint32_t no = pack_number (rp, gens[i].packs[j], PACK_STORED);
      if (no == 0)
        goto out;
      struct gc_pack *g = &st.gp[no - 1];
      if (no > st.npacks || g->needed || g->del)
        continue;
      if (g->retain_until > now) {
        /* Retained still (a date set after its condemnation): kept and
         * indexed; a later gc condemns it again once it has passed. */
        repo_note_kept (repo, g->size, g->retain_until);
        continue;
      }
      if (rp->packs[no - 1].listed == 1)
        g->del = 1;
      g->drop = any = 1;
    }
  }
  /* Entries of packs that are gone, where no live chunk needs them
   * (verify reports a live chunk whose only pack is gone as missing). */
  for (size_t p = 0; p < st.npacks; p++)
    if (rp->packs[p].listed == 0 && !st.gp[p].needed)
      st.gp[p].drop = any = 1;
  size_t mergeable = 0;
  for (size_t i = 0; i < st.segments.len; i++)
    mergeable += st.segbuf[i] && st.segret[i] <= now;
  if (any || mergeable > 1) {
    if (gc_compact (repo, rp, &st, now) == -1)
      goto out;
    /* The compacted index is durable before what it replaces goes. */
    if (storage_sync (repo->store) == -1) {
      put_error (repo, "flushing the new index");
      goto out;
    }
    for (size_t i = 0; i < st.segments.len; i++)
      if (st.segbuf[i] && st.segret[i] <= now &&
          storage_delete (repo->store, st.segments.ptr[i]) == -1) {
        vms_set_error (errno, "repository %s: cannot remove %s: %s",
                       repo->path, st.segments.ptr[i], repo_errstr (errno));
        goto out;
      }
  }
  for (size_t p = 0; p < st.npacks; p++) {
    char name[64];
    if (!st.gp[p].del)
      continue;
    pack_object_name (rp->packs[p].id, name);
    if (storage_delete (repo->store, name) == -1) {
      if (errno == EPERM) {
        /* Retained after all (the store's clock): kept, never forced. */
        repo_note_kept (repo, st.gp[p].size, st.gp[p].retain_until);
        continue;
      }
      vms_set_error (errno, "repository %s: cannot remove %s: %s", repo->path,
                     name, repo_errstr (errno));
      goto out;
    }
    *removed += st.gp[p].dead_chunks;
    *freed += st.gp[p].size;
  }
  /* Done with those lists: their packs are deleted or needed again. */
  for (size_t i = 0; i < ngens; i++)
    if (ready[i] && storage_delete (repo->store, gens[i].name) == -1) {
      vms_set_error (errno, "repository %s: cannot remove %s: %s", repo->path,
                     gens[i].name, repo_errstr (errno));
      goto out;
    }
  r = 0;
 out:
  digest_set_free (&live);
  gc_state_free (rp, &st);
  gens_free (gens, ngens);
  free (ready);
  return r;
}

/* Objects of backups that never got their manifest (killed, failed): only
 * those older than every running session (one of them may be writing
 * them; an object is written after its session's lease was created) and
 * than the moment the sessions were listed. */
static int
gc_orphans (vms_repo *repo, int64_t grace, uint64_t *freed)
{
  string_vector sessions = empty_vector, bnames = empty_vector;
  int64_t now, bound;
  int r = -1;

  if (storage_now (repo->store, &now) == -1) {
    vms_set_error (errno, "repository %s: cannot read the store's clock: %s",
                   repo->path, repo_errstr (errno));
    return -1;
  }
  bound = now;
  if (list_sessions (repo, &sessions) == -1)
    return -1;
  for (size_t i = 0; i < sessions.len; i++) {
    struct lease_info li;
    if (lease_read (repo, sessions.ptr[i], now, &li) == -1) {
      if (errno == ENOENT)
        continue;
      vms_set_error (errno, "repository %s: cannot read %s: %s", repo->path,
                     sessions.ptr[i], repo_errstr (errno));
      goto out;
    }
    if (!li.expired && li.created < bound)
      bound = li.created;
    /* An expired lease is a killed session's: gone with it. (Were its
     * holder only stalled, it no longer trusts its lease: lease_ok.) */
    if (li.expired)
      (void) storage_delete (repo->store, sessions.ptr[i]);
  }
  if (storage_list (repo->store, "backups/", storage_collect_names,
                    &bnames) != 0) {
    vms_set_error (errno, "repository %s: cannot list backups/: %s",
                   repo->path, repo_errstr (errno));
    goto out;
  }
  for (size_t i = 0; i < bnames.len; i++) {
    const char *n = bnames.ptr[i] + 8, *slash = strchr (n, '/');
    char manifest[STORAGE_NAME_MAX + 16];
    struct storage_stat sst;
    if (slash == NULL)
      continue;
    snprintf (manifest, sizeof manifest, "backups/%.*s/manifest",
              (int) (slash - n), n);
    if (storage_stat (repo->store, manifest, &sst) == 0 ||
        storage_stat (repo->store, bnames.ptr[i], &sst) == -1 ||
        sst.mtime >= bound || (grace > 0 && now - sst.mtime < grace))
      continue;
    /* A manifest put since the first look: it is a backup now (its own
     * stat: sst keeps the object's size and retention). */
    struct storage_stat mst;
    if (storage_stat (repo->store, manifest, &mst) == 0)
      continue;
    if (storage_delete (repo->store, bnames.ptr[i]) == 0)
      *freed += sst.size;
    else if (errno == EPERM && sst.retain_until > 0)
      repo_note_kept (repo, sst.size, sst.retain_until);   /* issue 14 */
  }
  r = 0;
 out:
  string_vector_free_all (&sessions);
  string_vector_free_all (&bnames);
  return r;
}

/* gc/lease, taken over when it has expired (its gc was killed). */
static struct repo_lease *
gc_lease_take (vms_repo *repo)
{
  for (int attempt = 0; attempt < 2; attempt++) {
    struct repo_lease *l = lease_take (repo, "gc/lease");
    if (l || vms_get_errno () != EBUSY)
      return l;
    struct lease_info li;
    int64_t now;
    if (storage_now (repo->store, &now) == -1)
      break;
    if (lease_read (repo, "gc/lease", now, &li) == -1) {
      if (errno == ENOENT)
        continue;
      break;
    }
    if (!li.expired) {
      vms_set_error (EBUSY, "repository %s: another gc is running (on %s, "
                     "pid %d; gc/lease renewed %" PRId64 " s ago)", repo->path,
                     li.host[0] ? li.host : "?", li.pid, now - li.mtime);
      return NULL;
    }
    /* Expired: its gc is gone (a live gc stops trusting its lease well
     * before, lease_ok). */
    if (storage_delete (repo->store, "gc/lease") == -1)
      break;
  }
  vms_set_error (EBUSY, "repository %s: gc/lease is held or unreadable (%s)",
                 repo->path, repo_errstr (errno));
  return NULL;
}

int
pack_gc (vms_repo *repo, int (*mark) (vms_repo *, struct digest_set *),
         int64_t grace, uint64_t *removed, uint64_t *freed)
{
  struct repo_packs *rp = packs_get (repo);
  struct gc_state st = { 0 };
  struct digest_set live = { 0 };
  struct repo_lease *gc_lease = NULL;
  int64_t now;
  size_t condemned = 0;
  int r = -1;

  if (rp == NULL)
    return -1;
  pthread_mutex_lock (&rp->lock);
  if (rp->open_no || rp->failed) {
    vms_set_error (EBUSY, "repository %s: gc cannot run while this process "
                   "has an open pack", repo->path);
    goto out;
  }
  if ((gc_lease = gc_lease_take (repo)) == NULL)
    goto out;
  /* Phase 1. */
  if (mark (repo, &live) == -1 || gc_load (repo, rp, &st) == -1)
    goto out;
  if (storage_now (repo->store, &now) == -1) {
    vms_set_error (errno, "repository %s: cannot read the store's clock: %s",
                   repo->path, repo_errstr (errno));
    goto out;
  }
  if (gc_phase1 (repo, rp, &st, &live, grace, now, &condemned) == -1)
    goto out;
  gc_state_free (rp, &st);
  digest_set_free (&live);
  /* Phase 2, for this gc's list too when no session was running. */
  if (gc_phase2 (repo, rp, gc_lease, mark, now, removed, freed) == -1 ||
      gc_orphans (repo, grace, freed) == -1)
    goto out;
  r = 0;
 out:
  digest_set_free (&live);
  gc_state_free (rp, &st);
  lease_release (gc_lease);
  pthread_mutex_unlock (&rp->lock);
  return r;
}

/* vmshadow sync (issue 14, docs/repository-format.md "Sync"): copy
 * backups from one repository to another of any backend (local, rados:,
 * s3://), sending only the chunks the destination lacks.
 *
 * For each backup of the source (oldest first) that the destination does
 * not have: every file index is loaded; a chunk whose id the destination
 * already has is not read at all when both repositories name chunks the
 * same way (both plain — ids are SHA-256 of the content — or both
 * encrypted with the same key); any other chunk is read from the source
 * with its hash checked (verify), stored in the destination's packs (its
 * own ids, sealed with its own key), and, where ids are the same scheme,
 * its new id must equal the old one (checked on arrival). Then the packs
 * are flushed and the backup's file indexes, documents and manifest are
 * written with the source's id and time, the manifest last and exclusive
 * (manifest_store_v2, as upgrade does): a backup appears in the
 * destination only when complete. Killed half-way, the packs flushed so
 * far are indexed, and the next run sends only what is still missing:
 * each pack is recorded in the host's state directory before it is put,
 * and a pack stored just before the kill, whose segment never came, is
 * adopted by the next run (pack_adopt: read and checked whole, then
 * indexed), not sent again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "repo-internal.h"
#include "storage.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

/* The packs a sync into one repository put: "sync-packs-<its id>" in the
 * host's state directory, a pack id (32 hex) a line, each written and
 * synced before its pack is put; removed when a sync ends well. */
struct sync_record {
  int dirfd, fd;
  char name[96];
  long kill_after;              /* test hook, below */
  long stored;
};

static int
record_hook (vms_repo *repo, const uint8_t id[16], int stored, void *opaque)
{
  struct sync_record *rec = opaque;
  char line[34];

  if (stored) {
    /* Test hook (VMSHADOW_TEST_SYNC_KILL_AFTER_PACK=N): die as a kill
     * would once the Nth pack is stored, before its segment is put. */
    if (rec->kill_after > 0 && ++rec->stored == rec->kill_after)
      raise (SIGKILL);
    return 0;
  }
  if (rec->fd < 0)
    return 0;
  for (int i = 0; i < 16; i++)
    snprintf (line + 2 * i, 3, "%02x", id[i]);
  line[32] = '\n';
  errno = 0;
  if (write (rec->fd, line, 33) != 33 || fdatasync (rec->fd) == -1) {
    /* The record only saves a rerun work: the sync goes on without it. */
    int e = errno ? errno : EIO;
    vms_warn ("cannot record the sync's packs into %s in the state directory "
              "(%s): %s; a rerun after an interruption may send some again",
              repo->path, rec->name, strerror (e));
    close (rec->fd);
    rec->fd = -1;
  }
  return 0;
}

static int
hexval (char c)
{
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Open dst's record (state_dirfd -1: none) and adopt the packs an earlier
 * sync recorded that no segment names. */
static int
record_open (vms_repo *dst, int state_dirfd, struct sync_record *rec,
             vms_repo_report_fn report, void *opaque, struct vms_sync_stats *st)
{
  const char *k = getenv ("VMSHADOW_TEST_SYNC_KILL_AFTER_PACK");

  rec->fd = -1;
  rec->dirfd = state_dirfd;
  rec->stored = 0;
  rec->kill_after = k && *k ? strtol (k, NULL, 10) : 0;
  if (state_dirfd < 0)
    return 0;
  /* The id names a file: only its own alphabet. */
  if (dst->id[0] == '\0' || strspn (dst->id, "0123456789abcdefABCDEF-") !=
      strlen (dst->id))
    return 0;
  snprintf (rec->name, sizeof rec->name, "sync-packs-%s", dst->id);
  /* Without a record the sync still runs; a rerun after an interruption
   * then sends again what an unindexed pack holds (gc removes that). */
  dst->pack_put_hook = record_hook;
  dst->pack_put_opaque = rec;
  rec->fd = openat (state_dirfd, rec->name, O_RDWR | O_CREAT | O_APPEND |
                    O_NOFOLLOW | O_CLOEXEC, 0600);
  if (rec->fd == -1) {
    vms_warn ("cannot open %s in the state directory: %s; the sync runs "
              "without its record", rec->name, strerror (errno));
    return 0;
  }
  /* Another sync from this host into the same repository holds it: this
   * one runs without (it must not adopt that one's packs in flight). */
  if (flock (rec->fd, LOCK_EX | LOCK_NB) == -1) {
    vms_debug ("%s is held by another sync: running without a record",
               rec->name);
    close (rec->fd);
    rec->fd = -1;
    return 0;
  }
  struct stat sb;
  if (fstat (rec->fd, &sb) == -1 || !S_ISREG (sb.st_mode) ||
      sb.st_size > (off_t) 16 << 20) {
    vms_warn ("%s in the state directory is not a sync's record (remove "
              "it); the sync runs without its record", rec->name);
    close (rec->fd);
    rec->fd = -1;
    return 0;
  }
  char *text = malloc ((size_t) sb.st_size + 1);
  if (text == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  ssize_t got = pread (rec->fd, text, (size_t) sb.st_size, 0);
  if (got < 0) {
    vms_warn ("cannot read %s in the state directory: %s; the sync runs "
              "without its record", rec->name, strerror (errno));
    free (text);
    close (rec->fd);
    rec->fd = -1;
    return 0;
  }
  /* Whole lines only: a kill may have cut the last one, which is cut
   * off so that the lines appended next stay whole. */
  if (got % 33 != 0 && ftruncate (rec->fd, got - got % 33) == -1) {
    vms_warn ("cannot cut a partial line off %s in the state directory: %s; "
              "the sync runs without its record", rec->name, strerror (errno));
    close (rec->fd);
    rec->fd = -1;
  }
  for (ssize_t at = 0; at + 33 <= got; at += 33) {
    uint8_t id[16];
    int ok = text[at + 32] == '\n';
    for (int i = 0; ok && i < 16; i++) {
      int hi = hexval (text[at + 2 * i]), lo = hexval (text[at + 2 * i + 1]);
      ok = hi >= 0 && lo >= 0;
      if (ok)
        id[i] = (uint8_t) (hi << 4 | lo);
    }
    if (!ok)
      continue;
    uint64_t chunks;
    const char *why;
    char pname[64];
    pack_object_name (id, pname);
    int r = pack_adopt (dst, id, &chunks, &why);
    if (r == 1) {
      st->packs_adopted++;
      st->chunks_adopted += chunks;
      repo_say (report, opaque, "adopted %s (%" PRIu64 " chunks), stored by "
                "an interrupted sync", pname, chunks);
    }
    else if (r == 0)
      vms_debug ("%s, recorded by an earlier sync: not adopted: %s", pname, why);
    else
      /* Its chunks are sent again; gc removes it in time. */
      vms_warn ("%s, recorded by an earlier sync, is not adopted: %s",
                pname, vms_get_error ());
  }
  free (text);
  return 0;
}

static void
record_close (vms_repo *dst, struct sync_record *rec, int done)
{
  dst->pack_put_hook = NULL;
  dst->pack_put_opaque = NULL;
  if (rec->fd < 0)
    return;
  close (rec->fd);
  /* Every pack it recorded is indexed now. */
  if (done)
    (void) unlinkat (rec->dirfd, rec->name, 0);
}

static int
same_ids (vms_repo *src, vms_repo *dst)
{
  const char *a = vms_repo_key_fingerprint (src);
  const char *b = vms_repo_key_fingerprint (dst);
  if (a == NULL && b == NULL)
    return 1;
  return a && b && strcmp (a, b) == 0;
}

/* Chunks of SRC's packs are read in batches: up to SYNC_RUN_MAX needed
 * chunks are looked up, sorted by pack and offset, and the blobs close
 * together in one pack (at most SYNC_GAP apart, at most SYNC_WINDOW in
 * all) are read with one ranged get (issue 14: a get per 128 KiB chunk
 * cost S3 → local a request each; a backup's threads interleave its
 * chunks in its packs, so file order is not pack order). Memory: the
 * window, one chunk and the batch's locations. */
#define SYNC_WINDOW ((size_t) 8 << 20)
#define SYNC_GAP ((uint64_t) 256 << 10)
#define SYNC_RUN_MAX 1024

struct run_chunk {
  uint64_t c;
  struct vms_digest d;
  size_t len;
  struct pack_loc loc;
};

struct file_sync {
  vms_repo *src, *dst;
  const char *id;
  size_t f;
  int same;
  uint8_t *buf, *win;
  struct run_chunk *run;
  size_t nrun;
  vms_index *didx;
  struct vms_sync_stats *st;
};

static int
fail_at (struct file_sync *fs, uint64_t c)
{
  vms_set_error (vms_get_errno (), "backup %s, file %zu, offset %" PRIu64
                 ": %s", fs->id, fs->f, c * (uint64_t) VMS_CHUNK_SIZE,
                 vms_get_error ());
  return -1;
}

/* Store chunk c (content in buf, checked already) in DST. */
static int
store_one (struct file_sync *fs, uint64_t c, const struct vms_digest *d,
           const uint8_t *content, size_t len)
{
  struct vms_digest got;
  uint64_t stored = 0;

  if (vms_repo_chunk_put (fs->dst, content, len, &got, &stored) == -1)
    return -1;
  if (fs->same && memcmp (&got, d, sizeof got) != 0) {
    vms_set_error (EBADMSG, "backup %s, file %zu, offset %" PRIu64 ": the "
                   "chunk stored in %s has another id than in %s", fs->id,
                   fs->f, c * (uint64_t) VMS_CHUNK_SIZE,
                   vms_repo_path (fs->dst), vms_repo_path (fs->src));
    return -1;
  }
  fs->st->chunks_sent++;
  fs->st->bytes_read += len;
  fs->st->bytes_stored += stored;
  vms_index_set (fs->didx, c, &got);
  return 0;
}

/* One chunk read alone (its hash checked), then stored. */
static int
copy_one (struct file_sync *fs, uint64_t c, const struct vms_digest *d,
          size_t len)
{
  if (vms_repo_chunk_get (fs->src, d, fs->buf, len, 1) == -1)
    return fail_at (fs, c);
  return store_one (fs, c, d, fs->buf, len);
}

static int
run_cmp (const void *a, const void *b)
{
  const struct run_chunk *x = a, *y = b;
  int c = memcmp (x->loc.pack_id, y->loc.pack_id, 16);
  return c ? c : x->loc.offset < y->loc.offset ? -1 : x->loc.offset > y->loc.offset;
}

/* Chunks run[i..j) of one pack with one get, each checked and stored. */
static int
read_window (struct file_sync *fs, size_t i, size_t j, uint64_t start,
             uint64_t end)
{
  char name[64];

  fs->st->source_reads++;
  pack_object_name (fs->run[i].loc.pack_id, name);
  if (storage_get (fs->src->store, name, start, (size_t) (end - start),
                   fs->win) == -1) {
    /* Gone (a gc moved it meanwhile) or unreadable: a chunk at a time,
     * which looks the index up again and says what failed. */
    for (size_t k = i; k < j; k++)
      if (copy_one (fs, fs->run[k].c, &fs->run[k].d, fs->run[k].len) == -1)
        return -1;
    return 0;
  }
  for (size_t k = i; k < j; k++) {
    const struct run_chunk *r = &fs->run[k];
    if (chunk_store_check_at (fs->src, &r->d, r->len, &r->loc, UINT64_MAX,
                              fs->win + (r->loc.offset - start),
                              fs->buf) == -1)
      return fail_at (fs, r->c);
    if (store_one (fs, r->c, &r->d, fs->buf, r->len) == -1)
      return -1;
  }
  return 0;
}

/* The batch, a window at a time. */
static int
flush_run (struct file_sync *fs)
{
  size_t n = fs->nrun, ov = fs->src->blob_overhead;

  fs->nrun = 0;
  qsort (fs->run, n, sizeof *fs->run, run_cmp);
  for (size_t i = 0, j; i < n; i = j) {
    uint64_t start = fs->run[i].loc.offset;
    uint64_t end = start + fs->run[i].loc.slen + ov;
    for (j = i + 1; j < n; j++) {
      const struct pack_loc *l = &fs->run[j].loc;
      uint64_t e2 = (uint64_t) l->offset + l->slen + ov;
      if (memcmp (l->pack_id, fs->run[i].loc.pack_id, 16) != 0 ||
          l->offset > end + SYNC_GAP ||
          (e2 > end ? e2 : end) - start > SYNC_WINDOW)
        break;
      if (e2 > end)
        end = e2;
    }
    if (end - start > SYNC_WINDOW) {
      vms_set_error (EBADMSG, "the index of %s names a blob larger than a "
                     "chunk", vms_repo_path (fs->src));
      return fail_at (fs, fs->run[i].c);
    }
    if (read_window (fs, i, j, start, end) == -1)
      return -1;
  }
  return 0;
}

/* Chunk c, needed: into the batch when SRC's index places it. */
static int
add_chunk (struct file_sync *fs, uint64_t c, const struct vms_digest *d,
           size_t len)
{
  struct pack_loc loc;
  int r = fs->src->version == 2 ? pack_lookup (fs->src, d, &loc) : 0;

  if (r == -1)
    return fail_at (fs, c);
  if (r == 0) {
    fs->st->source_reads++;
    return copy_one (fs, c, d, len);
  }
  fs->run[fs->nrun++] = (struct run_chunk) { .c = c, .d = *d, .len = len,
                                             .loc = loc };
  return fs->nrun == SYNC_RUN_MAX ? flush_run (fs) : 0;
}

/* One file's index for the destination, its chunks stored there. */
static vms_index *
sync_file (vms_repo *src, vms_repo *dst, const char *id, size_t f,
           const vms_index *sidx, int same, uint8_t *buf, uint8_t *win,
           struct run_chunk *run, struct vms_sync_stats *st)
{
  struct file_sync fs = { .src = src, .dst = dst, .id = id, .f = f,
                          .same = same, .buf = buf, .win = win, .run = run,
                          .st = st };

  if ((fs.didx = vms_index_copy (sidx)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (uint64_t c = 0; c < vms_index_chunk_count (sidx); c++) {
    const struct vms_digest *d = vms_index_get (sidx, c);
    size_t len = vms_index_chunk_len (sidx, c);
    if (vms_digest_is_zero (d))
      continue;
    if (same) {
      int have = vms_repo_chunk_exists (dst, d);
      if (have == -1)
        goto fail;
      /* In the run already: stored with it (same ids: the index has d). */
      for (size_t i = 0; have == 0 && i < fs.nrun; i++)
        have = memcmp (&fs.run[i].d, d, sizeof *d) == 0;
      if (have == 1) {
        st->chunks_present++;
        continue;
      }
    }
    if (add_chunk (&fs, c, d, len) == -1)
      goto fail;
  }
  if (flush_run (&fs) == -1)
    goto fail;
  return fs.didx;
 fail:
  vms_index_free (fs.didx);
  return NULL;
}

static int
sync_backup (vms_repo *src, vms_repo *dst, const char *id, int same,
             uint8_t *buf, uint8_t *win, struct run_chunk *run,
             struct vms_sync_stats *st)
{
  CLEANUP (vms_manifest_free) vms_manifest *m = vms_manifest_open (src, id);
  vms_index **idx;
  size_t nf;
  int ok = 1;

  if (m == NULL)
    return -1;
  nf = vms_manifest_file_count (m);
  idx = calloc (nf + 1, sizeof *idx);
  if (idx == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t f = 0; ok && f < nf; f++) {
    CLEANUP (vms_index_free) vms_index *sidx = vms_manifest_load_index (src, m, f);
    ok = sidx && (idx[f] = sync_file (src, dst, id, f, sidx, same, buf, win,
                                      run, st)) != NULL;
    /* The older packs of DST it names are retained as long as it is (R29),
     * as a backup's are. */
    ok = ok && pack_note_used (dst, idx[f]) == 0;
  }
  /* Packs and their segments first, the older objects it needs retained
   * until its date, the backup's objects after, the manifest last. */
  uint64_t extended = 0;
  if (ok)
    ok = pack_flush (dst) == 0 && pack_extend_used (dst, id, &extended) == 0;
  if (ok && extended)
    vms_debug ("backup %s: the Object Lock retention of %" PRIu64 " older "
               "objects it needs extended to its own", id, extended);
  /* Rule 1 (issue 12), as a backup's commit: only a session whose lease
   * nobody can have seen expired may publish (gc may since have deleted
   * packs of DST whose chunks this backup names). */
  if (ok && dst->session && lease_ok (dst->session) == -1) {
    vms_set_error (vms_get_errno (), "%s (backup %s is not committed)",
                   vms_get_error (), id);
    ok = 0;
  }
  if (ok)
    ok = manifest_store_v2 (dst, m, idx) == 0;
  for (size_t f = 0; f < nf; f++)
    vms_index_free (idx[f]);
  free (idx);
  return ok ? 0 : -1;
}

int
vms_repo_sync (vms_repo *src, vms_repo *dst, char *const *backup_ids,
               size_t nr_backup_ids, int state_dirfd,
               vms_repo_report_fn report, void *opaque,
               struct vms_sync_stats *st)
{
  struct sync_record rec = { .fd = -1 };
  char **ids = NULL;
  size_t n = 0;
  int r = -1;
  uint8_t *buf = NULL, *win = NULL;
  struct run_chunk *run = NULL;

  memset (st, 0, sizeof *st);
  if (repo_need_write (dst, "sync") == -1)
    return -1;
  if (dst->version != 2) {
    vms_set_error (ENOTSUP, "sync writes format version 2 repositories only: "
                   "%s is version %d (vmshadow upgrade moves it to 2)",
                   dst->path, dst->version);
    return -1;
  }
  if (dst->hide_ids) {
    vms_set_error (ENOTSUP, "sync into %s, whose backup ids are hidden, is not "
                   "built yet", dst->path);
    return -1;
  }
  if (!vms_repo_has_key (src)) {
    vms_set_error (ENOKEY, "sync needs the key of %s to read it", src->path);
    return -1;
  }
  if (vms_repo_list (src, &ids, &n) == -1)
    return -1;
  for (size_t k = 0; k < nr_backup_ids; k++) {
    size_t i;
    for (i = 0; i < n && strcmp (ids[i], backup_ids[k]) != 0; i++)
      ;
    if (i == n) {
      vms_set_error (ENOENT, "no backup %s in %s", backup_ids[k], src->path);
      goto out;
    }
  }
  if ((buf = malloc (VMS_CHUNK_SIZE)) == NULL ||
      (win = malloc (SYNC_WINDOW)) == NULL ||
      (run = calloc (SYNC_RUN_MAX, sizeof *run)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  if (record_open (dst, state_dirfd, &rec, report, opaque, st) == -1)
    goto out;
  int same = same_ids (src, dst);
  for (size_t i = 0; i < n; i++) {
    if (nr_backup_ids) {
      size_t k;
      for (k = 0; k < nr_backup_ids && strcmp (ids[i], backup_ids[k]) != 0; k++)
        ;
      if (k == nr_backup_ids)
        continue;
    }
    vms_manifest *have = vms_manifest_open (dst, ids[i]);
    if (have) {
      vms_manifest_free (have);
      st->backups_present++;
      repo_say (report, opaque, "present %s", ids[i]);
      continue;
    }
    if (vms_get_errno () != ENOENT)
      goto out;
    uint64_t before = st->bytes_stored;
    if (sync_backup (src, dst, ids[i], same, buf, win, run, st) == -1) {
      vms_set_error (vms_get_errno (), "sync of backup %s into %s stopped: %s "
                     "(what was sent stays; run sync again to go on)", ids[i],
                     dst->path, vms_get_error ());
      goto out;
    }
    st->backups_synced++;
    repo_say (report, opaque, "synced %s (%" PRIu64 " bytes stored)", ids[i],
              st->bytes_stored - before);
  }
  r = 0;
 out:
  record_close (dst, &rec, r == 0);
  free (run);
  free (win);
  free (buf);
  for (size_t i = 0; i < n; i++)
    free (ids[i]);
  free (ids);
  return r;
}

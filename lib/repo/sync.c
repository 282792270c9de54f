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
 * far are indexed, and the next run sends only what is still missing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "repo-internal.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

static int
same_ids (vms_repo *src, vms_repo *dst)
{
  const char *a = vms_repo_key_fingerprint (src);
  const char *b = vms_repo_key_fingerprint (dst);
  if (a == NULL && b == NULL)
    return 1;
  return a && b && strcmp (a, b) == 0;
}

/* One file's index for the destination, its chunks stored there. */
static vms_index *
sync_file (vms_repo *src, vms_repo *dst, const char *id, size_t f,
           const vms_index *sidx, int same, uint8_t *buf,
           struct vms_sync_stats *st)
{
  vms_index *didx = vms_index_copy (sidx);
  if (didx == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (uint64_t c = 0; c < vms_index_chunk_count (sidx); c++) {
    const struct vms_digest *d = vms_index_get (sidx, c);
    size_t len = vms_index_chunk_len (sidx, c);
    struct vms_digest got;
    uint64_t stored = 0;
    if (vms_digest_is_zero (d))
      continue;
    if (same) {
      int have = vms_repo_chunk_exists (dst, d);
      if (have == -1)
        goto fail;
      if (have == 1) {
        st->chunks_present++;
        continue;
      }
    }
    if (vms_repo_chunk_get (src, d, buf, len, 1) == -1) {
      vms_set_error (vms_get_errno (), "backup %s, file %zu, offset %" PRIu64
                     ": %s", id, f, c * (uint64_t) VMS_CHUNK_SIZE,
                     vms_get_error ());
      goto fail;
    }
    if (vms_repo_chunk_put (dst, buf, len, &got, &stored) == -1)
      goto fail;
    if (same && memcmp (&got, d, sizeof got) != 0) {
      vms_set_error (EBADMSG, "backup %s, file %zu, offset %" PRIu64 ": the "
                     "chunk stored in %s has another id than in %s", id, f,
                     c * (uint64_t) VMS_CHUNK_SIZE, vms_repo_path (dst),
                     vms_repo_path (src));
      goto fail;
    }
    st->chunks_sent++;
    st->bytes_read += len;
    st->bytes_stored += stored;
    vms_index_set (didx, c, &got);
  }
  return didx;
 fail:
  vms_index_free (didx);
  return NULL;
}

static int
sync_backup (vms_repo *src, vms_repo *dst, const char *id, int same,
             uint8_t *buf, struct vms_sync_stats *st)
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
    ok = sidx && (idx[f] = sync_file (src, dst, id, f, sidx, same, buf,
                                      st)) != NULL;
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
               size_t nr_backup_ids, vms_repo_report_fn report, void *opaque,
               struct vms_sync_stats *st)
{
  char **ids = NULL;
  size_t n = 0;
  int r = -1;
  uint8_t *buf = NULL;

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
  if ((buf = malloc (VMS_CHUNK_SIZE)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
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
    if (sync_backup (src, dst, ids[i], same, buf, st) == -1) {
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
  free (buf);
  for (size_t i = 0; i < n; i++)
    free (ids[i]);
  free (ids);
  return r;
}

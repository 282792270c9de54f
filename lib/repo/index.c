/* Per-file indexes: chunk number → digest (or the all-zero digest for a
 * zero chunk), in memory and as index files (docs/repository-format.md
 * "Indexes"), and random reads by offset through an index.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "repo-internal.h"
#include "vmshadow/error.h"

struct vms_index {
  uint64_t size;
  uint64_t count;
  struct vms_digest *d;
};

static uint64_t
chunks_for (uint64_t size)
{
  return size / VMS_CHUNK_SIZE + (size % VMS_CHUNK_SIZE != 0);
}

static int
check_size (uint64_t size)
{
  if (size > MAX_FILE_SIZE) {
    vms_set_error (EFBIG, "file size %" PRIu64 " is larger than the %" PRIu64
                   " bytes an index can describe", size, MAX_FILE_SIZE);
    return -1;
  }
  return 0;
}

vms_index *
vms_index_new (uint64_t size)
{
  vms_index *idx;

  if (check_size (size) == -1)
    return NULL;
  idx = calloc (1, sizeof *idx);
  if (idx == NULL)
    goto nomem;
  idx->size = size;
  idx->count = chunks_for (size);
  if (idx->count) {
    idx->d = calloc ((size_t) idx->count, sizeof *idx->d);
    if (idx->d == NULL) {
      free (idx);
      goto nomem;
    }
  }
  return idx;
 nomem:
  vms_set_error (ENOMEM, "out of memory for the index of a %" PRIu64
                 "-byte file", size);
  return NULL;
}

vms_index *
vms_index_copy (const vms_index *idx)
{
  vms_index *c = vms_index_new (idx->size);
  if (c && idx->count)
    memcpy (c->d, idx->d, (size_t) idx->count * sizeof *idx->d);
  return c;
}

void
vms_index_free (vms_index *idx)
{
  if (idx) {
    free (idx->d);
    free (idx);
  }
}

uint64_t
vms_index_size (const vms_index *idx)
{
  return idx->size;
}

uint64_t
vms_index_chunk_count (const vms_index *idx)
{
  return idx->count;
}

int
vms_index_resize (vms_index *idx, uint64_t size)
{
  uint64_t count;

  if (check_size (size) == -1)
    return -1;
  count = chunks_for (size);
  if (count != idx->count) {
    struct vms_digest *d = NULL;
    if (count) {
      d = realloc (idx->d, (size_t) count * sizeof *d);
      if (d == NULL) {
        vms_set_error (ENOMEM, "out of memory resizing an index");
        return -1;
      }
    }
    else
      free (idx->d);
    if (count > idx->count)
      memset (&d[idx->count], 0, (size_t) (count - idx->count) * sizeof *d);
    idx->d = d;
    idx->count = count;
  }
  /* A shrunk last chunk keeps its digest: it then names more bytes than
   * the file has, so it is zeroed unless it is still whole. */
  if (count && size < idx->size && size % VMS_CHUNK_SIZE != 0)
    memset (&idx->d[count - 1], 0, sizeof *idx->d);
  /* Likewise a last chunk that grows: its stored content is shorter. */
  if (count && size > idx->size && idx->size % VMS_CHUNK_SIZE != 0 &&
      idx->size / VMS_CHUNK_SIZE < count)
    memset (&idx->d[idx->size / VMS_CHUNK_SIZE], 0, sizeof *idx->d);
  idx->size = size;
  return 0;
}

int
vms_index_set (vms_index *idx, uint64_t chunk, const struct vms_digest *d)
{
  if (chunk >= idx->count) {
    vms_set_error (EINVAL, "chunk %" PRIu64 " is past the end of an index of %"
                   PRIu64 " chunks", chunk, idx->count);
    return -1;
  }
  /* Written only when it changes: the digests of a new index are calloc'd
   * (fresh zero pages for a large one), so the zero chunks of a sparse
   * disk never touch their pages, and a 64 GiB disk that holds 2 GiB does
   * not cost 16 MiB of memory for its index (issue 15). */
  if (memcmp (&idx->d[chunk], d, sizeof *d) != 0)
    idx->d[chunk] = *d;
  return 0;
}

const struct vms_digest *
vms_index_get (const vms_index *idx, uint64_t chunk)
{
  return chunk < idx->count ? &idx->d[chunk] : NULL;
}

size_t
vms_index_chunk_len (const vms_index *idx, uint64_t chunk)
{
  if (chunk >= idx->count)
    return 0;
  if (chunk + 1 < idx->count || idx->size % VMS_CHUNK_SIZE == 0)
    return VMS_CHUNK_SIZE;
  return (size_t) (idx->size % VMS_CHUNK_SIZE);
}

int
vms_repo_read (vms_repo *repo, const vms_index *idx, void *buf, size_t count,
               uint64_t offset)
{
  uint8_t *out = buf;
  uint64_t end;

  if (__builtin_add_overflow (offset, (uint64_t) count, &end) ||
      end > idx->size) {
    vms_set_error (EINVAL, "read of %zu bytes at offset %" PRIu64
                   " is past the end of a %" PRIu64 "-byte file",
                   count, offset, idx->size);
    return -1;
  }
  while (count > 0) {
    uint64_t c = offset / VMS_CHUNK_SIZE;
    size_t in = (size_t) (offset % VMS_CHUNK_SIZE);
    size_t clen = vms_index_chunk_len (idx, c);
    size_t n = clen - in < count ? clen - in : count;
    const struct vms_digest *d = &idx->d[c];

    if (vms_digest_is_zero (d))
      memset (out, 0, n);
    else if (in == 0 && n == clen) {
      if (vms_repo_chunk_get (repo, d, out, clen, 1) == -1)
        return -1;
    }
    else {
      const uint8_t *plain = chunk_store_read_cached (repo, d, clen);
      if (plain == NULL) {
        vms_set_error (vms_get_errno (), "repository %s: %s", repo->path,
                       vms_get_error ());
        return -1;
      }
      memcpy (out, plain + in, n);
    }
    out += n;
    count -= n;
    offset += n;
  }
  return 0;
}

/* ---- index files ---- */

int
index_serialize (const vms_index *idx, void **buf, size_t *len)
{
  return index_serialize_version (idx, INDEX_VERSION, buf, len);
}

int
index_serialize_version (const vms_index *idx, uint32_t version, void **buf,
                         size_t *len)
{
  /* count ≤ MAX_FILE_SIZE / 4 KiB = 2^38 for any chunk size of at least
   * 4 KiB: count × 32 cannot overflow. */
  size_t body = INDEX_HEADER_SIZE + (size_t) idx->count * VMS_DIGEST_LEN;
  uint8_t *b = malloc (body + VMS_DIGEST_LEN);

  if (b == NULL) {
    vms_set_error (ENOMEM, "out of memory writing an index");
    return -1;
  }
  memcpy (b, INDEX_MAGIC, 8);
  repo_put_le32 (b + 8, version);
  repo_put_le32 (b + 12, VMS_CHUNK_SIZE);
  repo_put_le64 (b + 16, idx->size);
  repo_put_le64 (b + 24, idx->count);
  if (idx->count)
    memcpy (b + INDEX_HEADER_SIZE, idx->d, (size_t) idx->count * VMS_DIGEST_LEN);
  if (repo_sha256 (b, body, b + body) == -1) {
    free (b);
    return -1;
  }
  *buf = b;
  *len = body + VMS_DIGEST_LEN;
  return 0;
}

vms_index *
index_parse (const void *buf, size_t len, const char *what)
{
  return index_parse_version (buf, len, INDEX_VERSION, what);
}

vms_index *
index_parse_version (const void *buf, size_t len, uint32_t want,
                     const char *what)
{
  const uint8_t *b = buf;
  uint64_t size, count, expect;
  uint32_t version, chunk_size;
  uint8_t sum[VMS_DIGEST_LEN];

  if (len < INDEX_HEADER_SIZE + VMS_DIGEST_LEN) {
    vms_set_error (EBADMSG, "%s is truncated (%zu bytes, expected at least %d)",
                   what, len, INDEX_HEADER_SIZE + VMS_DIGEST_LEN);
    return NULL;
  }
  if (memcmp (b, INDEX_MAGIC, 8) != 0) {
    vms_set_error (EBADMSG, "%s is not an index file (bad magic)", what);
    return NULL;
  }
  version = repo_get_le32 (b + 8);
  chunk_size = repo_get_le32 (b + 12);
  size = repo_get_le64 (b + 16);
  count = repo_get_le64 (b + 24);
  if (version != want) {
    vms_set_error (EBADMSG, "%s has index version %" PRIu32
                   "; this repository's indexes are version %" PRIu32, what,
                   version, want);
    return NULL;
  }
  if (chunk_size != VMS_CHUNK_SIZE) {
    vms_set_error (EBADMSG, "%s has chunks of %" PRIu32 " bytes; this "
                   "vmshadow uses chunks of %u bytes", what, chunk_size,
                   VMS_CHUNK_SIZE);
    return NULL;
  }
  if (size > MAX_FILE_SIZE) {
    vms_set_error (EBADMSG, "%s describes a file of %" PRIu64
                   " bytes, more than the %" PRIu64 " allowed", what, size,
                   MAX_FILE_SIZE);
    return NULL;
  }
  if (count != chunks_for (size)) {
    vms_set_error (EBADMSG, "%s has %" PRIu64 " entries for a %" PRIu64
                   "-byte file, expected %" PRIu64, what, count, size,
                   chunks_for (size));
    return NULL;
  }
  /* count ≤ 2^38 now (chunks of at least 4 KiB), so this cannot
   * overflow. */
  expect = INDEX_HEADER_SIZE + count * VMS_DIGEST_LEN + VMS_DIGEST_LEN;
  if (len < expect) {
    vms_set_error (EBADMSG, "%s is truncated (%zu bytes, expected %" PRIu64 ")",
                   what, len, expect);
    return NULL;
  }
  if (len > expect) {
    vms_set_error (EBADMSG, "%s has %" PRIu64 " bytes of garbage after its end "
                   "(%zu bytes, expected %" PRIu64 ")", what, len - expect,
                   len, expect);
    return NULL;
  }
  if (repo_sha256 (b, (size_t) expect - VMS_DIGEST_LEN, sum) == -1)
    return NULL;
  if (memcmp (sum, b + expect - VMS_DIGEST_LEN, VMS_DIGEST_LEN) != 0) {
    vms_set_error (EBADMSG, "%s is corrupt (checksum mismatch)", what);
    return NULL;
  }
  vms_index *idx = vms_index_new (size);
  if (idx == NULL)
    return NULL;
  /* Runs of zero digests (a sparse disk's unallocated space) are left to
   * calloc's untouched zero pages (issue 15: memory of a 64 GiB disk). */
  const uint8_t *src = b + INDEX_HEADER_SIZE;
  size_t total = (size_t) count * VMS_DIGEST_LEN;
  for (size_t off = 0; off < total; off += 4096) {
    size_t n = total - off < 4096 ? total - off : 4096;
    if (src[off] != 0 || memcmp (src + off, src + off + 1, n - 1) != 0)
      memcpy ((uint8_t *) idx->d + off, src + off, n);
  }
  return idx;
}

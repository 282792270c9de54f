/* The chunk store: content-addressed chunk files under chunks/ab/<hex>
 * (raw: the content itself) or chunks/ab/<hex>.zst (a header and a zstd
 * frame), docs/repository-format.md "Chunks". Called from several threads at
 * once; nothing here takes a lock. Each thread keeps its own zstd contexts
 * and I/O buffer (freed when the thread ends), and two threads storing the
 * same content race harmlessly: each writes a temp file and renames it over
 * the final name, which ends up holding that content either way.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "cleanup.h"
#include "crypt.h"
#include "fs-util.h"
#include "repo-internal.h"
#include "storage.h"
#include "vmshadow/error.h"

/* zstd level 1: the fastest of the regular levels; disk images compress
 * nearly as well at 3 and it would cost a core at backup speed. */
#define CHUNK_ZSTD_LEVEL 1

/* ---- per-thread state ---- */

struct chunk_tls {
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
  uint8_t *io;                  /* a zstd chunk file: header + payload */
  uint8_t *plain;               /* an uncompressed chunk (vms_repo_read) */
  uint8_t *sealed;              /* encrypted v2: a blob in its envelope */
  uint8_t *opened;              /* encrypted v2: an opened zstd blob */
  /* plain holds the verified content of this chunk. Content-addressed, so
   * it is right for any repository. */
  struct vms_digest plain_digest;
  size_t plain_len;
  int plain_valid;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_ok;
static EVP_MD *sha256_md;

static void
tls_free (void *p)
{
  struct chunk_tls *t = p;
  if (t == NULL)
    return;
  ZSTD_freeCCtx (t->cctx);
  ZSTD_freeDCtx (t->dctx);
  free (t->io);
  free (t->plain);
  free (t->sealed);
  free (t->opened);
  free (t);
}

static void
tls_init (void)
{
  tls_key_ok = pthread_key_create (&tls_key, tls_free) == 0;
  /* Fetched once: an implicit fetch per digest costs a lock in OpenSSL 3. */
  sha256_md = EVP_MD_fetch (NULL, "SHA256", NULL);
}

static struct chunk_tls *
tls_get (void)
{
  struct chunk_tls *t;

  pthread_once (&tls_once, tls_init);
  if (!tls_key_ok || sha256_md == NULL) {
    vms_set_error (ENOMEM, "cannot set up SHA-256 or per-thread state");
    return NULL;
  }
  t = pthread_getspecific (tls_key);
  if (t)
    return t;
  t = calloc (1, sizeof *t);
  if (t == NULL || pthread_setspecific (tls_key, t) != 0) {
    free (t);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return t;
}

static uint8_t *
tls_buffer (uint8_t **slot)
{
  if (*slot == NULL)
    *slot = malloc (CHUNK_HEADER_SIZE + (size_t) VMS_CHUNK_SIZE
                    + ENVELOPE_OVERHEAD);
  if (*slot == NULL)
    vms_set_error (ENOMEM, "out of memory for a chunk buffer");
  return *slot;
}


/* ---- digests ---- */

int
vms_digest_is_zero (const struct vms_digest *digest)
{
  static const struct vms_digest zero;
  return memcmp (digest->b, zero.b, VMS_DIGEST_LEN) == 0;
}

void
vms_digest_hex (const struct vms_digest *digest, char out[65])
{
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < VMS_DIGEST_LEN; i++) {
    out[2 * i] = hex[digest->b[i] >> 4];
    out[2 * i + 1] = hex[digest->b[i] & 15];
  }
  out[64] = '\0';
}

int
repo_sha256 (const void *data, size_t len, uint8_t out[VMS_DIGEST_LEN])
{
  unsigned int mdlen = 0;
  pthread_once (&tls_once, tls_init);
  if (sha256_md == NULL ||
      !EVP_Digest (data, len, out, &mdlen, sha256_md, NULL) ||
      mdlen != VMS_DIGEST_LEN) {
    vms_set_error (EIO, "SHA-256 failed (OpenSSL)");
    return -1;
  }
  return 0;
}

static int
sha256 (const void *data, size_t len, struct vms_digest *d)
{
  return repo_sha256 (data, len, d->b);
}

int
repo_chunk_id (vms_repo *repo, const void *data, size_t len,
               struct vms_digest *d)
{
  if (repo->encrypted) {
    if (repo->key == NULL) {
      vms_set_error (ENOKEY, "repository %s is encrypted and was opened "
                     "without its key", repo->path);
      return -1;
    }
    return crypt_mac (repo->key->k_id, data, len, d->b);
  }
  return sha256 (data, len, d);
}

static int
is_all_zero (const uint8_t *p, size_t len)
{
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

/* ---- names ---- */

/* "<hex>" (raw) or "<hex>.zst" (zstd), the name in chunks/ab/. */
static void
chunk_name (const struct vms_digest *d, enum chunk_form form,
            char name[CHUNK_NAME_MAX])
{
  char hex[65];
  vms_digest_hex (d, hex);
  snprintf (name, CHUNK_NAME_MAX, "%s%s", hex,
            form == CHUNK_FORM_ZSTD ? CHUNK_ZSTD_SUFFIX : "");
}

/* The fd of chunks/ab/ for chunk d (opened once per repository, never
 * through a link; made first with create), or -1 with errno. Shared by
 * the threads: the first to open it installs it. */
static int
chunk_store_dir (vms_repo *repo, const struct vms_digest *d, int create)
{
  int *slot = &repo->chunk_dirs[d->b[0]];
  int fd = __atomic_load_n (slot, __ATOMIC_ACQUIRE);
  char sub[3];

  if (fd >= 0)
    return fd;
  snprintf (sub, sizeof sub, "%02x", d->b[0]);
  if (create && repo_mkdirat (repo->chunks_fd, sub) == -1)
    return -1;
  fd = vms_open_beneath (repo->chunks_fd, sub, O_RDONLY | O_DIRECTORY, 0);
  if (fd == -1)
    return -1;
  int none = -1;
  if (!__atomic_compare_exchange_n (slot, &none, fd, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
    close (fd);                 /* another thread was first */
    fd = none;
  }
  return fd;
}

int
chunk_store_parse_name (const char *name, struct vms_digest *d)
{
  for (size_t i = 0; i < 2 * VMS_DIGEST_LEN; i++) {
    char c = name[i];           /* stops at a NUL: not a hex digit */
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else return -1;
    if (i % 2 == 0) d->b[i / 2] = (uint8_t) (v << 4);
    else d->b[i / 2] |= (uint8_t) v;
  }
  name += 2 * VMS_DIGEST_LEN;
  if (*name == '\0')
    return CHUNK_FORM_RAW;
  if (strcmp (name, CHUNK_ZSTD_SUFFIX) == 0)
    return CHUNK_FORM_ZSTD;
  return -1;
}

/* ---- checks ---- */

/* "chunk HEX is corrupt (why)", EBADMSG; returns -1. */
static int __attribute__ ((format (printf, 2, 3)))
corrupt (const struct vms_digest *d, const char *fmt, ...)
{
  char hex[65], why[128];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (why, sizeof why, fmt, ap);
  va_end (ap);
  vms_digest_hex (d, hex);
  vms_set_error (EBADMSG, "chunk %s is corrupt (%s)", hex, why);
  return -1;
}

/* buf (len bytes) hashes to d (keyed in an encrypted repository), else
 * EBADMSG naming the chunk. */
static int
chunk_verify (vms_repo *repo, const void *buf, size_t len,
              const struct vms_digest *d)
{
  struct vms_digest got;
  if (repo_chunk_id (repo, buf, len, &got) == -1)
    return -1;
  if (memcmp (got.b, d->b, VMS_DIGEST_LEN) != 0)
    return corrupt (d, "hash mismatch");
  return 0;
}

int
chunk_store_parse_header (const uint8_t *h, uint64_t file_size, int check_len,
                          size_t expect, const struct vms_digest *d,
                          uint32_t *payload)
{
  uint32_t length = repo_get_le32 (h + 8);

  *payload = repo_get_le32 (h + 12);
  if (file_size < CHUNK_HEADER_SIZE)
    return corrupt (d, "shorter than its header");
  if (memcmp (h, CHUNK_MAGIC, 4) != 0)
    return corrupt (d, "bad magic");
  if (h[4] != CHUNK_VERSION)
    return corrupt (d, "unknown chunk version");
  if (h[5] != CHUNK_COMPRESSION_ZSTD)
    return corrupt (d, "unknown compression");
  if (length == 0 || length > VMS_CHUNK_SIZE || *payload == 0 ||
      *payload >= length)
    return corrupt (d, "length out of range");
  if ((uint64_t) *payload + CHUNK_HEADER_SIZE != file_size)
    return corrupt (d, "file is %" PRIu64 " bytes, header says %" PRIu64,
                    file_size, (uint64_t) *payload + CHUNK_HEADER_SIZE);
  if (check_len && length != expect)
    return corrupt (d, "holds %" PRIu32 " bytes, expected %zu", length, expect);
  return 0;
}

int
chunk_store_unpack (const uint8_t *payload, size_t n, void *buf, size_t len,
                    const struct vms_digest *d)
{
  struct chunk_tls *t = tls_get ();

  if (t == NULL)
    return -1;
  if (t->dctx == NULL && (t->dctx = ZSTD_createDCtx ()) == NULL) {
    vms_set_error (ENOMEM, "out of memory for a zstd context");
    return -1;
  }
  size_t r = ZSTD_decompressDCtx (t->dctx, buf, len, payload, n);
  if (ZSTD_isError (r) || r != len)
    return corrupt (d, "%s", ZSTD_isError (r) ? ZSTD_getErrorName (r)
                    : "decompresses to the wrong length");
  return 0;
}

/* A raw chunk file is the content: its size is the length. */
static int
raw_size_check (uint64_t file_size, int check_len, size_t expect,
                const struct vms_digest *d)
{
  if (check_len ? file_size != expect
      : file_size == 0 || file_size > VMS_CHUNK_SIZE)
    return corrupt (d, "holds %" PRIu64 " bytes, expected %zu", file_size,
                    check_len ? expect : (size_t) VMS_CHUNK_SIZE);
  return 0;
}

/* Open one form of chunk d: the fd, or -1 with "chunk HEX is missing"
 * (ENOENT) or another error set. */
static int
open_chunk (vms_repo *repo, const struct vms_digest *d, enum chunk_form form,
            struct stat *st)
{
  char name[CHUNK_NAME_MAX], hex[65];

  chunk_name (d, form, name);
  int dfd = chunk_store_dir (repo, d, 0);
  int fd = dfd >= 0 ? vms_open_beneath (dfd, name, O_RDONLY, 0) : -1;
  if (fd == -1 || fstat (fd, st) == -1) {
    int e = errno;
    if (fd >= 0)
      close (fd);
    if (e == ELOOP || e == EINVAL)
      return corrupt (d, "%s", e == ELOOP ? "a symbolic link, not followed"
                      : "not a regular file");
    vms_digest_hex (d, hex);
    if (e == ENOENT)
      vms_set_error (ENOENT, "chunk %s is missing", hex);
    else
      vms_set_error (e, "chunk %s is unreadable: %s", hex, repo_errstr (e));
    return -1;
  }
  return fd;
}

static int
pread_all (int fd, void *buf, size_t len, off_t off)
{
  uint8_t *p = buf;
  while (len > 0) {
    ssize_t r = pread (fd, p, len, off);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = EBADMSG;          /* shorter than fstat said: treat as corrupt */
      return -1;
    }
    p += r;
    len -= (size_t) r;
    off += r;
  }
  return 0;
}

static int
read_error (const struct vms_digest *d)
{
  char hex[65];

  if (errno == EBADMSG)
    return corrupt (d, "shorter than its size");
  vms_digest_hex (d, hex);
  vms_set_error (errno, "chunk %s is unreadable: %s", hex, repo_errstr (errno));
  return -1;
}

/* How much of a raw chunk the deduplication check compares with the
 * content: one page, the cost of reading a header. */
#define RAW_CHECK_BYTES 4096

/* Check one form of chunk d (see chunk_store_check). With data (the
 * chunk's content, len bytes), a raw file's first page must also hold the
 * first page of data: a file torn by a crash is rewritten, as a zstd file
 * with a bad header is. */
static int
check_form (vms_repo *repo, const struct vms_digest *d, enum chunk_form form,
            size_t len, const void *data)
{
  struct stat st;
  uint8_t h[RAW_CHECK_BYTES];
  uint32_t payload;
  CLEANUP_CLOSE int fd = open_chunk (repo, d, form, &st);

  if (fd == -1)
    return -1;
  if (form == CHUNK_FORM_RAW) {
    if (raw_size_check ((uint64_t) st.st_size, len != 0, len, d) == -1)
      return -1;
    if (data == NULL)
      return 0;
    size_t n = len < sizeof h ? len : sizeof h;
    if (pread_all (fd, h, n, 0) == -1)
      return read_error (d);
    if (memcmp (h, data, n) != 0)
      return corrupt (d, "its first %zu bytes are not its content", n);
    return 0;
  }
  memset (h, 0, CHUNK_HEADER_SIZE);
  if (st.st_size >= CHUNK_HEADER_SIZE &&
      pread_all (fd, h, CHUNK_HEADER_SIZE, 0) == -1)
    return read_error (d);
  return chunk_store_parse_header (h, (uint64_t) st.st_size, len != 0, len, d, &payload);
}

/* Read one form of chunk d into buf (see chunk_store_read). */
static int
read_form (vms_repo *repo, const struct vms_digest *d, enum chunk_form form,
           void *buf, size_t len, int verify, struct chunk_tls *t)
{
  struct stat st;
  uint8_t h[CHUNK_HEADER_SIZE] = { 0 };
  uint32_t payload;
  CLEANUP_CLOSE int fd = open_chunk (repo, d, form, &st);

  if (fd == -1)
    return -1;
  if (form == CHUNK_FORM_RAW) {
    if (raw_size_check ((uint64_t) st.st_size, 1, len, d) == -1)
      return -1;
    if (pread_all (fd, buf, len, 0) == -1)
      return read_error (d);
  }
  else {
    if (st.st_size >= CHUNK_HEADER_SIZE &&
        pread_all (fd, h, sizeof h, 0) == -1)
      return read_error (d);
    if (chunk_store_parse_header (h, (uint64_t) st.st_size, 1, len, d, &payload) == -1)
      return -1;
    uint8_t *io = tls_buffer (&t->io);
    if (io == NULL)
      return -1;
    if (pread_all (fd, io, payload, CHUNK_HEADER_SIZE) == -1)
      return read_error (d);
    if (chunk_store_unpack (io, payload, buf, len, d) == -1)
      return -1;
  }
  return verify ? chunk_verify (repo, buf, len, d) : 0;
}

/* ---- version 2: blobs in packs (pack.c) ---- */

/* The blob of chunk d at loc could not be read: say why. */
static int
pack_read_error (const struct vms_digest *d, const struct pack_loc *loc)
{
  char hex[65], pack[64];
  int e = errno;

  vms_digest_hex (d, hex);
  pack_object_name (loc->pack_id, pack);
  if (e == ENOENT)
    vms_set_error (ENOENT, "chunk %s is missing (its pack %s is gone)", hex,
                   pack);
  else if (e == EBADMSG)
    return corrupt (d, "its pack %s is shorter than the index says", pack);
  else if (e == ELOOP || e == EINVAL)
    return corrupt (d, "its pack %s is %s", pack, e == ELOOP
                    ? "a symbolic link, not followed" : "not a regular file");
  else
    vms_set_error (e, "chunk %s is unreadable (pack %s): %s", hex, pack,
                   repo_errstr (e));
  return -1;
}

/* Whether the blob at loc can be chunk d of len bytes (0: any) in a pack
 * of pack_size bytes (UINT64_MAX: not known): 0, or -1 with the error
 * naming the chunk. */
static int
v2_blob_fits (vms_repo *repo, const struct vms_digest *d, size_t len,
              const struct pack_loc *loc, uint64_t pack_size)
{
  if (len && loc->plen != len)
    return corrupt (d, "holds %" PRIu32 " bytes, expected %zu", loc->plen,
                    len);
  if ((uint64_t) loc->offset + loc->slen + repo->blob_overhead > pack_size) {
    errno = EBADMSG;
    return pack_read_error (d, loc);
  }
  return 0;
}

/* Where chunk d is, for a chunk of len bytes (0: any): 0, or -1 with
 * "chunk HEX is missing" (ENOENT) or corrupt. */
static int
v2_locate (vms_repo *repo, const struct vms_digest *d, size_t len,
           struct pack_loc *loc)
{
  char hex[65];
  int r = pack_lookup (repo, d, loc);

  if (r == -1)
    return -1;
  if (r == 0) {
    vms_digest_hex (d, hex);
    vms_set_error (ENOENT, "chunk %s is missing", hex);
    return -1;
  }
  return v2_blob_fits (repo, d, len, loc, UINT64_MAX);
}

static int
v2_check (vms_repo *repo, const struct vms_digest *d, size_t len)
{
  struct pack_loc loc;
  struct storage_stat st;
  char pack[64];

  if (v2_locate (repo, d, len, &loc) == -1)
    return -1;
  pack_object_name (loc.pack_id, pack);
  if (storage_stat (repo->store, pack, &st) == -1) {
    /* Maybe still in this process's open pack: a ranged read says. */
    uint8_t byte[1 + ENVELOPE_OVERHEAD];
    struct pack_loc one = loc;
    one.slen = 1;
    if (errno == ENOENT && pack_read_blob (repo, &one, byte) == 0)
      return 0;
    return pack_read_error (d, &loc);
  }
  return v2_blob_fits (repo, d, 0, &loc, st.size);
}

/* The blob of d into dst: a pack gone since the index was loaded (a gc
 * that repacked it, docs/repository-format.md "Verify, prune, gc") sends
 * the reader to the index again, once. */
static int
v2_read_blob (vms_repo *repo, const struct vms_digest *d, size_t len,
              struct pack_loc *loc, void *dst)
{
  if (pack_read_blob (repo, loc, dst) == 0)
    return 0;
  if (errno != ENOENT)
    return pack_read_error (d, loc);
  if (pack_reload (repo) == -1 || v2_locate (repo, d, len, loc) == -1)
    return -1;
  if (pack_read_blob (repo, loc, dst) == 0)
    return 0;
  return pack_read_error (d, loc);
}

/* The associated data of chunk d's blob: its id (R28). */
static size_t
blob_aad (vms_repo *repo, const struct vms_digest *d, char *buf, size_t size)
{
  char hex[65];
  vms_digest_hex (d, hex);
  return crypt_aad (buf, size, repo->id, "blob", hex);
}

/* Open the sealed blob of d (slen bytes of content in its envelope) into
 * out; a failure names the chunk and its pack. */
static int
blob_open (vms_repo *repo, const struct vms_digest *d,
           const struct pack_loc *loc, const uint8_t *sealed, uint8_t *out)
{
  char aad[256], pack[64];

  if (repo->key == NULL) {
    vms_set_error (ENOKEY, "chunk cannot be read: repository %s is encrypted "
                   "and was opened without its key", repo->path);
    return -1;
  }
  if (crypt_open (repo->key->k_enc, aad, blob_aad (repo, d, aad, sizeof aad),
                  sealed, loc->slen + ENVELOPE_OVERHEAD, out) == -1) {
    pack_object_name (loc->pack_id, pack);
    return corrupt (d, "failed authentication in pack %s: altered, cut "
                    "short, or another chunk's blob", pack);
  }
  return 0;
}

/* The content of chunk d (len bytes) into buf from its stored blob (the
 * slen bytes at loc, in their envelope when encrypted; blob may be buf
 * for a raw blob of a plain repository): opened, decompressed, and with
 * verify re-hashed. */
static int
v2_decode (vms_repo *repo, const struct vms_digest *d,
           const struct pack_loc *loc, const uint8_t *blob, void *buf,
           size_t len, int verify, struct chunk_tls *t)
{
  if (repo->encrypted) {
    /* Authenticated, then (zstd) decompressed. GCM is the check here:
     * blob_open succeeds only for a blob sealed under K_enc for this
     * chunk id in this repository, i.e. one this repository's key holder
     * stored as chunk d; a flipped bit, a cut, another chunk's or another
     * repository's blob fail it (R28; docs/encryption.md "Why a restore
     * does not re-derive chunk ids"). Re-deriving the keyed id from the
     * content (HMAC-SHA-256 over every byte, as costly as the opening)
     * adds nothing against the storage; verify --deep still does it
     * (CHUNK_REDERIVE), for faults of the host that wrote the chunk. */
    int rederive = verify == CHUNK_REDERIVE;
    uint8_t *opened;
    if (loc->form == CHUNK_FORM_RAW)
      return blob_open (repo, d, loc, blob, buf) == -1 ? -1
        : rederive ? chunk_verify (repo, buf, len, d) : 0;
    if ((opened = tls_buffer (&t->opened)) == NULL ||
        blob_open (repo, d, loc, blob, opened) == -1 ||
        chunk_store_unpack (opened, loc->slen, buf, len, d) == -1)
      return -1;
    return rederive ? chunk_verify (repo, buf, len, d) : 0;
  }
  if (loc->form == CHUNK_FORM_RAW) {
    if (blob != buf)
      memcpy (buf, blob, len);
  }
  else if (chunk_store_unpack (blob, loc->slen, buf, len, d) == -1)
    return -1;
  return verify ? chunk_verify (repo, buf, len, d) : 0;
}

static int
v2_read (vms_repo *repo, const struct vms_digest *d, void *buf, size_t len,
         int verify, struct chunk_tls *t)
{
  struct pack_loc loc;
  uint8_t *blob;

  if (v2_locate (repo, d, len, &loc) == -1)
    return -1;
  /* A raw blob of a plain repository is the content: read in place. */
  if (repo->encrypted)
    blob = tls_buffer (&t->sealed);
  else
    blob = loc.form == CHUNK_FORM_RAW ? buf : tls_buffer (&t->io);
  if (blob == NULL || v2_read_blob (repo, d, len, &loc, blob) == -1)
    return -1;
  return v2_decode (repo, d, &loc, blob, buf, len, verify, t);
}

int
chunk_store_check_at (vms_repo *repo, const struct vms_digest *d, size_t len,
                      const struct pack_loc *loc, uint64_t pack_size,
                      const uint8_t *blob, void *buf)
{
  if (v2_blob_fits (repo, d, len, loc, pack_size) == -1)
    return -1;
  if (blob == NULL)
    return 0;
  struct chunk_tls *t = tls_get ();
  if (t == NULL)
    return -1;
  return v2_decode (repo, d, loc, blob, buf, len, CHUNK_REDERIVE, t);
}

/* ---- either form ----
 *
 * A chunk is there if either of its files is there and sound: the raw one
 * is tried first, then the zstd one. When both fail, the error is the raw
 * file's, unless that one is only missing. */

struct first_error {
  int errnum;
  char msg[256];
};

static void
first_error_save (struct first_error *f)
{
  const char *m = vms_get_error ();
  f->errnum = vms_get_errno ();
  snprintf (f->msg, sizeof f->msg, "%s", m ? m : "");
}

static int
first_error_restore (const struct first_error *f)
{
  if (f->errnum != ENOENT)
    vms_set_error (f->errnum, "%s", f->msg);
  return -1;
}

static int
check_either (vms_repo *repo, const struct vms_digest *d, size_t len,
              const void *data)
{
  struct first_error first;

  if (check_form (repo, d, CHUNK_FORM_RAW, len, data) == 0)
    return 0;
  first_error_save (&first);
  if (check_form (repo, d, CHUNK_FORM_ZSTD, len, data) == 0)
    return 0;
  return first_error_restore (&first);
}

int
chunk_store_check (vms_repo *repo, const struct vms_digest *d, size_t len)
{
  if (repo->version >= 2)
    return v2_check (repo, d, len);
  return check_either (repo, d, len, NULL);
}

int
chunk_store_read (vms_repo *repo, const struct vms_digest *d, void *buf,
                  size_t len, int verify)
{
  struct first_error first;

  if (len > VMS_CHUNK_SIZE) {
    vms_set_error (EINVAL, "chunk length %zu is larger than %u", len,
                   VMS_CHUNK_SIZE);
    return -1;
  }
  if (vms_digest_is_zero (d)) {
    memset (buf, 0, len);
    return 0;
  }
  struct chunk_tls *t = tls_get ();
  if (t == NULL)
    return -1;
  if (repo->version >= 2)
    return v2_read (repo, d, buf, len, verify, t);
  if (read_form (repo, d, CHUNK_FORM_RAW, buf, len, verify, t) == 0)
    return 0;
  first_error_save (&first);
  if (read_form (repo, d, CHUNK_FORM_ZSTD, buf, len, verify, t) == 0)
    return 0;
  return first_error_restore (&first);
}

const uint8_t *
chunk_store_read_cached (vms_repo *repo, const struct vms_digest *d, size_t len)
{
  struct chunk_tls *t = tls_get ();
  uint8_t *plain;

  if (t == NULL || (plain = tls_buffer (&t->plain)) == NULL)
    return NULL;
  if (t->plain_valid && t->plain_len == len &&
      memcmp (t->plain_digest.b, d->b, VMS_DIGEST_LEN) == 0)
    return plain;
  t->plain_valid = 0;
  if (chunk_store_read (repo, d, plain, len, 1) == -1)
    return NULL;
  t->plain_digest = *d;
  t->plain_len = len;
  t->plain_valid = 1;
  return plain;
}

/* ---- public ---- */

int
vms_repo_chunk_exists (vms_repo *repo, const struct vms_digest *digest)
{
  char name[CHUNK_NAME_MAX], hex[65];
  struct stat st;

  if (vms_digest_is_zero (digest))
    return 1;
  if (repo->version >= 2) {
    struct pack_loc loc;
    int r = pack_lookup_dedup (repo, digest, &loc);
    if (r == -1)
      vms_set_error (vms_get_errno (), "repository %s: %s", repo->path,
                     vms_get_error ());
    return r;
  }
  for (int form = CHUNK_FORM_RAW; form <= CHUNK_FORM_ZSTD; form++) {
    chunk_name (digest, (enum chunk_form) form, name);
    int dfd = chunk_store_dir (repo, digest, 0);
    if (dfd >= 0 && fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      return 1;
    if (errno != ENOENT) {
      vms_digest_hex (digest, hex);
      vms_set_error (errno, "repository %s: cannot look up chunk %s: %s",
                     repo->path, hex, repo_errstr (errno));
      return -1;
    }
  }
  return 0;
}

int
vms_repo_chunk_get (vms_repo *repo, const struct vms_digest *digest,
                    void *buf, size_t len, int verify)
{
  if (chunk_store_read (repo, digest, buf, len, verify) == -1) {
    vms_set_error (vms_get_errno (), "repository %s: %s", repo->path,
                   vms_get_error ());
    return -1;
  }
  return 0;
}

static unsigned tmp_counter;

int
vms_repo_chunk_put (vms_repo *repo, const void *data, size_t len,
                    struct vms_digest *digest, uint64_t *stored_bytes)
{
  char name[CHUNK_NAME_MAX], other[CHUNK_NAME_MAX], tmp[96], hex[65];
  struct vms_digest d;
  struct chunk_tls *t;
  uint8_t *io;
  enum chunk_form form;

  if (stored_bytes)
    *stored_bytes = 0;
  if (len > VMS_CHUNK_SIZE) {
    vms_set_error (EINVAL, "chunk of %zu bytes is larger than the chunk size %u",
                   len, VMS_CHUNK_SIZE);
    return -1;
  }
  if (repo_need_write (repo, "store a chunk") == -1)
    return -1;
  if (is_all_zero (data, len)) {
    memset (digest->b, 0, VMS_DIGEST_LEN);
    return 0;
  }
  if (repo_chunk_id (repo, data, len, &d) == -1)
    return -1;
  *digest = d;

  /* Already there (and sound), in either form? A chunk left half-written by
   * a crash before a commit's syncfs fails this check and is written
   * again. In version 2: indexed (every indexed pack was put whole). */
  if (repo->version >= 2) {
    struct pack_loc loc;
    int r = pack_lookup_dedup (repo, &d, &loc);
    if (r == -1)
      return -1;
    if (r == 1 && loc.plen == len)
      return 0;
  }
  else if (check_either (repo, &d, len, data) == 0)
    return 0;

  if ((t = tls_get ()) == NULL || (io = tls_buffer (&t->io)) == NULL)
    return -1;
  if (t->cctx == NULL && (t->cctx = ZSTD_createCCtx ()) == NULL) {
    vms_set_error (ENOMEM, "out of memory for a zstd context");
    return -1;
  }
  /* Capacity len - 1: stored compressed only when that is smaller. */
  size_t r = len > 1
    ? ZSTD_compressCCtx (t->cctx, io + CHUNK_HEADER_SIZE, len - 1, data, len,
                         CHUNK_ZSTD_LEVEL)
    : (size_t) -1;
  const uint8_t *file;
  size_t file_size;
  if (len > 1 && !ZSTD_isError (r) && r < len) {
    form = CHUNK_FORM_ZSTD;
    memset (io, 0, CHUNK_HEADER_SIZE);
    memcpy (io, CHUNK_MAGIC, 4);
    io[4] = CHUNK_VERSION;
    io[5] = CHUNK_COMPRESSION_ZSTD;
    repo_put_le32 (io + 8, (uint32_t) len);
    repo_put_le32 (io + 12, (uint32_t) r);
    file = io;
    file_size = CHUNK_HEADER_SIZE + r;
  }
  else {
    /* Raw: the file is the content, nothing else. */
    form = CHUNK_FORM_RAW;
    file = data;
    file_size = len;
  }

  if (repo->version >= 2) {
    /* The blob: the content, or the zstd frame alone (the index holds
     * the form and the lengths). */
    const uint8_t *blob = form == CHUNK_FORM_ZSTD ? io + CHUNK_HEADER_SIZE
      : data;
    size_t slen = form == CHUNK_FORM_ZSTD ? r : len;
    if (repo->encrypted) {
      /* Sealed here, in the caller's thread, before the pack's lock: its
       * identity is its id (R28). */
      char aad[256];
      uint8_t *sealed = tls_buffer (&t->sealed);
      if (sealed == NULL ||
          crypt_seal (repo->key->k_enc, aad, blob_aad (repo, &d, aad,
                                                       sizeof aad),
                      blob, slen, sealed) == -1)
        return -1;
      blob = sealed;
    }
    return pack_add_blob (repo, &d, form, blob, slen, len, stored_bytes);
  }
  chunk_name (&d, form, name);
  chunk_name (&d, form == CHUNK_FORM_RAW ? CHUNK_FORM_ZSTD : CHUNK_FORM_RAW,
              other);
  vms_digest_hex (&d, hex);
  snprintf (tmp, sizeof tmp, ".tmp-%d-%u", (int) getpid (),
            __atomic_fetch_add (&tmp_counter, 1, __ATOMIC_RELAXED));

  int dfd = chunk_store_dir (repo, &d, 1);
  int fd = dfd >= 0 ? vms_open_beneath (dfd, tmp, O_WRONLY | O_CREAT | O_EXCL,
                                        0600) : -1;
  if (fd == -1)
    goto error;
  if (fchmod (fd, 0600) == -1)
    goto error_close;
  if (vms_write_all (fd, file, file_size) == -1)
    goto error_close;
  if (close (fd) == -1) {
    fd = -1;
    goto error_unlink;
  }
  if (renameat (dfd, tmp, dfd, name) == -1) {
    fd = -1;
    goto error_unlink;
  }
  /* The other form, if there, failed the check above (torn, or left by a
   * build that chose the other form): the file just written replaces it. */
  unlinkat (dfd, other, 0);
  if (stored_bytes)
    *stored_bytes = file_size;
  return 0;

 error_close:
  {
    int e = errno;
    close (fd);
    errno = e;
  }
 error_unlink:
  {
    int e = errno;
    unlinkat (dfd, tmp, 0);
    errno = e;
  }
 error:
  vms_set_error (errno, "repository %s: %s while writing chunk %s",
                 repo->path, repo_errstr (errno), hex);
  return -1;
}

/* ---- digest sets ---- */

static size_t
digest_hash (const struct vms_digest *d)
{
  uint64_t h;
  memcpy (&h, d->b, sizeof h);    /* SHA-256 output is already uniform */
  return (size_t) h;
}

static struct digest_set_entry *
digest_set_slot (struct digest_set_entry *e, size_t cap,
                 const struct vms_digest *d)
{
  size_t i = digest_hash (d) & (cap - 1);
  while (e[i].used && memcmp (e[i].d.b, d->b, VMS_DIGEST_LEN) != 0)
    i = (i + 1) & (cap - 1);
  return &e[i];
}

struct digest_set_entry *
digest_set_add (struct digest_set *s, const struct vms_digest *d, int *added)
{
  struct digest_set_entry *slot;

  if (s->len + 1 > s->cap / 2) {
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    struct digest_set_entry *ne = calloc (ncap, sizeof *ne);
    if (ne == NULL) {
      vms_set_error (ENOMEM, "out of memory for a set of %zu chunks", s->len);
      return NULL;
    }
    for (size_t i = 0; i < s->cap; i++)
      if (s->e[i].used)
        *digest_set_slot (ne, ncap, &s->e[i].d) = s->e[i];
    free (s->e);
    s->e = ne;
    s->cap = ncap;
  }
  slot = digest_set_slot (s->e, s->cap, d);
  *added = !slot->used;
  if (!slot->used) {
    slot->used = 1;
    slot->d = *d;
    slot->value = 0;
    s->len++;
  }
  return slot;
}

int
digest_set_contains (const struct digest_set *s, const struct vms_digest *d)
{
  return s->cap > 0 && digest_set_slot (s->e, s->cap, d)->used;
}

void
digest_set_free (struct digest_set *s)
{
  free (s->e);
  s->e = NULL;
  s->cap = s->len = 0;
}

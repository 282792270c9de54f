/* vms_extract: write a stored file back out as a raw or qcow2 image.
 *
 * The output is built in a private session directory (0700, root's: a
 * user who owns the target directory cannot reach into it) made in the
 * target's directory, and renamed from there into place, relative to the
 * directory fds, only when every chunk was read, verified against its
 * digest and written: a failure never leaves wrong or partial data under
 * the target name, and a link planted in the target directory is never
 * followed nor moved into place. qemu-img and qemu-nbd get the image by a
 * path through our fd of the private directory (/proc/PID/fd/N/image),
 * never by a path in a directory others can write. A killed extract
 * leaves that directory; the next extract into the same directory removes
 * it (lib/util/session-dir.h). Issue 9 item 2, docs/security.md. Zero chunks are never written: a raw output keeps them as
 * holes (ftruncate), a qcow2 output leaves them unallocated. Several
 * workers claim chunks in turn, each reading, decompressing, verifying and
 * writing its own (raw: pwrite; qcow2: its own NBD connection to a private
 * writable qemu-nbd), so extract runs near disk speed. A qcow2 worker
 * claims a run of consecutive chunks (2 MiB) and writes each stretch of
 * non-zero blocks in it as one NBD request, so that qemu-nbd allocates
 * clusters and writes the disk in large pieces. The same workers write
 * into a device that exists (extract_into_nbd, for vms_extract_into):
 * there every chunk is written, zeros included, and no file is renamed.
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

#include <libnbd.h>

#include "cleanup.h"
#include "first-error.h"
#include "fs-util.h"
#include "log.h"
#include "session-dir.h"
#include "subprocess.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

#include "datapath-internal.h"

#define EXTRACT_PROGRESS_MS 250
#define EXTRACT_QEMU_IMG_MS 120000
/* Zero blocks of this size inside a chunk are not written (the qcow2
 * default cluster size). */
#define EXTRACT_BLOCK ((size_t) 65536)
/* Workers (so writes in flight) at least, for a qcow2 output written
 * with O_DIRECT. */
#define EXTRACT_DIRECT_WORKERS 8
/* The run of consecutive chunks a qcow2 worker claims and writes at once,
 * in KiB ($VMSHADOW_EXTRACT_RUN_KIB, for benchmarks): one request per
 * 128 KiB chunk kept qemu-nbd's O_DIRECT writes at 128 KiB, which this
 * disk takes at half the rate of 1 MiB ones (issue 15,
 * docs/performance.md). Since the image grows ahead of the writes
 * (nbd-server.c), 512 KiB runs are as fast as 2 MiB ones, and qemu-nbd
 * holds 22 MiB instead of 57-67 (session 15). At most 64 chunks (a bit
 * per chunk). */
#define EXTRACT_RUN_KIB 512
#define EXTRACT_RUN_MAX_CHUNKS 64
/* All workers' run buffers together: more workers (one per CPU, up to 64)
 * get shorter runs, so that memory does not grow with the CPUs (up to 32
 * workers keep their 512 KiB). */
#define EXTRACT_RUN_BUDGET (UINT64_C (16) << 20)
/* Into a device, zero chunks in one write-zeroes at most, where the
 * server takes that much (NBD's own default maximum request). */
#define EXTRACT_ZERO_MAX (UINT64_C (32) << 20)

/* A raw output's chunks that were written, by content: a chunk whose
 * content was written before is copied from there within the output file
 * (copy_file_range), not read, decompressed and verified again (issue 15:
 * the duplicated GiB of the mixed benchmark disk cost as much as the first
 * one). The copy comes from our own private file, from bytes verified when
 * they were written. An open-addressed table of chunk numbers; it holds at
 * most half its slots (65 536 chunks, 8 GiB of data, in 2 MiB): chunks
 * beyond that are read as any other. */
#define EXTRACT_SEEN_SLOTS ((size_t) 1 << 17)
struct extract_seen {
  uint64_t chunk1;              /* chunk number + 1; 0: free slot */
  uint64_t blocks;              /* bit b: EXTRACT_BLOCK b was written */
};

struct extract_job {
  vms_repo *repo;
  const vms_index *idx;
  const char *to_path;          /* for messages */
  int fd;                       /* raw output, or -1 */
  const char *nbd_uri;          /* qcow2 output served here, or NULL */
  unsigned run_chunks;          /* consecutive chunks claimed at once */
  /* Into a device that exists (extract_into_nbd): every chunk written,
   * a run all zeros or all data, zeros as one write-zeroes. */
  int into;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  uint64_t next_chunk;
  uint64_t done;                /* bytes dealt with */
  struct extract_seen *seen;    /* raw output: see EXTRACT_SEEN_SLOTS */
  size_t nr_seen;
  uint64_t copied;              /* chunks copied within the output */
  unsigned running;
  struct vms_first_error error;
};

static void __attribute__ ((format (printf, 3, 4)))
extract_fail (struct extract_job *j, int errnum, const char *fmt, ...)
{
  va_list ap;

  pthread_mutex_lock (&j->lock);
  va_start (ap, fmt);
  vms_first_error_record (&j->error, errnum, fmt, ap);
  va_end (ap);
  pthread_cond_broadcast (&j->cond);
  pthread_mutex_unlock (&j->lock);
}

static int
extract_pwrite_all (int fd, const char *buf, size_t len, uint64_t offset)
{
  while (len > 0) {
    ssize_t r = pwrite (fd, buf, len, (off_t) offset);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    buf += r;
    len -= (size_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

static int
extract_is_zero (const char *p, size_t len)
{
  static const char zero[16];
  if (len <= sizeof zero)
    return memcmp (p, zero, len) == 0;
  return memcmp (p, zero, sizeof zero) == 0
    && memcmp (p, p + sizeof zero, len - sizeof zero) == 0;
}

/* Write the non-zero stretches of buf (len bytes, for offset; chunk i of
 * it at i * VMS_CHUNK_SIZE) in EXTRACT_BLOCK steps, each stretch as one
 * write: the output reads as zeros already, so zero blocks stay holes
 * (raw) or unallocated clusters (qcow2). The chunks whose bit is set in
 * zero_chunks are zeros and not looked at (their part of buf is not
 * filled). The blocks written go to *blocks (a single chunk). */
static int
extract_write_chunks (struct extract_job *j, struct nbd_handle *h,
                      const char *buf, size_t len, uint64_t offset,
                      uint64_t zero_chunks, uint64_t *blocks)
{
  size_t pos = 0;

  _Static_assert (VMS_CHUNK_SIZE / EXTRACT_BLOCK <= 64,
                  "a chunk's blocks fit in a 64-bit mask");
  _Static_assert (VMS_CHUNK_SIZE % EXTRACT_BLOCK == 0,
                  "a block never spans two chunks");
  *blocks = 0;

#define EXTRACT_BLOCK_IS_ZERO(pos)                                      \
  ((zero_chunks >> ((pos) / VMS_CHUNK_SIZE) & 1)                        \
   || extract_is_zero (buf + (pos), len - (pos) < EXTRACT_BLOCK         \
                       ? len - (pos) : EXTRACT_BLOCK))
  while (pos < len) {
    size_t start, end;

    while (pos < len && EXTRACT_BLOCK_IS_ZERO (pos))
      pos += EXTRACT_BLOCK;
    if (pos >= len)
      break;
    start = pos;
    while (pos < len && !EXTRACT_BLOCK_IS_ZERO (pos))
      pos += EXTRACT_BLOCK;
    end = pos < len ? pos : len;
    for (size_t b = start / EXTRACT_BLOCK; b * EXTRACT_BLOCK < end && b < 64; b++)
      *blocks |= UINT64_C (1) << b;
    if (h) {
      if (nbd_pwrite (h, buf + start, end - start, offset + start, 0) == -1) {
        extract_fail (j, nbd_get_errno (), "writing %s at offset %" PRIu64
                      ": %s", j->to_path, offset + start, nbd_get_error ());
        return -1;
      }
    }
    else if (extract_pwrite_all (j->fd, buf + start, end - start,
                                 offset + start) == -1) {
      extract_fail (j, errno, "writing %s at offset %" PRIu64 ": %s",
                    j->to_path, offset + start, strerror (errno));
      return -1;
    }
  }
#undef EXTRACT_BLOCK_IS_ZERO
  return 0;
}

/* The slot of content d (len bytes) in j->seen: the one holding it, or
 * the free one where it would go (lock held). */
static struct extract_seen *
extract_seen_slot (struct extract_job *j, const struct vms_digest *d,
                   size_t len)
{
  uint64_t h;
  size_t i;

  memcpy (&h, d->b, sizeof h);  /* a digest is uniform already */
  for (i = (size_t) h & (EXTRACT_SEEN_SLOTS - 1);;
       i = (i + 1) & (EXTRACT_SEEN_SLOTS - 1)) {
    struct extract_seen *e = &j->seen[i];
    uint64_t c = e->chunk1 - 1;
    if (e->chunk1 == 0 ||
        (vms_index_chunk_len (j->idx, c) == len &&
         memcmp (vms_index_get (j->idx, c)->b, d->b, VMS_DIGEST_LEN) == 0))
      return e;
  }
}

/* Whether content d was written already: its entry into *found. */
static int
extract_seen_find (struct extract_job *j, const struct vms_digest *d,
                   size_t len, struct extract_seen *found)
{
  int r = 0;

  if (j->seen == NULL)
    return 0;
  pthread_mutex_lock (&j->lock);
  struct extract_seen *e = extract_seen_slot (j, d, len);
  if (e->chunk1) {
    *found = *e;
    r = 1;
  }
  pthread_mutex_unlock (&j->lock);
  return r;
}

/* Chunk number chunk (content d, len bytes) is in the output now. */
static void
extract_seen_add (struct extract_job *j, const struct vms_digest *d,
                  size_t len, uint64_t chunk, uint64_t blocks)
{
  if (j->seen == NULL)
    return;
  pthread_mutex_lock (&j->lock);
  if (j->nr_seen < EXTRACT_SEEN_SLOTS / 2) {
    struct extract_seen *e = extract_seen_slot (j, d, len);
    if (e->chunk1 == 0) {
      e->chunk1 = chunk + 1;
      e->blocks = blocks;
      j->nr_seen++;
    }
  }
  pthread_mutex_unlock (&j->lock);
}

/* Copy len bytes at from to to within the raw output: in the kernel
 * (copy_file_range), else through buf. */
static int
extract_copy_range (struct extract_job *j, char *buf, uint64_t from,
                    uint64_t to, size_t len)
{
  while (len > 0) {
    loff_t in = (loff_t) from, out = (loff_t) to;
    ssize_t n = copy_file_range (j->fd, &in, j->fd, &out, len, 0);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL ||
                    errno == EOPNOTSUPP)) {
      n = pread (j->fd, buf, len, (off_t) from);
      if (n > 0 && extract_pwrite_all (j->fd, buf, (size_t) n, to) == -1)
        n = -1;
    }
    if (n <= 0) {
      extract_fail (j, n == 0 ? EIO : errno, "writing %s at offset %"
                    PRIu64 ": copying the same content from offset %" PRIu64
                    ": %s", j->to_path, to, from,
                    n == 0 ? "unexpected end of file" : strerror (errno));
      return -1;
    }
    from += (uint64_t) n;
    to += (uint64_t) n;
    len -= (size_t) n;
  }
  return 0;
}

/* Write chunk at offset (len bytes) as a copy of the chunk of e, the
 * blocks that chunk wrote. */
static int
extract_copy_chunk (struct extract_job *j, char *buf,
                    const struct extract_seen *e, size_t len, uint64_t offset)
{
  uint64_t from = (e->chunk1 - 1) * (uint64_t) VMS_CHUNK_SIZE;

  for (size_t b = 0; b * EXTRACT_BLOCK < len; b++) {
    size_t start = b * EXTRACT_BLOCK, end;

    if (!(e->blocks & (UINT64_C (1) << b)))
      continue;
    while ((b + 1) * EXTRACT_BLOCK < len && (e->blocks & (UINT64_C (1) << (b + 1))))
      b++;
    end = (b + 1) * EXTRACT_BLOCK < len ? (b + 1) * EXTRACT_BLOCK : len;
    if (extract_copy_range (j, buf, from + start, offset + start, end - start) == -1)
      return -1;
  }
  return 0;
}

/* Read and verify chunk into buf (len bytes at offset); -1 with the job
 * failed if it cannot be. */
static int
extract_read_chunk (struct extract_job *j, const struct vms_digest *d,
                    char *buf, size_t len, uint64_t offset)
{
  if (vms_repo_chunk_get (j->repo, d, buf, len, 1) == -1) {
    char hex[65];
    vms_digest_hex (d, hex);
    extract_fail (j, vms_get_errno (), "extracting to %s: the chunk at "
                  "offset %" PRIu64 " (%s) cannot be read: %s", j->to_path,
                  offset, hex, vms_get_error ());
    return -1;
  }
  return 0;
}

/* Extract chunks [first, first + n) into the output: each read and
 * verified into its place in buf (n chunks long), then the non-zero
 * stretches of the run written (qcow2: one NBD request each), or, for a
 * raw output, a chunk whose content was written before copied from there
 * (n is 1 then). */
static int
extract_chunks (struct extract_job *j, struct nbd_handle *h, char *buf,
                uint64_t first, unsigned n)
{
  uint64_t offset = first * (uint64_t) VMS_CHUNK_SIZE, zero_chunks = 0;
  size_t total = 0;

  assert (n >= 1 && n <= EXTRACT_RUN_MAX_CHUNKS);
  assert (h != NULL || n == 1);
  for (unsigned i = 0; i < n; i++) {
    const struct vms_digest *d = vms_index_get (j->idx, first + i);
    size_t len = vms_index_chunk_len (j->idx, first + i);
    uint64_t at = offset + (uint64_t) i * VMS_CHUNK_SIZE;
    struct extract_seen e;

    if (d == NULL) {
      extract_fail (j, EINVAL, "extracting to %s: no index entry for the "
                    "chunk at offset %" PRIu64, j->to_path, at);
      return -1;
    }
    assert (len == VMS_CHUNK_SIZE || i == n - 1);
    total += len;
    if (vms_digest_is_zero (d))
      zero_chunks |= UINT64_C (1) << i;
    else if (extract_seen_find (j, d, len, &e)) {
      /* Raw only (j->seen): n is 1. */
      if (extract_copy_chunk (j, buf, &e, len, at) == -1)
        return -1;
      pthread_mutex_lock (&j->lock);
      j->copied++;
      pthread_mutex_unlock (&j->lock);
      return 0;
    }
    else if (extract_read_chunk (j, d, buf + (size_t) i * VMS_CHUNK_SIZE,
                                 len, at) == -1)
      return -1;
  }
  if (n == 1 && zero_chunks)
    return 0;
  uint64_t blocks;
  if (extract_write_chunks (j, h, buf, total, offset, zero_chunks,
                            &blocks) == -1)
    return -1;
  if (n == 1)
    extract_seen_add (j, vms_index_get (j->idx, first),
                      vms_index_chunk_len (j->idx, first), first, blocks);
  return 0;
}

/* The next run for a worker, from first (lock held): at most run chunks;
 * into a device only chunks all zero (then up to zero_run) or all data,
 * since each run there is one write-zeroes or one write. */
static unsigned
extract_claim (struct extract_job *j, uint64_t first, unsigned run,
               unsigned zero_run)
{
  uint64_t nr = vms_index_chunk_count (j->idx);

  if (!j->into)
    return nr - first < run ? (unsigned) (nr - first) : run;

  const struct vms_digest *d = vms_index_get (j->idx, first);
  int zero = d != NULL && vms_digest_is_zero (d);
  unsigned limit = zero ? zero_run : run, n = 1;

  while (n < limit && first + n < nr) {
    const struct vms_digest *e = vms_index_get (j->idx, first + n);
    if (e == NULL || vms_digest_is_zero (e) != zero)
      break;
    n++;
  }
  return n;
}

/* Into a device: chunks [first, first + n), as claimed, written as one
 * write-zeroes (the device's old bytes must not show through) or as one
 * write of the chunks read and verified into buf. */
static int
extract_into_chunks (struct extract_job *j, struct nbd_handle *h, char *buf,
                     uint64_t first, unsigned n)
{
  uint64_t off = first * (uint64_t) VMS_CHUNK_SIZE;
  const struct vms_digest *d = vms_index_get (j->idx, first);
  int zero = d != NULL && vms_digest_is_zero (d);
  size_t len = 0;

  for (unsigned i = 0; i < n; i++) {
    size_t clen = vms_index_chunk_len (j->idx, first + i);

    d = vms_index_get (j->idx, first + i);
    if (d == NULL) {
      extract_fail (j, EINVAL, "writing %s: no index entry for the chunk at "
                    "offset %" PRIu64, j->to_path, off + len);
      return -1;
    }
    if (!zero && vms_repo_chunk_get (j->repo, d, buf + len, clen, 1) == -1) {
      char hex[65];
      vms_digest_hex (d, hex);
      extract_fail (j, vms_get_errno (), "writing %s: the chunk at offset %"
                    PRIu64 " (%s) cannot be read: %s", j->to_path, off + len,
                    hex, vms_get_error ());
      return -1;
    }
    len += clen;
  }
  if (zero ? nbd_zero (h, len, off, 0) == -1
      : nbd_pwrite (h, buf, len, off, 0) == -1) {
    extract_fail (j, nbd_get_errno (), "writing %s%s at offset %" PRIu64
                  ": %s", zero ? "zeros to " : "", j->to_path, off,
                  nbd_get_error ());
    return -1;
  }
  return 0;
}

static void *
extract_worker (void *arg)
{
  struct extract_job *j = arg;
  CLEANUP (nbd_close) struct nbd_handle *h = NULL;
  CLEANUP_FREE char *buf = NULL;
  uint64_t nr_chunks = vms_index_chunk_count (j->idx);
  unsigned run = j->run_chunks, zero_run = 1;

  pthread_setname_np (pthread_self (), "vms-extract");    /* for profiles */
  if (j->nbd_uri) {
    int64_t max;
    h = nbd_create ();
    if (h == NULL || nbd_connect_uri (h, j->nbd_uri) == -1) {
      extract_fail (j, nbd_get_errno (), "writing %s: cannot connect to its "
                    "NBD server: %s", j->to_path, nbd_get_error ());
      goto out;
    }
    /* Never a request larger than the server takes. */
    max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);
    while (run > 1 && max > 0 && (uint64_t) run * VMS_CHUNK_SIZE > (uint64_t) max)
      run /= 2;
    /* Write-zeroes carry no data: as many chunks as a request may cover
     * (NBD's default maximum where the server does not say). */
    if (j->into) {
      uint64_t zero_max = max > 0 && (uint64_t) max < EXTRACT_ZERO_MAX
                          ? (uint64_t) max : EXTRACT_ZERO_MAX;
      zero_run = (unsigned) (zero_max / VMS_CHUNK_SIZE);
      if (zero_run < 1)
        zero_run = 1;
    }
  }
  else
    run = 1;
  if (posix_memalign ((void **) &buf, 4096, (size_t) run * VMS_CHUNK_SIZE) != 0) {
    buf = NULL;
    extract_fail (j, ENOMEM, "out of memory");
    goto out;
  }

  for (;;) {
    uint64_t first, bytes;
    unsigned n;

    pthread_mutex_lock (&j->lock);
    if (j->error.failed || j->next_chunk >= nr_chunks) {
      pthread_mutex_unlock (&j->lock);
      break;
    }
    first = j->next_chunk;
    n = extract_claim (j, first, run, zero_run);
    j->next_chunk += n;
    pthread_mutex_unlock (&j->lock);

    if ((j->into ? extract_into_chunks (j, h, buf, first, n)
         : extract_chunks (j, h, buf, first, n)) == -1)
      break;
    bytes = (uint64_t) (n - 1) * VMS_CHUNK_SIZE
      + vms_index_chunk_len (j->idx, first + n - 1);
    pthread_mutex_lock (&j->lock);
    j->done += bytes;
    pthread_mutex_unlock (&j->lock);
  }

  if (h && !j->error.failed) {
    if (nbd_flush (h, 0) == -1 || nbd_shutdown (h, 0) == -1)
      extract_fail (j, nbd_get_errno (), "writing %s: flush failed: %s",
                    j->to_path, nbd_get_error ());
  }
 out:
  pthread_mutex_lock (&j->lock);
  j->running--;
  pthread_cond_broadcast (&j->cond);
  pthread_mutex_unlock (&j->lock);
  return NULL;
}

/* Run the workers; report progress from this thread until they end. */
static int
extract_run (struct extract_job *j, unsigned workers,
             vms_progress_fn progress, void *opaque)
{
  pthread_t threads[64];
  unsigned started = 0;
  uint64_t size = vms_index_size (j->idx);

  pthread_mutex_init (&j->lock, NULL);
  pthread_cond_init (&j->cond, NULL);
  if (workers > 64)
    workers = 64;
  for (unsigned i = 0; i < workers; i++) {
    int r;
    pthread_mutex_lock (&j->lock);
    j->running++;
    pthread_mutex_unlock (&j->lock);
    r = pthread_create (&threads[i], NULL, extract_worker, j);
    if (r != 0) {
      pthread_mutex_lock (&j->lock);
      j->running--;
      pthread_mutex_unlock (&j->lock);
      extract_fail (j, r, "cannot start an extract thread: %s", strerror (r));
      break;
    }
    started++;
  }
  pthread_mutex_lock (&j->lock);
  while (j->running > 0) {
    struct timespec ts;
    uint64_t done = j->done;

    if (progress) {
      pthread_mutex_unlock (&j->lock);
      progress (opaque, done, size);
      pthread_mutex_lock (&j->lock);
      if (j->running == 0)
        break;
    }
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += EXTRACT_PROGRESS_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait (&j->cond, &j->lock, &ts);
  }
  pthread_mutex_unlock (&j->lock);
  for (unsigned i = 0; i < started; i++)
    pthread_join (threads[i], NULL);
  pthread_cond_destroy (&j->cond);
  pthread_mutex_destroy (&j->lock);
  if (vms_first_error_raise (&j->error) == -1)
    return -1;
  if (progress)
    progress (opaque, size, size);
  return 0;
}

int
extract_into_nbd (vms_repo *repo, const vms_index *idx, const char *uri,
                  const char *what, unsigned workers, unsigned run_chunks,
                  uint64_t *written, vms_progress_fn progress, void *opaque)
{
  struct extract_job j = { .repo = repo, .idx = idx, .to_path = what,
                           .fd = -1, .nbd_uri = uri, .into = 1,
                           .run_chunks = run_chunks < 1 ? 1 : run_chunks };
  int r = extract_run (&j, workers, progress, opaque);

  *written = j.done;
  return r;
}

/* Whether the file fd can be written with O_DIRECT (the file system
 * takes it); fd's flags are left as they were. */
static int
extract_direct_ok (int fd)
{
  int fl = fcntl (fd, F_GETFL);

  if (fl == -1 || fcntl (fd, F_SETFL, fl | O_DIRECT) == -1)
    return 0;
  fcntl (fd, F_SETFL, fl);
  return 1;
}

/* The private directories of extracts in the target's directory. */
#define EXTRACT_PRIVATE_DIR ".vms-extract-XXXXXX"
#define EXTRACT_PRIVATE_PREFIX ".vms-extract-"
#define EXTRACT_IMAGE "image"

/* Split path into its directory (".": none) and last component. */
static int
extract_split (const char *path, char **dir, char **base)
{
  const char *slash = strrchr (path, '/');

  *dir = slash == NULL ? strdup (".")
    : slash == path ? strdup ("/") : strndup (path, (size_t) (slash - path));
  *base = strdup (slash ? slash + 1 : path);
  if (*dir == NULL || *base == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (**base == '\0' || strcmp (*base, ".") == 0 || strcmp (*base, "..") == 0) {
    vms_set_error (EINVAL, "cannot extract to %s: it names a directory, not "
                   "a file", path);
    return -1;
  }
  return 0;
}

static int
extract_qemu_img_create (const char *path, uint64_t size)
{
  char size_s[32], how[128], tail[1024];
  const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", path,
                         size_s, NULL };
  struct vms_subprocess_options o = { .argv = argv,
                                      .timeout_ms = EXTRACT_QEMU_IMG_MS };
  struct vms_subprocess_result res = { 0 };
  int r = 0;

  snprintf (size_s, sizeof size_s, "%" PRIu64, size);
  if (vms_subprocess_run (&o, &res) == -1)
    return -1;
  if (!vms_subprocess_succeeded (&res)) {
    vms_set_error (EIO, "qemu-img create %s: %s: %s", path,
                   vms_subprocess_describe (&res, how, sizeof how),
                   vms_subprocess_error_tail (&res, 3, tail, sizeof tail));
    r = -1;
  }
  vms_subprocess_result_reset (&res);
  return r;
}

/* Checks what vms_extract and vms_extract_at are given. */
static int
extract_check (vms_repo *repo, const vms_index *idx, const char *to_path,
               const char *format)
{
  if (repo == NULL || idx == NULL || to_path == NULL || *to_path == '\0') {
    vms_set_error (EINVAL, "cannot extract: %s", to_path == NULL || *to_path == '\0'
                   ? "no path to write the file to was given"
                   : "no repository or index was given");
    return -1;
  }
  if (format != NULL && strcmp (format, "raw") != 0 &&
      strcmp (format, "qcow2") != 0) {
    vms_set_error (EINVAL, "cannot extract to %s: unknown format \"%s\" "
                   "(raw or qcow2)", to_path, format);
    return -1;
  }
  return 0;
}

static int extract_in (vms_repo *repo, const vms_index *idx, int dirfd,
                       const char *dir, const char *base, const char *to_path,
                       const char *format, int overwrite,
                       vms_progress_fn progress, void *opaque);

int
vms_extract (vms_repo *repo, const vms_index *idx, const char *to_path,
             const char *format, int overwrite,
             vms_progress_fn progress, void *opaque)
{
  CLEANUP_FREE char *dir = NULL, *base = NULL;
  CLEANUP_CLOSE int dirfd = -1;

  if (extract_check (repo, idx, to_path, format) == -1 ||
      extract_split (to_path, &dir, &base) == -1)
    return -1;
  dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd == -1) {
    vms_set_error (errno, "cannot extract to %s: cannot open directory %s: "
                   "%s", to_path, dir, strerror (errno));
    return -1;
  }
  return extract_in (repo, idx, dirfd, dir, base, to_path, format, overwrite,
                     progress, opaque);
}

int
vms_extract_at (vms_repo *repo, const vms_index *idx, int dirfd,
                const char *name, const char *what, const char *format,
                int overwrite, vms_progress_fn progress, void *opaque)
{
  if (extract_check (repo, idx, what, format) == -1)
    return -1;
  if (name == NULL || name[0] == '\0' || strchr (name, '/') != NULL ||
      strcmp (name, ".") == 0 || strcmp (name, "..") == 0) {
    vms_set_error (EINVAL, "cannot extract to %s: \"%s\" is not a file name",
                   what, name ? name : "");
    return -1;
  }
  return extract_in (repo, idx, dirfd, what, name, what, format, overwrite,
                     progress, opaque);
}

/* The work of both: dir names the directory dirfd in messages. */
static int
extract_in (vms_repo *repo, const vms_index *idx, int dirfd,
            const char *dir, const char *base, const char *to_path,
            const char *format, int overwrite,
            vms_progress_fn progress, void *opaque)
{
  struct extract_job j = { 0 };
  struct nbd_server server = { 0 };
  CLEANUP_FREE char *private_name = NULL;
  CLEANUP_CLOSE int fd = -1;
  int private_fd = -1;
  char qemu_path[64];
  struct stat st;
  uint64_t size;
  unsigned workers;
  int qcow2, r = -1;

  if (format == NULL)
    format = "raw";
  qcow2 = strcmp (format, "qcow2") == 0;
  if (fstatat (dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!overwrite) {
      vms_set_error (EEXIST, "cannot extract to %s: it exists, and extract "
                     "never overwrites a file; remove it or choose another "
                     "path", to_path);
      return -1;
    }
    /* Overwriting replaces a file (or a link, never followed). A device
     * is written through vms_extract_into; renamed over, its node would
     * become a file (a bench did that to /dev/null). */
    if (!S_ISREG (st.st_mode) && !S_ISLNK (st.st_mode)) {
      vms_set_error (EEXIST, "cannot extract to %s: it exists and is %s, "
                     "not a file; only a file is replaced", to_path,
                     S_ISDIR (st.st_mode) ? "a directory"
                     : S_ISBLK (st.st_mode) || S_ISCHR (st.st_mode)
                     ? "a device" : "a FIFO or socket");
      return -1;
    }
  }
  size = vms_index_size (idx);
  workers = datapath_workers (2);

  /* Leftovers of killed extracts into this directory first. */
  if (vms_session_dir_sweep (dirfd, EXTRACT_PRIVATE_PREFIX) > 0)
    vms_debug ("extract: removed the leftovers of a killed extract in %s",
               dir);
  private_fd = vms_session_dir_make (dirfd, EXTRACT_PRIVATE_DIR,
                                     &private_name);
  if (private_fd == -1 ||
      (fd = vms_open_beneath (private_fd, EXTRACT_IMAGE,
                              O_RDWR | O_CREAT | O_EXCL, 0600)) == -1) {
    vms_set_error (errno, "cannot extract to %s: cannot make a private "
                   "directory in %s: %s", to_path, dir, vms_fs_errstr (errno));
    goto out;
  }

  memset (&j, 0, sizeof j);
  j.repo = repo;
  j.idx = idx;
  j.to_path = to_path;
  j.fd = -1;
  if (!qcow2) {
    if (ftruncate (fd, (off_t) size) == -1) {
      vms_set_error (errno, "cannot make %s %" PRIu64 " bytes long: %s",
                     to_path, size, strerror (errno));
      goto out;
    }
    j.fd = fd;
    /* Lazily zeroed pages: a disk with few chunks touches little of it. */
    j.seen = calloc (EXTRACT_SEEN_SLOTS, sizeof *j.seen);
    if (j.seen == NULL) {
      vms_set_error (ENOMEM, "cannot extract to %s: out of memory", to_path);
      goto out;
    }
  }
  else {
    int direct;
    /* Through our fd of the private directory: no name in the target
     * directory, which others may write, is ever resolved by QEMU. */
    snprintf (qemu_path, sizeof qemu_path, "/proc/%d/fd/%d/" EXTRACT_IMAGE,
              (int) getpid (), private_fd);
    if (extract_qemu_img_create (qemu_path, size) == -1) {
      vms_set_error (vms_get_errno (), "cannot extract to %s: %s", to_path,
                     vms_get_error ());
      goto out;
    }
    /* qemu-nbd writes past the page cache where the file system allows
     * it (tmpfs does not): a qcow2 extract spent a third of its CPU time
     * in qemu-nbd's copies into the page cache (issue 15). Each worker
     * then waits on the disk for its write, so more of them keep the disk
     * busy (8: 5.0 s instead of 6.3 s with 2 for the 4 GiB benchmark disk,
     * docs/performance.md). */
    direct = extract_direct_ok (fd);
    int started = -1;
    if (direct) {
      unsigned direct_workers = datapath_workers (EXTRACT_DIRECT_WORKERS);
      vms_debug ("extract to %s: qcow2 written with O_DIRECT, %u workers",
                 to_path, direct_workers);
      started = nbd_server_start (&server, qemu_path, "qcow2", NULL,
                            NBD_SERVER_WRITABLE_DIRECT, direct_workers);
      if (started == 0)
        workers = direct_workers;
      else
        /* QEMU refuses native AIO when io_setup fails (fs.aio-max-nr used
         * up on a busy host) or O_DIRECT when its alignment probe does:
         * then through the page cache, as always worked. */
        vms_debug ("extract to %s: qemu-nbd with O_DIRECT did not start "
                   "(%s); through the page cache", to_path, vms_get_error ());
    }
    if (started == -1) {
      vms_debug ("extract to %s: qcow2 written through the page cache, %u "
                 "workers", to_path, workers);
      started = nbd_server_start (&server, qemu_path, "qcow2", NULL, 1, workers);
    }
    if (started == -1) {
      vms_set_error (vms_get_errno (), "cannot extract to %s: %s", to_path,
                     vms_get_error ());
      goto out;
    }
    j.nbd_uri = server.uri;
    j.run_chunks = datapath_env_uint ("VMSHADOW_EXTRACT_RUN_KIB",
                                      EXTRACT_RUN_KIB, 1, 1u << 20)
      / (VMS_CHUNK_SIZE >> 10);
    if (j.run_chunks < 1)
      j.run_chunks = 1;
    if (j.run_chunks > EXTRACT_RUN_MAX_CHUNKS)
      j.run_chunks = EXTRACT_RUN_MAX_CHUNKS;
    uint64_t fit = EXTRACT_RUN_BUDGET / ((uint64_t) workers * VMS_CHUNK_SIZE);
    if (j.run_chunks > fit)
      j.run_chunks = fit < 1 ? 1 : (unsigned) fit;
  }

  if (extract_run (&j, workers, progress, opaque) == -1)
    goto out;
  if (j.copied)
    vms_debug ("extract to %s: %" PRIu64 " chunks copied from the same "
               "content earlier in the file", to_path, j.copied);
  if (qcow2) {
    if (nbd_server_stop (&server) == -1) {
      vms_set_error (vms_get_errno (), "cannot extract to %s: %s", to_path,
                     vms_get_error ());
      goto out;
    }
  }
  if (fsync (fd) == -1) {
    vms_set_error (errno, "cannot extract to %s: fsync: %s", to_path,
                   strerror (errno));
    goto out;
  }
  if (overwrite ? renameat (private_fd, EXTRACT_IMAGE, dirfd, base)
      : vms_rename_noreplace (private_fd, EXTRACT_IMAGE, dirfd, base)) {
    vms_set_error (errno, "cannot extract to %s: renaming it into place: %s",
                   to_path, strerror (errno));
    goto out;
  }
  if (fsync (dirfd) == -1)
    vms_warn ("extract to %s: cannot sync its directory: %s", to_path,
              strerror (errno));
  r = 0;

 out:
  free (j.seen);
  if (server.pid > 0) {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = vms_get_error () ? strdup (vms_get_error ()) : NULL;
    nbd_server_stop (&server);
    vms_set_error (e, "%s", msg ? msg : "extract failed");
  }
  if (private_fd >= 0 &&
      vms_session_dir_remove (dirfd, private_name, private_fd) == -1)
    vms_warn ("extract to %s: cannot remove its private directory %s/%s: %s",
              to_path, dir, private_name, strerror (errno));
  return r;
}

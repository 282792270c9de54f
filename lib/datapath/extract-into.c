/* vms_extract_into: write a stored disk back into a device that exists
 * already — a host block device, an RBD image, an iSCSI LUN, an NBD
 * export (issue 11: restore to the same kind) — given as QEMU's block
 * graph. A writable qemu-nbd of ours opens the graph (with the secret
 * object from secret_file); the device must be at least as large as the
 * backup, checked before the first write; then every chunk is written,
 * zero chunks as NBD write-zeroes (the device's old bytes must not show
 * through), each chunk verified against its digest first. Runs of
 * consecutive chunks go as one request (data up to INTO_RUN_CHUNKS
 * chunks, zeros up to the server's largest request), not one a chunk: a
 * device written a synchronous 128 KiB at a time, and a large empty one
 * hundreds of thousands of write-zeroes, ran far below the disk's speed
 * (issue 15; the same runs as vms_extract's to qcow2). Unlike
 * vms_extract there is no temporary file to rename into place: a failure
 * part way leaves the device partly written, and says so.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "cleanup.h"
#include "log.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

#include "datapath-internal.h"

/* Data chunks written in one request (2 MiB), at most. */
#define INTO_RUN_CHUNKS 16
/* A request's largest size where the server does not say (NBD's own
 * default maximum). */
#define INTO_DEFAULT_MAX (UINT64_C (32) << 20)
/* Progress is reported every this many bytes. */
#define INTO_PROGRESS_BYTES (UINT64_C (8) << 20)

int
vms_extract_into (vms_repo *repo, const vms_index *idx, const char *graph,
                  const char *secret_file, const char *what,
                  vms_progress_fn progress, void *opaque)
{
  struct nbd_server server = { 0 };
  struct nbd_handle *h = NULL;
  CLEANUP_FREE char *buf = NULL;
  uint64_t size = vms_index_size (idx), nr = vms_index_chunk_count (idx);
  uint64_t written = 0, reported = 0, max_request, run_chunks, zero_chunks;
  int64_t devsize, max;
  int r = -1;

  if (posix_memalign ((void **) &buf, 4096,
                      (size_t) INTO_RUN_CHUNKS * VMS_CHUNK_SIZE) != 0) {
    buf = NULL;
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (nbd_server_start_graph (&server, graph, secret_file, what, 1, 1) == -1) {
    vms_set_error (vms_get_errno (), "cannot write %s: %s", what,
                   vms_get_error ());
    return -1;
  }
  h = nbd_create ();
  if (h == NULL || nbd_connect_uri (h, server.uri) == -1 ||
      (devsize = nbd_get_size (h)) == -1) {
    vms_set_error (nbd_get_errno () ? nbd_get_errno () : EIO,
                   "cannot write %s: cannot open it: %s", what,
                   nbd_get_error ());
    goto out;
  }
  if ((uint64_t) devsize < size) {
    vms_set_error (ENOSPC, "cannot write %s: it holds %" PRId64 " bytes, "
                   "fewer than the %" PRIu64 " of the backup; nothing was "
                   "written", what, devsize, size);
    goto out;
  }
  /* Never a request larger than the server takes (and a chunk at the
   * least, as always). */
  max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);
  max_request = max > 0 ? (uint64_t) max : INTO_DEFAULT_MAX;
  run_chunks = max_request / VMS_CHUNK_SIZE;
  if (run_chunks < 1)
    run_chunks = 1;
  zero_chunks = run_chunks;
  if (run_chunks > INTO_RUN_CHUNKS)
    run_chunks = INTO_RUN_CHUNKS;

  for (uint64_t c = 0; c < nr;) {
    const struct vms_digest *d = vms_index_get (idx, c);
    uint64_t off = c * (uint64_t) VMS_CHUNK_SIZE, n, len = 0;
    int zero;

    if (d == NULL) {
      vms_set_error (EINVAL, "writing %s: no index entry for the chunk at "
                     "offset %" PRIu64, what, off);
      goto partial;
    }
    /* The run: chunks of the same kind (zero or data) from c on. */
    zero = vms_digest_is_zero (d);
    for (n = 0; c + n < nr && n < (zero ? zero_chunks : run_chunks); n++) {
      const struct vms_digest *e = vms_index_get (idx, c + n);
      size_t clen = vms_index_chunk_len (idx, c + n);
      if (e == NULL || vms_digest_is_zero (e) != zero)
        break;
      if (!zero &&
          vms_repo_chunk_get (repo, e, buf + len, clen, 1) == -1) {
        char hex[65];
        vms_digest_hex (e, hex);
        vms_set_error (vms_get_errno (), "writing %s: the chunk at offset %"
                       PRIu64 " (%s) cannot be read: %s", what,
                       off + len, hex, vms_get_error ());
        goto partial;
      }
      len += clen;
    }
    if (zero ? nbd_zero (h, len, off, 0) == -1
        : nbd_pwrite (h, buf, len, off, 0) == -1) {
      vms_set_error (nbd_get_errno (), "writing %s%s at offset %" PRIu64
                     ": %s", zero ? "zeros to " : "", what, off,
                     nbd_get_error ());
      goto partial;
    }
    written += len;
    c += n;
    if (progress && written - reported >= INTO_PROGRESS_BYTES) {
      reported = written;
      progress (opaque, written, size);
    }
  }
  if (nbd_flush (h, 0) == -1 || nbd_shutdown (h, 0) == -1) {
    vms_set_error (nbd_get_errno (), "writing %s: flush failed: %s", what,
                   nbd_get_error ());
    goto partial;
  }
  if (progress)
    progress (opaque, size, size);
  r = 0;
  goto out;

 partial:
  {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = strdup (vms_get_error ());
    vms_set_error (e, "%s (%" PRIu64 " of %" PRIu64 " bytes were written: "
                   "it holds part of the backup now)", msg ? msg : "failed",
                   written, size);
  }
 out:
  if (h)
    nbd_close (h);
  if (server.pid > 0) {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = vms_get_error () ? strdup (vms_get_error ()) : NULL;
    if (nbd_server_stop (&server) == -1 && r == 0)
      r = -1;                   /* its error is the stop's */
    else if (msg)
      vms_set_error (e, "%s", msg);
  }
  return r;
}

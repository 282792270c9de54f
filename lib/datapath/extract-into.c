/* vms_extract_into: write a stored disk back into a device that exists
 * already — a host block device, an RBD image, an iSCSI LUN, an NBD
 * export (issue 11: restore to the same kind) — given as QEMU's block
 * graph. A writable qemu-nbd of ours opens the graph (with the secret
 * object from secret_file); the device must be at least as large as the
 * backup, checked before the first write; then every chunk is written,
 * zero chunks as NBD write-zeroes (the device's old bytes must not show
 * through), each chunk verified against its digest first. Unlike
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

int
vms_extract_into (vms_repo *repo, const vms_index *idx, const char *graph,
                  const char *secret_file, const char *what,
                  vms_progress_fn progress, void *opaque)
{
  struct nbd_server server = { 0 };
  struct nbd_handle *h = NULL;
  CLEANUP_FREE char *buf = NULL;
  uint64_t size = vms_index_size (idx), nr = vms_index_chunk_count (idx);
  uint64_t written = 0;
  int64_t devsize;
  int r = -1;

  if (posix_memalign ((void **) &buf, 4096, VMS_CHUNK_SIZE) != 0) {
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
  for (uint64_t c = 0; c < nr; c++) {
    const struct vms_digest *d = vms_index_get (idx, c);
    size_t len = vms_index_chunk_len (idx, c);
    uint64_t off = c * (uint64_t) VMS_CHUNK_SIZE;

    if (d == NULL) {
      vms_set_error (EINVAL, "writing %s: no index entry for the chunk at "
                     "offset %" PRIu64, what, off);
      goto partial;
    }
    if (vms_digest_is_zero (d)) {
      if (nbd_zero (h, len, off, 0) == -1) {
        vms_set_error (nbd_get_errno (), "writing zeros to %s at offset %"
                       PRIu64 ": %s", what, off, nbd_get_error ());
        goto partial;
      }
    }
    else {
      if (vms_repo_chunk_get (repo, d, buf, len, 1) == -1) {
        char hex[65];
        vms_digest_hex (d, hex);
        vms_set_error (vms_get_errno (), "writing %s: the chunk at offset %"
                       PRIu64 " (%s) cannot be read: %s", what, off, hex,
                       vms_get_error ());
        goto partial;
      }
      if (nbd_pwrite (h, buf, len, off, 0) == -1) {
        vms_set_error (nbd_get_errno (), "writing %s at offset %" PRIu64
                       ": %s", what, off, nbd_get_error ());
        goto partial;
      }
    }
    written += len;
    if (progress && (c % 64 == 63))
      progress (opaque, written, size);
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

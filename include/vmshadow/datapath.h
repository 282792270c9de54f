/* vmshadow — the data path: reading point-in-time images into the
 * repository and writing them back out (DESIGN.md "Data path").
 *
 * Disks are read over NBD with libnbd, using block status: holes and zeros
 * are skipped (base:allocation), and an incremental reads only the extents
 * of a qemu:dirty-bitmap:* context intersected with allocation. Plain files
 * are read directly (SEEK_DATA/SEEK_HOLE). Reading, hashing, compressing
 * and writing overlap on a fixed number of chunks in flight, so memory is
 * bounded whatever the disk size.
 */
#ifndef VMSHADOW_DATAPATH_H
#define VMSHADOW_DATAPATH_H

#include <stdint.h>

#include "vmshadow/repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where to read one file from. Exactly one of path and nbd_uri. */
struct vms_source {
  const char *path;             /* a plain file, read directly */
  const char *nbd_uri;          /* e.g. "nbd+unix:///vda?socket=/run/x.sock" */
  /* Incremental: the dirty-bitmap context ("qemu:dirty-bitmap:NAME") and
   * the index of the previous backup of this file. Chunks outside the
   * dirty extents are taken from parent. Both NULL for a full read. */
  const char *dirty_context;
  const vms_index *parent;
};

struct vms_copy_stats {
  uint64_t size;                /* virtual size of the source */
  uint64_t bytes_read;          /* actually read from the source */
  uint64_t bytes_stored;        /* new chunk bytes written to the repository */
  uint64_t chunks_new, chunks_reused, chunks_zero;
  int64_t elapsed_ms;
};

/* Called now and then from the calling thread with bytes done out of
 * total; may be NULL. */
typedef void (*vms_progress_fn) (void *opaque, uint64_t done, uint64_t total);

/* Read the source into the repository; returns its index (caller frees). */
extern vms_index *vms_copy_to_repo (vms_repo *repo, const struct vms_source *src,
                                    struct vms_copy_stats *stats,
                                    vms_progress_fn progress, void *opaque);

/* A read-only NBD export of an image file (qemu-nbd), for reading disk
 * images of stopped VMs or shadow copies with block status. */
typedef struct vms_nbd_export vms_nbd_export;
/* format: "raw" or "qcow2"; NULL means raw (never probed: probing a
 * guest-written image is unsafe). bitmap: a persistent
 * dirty bitmap of a qcow2 to export as qemu:dirty-bitmap:NAME, or NULL. */
extern vms_nbd_export *vms_nbd_export_open (const char *image, const char *format,
                                            const char *bitmap);
/* Borrowed. */
extern const char *vms_nbd_export_uri (const vms_nbd_export *e);
extern void vms_nbd_export_close (vms_nbd_export *e);

/* Write a stored file back out: format "raw" (holes kept as holes) or
 * "qcow2" (qemu-img create, then written through a local NBD server, zero
 * chunks left unallocated). Every chunk is verified against its digest; on
 * any mismatch the output is removed and the call fails, never leaving
 * wrong data behind. The output must not exist unless overwrite is set. */
extern int vms_extract (vms_repo *repo, const vms_index *idx, const char *to_path,
                        const char *format, int overwrite,
                        vms_progress_fn progress, void *opaque);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_DATAPATH_H */

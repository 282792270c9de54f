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

#include "vmshadow/api.h"

#include <stdint.h>

#include "vmshadow/repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* [offset, offset + length) of a disk. */
struct vms_extent {
  uint64_t offset, length;
};

/* Where to read one file from. Exactly one of path and nbd_uri. */
struct vms_source {
  const char *path;             /* a plain file, read directly */
  const char *nbd_uri;          /* e.g. "nbd+unix:///vda?socket=/run/x.sock" */
  /* Incremental: the dirty-bitmap context ("qemu:dirty-bitmap:NAME") and
   * the index of the previous backup of this file. Chunks outside the
   * dirty extents are taken from parent. Both NULL for a full read. */
  const char *dirty_context;
  const vms_index *parent;
  /* Trust but verify the bitmap (issue 21): the fraction of the chunks it
   * calls unchanged that are read anyway and compared with parent; 1:
   * all; below 0: none. 0, the default: VMS_CBT_SAMPLE_DEFAULT of them,
   * but no more than 1/25 of the chunks the incremental reads anyway, and
   * at least VMS_CBT_SAMPLE_MIN per disk (docs/changed-block-tracking.md). */
  double cbt_sample;
  /* Issue 11: instead of dirty_context, the changed extents as a list
   * (ascending, not overlapping; an RBD diff): nr_changed of them, which
   * may be 0 (nothing changed) — changed non-NULL and parent set make an
   * incremental read, sampled and checked as for a bitmap. */
  const struct vms_extent *changed;
  size_t nr_changed;
};
#define VMS_CBT_SAMPLE_DEFAULT (1.0 / 1024)
#define VMS_CBT_SAMPLE_MIN 16

struct vms_copy_stats {
  uint64_t size;                /* virtual size of the source */
  uint64_t bytes_read;          /* actually read from the source */
  uint64_t bytes_stored;        /* new chunk bytes written to the repository */
  uint64_t chunks_new, chunks_reused, chunks_zero;
  int64_t elapsed_ms;
  /* Incremental reads (issue 21): chunks the dirty bitmap called unchanged
   * that were read all the same and compared with the parent, and how many
   * of them differed. When any did, the bitmap was wrong: the source was
   * read again in full (full_reread), and the index returned is that
   * full read's. */
  uint64_t cbt_sampled, cbt_differed;
  int full_reread;
};

/* Called now and then from the calling thread with bytes done out of
 * total; may be NULL. */
typedef void (*vms_progress_fn) (void *opaque, uint64_t done, uint64_t total);

/* Read the source into the repository; returns its index (caller frees),
 * or NULL with the error set (the message names the source and offset:
 * "reading nbd+unix://... at offset X: ..."). The repository must be open
 * with VMS_REPO_WRITE.
 *
 * Over NBD, extents that base:allocation reports as ZERO are not read
 * (HOLE without ZERO is read: only ZERO promises zeros); a chunk with some
 * data is read whole, its zero parts zero-filled. Incremental (dirty_context
 * and parent set): a chunk is read only if the bitmap marks some of it
 * dirty, or the parent has no entry of the same length for it (the disk
 * grew or shrank); a dirty chunk that now reads as zero is stored as zero.
 * A sample of the chunks the bitmap calls unchanged (cbt_sample) is read
 * too and compared with parent; if any differs, the bitmap was wrong and
 * the source is read again in full in the same call (stats->full_reread):
 * the index returned is always what the source holds.
 * If the export does not offer dirty_context, fails with ENOENT ("the
 * bitmap is missing: read this disk in full"): the caller decides on a full
 * read. dirty_context with a plain path is EINVAL.
 *
 * Tuning, for benchmarks (environment): VMSHADOW_WORKERS (hash/compress
 * threads, default the number of CPUs), VMSHADOW_NBD_INFLIGHT (chunks being
 * read at once, default 16 MiB worth and at least 4: 128 chunks of 128 KiB),
 * VMSHADOW_NBD_REQUEST_KIB (largest NBD read, default 256 but at most a
 * chunk: 128 now). Memory: (2 × workers + 2 + inflight) chunk buffers. */
extern VMS_API vms_index *vms_copy_to_repo (vms_repo *repo, const struct vms_source *src,
                                            struct vms_copy_stats *stats,
                                            vms_progress_fn progress, void *opaque);

/* A read-only NBD export of an image file (qemu-nbd), for reading disk
 * images of stopped VMs or shadow copies with block status. */
typedef struct vms_nbd_export vms_nbd_export;
/* format: "raw" or "qcow2"; NULL means raw (never probed: probing a
 * guest-written image is unsafe). bitmap: a persistent
 * dirty bitmap of a qcow2 to export as qemu:dirty-bitmap:NAME, or NULL.
 * The server (qemu-nbd, our child) has its socket in a private 0700
 * directory under $TMPDIR (or /tmp). Note that QEMU rounds a raw file's
 * size up to a multiple of 512: read plain files by path instead. Fails
 * with qemu-nbd's own message (missing image, missing bitmap, image
 * locked by a running VM). */
extern VMS_API vms_nbd_export *vms_nbd_export_open (const char *image, const char *format,
                                                    const char *bitmap);
/* The same for a disk that is no file: graph is QEMU's block graph
 * ("json:{…}", struct vms_access .image: a stopped VM's iSCSI, RBD or NBD
 * disk, issue 11), secret_file (or NULL) the value of the secret object
 * VMS_ACCESS_SECRET_ID it names, name the disk in messages. Fails with
 * qemu-nbd's own message (login refused, image gone, missing driver). */
extern VMS_API vms_nbd_export *vms_nbd_export_open_graph (const char *graph,
                                                          const char *secret_file,
                                                          const char *name);
/* Borrowed: valid until vms_nbd_export_close. */
extern VMS_API const char *vms_nbd_export_uri (const vms_nbd_export *e);
/* Stops the server (by the pid we started) and removes its directory.
 * Accepts NULL. */
extern VMS_API void vms_nbd_export_close (vms_nbd_export *e);
/* Remove the private directories ($TMPDIR or /tmp, vmshadow-nbd-*) of NBD
 * servers whose vmshadow process was killed (lib/util/session-dir.h).
 * Every server start does this first; vmshadow gc does it too. Returns how
 * many were removed, or -1 with the error set. */
extern VMS_API int vms_nbd_sweep (void);

/* A stored file of a backup as a read-only NBD export, read at random
 * offsets from the repository (nbdkit with nbdkit-vmshadow-plugin; issue
 * 16). Every chunk is verified before it is served; a bad one is an I/O
 * error for its range. The selection is checked before nbdkit starts.
 * The server is ours: it stops with vms_repo_export_close, or when this
 * process dies. */
typedef struct vms_repo_export vms_repo_export;
struct vms_repo_export_options {
  const char *repo_dir;
  const char *backup_id;
  struct vms_file_selector select;
  uint64_t cache_bytes;         /* the plugin's chunk cache; 0: 64 MiB */
};
extern VMS_API vms_repo_export *vms_repo_export_open (const struct vms_repo_export_options *o);
/* "nbd+unix:///?socket=PATH". Borrowed. */
extern VMS_API const char *vms_repo_export_uri (const vms_repo_export *e);
/* The path of its Unix socket (for clients that take a socket rather
 * than a URI: libguestfs, QEMU). Borrowed. */
extern VMS_API const char *vms_repo_export_socket (const vms_repo_export *e);
/* The export's size in bytes. */
extern VMS_API uint64_t vms_repo_export_size (const vms_repo_export *e);
/* 1 if the server ended by itself (the error says why), else 0. */
extern VMS_API int vms_repo_export_ended (vms_repo_export *e);
/* Pass each new line the server logged (a chunk it refused, a client's
 * error) to fn, once; for the caller to show them as they come. */
extern VMS_API void vms_repo_export_messages (vms_repo_export *e,
                                              vms_repo_report_fn fn, void *opaque);
extern VMS_API void vms_repo_export_close (vms_repo_export *e);

/* The same export for instant recovery and boot checks (issue 16), by a
 * server that is not tied to us: nbdkit in a session of its own, which
 * keeps serving when this process dies (a VM reads from it), on the Unix
 * socket path given (in a directory the caller made), its pid in pidfile
 * once it serves, its messages in logfile. The socket is given group gid
 * and mode 0660 (QEMU's group: QEMU does not run as root), or 0600 when
 * gid is 0. Returns the server's pid, or -1 with the error set and no
 * server left. */
extern VMS_API int vms_repo_export_start_detached (const struct vms_repo_export_options *o,
                                                   const char *socket,
                                                   const char *pidfile,
                                                   const char *logfile,
                                                   unsigned gid);
/* 1 if pid is the nbdkit serving socket (its command line says so). */
extern VMS_API int vms_repo_export_detached_alive (int pid, const char *socket);
/* Stop it (SIGTERM, SIGKILL after 10 s), only if pid is still the nbdkit
 * serving socket; 0 when it is gone. */
extern VMS_API int vms_repo_export_stop_detached (int pid, const char *socket);

/* Write a stored file back out: format "raw" (holes kept as holes) or
 * "qcow2" (qemu-img create, then written through a local NBD server, zero
 * chunks left unallocated). Every chunk is verified against its digest; on
 * any mismatch the output is removed and the call fails, never leaving
 * wrong data behind. The output must not exist unless overwrite is set.
 * The output is built under a temporary name beside to_path (mode 0600)
 * and renamed into place only on success, so to_path never holds a
 * partial image. Zero 64 KiB blocks inside chunks are not written either.
 * A qcow2's virtual size is rounded up to 512 bytes by qemu-img. */
extern VMS_API int vms_extract (vms_repo *repo, const vms_index *idx, const char *to_path,
                                const char *format, int overwrite,
                                vms_progress_fn progress, void *opaque);
/* Write a stored disk back into a device that exists (issue 11: a host
 * block device, an RBD image, an iSCSI LUN, an NBD export), given as
 * QEMU's block graph "json:{…}" (writable, format raw), with the secret
 * object VMS_ACCESS_SECRET_ID read from secret_file when not NULL. Refused
 * before any write when the device is smaller than the backup. Every byte
 * of the backup is written (zero chunks as write-zeroes), every chunk
 * verified first; on a failure part way the device holds part of the
 * backup and the message says how much. what names it in messages. */
extern VMS_API int vms_extract_into (vms_repo *repo, const vms_index *idx,
                                     const char *graph,
                                     const char *secret_file, const char *what,
                                     vms_progress_fn progress, void *opaque);
/* vms_extract into the directory dirfd, which the caller opened (e.g.
 * walking from "/" without following any link: vms_extract opens the
 * directory part of to_path as it is): name is the file's name in it (no
 * '/'), what names the file in messages. */
extern VMS_API int vms_extract_at (vms_repo *repo, const vms_index *idx, int dirfd,
                                   const char *name, const char *what,
                                   const char *format, int overwrite,
                                   vms_progress_fn progress, void *opaque);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_DATAPATH_H */

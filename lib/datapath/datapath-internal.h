/* lib/datapath internals shared by its files: a private NBD server
 * (nbd-server.c: qemu-nbd for read-only exports of images and for writing
 * qcow2 images during extract; nbdkit for exports of backups), and the
 * thread-count policy. */
#ifndef VMS_DATAPATH_INTERNAL_H
#define VMS_DATAPATH_INTERNAL_H

#include <stddef.h>
#include <sys/types.h>

#include <libnbd.h>

#include "cleanup.h"
#include "vmshadow/datapath.h"
#include "vmshadow/repo.h"

/* Scoped cleanup of the handles the data path holds. */
DEFINE_CLEANUP (struct nbd_handle, nbd_close);
DEFINE_CLEANUP (vms_index, vms_index_free);

/* One qemu-nbd process that we started, serving one image on a Unix
 * socket in a private 0700 directory. It runs under a small guard shell
 * that reads a pipe from us: when the pipe closes — we stop the server, or
 * this process dies, even of SIGKILL — the guard stops qemu-nbd, so no
 * server outlives us. */
struct nbd_server {
  pid_t pid;                    /* > 0 while running: the guard shell,
                                   leader of its process group */
  int guard_fd;                 /* closing it stops qemu-nbd */
  char *dir;                    /* private directory (socket, pid, log) */
  char *socket;
  char *uri;                    /* nbd+unix:///?socket=... */
  char *image;                  /* for messages */
  /* A descriptor of ours the server gets as its descriptor 3, or 0
   * (nbdkit serving an encrypted repository reads its unlocked key from
   * it: keyfd=3, issue 13, R28). The guard shell closes its own copy at
   * once. */
  int pass_fd;
  /* The server's whole environment, or NULL for ours: qemu-nbd's, with
   * malloc tunables (issue 15), made and freed by nbd-server.c. */
  char **own_envp;
};

/* Start qemu-nbd on image (format "raw" or "qcow2"; bitmap may be NULL),
 * read-only unless writable, accepting up to shared clients at once, and
 * wait (bounded) until it serves. writable NBD_SERVER_WRITABLE_DIRECT:
 * writes bypass the page cache (O_DIRECT, Linux native AIO), for files on
 * a file system that takes O_DIRECT, and a file (not a device) is extended
 * ahead of them (QEMU's preallocate filter), for an image written from
 * empty. Returns 0, or -1 with the error set
 * and nothing left behind. */
#define NBD_SERVER_WRITABLE_DIRECT 2
extern int nbd_server_start (struct nbd_server *s, const char *image,
                             const char *format, const char *bitmap,
                             int writable, unsigned shared);
/* Start qemu-nbd on a disk given as QEMU's block graph ("json:{…}": a
 * network disk, issue 11), read-only unless writable (restore into the
 * device, vms_extract_into), with the secret object VMS_ACCESS_SECRET_ID
 * read from secret_file when that is not NULL; name names it in messages.
 * As nbd_server_start otherwise. */
extern int nbd_server_start_graph (struct nbd_server *s, const char *graph,
                                   const char *secret_file, const char *name,
                                   int writable, unsigned shared);
/* The two steps of nbd_server_start, for other server programs (nbdkit):
 * make the private directory, socket path and URI (image names the export
 * in messages); then run program (NULL-terminated, at most 32 words: a
 * server that listens on s->socket and writes its pid to <dir>/pid once it
 * serves) under the guard and wait, bounded, until it serves. package is
 * what to install when the program is missing. Each returns 0, or -1 with
 * the error set, nothing left behind and s freed. */
extern int nbd_server_prepare (struct nbd_server *s, const char *image);
extern int nbd_server_run (struct nbd_server *s, const char *const *program,
                           const char *package);
/* 1 if the server ended by itself (reaped, error set to why), else 0. */
extern int nbd_server_ended (struct nbd_server *s);
/* Stop the server (SIGTERM, then SIGKILL after a grace period) and remove
 * its directory. Returns 0 if it exited cleanly (for a writable image:
 * everything flushed and closed), -1 with the error set otherwise.
 * Accepts a server that was never started or already stopped. */
extern int nbd_server_stop (struct nbd_server *s);

/* Write idx's disk into the writable NBD export at uri (a device that
 * exists: vms_extract_into) over workers connections, each taking runs
 * of chunks that are all zero (one write-zeroes, up to the server's
 * largest request) or all data (read and verified, then one write of up
 * to run_chunks chunks), then flushing; what names the device in
 * messages. *written: the bytes written, also on failure. Returns 0, or
 * -1 with the error set (extract.c). */
extern int extract_into_nbd (vms_repo *repo, const vms_index *idx,
                             const char *uri, const char *what,
                             unsigned workers, unsigned run_chunks,
                             uint64_t *written, vms_progress_fn progress,
                             void *opaque);

/* Worker threads to use: $VMSHADOW_WORKERS if set (1..64), else the number
 * of online CPUs, at least min. */
extern unsigned datapath_workers (unsigned min);

/* An unsigned tunable from the environment (for benchmarks), or def. */
extern unsigned datapath_env_uint (const char *name, unsigned def,
                                   unsigned lo, unsigned hi);

#endif /* VMS_DATAPATH_INTERNAL_H */

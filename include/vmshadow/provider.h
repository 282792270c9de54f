/* vmshadow — the provider interface (R1, R2, R3).
 *
 * A provider makes point-in-time images (shadow copies) of the files the
 * writers named, and hands the requester a way to read each one: a path
 * or, for disks, an NBD URI. Like writers, a provider is one struct of
 * callbacks with a version and size field.
 *
 * Within a backup session the coordinator, for the files each provider
 * took (supports returned 1):
 *   prepare  — after the writers' PrepareForSnapshot: slow work goes here;
 *   commit   — between Freeze and Thaw: make the images, within the commit
 *              budget (default 10 s, R3);
 *   release  — at the end of the session, always (also after an abort):
 *              drop the images.
 *
 * Callbacks return 0, or -1 after vms_set_error (errno, …). The errno
 * decides the failure kind reported (R4): ENOSPC, ENOMEM, EDQUOT → out of
 * resources; ETIMEDOUT → timeout; EAGAIN, EBUSY → retryable; anything
 * else → non-retryable.
 */
#ifndef VMSHADOW_PROVIDER_H
#define VMSHADOW_PROVIDER_H

#include "vmshadow/api.h"

#include <stddef.h>
#include <stdint.h>

#include "vmshadow/document.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_PROVIDER_API_VERSION 1
#define VMS_DEFAULT_COMMIT_BUDGET_MS 10000

/* The files one provider handles in one session. Borrowed. */
typedef struct vms_snapshot vms_snapshot;

/* A file offered to a provider (borrowed strings). */
struct vms_file_ref {
  const char *writer_id;
  const char *component;
  struct vms_file_info file;
};

struct vms_provider {
  uint32_t api_version;         /* VMS_PROVIDER_API_VERSION */
  uint32_t struct_size;         /* sizeof (struct vms_provider) */
  const char *name;             /* "file", "qemu", … */
  const char *id;               /* provider ID (a UUID) */
  uint32_t commit_budget_ms;    /* 0 means VMS_DEFAULT_COMMIT_BUDGET_MS */

  /* 1 if this provider can image the file, 0 if not, -1 on error.
   * Required. Providers are asked in the order they were added; a file
   * whose info names a provider goes only to that one. */
  int (*supports) (void *data, const struct vms_file_ref *ref);
  int (*prepare) (void *data, vms_snapshot *snap);          /* may be NULL */
  int (*commit) (void *data, vms_snapshot *snap);           /* required */
  /* Must be safe after a failed or missing commit. May be NULL. */
  int (*release) (void *data, vms_snapshot *snap);
  void (*close) (void *data);                               /* may be NULL */
};

/* ---- What a provider can ask of its snapshot ---- */

extern VMS_API const char *vms_snapshot_session_id (const vms_snapshot *snap);
extern VMS_API size_t vms_snapshot_file_count (const vms_snapshot *snap);
extern VMS_API const struct vms_file_ref *vms_snapshot_file (const vms_snapshot *snap,
                                                             size_t i);
/* What the requester needs to read the point-in-time image of one file
 * (the writer ↔ provider ↔ requester contract, issue 10). */
struct vms_access {
  /* Exactly one: an NBD URI ("nbd+unix:///vda?socket=…", read with block
   * status), a path (a plain file, read directly; a disk image or a host
   * block device, which the requester exports read-only over NBD itself),
   * or image: a disk that is neither, as QEMU's block graph ("json:{…}",
   * issue 11: a stopped VM's iSCSI or RBD disk), which the requester also
   * exports read-only itself, by the same protocol. */
  const char *uri;
  const char *path;
  const char *image;
  /* With image, or NULL: a file (mode 0600) holding the value of the one
   * QEMU secret object the graph names, VMS_ACCESS_SECRET_ID (an iSCSI
   * password, a Ceph key in base64). */
  const char *secret_file;
  /* Incremental reads: the NBD meta context marking the extents changed
   * since base ("qemu:dirty-bitmap:…"), and base, the checkpoint those
   * changes are relative to: the VMS_ATTR_CHECKPOINT an earlier backup of
   * this component recorded. Only with VMS_ACCESS_CHANGED_EXTENTS in flags
   * (and a URI); the requester then reads only the changed extents when it
   * holds that earlier backup of the file, and everything otherwise. */
  const char *changed_extents;
  const char *base;
  unsigned flags;
};
#define VMS_ACCESS_CHANGED_EXTENTS 0x1u
/* Issue 11: with image, the extents changed since base are listed in the
 * file changed_extents (mode 0600, the writer's): one "OFFSET LENGTH"
 * line per extent, decimal, ascending, not overlapping — a stopped VM's
 * RBD disk, from librbd's diff between the snapshot base and the one the
 * image names. The requester reads only those (and a sample of the rest,
 * checked against its backup at base), when it holds that backup. */
#define VMS_ACCESS_CHANGED_LIST 0x2u
#define VMS_ACCESS_SECRET_ID "vms-secret0"

/* Say how the requester reads the point-in-time image of file i. The
 * strings are copied. */
extern VMS_API int vms_snapshot_set_file_access (vms_snapshot *snap, size_t i,
                                                 const struct vms_access *access);
/* The simple form: a path, or a URI ("scheme://…"), nothing incremental. */
extern VMS_API int vms_snapshot_set_access (vms_snapshot *snap, size_t i,
                                            const char *access);
extern VMS_API const char *vms_snapshot_access (const vms_snapshot *snap, size_t i);
/* Provider-private state for this snapshot, kept from prepare to release. */
extern VMS_API void vms_snapshot_set_data (vms_snapshot *snap, void *data);
extern VMS_API void *vms_snapshot_data (const vms_snapshot *snap);
/* Milliseconds left in the current step's budget (never negative). */
extern VMS_API int64_t vms_snapshot_ms_left (const vms_snapshot *snap);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_PROVIDER_H */

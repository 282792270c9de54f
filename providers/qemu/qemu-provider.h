/* vmshadow — the qemu provider: point-in-time images of the VM writer's
 * files (docs/vm-writer.md). It makes nothing itself: the VM writer
 * (writers/libvirt) begins the libvirt backup jobs inside PrepareForSnapshot
 * and publishes, per component file, where its image is read — an
 * "nbd+unix:///<target>?socket=<path>" export of a running VM's disk, or a
 * plain path (a stopped VM's image, or a file the writer wrote inside the
 * snapshot window). The provider hands these to the requester at commit,
 * which is therefore instant.
 *
 * The two share a registry of exports in-process; vms_libvirt_add makes it
 * and adds both. Uses the public API and lib/util only (no libvirt).
 */
#ifndef VMSHADOW_QEMU_PROVIDER_H
#define VMSHADOW_QEMU_PROVIDER_H

#include "vmshadow/coordinator.h"

/* The registry: (component, path) → access. Thread-safe; reference
 * counted (the writer and the provider each hold one reference). */
struct qemu_exports;

extern struct qemu_exports *qemu_exports_new (void);
extern struct qemu_exports *qemu_exports_ref (struct qemu_exports *x);
/* Drops a reference; accepts NULL. */
extern void qemu_exports_unref (struct qemu_exports *x);
/* Publish (or replace) where the image of file path of component is read.
 * Strings are copied. Returns 0, or -1 with the error set. */
extern int qemu_exports_publish (struct qemu_exports *x, const char *component,
                                 const char *path, const char *access);
/* Mark a published file incremental: its export offers changed_extents
 * (an NBD meta context) relative to the checkpoint base. The provider
 * hands both to the requester in the file's access (struct vms_access). */
extern int qemu_exports_set_changes (struct qemu_exports *x,
                                     const char *component, const char *path,
                                     const char *changed_extents,
                                     const char *base);
/* Mark a published file as a disk read through QEMU's block graph: its
 * access is that graph ("json:{…}", a stopped VM's network disk, issue
 * 11), with secret_file (may be NULL) holding the secret it names. The
 * provider hands both to the requester (struct vms_access .image,
 * .secret_file). Returns 0, or -1 with the error set. */
extern int qemu_exports_set_image (struct qemu_exports *x,
                                   const char *component, const char *path,
                                   const char *secret_file);
/* Forget every entry of one component, or of all when component is NULL. */
extern void qemu_exports_withdraw (struct qemu_exports *x,
                                   const char *component);
/* The access of a file (malloc'd), or NULL with the error set (ENOENT). */
extern char *qemu_exports_lookup (struct qemu_exports *x, const char *component,
                                  const char *path);

/* Add the qemu provider (VMS_QEMU_PROVIDER_NAME / _ID of vm-writer.h) over
 * the registry x, taking a reference to it. Returns 0 or -1. */
extern int qemu_provider_add (vms_coordinator *coord, struct qemu_exports *x,
                              const char *name, const char *id);

#endif /* VMSHADOW_QEMU_PROVIDER_H */

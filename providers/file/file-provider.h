/* vmshadow — the file provider: point-in-time copies of regular files.
 *
 * Takes the regular files (plain files and disk images, not block devices
 * or directories) whose info names no provider or names "file". At commit
 * each one is copied into a private scratch directory of the session:
 * a reflink (ioctl FICLONE) where the filesystem can share extents, a
 * sparse-aware plain copy otherwise. The copies are deleted when the
 * session ends, whether it completed, aborted or failed
 * (docs/file-provider.md).
 */
#ifndef VMSHADOW_FILE_PROVIDER_H
#define VMSHADOW_FILE_PROVIDER_H

#include "vmshadow/coordinator.h"

#define VMS_FILE_PROVIDER_NAME "file"
#define VMS_FILE_PROVIDER_ID   "cba5f525-1225-4b04-a8f7-f0537886eaea"

/* Where session scratch directories go when neither the constructor nor
 * the environment (VMSHADOW_SCRATCH_DIR) says otherwise. */
#define VMS_FILE_PROVIDER_DEFAULT_SCRATCH "/var/lib/vmshadow/scratch"

/* Add the file provider to coord. Each session gets the directory
 * <scratch_root>/<session-id>/ (mode 0700). scratch_root NULL means
 * $VMSHADOW_SCRATCH_DIR if set and not empty, else the default above. The
 * string is copied. For reflinks to work the scratch root must be on the
 * same filesystem as the files; otherwise every file is copied in full
 * inside the freeze window. The commit budget is the default (10 s, R3)
 * unless $VMSHADOW_FILE_COMMIT_BUDGET_MS says otherwise. Returns 0, or -1
 * with the error set. */
extern int vms_file_provider_add (vms_coordinator *coord,
                                  const char *scratch_root);

/* Remove the session directories in the scratch root (NULL: as for
 * vms_file_provider_add) whose vmshadow process is gone: the copies of a
 * killed backup (lib/util/session-dir.h). Every prepare does this first;
 * vmshadow gc does it too. Returns how many were removed (0 if the root
 * does not exist), or -1 with the error set. */
extern int vms_file_provider_sweep (const char *scratch_root);

#endif /* VMSHADOW_FILE_PROVIDER_H */

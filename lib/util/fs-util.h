/* Small filesystem helpers shared by writers, providers and the repository. */
#ifndef VMS_FS_UTIL_H
#define VMS_FS_UTIL_H

#include <sys/types.h>

/* mkdir -p: make path and any missing parents, each new one with mode.
 * Returns 0, or -1 with the error set naming the directory. */
extern int vms_mkdir_p (const char *path, mode_t mode);

#endif /* VMS_FS_UTIL_H */

/* Small filesystem helpers shared by writers, providers, the datapath and
 * the repository. The _beneath and _at helpers are how vmshadow, running as
 * root, touches directories that others may write (a repository, a
 * restore target, scratch): relative to a directory fd it opened itself,
 * never following a symbolic link, never blocking on a FIFO
 * (docs/security.md, issue 9).
 */
#ifndef VMS_FS_UTIL_H
#define VMS_FS_UTIL_H

#include <sys/types.h>

/* mkdir -p: make path and any missing parents, each new one with mode.
 * Returns 0, or -1 with the error set naming the directory. */
extern int vms_mkdir_p (const char *path, mode_t mode);

/* Open path, relative to the directory dirfd, following no symbolic link
 * anywhere in it: each directory on the way is opened with
 * O_DIRECTORY|O_NOFOLLOW, the last component with O_NOFOLLOW|O_NONBLOCK
 * (so a FIFO or a device cannot block the open) and then must be a regular
 * file, or a directory when flags has O_DIRECTORY; O_NONBLOCK is then
 * cleared unless flags has it. path: components separated by '/', none
 * empty or "..". flags: an access mode and any of O_CREAT, O_EXCL,
 * O_TRUNC, O_APPEND, O_DIRECTORY, O_NONBLOCK; O_CLOEXEC is always added.
 * Returns the fd, or -1 with errno (ELOOP: a symbolic link on the way;
 * EINVAL: not a regular file or directory, or a bad path; ENOENT, ENOTDIR,
 * ...) and no message set: the caller knows what the file is and says so.
 * vms_fs_errstr words these errnos for messages. */
extern int vms_open_beneath (int dirfd, const char *path, int flags,
                             mode_t mode);

/* strerror for messages that put it mid-sentence: lower case, and ELOOP /
 * EINVAL as vms_open_beneath means them. */
extern const char *vms_fs_errstr (int errnum);

/* Create directory name in dirfd (mode 0700, whatever the umask) unless it
 * exists, open it as vms_open_beneath does, and make it exactly 0700
 * whatever it was (an existing directory keeps no group or other access).
 * Returns the fd or -1 with errno, no message. */
extern int vms_mkdir_private_at (int dirfd, const char *name);

/* Remove name in dirfd, a file or a whole directory tree, never following
 * a symbolic link (a link is removed, not what it points to); every
 * directory is walked by fd. A missing name is success. -1 with errno. */
extern int vms_rmtree_at (int dirfd, const char *name);

#endif /* VMS_FS_UTIL_H */

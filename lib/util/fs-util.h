/* Small filesystem helpers shared by writers, providers, the datapath and
 * the repository. The _beneath and _at helpers are how vmshadow, running as
 * root, touches directories that others may write (a repository, a
 * restore target, scratch): relative to a directory fd it opened itself,
 * never following a symbolic link, never blocking on a FIFO
 * (docs/security.md, issue 9).
 */
#ifndef VMS_FS_UTIL_H
#define VMS_FS_UTIL_H

#include <stddef.h>
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
/* write(2) all of buf, retrying on EINTR and short writes. Returns 0, or
 * -1 with errno set (the thread's error is not touched). */
extern int vms_write_all (int fd, const void *buf, size_t len);

/* renameat(2) that fails with EEXIST instead of replacing an existing to;
 * link and unlink where the file system has no RENAME_NOREPLACE. Returns
 * 0, or -1 with errno set (no message). */
extern int vms_rename_noreplace (int fromfd, const char *from, int tofd,
                                 const char *to);

/* A file written atomically: under a temporary name beside its final name
 * (".NAME.vms-XXXXXX", created O_EXCL | O_NOFOLLOW, exactly the mode
 * asked), then fsync'd, renamed over the final name and the directory
 * fsync'd. Readers, and a
 * crash, see the old file or the whole new one, never part of one; a
 * symbolic link at the final name is replaced, never followed.
 *
 *   struct vms_atomic_file af;
 *   if (vms_atomic_file_open (&af, dirfd, "config", 0600) == -1) ...
 *   write to af.fd ...
 *   if (vms_atomic_file_commit (&af, 0) == -1) ...   (or _discard) */
struct vms_atomic_file {
  int fd;                       /* the temporary file: write here */
  char *tmp_path;               /* its name relative to the dirfd given
                                   (or the working directory) */
  int dirfd;                    /* the directory holding it (ours) */
  char *tmp;                    /* its name in dirfd */
  char *name;                   /* the final name in dirfd */
  char *what;                   /* the final name as given, for messages */
};

/* Start writing the file name, relative to dirfd (AT_FDCWD: to the
 * working directory; name may have directory parts). Returns 0, or -1 with
 * the error set and nothing left behind. */
extern int vms_atomic_file_open (struct vms_atomic_file *af, int dirfd,
                                 const char *name, mode_t mode);

/* Make the written file the one at its final name: fsync, rename (with
 * noreplace: fail with EEXIST when the final name exists), fsync the
 * directory (a warning if that fails: the file is in place). Always
 * releases af. Returns 0, or -1 with the error set and the temporary file
 * removed. */
extern int vms_atomic_file_commit (struct vms_atomic_file *af, int noreplace);

/* Give up: remove the temporary file and release af. Accepts an af that
 * was committed, discarded or failed to open. */
extern void vms_atomic_file_discard (struct vms_atomic_file *af);

/* The whole of it for a buffer: name (relative to dirfd, as above) holds
 * exactly buf afterwards. Returns 0, or -1 with the error set and the old
 * file, if any, unchanged. */
extern int vms_write_file_atomic (int dirfd, const char *name,
                                  const void *buf, size_t len, mode_t mode);

/* 1 if a directory of hooks (exec writers, notifiers) skips this name as
 * run-parts(8) would: dotfiles, editor backups, package manager leftovers
 * (".dpkg-old", ".rpmnew", ...). */
extern int vms_hook_name_ignored (const char *name);

#endif /* VMS_FS_UTIL_H */

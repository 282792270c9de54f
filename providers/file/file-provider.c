/* vmshadow — the file provider (file-provider.h, docs/file-provider.md).
 *
 * prepare: remove the scratch directories of killed sessions, make
 *   <scratch-root>/<session-id>/ (0700, a session directory that records
 *   its owner: lib/util/session-dir.h) and decide, per file,
 *   how commit will copy it: a reflink probe (clone the file's first block
 *   into the scratch directory, then delete it) tells whether the two can
 *   share extents. Files that cannot must be copied in full, so the space
 *   they need is checked now, before any writer is frozen.
 * commit: make each copy (FICLONE, else a sparse-aware copy_file_range
 *   loop that watches the commit budget) and publish its path.
 * release: delete the copies and the session directory; safe at any point
 *   after prepare, and a no-op without it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <linux/fs.h>           /* FICLONE, FICLONERANGE */

#include "vmshadow/error.h"
#include "vmshadow/provider.h"

#include "cleanup.h"
#include "fs-util.h"
#include "log.h"
#include "session-dir.h"
#include "file-provider.h"

/* Bytes copied between two looks at the commit budget. */
#define FILE_PROVIDER_CHUNK (8 * 1024 * 1024)
/* Longest basename kept in a copy's name (the rest is cut off). */
#define FILE_PROVIDER_MAX_BASENAME 200

enum file_provider_method {
  FILE_PROVIDER_NONE,           /* no copy (yet) */
  FILE_PROVIDER_REFLINK,
  FILE_PROVIDER_COPY,
};

struct file_provider_copy {
  char *name;                   /* "<index>-<basename>", no '/' in it */
  char *path;                   /* <session dir>/<name> */
  enum file_provider_method plan;       /* decided by prepare */
  enum file_provider_method used;       /* what commit made */
};

/* Per-session state, kept from prepare to release (vms_snapshot_data). */
struct file_provider_session {
  char *dir;
  int dirfd;
  size_t nr_copies;
  struct file_provider_copy *copies;
};

/* Per-provider state (the data of every callback). */
struct file_provider {
  char *scratch_root;
};

static const char *
file_provider_method_name (enum file_provider_method m)
{
  switch (m) {
  case FILE_PROVIDER_REFLINK: return "reflink";
  case FILE_PROVIDER_COPY: return "copy";
  case FILE_PROVIDER_NONE: break;
  }
  return "none";
}

static int
file_provider_supports (void *data, const struct vms_file_ref *ref)
{
  const struct vms_file_info *f = &ref->file;
  struct stat st;

  if (f->provider != NULL && strcmp (f->provider, VMS_FILE_PROVIDER_NAME) != 0)
    return 0;
  if (f->kind != VMS_FILE_PLAIN && f->kind != VMS_FILE_DISK)
    return 0;
  if (f->path == NULL || f->path[0] != '/') {
    if (f->provider == NULL)
      return 0;
    vms_set_error (EINVAL, "file provider: \"%s\" is not an absolute path",
                   f->path ? f->path : "(null)");
    return -1;
  }
  if (stat (f->path, &st) == -1) {
    /* Another provider may know what to make of it, unless the writer
     * asked for this one by name. */
    if (f->provider == NULL) {
      vms_debug ("file provider: not taking %s: %s", f->path, strerror (errno));
      return 0;
    }
    vms_set_error (errno, "file provider: cannot stat %s: %s", f->path,
                   strerror (errno));
    return -1;
  }
  return S_ISREG (st.st_mode) ? 1 : 0;
}

/* A copy's name: the file's index, so that names never collide, then its
 * basename with anything but [A-Za-z0-9._+-] replaced, so that the name is
 * one harmless path component. */
static char *
file_provider_copy_name (size_t i, const char *path)
{
  const char *base = strrchr (path, '/');
  char clean[FILE_PROVIDER_MAX_BASENAME + 1];
  size_t n = 0;
  char *name;

  base = base ? base + 1 : path;
  for (; *base && n < FILE_PROVIDER_MAX_BASENAME; base++, n++) {
    char c = *base;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '+')
      clean[n] = c;
    else
      clean[n] = '_';
  }
  clean[n] = '\0';
  if (asprintf (&name, "%zu-%s", i, n ? clean : "file") == -1) {
    vms_set_error (errno, "file provider: out of memory");
    return NULL;
  }
  return name;
}

static int
file_provider_check_session_id (const char *sid)
{
  if (sid == NULL || sid[0] == '\0' || strchr (sid, '/') != NULL ||
      strcmp (sid, ".") == 0 || strcmp (sid, "..") == 0 ||
      strlen (sid) > NAME_MAX) {
    vms_set_error (EINVAL, "file provider: session id \"%s\" cannot name a "
                   "scratch directory", sid ? sid : "(null)");
    return -1;
  }
  return 0;
}

/* Remove every copy and anything else left in the session directory (a
 * probe interrupted half-way), then the directory. Returns -1 with the
 * error set if something stayed behind. */
static int
file_provider_remove_all (struct file_provider_session *fs, int rmdir_too)
{
  int r = 0;

  if (fs->dirfd >= 0) {
    for (size_t i = 0; i < fs->nr_copies; i++) {
      if (fs->copies[i].name == NULL)
        continue;
      if (unlinkat (fs->dirfd, fs->copies[i].name, 0) == -1 &&
          errno != ENOENT) {
        vms_set_error (errno, "file provider: cannot delete %s: %s",
                       fs->copies[i].path, strerror (errno));
        r = -1;
      }
      fs->copies[i].used = FILE_PROVIDER_NONE;
    }
    if (rmdir_too) {
      int fd = openat (fs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
      struct dirent *e;

      if (d == NULL) {
        if (fd >= 0)
          close (fd);
      }
      else {
        while ((e = readdir (d)) != NULL) {
          if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
            continue;
          if (unlinkat (fs->dirfd, e->d_name, 0) == -1 && errno != ENOENT)
            vms_debug ("file provider: cannot delete %s/%s: %s",
                       fs->dir, e->d_name, strerror (errno));
        }
        closedir (d);
      }
    }
  }
  if (rmdir_too && fs->dir != NULL) {
    if (rmdir (fs->dir) == -1 && errno != ENOENT) {
      vms_set_error (errno, "file provider: cannot remove scratch directory "
                     "%s: %s; remove it by hand", fs->dir, strerror (errno));
      r = -1;
    }
  }
  return r;
}

static void
file_provider_session_free (struct file_provider_session *fs)
{
  if (fs == NULL)
    return;
  for (size_t i = 0; i < fs->nr_copies; i++) {
    free (fs->copies[i].name);
    free (fs->copies[i].path);
  }
  free (fs->copies);
  if (fs->dirfd >= 0)
    close (fs->dirfd);
  free (fs->dir);
  free (fs);
}

/* Can src share extents with a file in the scratch directory? Clone the
 * first block (or the whole file if it is smaller) into a probe file named
 * like the future copy, and delete it again. */
static int
file_provider_probe_reflink (struct file_provider_session *fs,
                             const struct file_provider_copy *c,
                             int src, const struct stat *st)
{
  CLEANUP_CLOSE int dst = -1;
  int r;

  if (st->st_size == 0)
    return 0;
  dst = openat (fs->dirfd, c->name,
                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (dst == -1) {
    vms_debug ("file provider: reflink probe for %s: %s", c->path,
               strerror (errno));
    return 0;
  }
  if (st->st_blksize > 0 && st->st_size > st->st_blksize) {
    struct file_clone_range range = {
      .src_fd = src, .src_offset = 0,
      .src_length = (uint64_t) st->st_blksize, .dest_offset = 0,
    };
    r = ioctl (dst, FICLONERANGE, &range);
  }
  else
    r = ioctl (dst, FICLONE, src);
  if (r == -1)
    vms_debug ("file provider: no reflink into %s: %s", fs->dir,
               strerror (errno));
  unlinkat (fs->dirfd, c->name, 0);
  return r == 0;
}

/* Bytes a plain copy of the file will take in the scratch filesystem:
 * its allocated blocks (holes are kept), at most its size rounded up to a
 * block, plus a block for slack. */
static int
file_provider_copy_need (const struct stat *st, uint64_t frsize,
                         uint64_t *need)
{
  uint64_t alloc, size;

  if (st->st_blocks < 0 || st->st_size < 0 ||
      __builtin_mul_overflow ((uint64_t) st->st_blocks, 512, &alloc) ||
      __builtin_add_overflow ((uint64_t) st->st_size, frsize - 1, &size))
    goto overflow;
  size -= size % frsize;
  if (alloc > size)
    alloc = size;
  if (__builtin_add_overflow (alloc, frsize, need))
    goto overflow;
  return 0;
 overflow:
  vms_set_error (EOVERFLOW, "file provider: file size out of range");
  return -1;
}

/* Copies of sessions whose owner was killed: full copies of files, gone
 * for good otherwise (issue 9 item 3). root names rootfd in messages. */
static int
file_provider_sweep_at (int rootfd, const char *root)
{
  int swept = vms_session_dir_sweep (rootfd, "");
  if (swept > 0)
    vms_debug ("file provider: removed %d scratch director%s of killed "
               "sessions in %s", swept, swept == 1 ? "y" : "ies", root);
  return swept;
}

static const char *
file_provider_scratch_root (const char *scratch_root)
{
  const char *env = getenv ("VMSHADOW_SCRATCH_DIR");

  if (scratch_root == NULL)
    scratch_root = env && *env ? env : VMS_FILE_PROVIDER_DEFAULT_SCRATCH;
  return scratch_root;
}

int
vms_file_provider_sweep (const char *scratch_root)
{
  const char *root = file_provider_scratch_root (scratch_root);
  CLEANUP_CLOSE int rootfd = open (root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int swept;

  if (rootfd == -1 && errno == ENOENT)
    return 0;
  if (rootfd == -1 || (swept = file_provider_sweep_at (rootfd, root)) == -1) {
    vms_set_error (errno, "file provider: cannot clean scratch directory %s: "
                   "%s", root, strerror (errno));
    return -1;
  }
  return swept;
}

static int
file_provider_prepare (void *data, vms_snapshot *snap)
{
  struct file_provider *fp = data;
  struct file_provider_session *fs;
  CLEANUP_FREE char *root = NULL;
  const char *sid = vms_snapshot_session_id (snap);
  size_t n = vms_snapshot_file_count (snap);
  struct statvfs sv;
  uint64_t frsize, avail, need = 0, need_files = 0;

  if (file_provider_check_session_id (sid) == -1)
    return -1;
  if (vms_mkdir_p (fp->scratch_root, 0700) == -1)
    return -1;
  root = realpath (fp->scratch_root, NULL);
  if (root == NULL) {
    vms_set_error (errno, "file provider: scratch root %s: %s",
                   fp->scratch_root, strerror (errno));
    return -1;
  }

  fs = calloc (1, sizeof *fs);
  if (fs == NULL) {
    vms_set_error (errno, "file provider: out of memory");
    return -1;
  }
  fs->dirfd = -1;
  if (asprintf (&fs->dir, "%s/%s", root, sid) == -1) {
    fs->dir = NULL;
    vms_set_error (errno, "file provider: out of memory");
    goto err;
  }
  {
    CLEANUP_CLOSE int rootfd = open (root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd >= 0)
      file_provider_sweep_at (rootfd, root);
    fs->dirfd = rootfd >= 0 ? vms_session_dir_make (rootfd, sid, NULL) : -1;
  }
  if (fs->dirfd == -1) {
    if (errno == EEXIST)
      vms_set_error (errno, "file provider: scratch directory %s already "
                     "exists: another session with this id is running", fs->dir);
    else
      vms_set_error (errno, "file provider: cannot create scratch directory "
                     "%s: %s", fs->dir, strerror (errno));
    free (fs->dir);
    fs->dir = NULL;             /* not ours: never remove it */
    goto err;
  }
  if (fstatvfs (fs->dirfd, &sv) == -1) {
    vms_set_error (errno, "file provider: cannot read free space of %s: %s",
                   fs->dir, strerror (errno));
    goto err;
  }
  frsize = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
  if (frsize == 0)
    frsize = 4096;
  if (__builtin_mul_overflow ((uint64_t) sv.f_bavail, frsize, &avail))
    avail = UINT64_MAX;

  fs->copies = calloc (n ? n : 1, sizeof *fs->copies);
  if (fs->copies == NULL) {
    vms_set_error (errno, "file provider: out of memory");
    goto err;
  }
  fs->nr_copies = n;
  for (size_t i = 0; i < n; i++) {
    const struct vms_file_ref *ref = vms_snapshot_file (snap, i);
    struct file_provider_copy *c = &fs->copies[i];
    CLEANUP_CLOSE int src = -1;
    struct stat st;
    uint64_t fneed;

    c->name = file_provider_copy_name (i, ref->file.path);
    if (c->name == NULL)
      goto err;
    if (asprintf (&c->path, "%s/%s", fs->dir, c->name) == -1) {
      c->path = NULL;
      vms_set_error (errno, "file provider: out of memory");
      goto err;
    }
    src = open (ref->file.path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (src == -1 || fstat (src, &st) == -1) {
      vms_set_error (errno, "file provider: cannot open %s (component \"%s\"):"
                     " %s", ref->file.path, ref->component, strerror (errno));
      goto err;
    }
    if (!S_ISREG (st.st_mode)) {
      vms_set_error (EINVAL, "file provider: %s is not a regular file",
                     ref->file.path);
      goto err;
    }
    if (file_provider_probe_reflink (fs, c, src, &st)) {
      c->plan = FILE_PROVIDER_REFLINK;
      vms_debug ("file provider: %s will be reflinked to %s",
                 ref->file.path, c->path);
      continue;
    }
    c->plan = FILE_PROVIDER_COPY;
    if (file_provider_copy_need (&st, frsize, &fneed) == -1 ||
        __builtin_add_overflow (need, fneed, &need))
      goto err;
    need_files++;
    vms_debug ("file provider: %s cannot be reflinked into %s (another "
               "filesystem, or no reflink support): it will be copied, "
               "%" PRIu64 " bytes", ref->file.path, fs->dir, fneed);
  }

  if (need > avail) {
    vms_set_error (ENOSPC, "file provider: not enough space for the "
                   "point-in-time copies in %s: %" PRIu64 " file(s) need a "
                   "full copy of %" PRIu64 " bytes, %" PRIu64 " bytes are "
                   "free; free space there, or set VMSHADOW_SCRATCH_DIR to "
                   "a directory on the same reflink-capable filesystem "
                   "(btrfs, XFS) as the files", fs->dir, need_files, need,
                   avail);
    goto err;
  }

  vms_snapshot_set_data (snap, fs);
  return 0;

 err:
  {
    /* Keep the error of the failure, not of the cleanup. */
    int saved_errno = vms_get_errno ();
    CLEANUP_FREE char *saved = vms_get_error () ? strdup (vms_get_error ())
                                                : NULL;
    file_provider_remove_all (fs, 1);
    file_provider_session_free (fs);
    if (saved)
      vms_set_error (saved_errno, "%s", saved);
  }
  return -1;
}

static int
file_provider_check_budget (vms_snapshot *snap, const char *path,
                            uint64_t done, uint64_t total)
{
  if (vms_snapshot_ms_left (snap) > 0)
    return 0;
  vms_set_error (ETIMEDOUT, "file provider: commit budget ran out before "
                 "%s was copied (%" PRIu64 " of %" PRIu64 " bytes done); plain "
                 "copies happen inside the freeze window, so put the scratch "
                 "directory (VMSHADOW_SCRATCH_DIR) on the same reflink-capable "
                 "filesystem (btrfs, XFS) as the files", path, done, total);
  return -1;
}

/* Copy [start, end) of src to the same offsets of dst. */
static int
file_provider_copy_range (vms_snapshot *snap, int src, int dst,
                          const char *path, uint64_t start, uint64_t end,
                          uint64_t total, int *use_rw)
{
  CLEANUP_FREE char *buf = NULL;
  uint64_t pos = start;

  while (pos < end) {
    size_t want = end - pos > FILE_PROVIDER_CHUNK ? FILE_PROVIDER_CHUNK
                                                  : (size_t) (end - pos);
    ssize_t r;

    if (file_provider_check_budget (snap, path, pos, total) == -1)
      return -1;
    if (!*use_rw) {
      loff_t in = (loff_t) pos, out = (loff_t) pos;
      r = copy_file_range (src, &in, dst, &out, want, 0);
      if (r == -1 && (errno == EXDEV || errno == ENOSYS ||
                      errno == EOPNOTSUPP || errno == EINVAL)) {
        *use_rw = 1;            /* e.g. across filesystem types */
        continue;
      }
    }
    else {
      if (buf == NULL && (buf = malloc (FILE_PROVIDER_CHUNK)) == NULL) {
        vms_set_error (errno, "file provider: out of memory");
        return -1;
      }
      r = pread (src, buf, want, (off_t) pos);
      if (r > 0) {
        ssize_t w = 0;
        while (w < r) {
          ssize_t k = pwrite (dst, buf + w, (size_t) (r - w),
                              (off_t) (pos + (uint64_t) w));
          if (k == -1) {
            r = -1;
            break;
          }
          w += k;
        }
      }
    }
    if (r == -1) {
      if (errno == EINTR)
        continue;
      if (errno == ENOSPC || errno == EDQUOT)
        vms_set_error (errno, "file provider: no space left for the copy of "
                       "%s (%" PRIu64 " of %" PRIu64 " bytes done): %s; free "
                       "space in the scratch directory, or set "
                       "VMSHADOW_SCRATCH_DIR to a reflink-capable filesystem "
                       "(btrfs, XFS) holding the files", path, pos, total,
                       strerror (errno));
      else
        vms_set_error (errno, "file provider: copying %s: %s", path,
                       strerror (errno));
      return -1;
    }
    if (r == 0)                 /* the file shrank under us */
      break;
    pos += (uint64_t) r;
  }
  return 0;
}

/* Copy size bytes of src into the empty dst, keeping holes. */
static int
file_provider_copy_sparse (vms_snapshot *snap, int src, int dst,
                           const char *path, uint64_t size)
{
  uint64_t off = 0;
  int use_rw = 0;

  while (off < size) {
    off_t data = lseek (src, (off_t) off, SEEK_DATA);
    off_t hole;

    if (data == -1) {
      if (errno == ENXIO)       /* only a hole is left */
        break;
      if (errno != EINVAL && errno != EOPNOTSUPP) {
        vms_set_error (errno, "file provider: seeking in %s: %s", path,
                       strerror (errno));
        return -1;
      }
      data = (off_t) off;       /* no SEEK_DATA here: all data */
      hole = (off_t) size;
    }
    else {
      if ((uint64_t) data >= size)
        break;
      hole = lseek (src, data, SEEK_HOLE);
      if (hole == -1 || (uint64_t) hole > size)
        hole = (off_t) size;
    }
    if (file_provider_copy_range (snap, src, dst, path, (uint64_t) data,
                                  (uint64_t) hole, size, &use_rw) == -1)
      return -1;
    off = (uint64_t) hole;
  }
  if (ftruncate (dst, (off_t) size) == -1) {
    vms_set_error (errno, "file provider: sizing the copy of %s: %s", path,
                   strerror (errno));
    return -1;
  }
  return 0;
}

static int
file_provider_commit_one (vms_snapshot *snap, struct file_provider_session *fs,
                          size_t i)
{
  const struct vms_file_ref *ref = vms_snapshot_file (snap, i);
  struct file_provider_copy *c = &fs->copies[i];
  const char *path = ref->file.path;
  CLEANUP_CLOSE int src = -1;
  CLEANUP_CLOSE int dst = -1;
  struct stat st;
  int64_t t0 = vms_now_ms ();

  src = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (src == -1 || fstat (src, &st) == -1) {
    vms_set_error (errno, "file provider: cannot open %s at commit: %s", path,
                   strerror (errno));
    return -1;
  }
  if (!S_ISREG (st.st_mode) || st.st_size < 0) {
    vms_set_error (EINVAL, "file provider: %s is no longer a regular file",
                   path);
    return -1;
  }
  if (file_provider_check_budget (snap, path, 0, (uint64_t) st.st_size) == -1)
    return -1;
  dst = openat (fs->dirfd, c->name,
                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (dst == -1) {
    vms_set_error (errno, "file provider: cannot create %s: %s", c->path,
                   strerror (errno));
    return -1;
  }
  c->used = FILE_PROVIDER_COPY;         /* it exists: release deletes it */
  if (fchmod (dst, 0600) == -1) {
    vms_set_error (errno, "file provider: chmod %s: %s", c->path,
                   strerror (errno));
    return -1;
  }

  if (c->plan == FILE_PROVIDER_REFLINK) {
    if (ioctl (dst, FICLONE, src) == 0)
      c->used = FILE_PROVIDER_REFLINK;
    else {
      vms_debug ("file provider: reflink of %s failed at commit (%s), "
                 "copying instead", path, strerror (errno));
      if (ftruncate (dst, 0) == -1) {
        vms_set_error (errno, "file provider: truncating %s: %s", c->path,
                       strerror (errno));
        return -1;
      }
    }
  }
  if (c->used == FILE_PROVIDER_COPY &&
      file_provider_copy_sparse (snap, src, dst, path,
                                 (uint64_t) st.st_size) == -1)
    return -1;

  if (vms_snapshot_set_access (snap, i, c->path) == -1)
    return -1;
  vms_debug ("file provider: %s -> %s by %s in %" PRId64 " ms", path,
             c->path, file_provider_method_name (c->used),
             vms_now_ms () - t0);
  return 0;
}

static int
file_provider_commit (void *data, vms_snapshot *snap)
{
  struct file_provider_session *fs = vms_snapshot_data (snap);

  if (fs == NULL) {
    vms_set_error (EINVAL, "file provider: commit without prepare");
    return -1;
  }
  for (size_t i = 0; i < fs->nr_copies; i++) {
    if (file_provider_commit_one (snap, fs, i) == -1) {
      /* Give the space back now, not only at release; keep the error. */
      int saved_errno = vms_get_errno ();
      CLEANUP_FREE char *saved = strdup (vms_get_error () ? vms_get_error ()
                                         : "file provider: commit failed");
      file_provider_remove_all (fs, 0);
      if (saved)
        vms_set_error (saved_errno, "%s", saved);
      return -1;
    }
  }
  return 0;
}

static int
file_provider_release (void *data, vms_snapshot *snap)
{
  struct file_provider_session *fs = vms_snapshot_data (snap);
  int r;

  if (fs == NULL)
    return 0;
  r = file_provider_remove_all (fs, 1);
  if (r == 0)
    vms_debug ("file provider: removed %s", fs->dir);
  vms_snapshot_set_data (snap, NULL);
  file_provider_session_free (fs);
  return r;
}

static void
file_provider_close (void *data)
{
  struct file_provider *fp = data;

  if (fp == NULL)
    return;
  free (fp->scratch_root);
  free (fp);
}

static const struct vms_provider file_provider = {
  .api_version = VMS_PROVIDER_API_VERSION,
  .struct_size = sizeof (struct vms_provider),
  .name = VMS_FILE_PROVIDER_NAME,
  .id = VMS_FILE_PROVIDER_ID,
  .supports = file_provider_supports,
  .prepare = file_provider_prepare,
  .commit = file_provider_commit,
  .release = file_provider_release,
  .close = file_provider_close,
};

int
vms_file_provider_add (vms_coordinator *coord, const char *scratch_root)
{
  struct vms_provider p = file_provider;
  struct file_provider *fp;
  const char *budget = getenv ("VMSHADOW_FILE_COMMIT_BUDGET_MS");

  if (budget && *budget) {
    char *end;
    unsigned long ms;

    errno = 0;
    ms = strtoul (budget, &end, 10);
    if (errno || *end || ms == 0 || ms > UINT32_MAX || budget[0] == '-') {
      vms_set_error (EINVAL, "file provider: VMSHADOW_FILE_COMMIT_BUDGET_MS="
                     "\"%s\" is not a number of milliseconds between 1 and "
                     "%" PRIu32, budget, UINT32_MAX);
      return -1;
    }
    p.commit_budget_ms = (uint32_t) ms;
  }
  scratch_root = file_provider_scratch_root (scratch_root);
  if (*scratch_root == '\0') {
    vms_set_error (EINVAL, "file provider: empty scratch directory name");
    return -1;
  }
  fp = calloc (1, sizeof *fp);
  if (fp == NULL || (fp->scratch_root = strdup (scratch_root)) == NULL) {
    vms_set_error (errno, "file provider: out of memory");
    free (fp);
    return -1;
  }
  if (vms_coordinator_add_provider (coord, &p, fp) == -1) {
    file_provider_close (fp);
    return -1;
  }
  return 0;
}

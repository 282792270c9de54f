/* File-level restore, sandboxed (issue 16, R26): the filesystems inside
 * the disks of a backed-up VM, read through libguestfs. The disks are the
 * repository's read-only NBD exports (vms_repo_export_open); libguestfs
 * runs its appliance — a small VM — over them, and only that VM's kernel
 * ever parses a guest filesystem: the host kernel mounts none of them.
 *
 * The view: every filesystem libguestfs finds on the VM's disks (on the
 * whole disk, in partitions, in LVM logical volumes, on md arrays) is a
 * directory at the top, named where the guest would see its device:
 * "/vda1" (partition 1 of disk vda), "/vdb" (a filesystem on the whole
 * disk), "/vg0-root" (logical volume root of volume group vg0, as
 * /dev/mapper names it), "/md127". Nothing is mounted where the guest's
 * fstab says: the guest is not asked (docs/file-restore.md).
 *
 * Not in libvmshadow.so: linking libguestfs there would load it into
 * every program that links vmshadow, nbdkit's plugin among them. The
 * command links this folder's static library. */
#ifndef VMS_GUESTFILES_H
#define VMS_GUESTFILES_H

#include <stdint.h>
#include <stdio.h>

typedef struct vms_guest_files vms_guest_files;

struct vms_guest_files_options {
  const char *repo_dir;
  const char *backup_id;
  const char *vm;               /* name or UUID */
};

/* Check the backup and VM (before anything starts: a missing backup or VM
 * costs no appliance), serve each disk, launch the appliance, find the
 * filesystems and mount them read-only inside it. Fails (NULL, error set)
 * when any step does, or when no disk holds a filesystem. Slow: the
 * appliance boots (seconds with KVM, a minute under TCG). */
extern vms_guest_files *vms_guest_files_open (const struct vms_guest_files_options *o);
/* Shut the appliance down, stop the exports. Accepts NULL. */
extern void vms_guest_files_close (vms_guest_files *gf);

/* Only the checks of vms_guest_files_open that need no appliance (the
 * repository, the backup, the VM and its disks), for a caller that wants
 * bad input refused before it forks. 0 or -1 with the error set. */
extern int vms_guest_files_check (const struct vms_guest_files_options *o);

/* One filesystem found. Strings borrowed from gf. */
struct vms_guest_fs {
  const char *name;             /* its directory at the top: "vda1" */
  const char *device;           /* the appliance's device: "/dev/sda1" */
  const char *type;             /* "ext4", "xfs", … */
  const char *label;            /* may be "" (guest-controlled text) */
  uint64_t size;                /* of the device */
  uint64_t used;                /* bytes in use, if mounted */
  const char *error;            /* NULL, or why it could not be mounted */
};
extern size_t vms_guest_files_fs_count (const vms_guest_files *gf);
extern const struct vms_guest_fs *vms_guest_files_fs (const vms_guest_files *gf, size_t i);

/* One entry of a directory (or the path itself when it is no directory),
 * as lstat sees it. Strings are the caller's to free via
 * vms_guest_entries_free. */
struct vms_guest_entry {
  char *name;                   /* guest-controlled bytes: escape to print */
  uint32_t mode;                /* st_mode: type and permission bits */
  uint64_t size;
  int64_t mtime;                /* Unix seconds */
  int64_t uid, gid;
  char *link;                   /* a symlink's target, else NULL */
};
/* The entries of path (sorted by name), or path alone when it is not a
 * directory. Returns the count, or -1 with the error set (no such path,
 * a path that is not valid: see vms_guest_path_check). */
extern ssize_t vms_guest_files_ls (vms_guest_files *gf, const char *path,
                                   struct vms_guest_entry **entries);
extern void vms_guest_entries_free (struct vms_guest_entry *entries, size_t n);

/* Write the file at path (following links inside the guest, as cat does)
 * to fd. With escape, bytes a terminal would act on are written escaped
 * (vms_term_escape; newlines kept). On any error — a read error of a
 * damaged chunk among them — fails with the error set: what was written
 * before it is what the file holds, never other bytes. */
extern int vms_guest_files_cat (vms_guest_files *gf, const char *path, int fd,
                                int escape);

/* What vms_guest_files_get did. */
struct vms_guest_get_stats {
  uint64_t files, dirs, links, bytes;
  uint64_t refused;             /* special files, bad names, errors */
};
/* Called for each thing not restored: the guest path and why (the path is
 * guest-controlled: escape it). */
typedef void (*vms_guest_get_report_fn) (void *opaque, const char *path,
                                         const char *why);
/* Copy path (a file, a link or a whole directory tree) into the directory
 * dirfd, under the last component of path. Nothing is overwritten: an
 * existing name there fails at once. Files are created O_EXCL, opened
 * without following links, relative to dirfd and to directories made
 * here; symlinks are made as symlinks (never followed); devices, FIFOs and
 * sockets are refused and reported; a file that cannot be read whole is
 * removed and reported. Permission bits are kept (set-id bits dropped),
 * and times; the owner is the caller. Returns 0 when everything was
 * restored, 1 when something was reported, -1 with the error set when
 * path itself could not be (then nothing was written). */
extern int vms_guest_files_get (vms_guest_files *gf, const char *path, int dirfd,
                                struct vms_guest_get_stats *stats,
                                vms_guest_get_report_fn report, void *opaque);

/* Mount the view read-only on dir with FUSE and serve it from a child
 * process: returns in the parent once the mount is there (0), or -1 with
 * the error set (then no mount and no child are left). The child is a new
 * session, detached from the terminal; it ends when dir is unmounted
 * (umount, fusermount3 -u) or it gets SIGTERM/SIGINT/SIGHUP (it unmounts
 * dir then), and it stops the appliance and the exports as it goes.
 * *child gets its pid. Call before starting threads. */
extern int vms_guest_files_mount (const struct vms_guest_files_options *o,
                                  const char *dir, pid_t *child);

/* A guest path as the view accepts it: absolute, at most 4095 bytes, no
 * "." or ".." component, no control characters. 0 or -1 with the error
 * set. */
extern int vms_guest_path_check (const char *path);

#endif /* VMS_GUESTFILES_H */

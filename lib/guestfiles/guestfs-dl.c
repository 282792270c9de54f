/* libguestfs, loaded when first used (issue 15), as librados is
 * (lib/repo/rados-dl.c says why and how).
 *
 * Only `vmshadow files` and `vmshadow mount` use libguestfs, but linked
 * it (with libfuse and libjansson, which nothing else brings) was mapped
 * and relocated at every start of vmshadow, a backup's too
 * (docs/performance.md, "The fixed cost of a vmshadow process"). A
 * function of libguestfs used elsewhere needs its line here. Without the
 * library, guestfs_create and guestfs_create_flags return NULL with errno
 * ELIBACC, and nothing else is reached. */
#include <stdarg.h>

#include <guestfs.h>

#include "lazy-lib.h"

static struct vms_lazy_lib gfs = { .soname = "libguestfs.so.0",
                                   .lock = PTHREAD_MUTEX_INITIALIZER };

#define FORWARD_OR(fn, fail, ...) VMS_LAZY_FORWARD_OR (&gfs, fn, fail, __VA_ARGS__)
#define FORWARD_VOID(fn, ...) VMS_LAZY_FORWARD_VOID (&gfs, fn, __VA_ARGS__)

guestfs_h *
guestfs_create (void)
{
  VMS_LAZY_RESOLVE (&gfs, guestfs_create);
  if (real == NULL) {
    errno = ELIBACC;
    return NULL;
  }
  return real ();
}

/* Its optional arguments are reserved (none is defined), so only FLAGS
 * is passed on. */
guestfs_h *
guestfs_create_flags (unsigned flags, ...)
{
  VMS_LAZY_RESOLVE (&gfs, guestfs_create_flags);
  if (real == NULL) {
    errno = ELIBACC;
    return NULL;
  }
  return real (flags);
}

/* The variadic calls go through the library's va_list forms. */
int guestfs_add_drive_opts_va (guestfs_h *g, const char *filename, va_list args)
{ FORWARD_OR (guestfs_add_drive_opts_va, -1, g, filename, args); }
int
guestfs_add_drive_opts (guestfs_h *g, const char *filename, ...)
{
  va_list ap;
  int r;

  va_start (ap, filename);
  r = guestfs_add_drive_opts_va (g, filename, ap);
  va_end (ap);
  return r;
}
int guestfs_mount_local_va (guestfs_h *g, const char *localmountpoint, va_list args)
{ FORWARD_OR (guestfs_mount_local_va, -1, g, localmountpoint, args); }
int
guestfs_mount_local (guestfs_h *g, const char *localmountpoint, ...)
{
  va_list ap;
  int r;

  va_start (ap, localmountpoint);
  r = guestfs_mount_local_va (g, localmountpoint, ap);
  va_end (ap);
  return r;
}

int64_t guestfs_blockdev_getsize64 (guestfs_h *g, const char *device)
{ FORWARD_OR (guestfs_blockdev_getsize64, -1, g, device); }
void guestfs_close (guestfs_h *g)
{ FORWARD_VOID (guestfs_close, g); }
int guestfs_device_index (guestfs_h *g, const char *device)
{ FORWARD_OR (guestfs_device_index, -1, g, device); }
int guestfs_download (guestfs_h *g, const char *remotefilename, const char *filename)
{ FORWARD_OR (guestfs_download, -1, g, remotefilename, filename); }
void guestfs_free_statns (struct guestfs_statns *p)
{ FORWARD_VOID (guestfs_free_statns, p); }
void guestfs_free_statns_list (struct guestfs_statns_list *p)
{ FORWARD_VOID (guestfs_free_statns_list, p); }
void guestfs_free_statvfs (struct guestfs_statvfs *p)
{ FORWARD_VOID (guestfs_free_statvfs, p); }
void guestfs_free_version (struct guestfs_version *p)
{ FORWARD_VOID (guestfs_free_version, p); }
int guestfs_is_lv (guestfs_h *g, const char *mountable)
{ FORWARD_OR (guestfs_is_lv, -1, g, mountable); }
int guestfs_is_whole_device (guestfs_h *g, const char *device)
{ FORWARD_OR (guestfs_is_whole_device, -1, g, device); }
int guestfs_last_errno (guestfs_h *g)
{ FORWARD_OR (guestfs_last_errno, -1, g); }
const char *guestfs_last_error (guestfs_h *g)
{ FORWARD_OR (guestfs_last_error, NULL, g); }
int guestfs_launch (guestfs_h *g)
{ FORWARD_OR (guestfs_launch, -1, g); }
char **guestfs_list_filesystems (guestfs_h *g)
{ FORWARD_OR (guestfs_list_filesystems, NULL, g); }
char **guestfs_ls (guestfs_h *g, const char *directory)
{ FORWARD_OR (guestfs_ls, NULL, g, directory); }
struct guestfs_statns *guestfs_lstatns (guestfs_h *g, const char *path)
{ FORWARD_OR (guestfs_lstatns, NULL, g, path); }
struct guestfs_statns_list *guestfs_lstatnslist (guestfs_h *g, const char *path, char *const *names)
{ FORWARD_OR (guestfs_lstatnslist, NULL, g, path, names); }
char *guestfs_lvm_canonical_lv_name (guestfs_h *g, const char *lvname)
{ FORWARD_OR (guestfs_lvm_canonical_lv_name, NULL, g, lvname); }
int guestfs_mkmountpoint (guestfs_h *g, const char *exemptpath)
{ FORWARD_OR (guestfs_mkmountpoint, -1, g, exemptpath); }
int guestfs_mount_local_run (guestfs_h *g)
{ FORWARD_OR (guestfs_mount_local_run, -1, g); }
int guestfs_mount_options (guestfs_h *g, const char *options, const char *mountable, const char *mountpoint)
{ FORWARD_OR (guestfs_mount_options, -1, g, options, mountable, mountpoint); }
int guestfs_mount_vfs (guestfs_h *g, const char *options, const char *vfstype, const char *mountable, const char *mountpoint)
{ FORWARD_OR (guestfs_mount_vfs, -1, g, options, vfstype, mountable, mountpoint); }
char *guestfs_part_to_dev (guestfs_h *g, const char *partition)
{ FORWARD_OR (guestfs_part_to_dev, NULL, g, partition); }
int guestfs_part_to_partnum (guestfs_h *g, const char *partition)
{ FORWARD_OR (guestfs_part_to_partnum, -1, g, partition); }
char *guestfs_readlink (guestfs_h *g, const char *path)
{ FORWARD_OR (guestfs_readlink, NULL, g, path); }
char **guestfs_readlinklist (guestfs_h *g, const char *path, char *const *names)
{ FORWARD_OR (guestfs_readlinklist, NULL, g, path, names); }
int guestfs_rmmountpoint (guestfs_h *g, const char *exemptpath)
{ FORWARD_OR (guestfs_rmmountpoint, -1, g, exemptpath); }
int guestfs_set_backend (guestfs_h *g, const char *backend)
{ FORWARD_OR (guestfs_set_backend, -1, g, backend); }
void guestfs_set_error_handler (guestfs_h *g, guestfs_error_handler_cb cb, void *opaque)
{ FORWARD_VOID (guestfs_set_error_handler, g, cb, opaque); }
int guestfs_set_path (guestfs_h *g, const char *searchpath)
{ FORWARD_OR (guestfs_set_path, -1, g, searchpath); }
int guestfs_shutdown (guestfs_h *g)
{ FORWARD_OR (guestfs_shutdown, -1, g); }
struct guestfs_statns *guestfs_statns (guestfs_h *g, const char *path)
{ FORWARD_OR (guestfs_statns, NULL, g, path); }
struct guestfs_statvfs *guestfs_statvfs (guestfs_h *g, const char *path)
{ FORWARD_OR (guestfs_statvfs, NULL, g, path); }
struct guestfs_version *guestfs_version (guestfs_h *g)
{ FORWARD_OR (guestfs_version, NULL, g); }
char *guestfs_vfs_label (guestfs_h *g, const char *mountable)
{ FORWARD_OR (guestfs_vfs_label, NULL, g, mountable); }

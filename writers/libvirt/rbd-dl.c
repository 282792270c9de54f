/* librbd, loaded when first used (issue 15): see lib/repo/rados-dl.c.
 * Only a stopped VM's RBD disk (vm-rbd.c) calls these; linked against
 * librbd, every start of vmshadow mapped and relocated its 9 MB.
 *
 * librbd.h declares its functions with default visibility, which would
 * export these definitions from libvmshadow.so; so this file does not
 * include it and declares the prototypes itself, its handles as the
 * pointers they are (rbd_image_t is a void *; the info structures are
 * passed through by address). A function of librbd used elsewhere needs
 * its line here. Without librbd on the host, the calls return -ELIBACC. */
#include <stddef.h>
#include <stdint.h>

#include "lazy-lib.h"

typedef void *rbd_image_t;
typedef void *rados_ioctx_t;
typedef int (*rbd_diff_cb) (uint64_t, size_t, int, void *);

int rbd_open (rados_ioctx_t io, const char *name, rbd_image_t *image,
              const char *snap_name);
int rbd_open_read_only (rados_ioctx_t io, const char *name, rbd_image_t *image,
                        const char *snap_name);
int rbd_close (rbd_image_t image);
int rbd_stat (rbd_image_t image, void *info, size_t infosize);
int rbd_get_features (rbd_image_t image, uint64_t *features);
int rbd_get_flags (rbd_image_t image, uint64_t *flags);
int rbd_snap_create (rbd_image_t image, const char *snapname);
int rbd_snap_remove (rbd_image_t image, const char *snapname);
int rbd_snap_list (rbd_image_t image, void *snaps, int *max_snaps);
void rbd_snap_list_end (void *snaps);
int rbd_diff_iterate2 (rbd_image_t image, const char *fromsnapname,
                       uint64_t ofs, uint64_t len, uint8_t include_parent,
                       uint8_t whole_object, rbd_diff_cb cb, void *arg);

static struct vms_lazy_lib rbd = { .soname = "librbd.so.1",
                                   .lock = PTHREAD_MUTEX_INITIALIZER };

#define FORWARD_INT(fn, ...) VMS_LAZY_FORWARD_INT (&rbd, fn, __VA_ARGS__)

int rbd_open (rados_ioctx_t io, const char *name, rbd_image_t *image,
              const char *snap_name)
{ FORWARD_INT (rbd_open, io, name, image, snap_name); }
int rbd_open_read_only (rados_ioctx_t io, const char *name, rbd_image_t *image,
                        const char *snap_name)
{ FORWARD_INT (rbd_open_read_only, io, name, image, snap_name); }
int rbd_close (rbd_image_t image)
{ FORWARD_INT (rbd_close, image); }
int rbd_stat (rbd_image_t image, void *info, size_t infosize)
{ FORWARD_INT (rbd_stat, image, info, infosize); }
int rbd_get_features (rbd_image_t image, uint64_t *features)
{ FORWARD_INT (rbd_get_features, image, features); }
int rbd_get_flags (rbd_image_t image, uint64_t *flags)
{ FORWARD_INT (rbd_get_flags, image, flags); }
int rbd_snap_create (rbd_image_t image, const char *snapname)
{ FORWARD_INT (rbd_snap_create, image, snapname); }
int rbd_snap_remove (rbd_image_t image, const char *snapname)
{ FORWARD_INT (rbd_snap_remove, image, snapname); }
int rbd_snap_list (rbd_image_t image, void *snaps, int *max_snaps)
{ FORWARD_INT (rbd_snap_list, image, snaps, max_snaps); }
void rbd_snap_list_end (void *snaps)
{ VMS_LAZY_FORWARD_VOID (&rbd, rbd_snap_list_end, snaps); }
int rbd_diff_iterate2 (rbd_image_t image, const char *fromsnapname,
                       uint64_t ofs, uint64_t len, uint8_t include_parent,
                       uint8_t whole_object, rbd_diff_cb cb, void *arg)
{
  FORWARD_INT (rbd_diff_iterate2, image, fromsnapname, ofs, len,
               include_parent, whole_object, cb, arg);
}

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
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define RBD_SONAME "librbd.so.1"

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

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *lib;

static void
rbd_dl_open (void)
{
  lib = dlopen (RBD_SONAME, RTLD_NOW | RTLD_GLOBAL);
  if (lib == NULL)
    vms_debug ("cannot load %s: %s", RBD_SONAME, dlerror ());
}

static void *
rbd_dl_sym (const char *name)
{
  pthread_once (&once, rbd_dl_open);
  return lib ? dlsym (lib, name) : NULL;
}

#define RESOLVE(fn) \
  static __typeof__ (fn) *resolved; \
  __typeof__ (fn) *real = __atomic_load_n (&resolved, __ATOMIC_ACQUIRE); \
  if (real == NULL) { \
    void *p_ = rbd_dl_sym (#fn); \
    /* (dlsym's object pointer to a function pointer, as POSIX allows) */ \
    memcpy (&real, &p_, sizeof real); \
    __atomic_store_n (&resolved, real, __ATOMIC_RELEASE); \
  }
#define FORWARD_INT(fn, ...) \
  do { RESOLVE (fn); return real ? real (__VA_ARGS__) : -ELIBACC; } while (0)

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
{
  RESOLVE (rbd_snap_list_end);
  if (real)
    real (snaps);
}
int rbd_diff_iterate2 (rbd_image_t image, const char *fromsnapname,
                       uint64_t ofs, uint64_t len, uint8_t include_parent,
                       uint8_t whole_object, rbd_diff_cb cb, void *arg)
{
  FORWARD_INT (rbd_diff_iterate2, image, fromsnapname, ofs, len,
               include_parent, whole_object, cb, arg);
}

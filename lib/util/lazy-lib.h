/* A shared library opened at the first call of one of its functions
 * (issue 15): lib/repo/rados-dl.c and writers/libvirt/rbd-dl.c define the
 * functions vmshadow uses of librados and librbd as forwarders, so that a
 * run that never touches Ceph never maps its libraries; lib/repo/curl-dl.c
 * and lib/guestfiles/guestfs-dl.c do the same for libcurl (S3) and
 * libguestfs (files, mount).
 *
 *   static struct vms_lazy_lib rados = { "librados.so.2" };
 *   int rados_connect (rados_t c) { VMS_LAZY_FORWARD_INT (&rados, rados_connect, c); }
 *
 * The forwarder's prototype is the library's own (checked by the compiler
 * where the header is included); without the library, an int-returning
 * call gives -ELIBACC (the first failure logs dlerror's reason at debug
 * level) and a void one does nothing. */
#ifndef VMS_LAZY_LIB_H
#define VMS_LAZY_LIB_H

#include <errno.h>
#include <pthread.h>
#include <string.h>

struct vms_lazy_lib {
  const char *soname;
  pthread_mutex_t lock;         /* (zero: PTHREAD_MUTEX_INITIALIZER) */
  int tried;
  void *handle;
};

/* The library's function NAME (opening the library the first time), or
 * NULL when the library or the function is not there. */
extern void *vms_lazy_lib_sym (struct vms_lazy_lib *lib, const char *name);

/* real: FN's pointer in LIB, resolved at the first call (threads racing
 * there store the same value). */
#define VMS_LAZY_RESOLVE(lib, fn) \
  static __typeof__ (fn) *resolved_; \
  __typeof__ (fn) *real = __atomic_load_n (&resolved_, __ATOMIC_ACQUIRE); \
  if (real == NULL) { \
    void *p_ = vms_lazy_lib_sym ((lib), #fn); \
    /* (dlsym's object pointer to a function pointer, as POSIX allows) */ \
    memcpy (&real, &p_, sizeof real); \
    __atomic_store_n (&resolved_, real, __ATOMIC_RELEASE); \
  }
#define VMS_LAZY_FORWARD_INT(lib, fn, ...) \
  do { VMS_LAZY_RESOLVE (lib, fn); \
       return real ? real (__VA_ARGS__) : -ELIBACC; } while (0)
#define VMS_LAZY_FORWARD_VOID(lib, fn, ...) \
  do { VMS_LAZY_RESOLVE (lib, fn); if (real) real (__VA_ARGS__); } while (0)
/* For a function whose failure is another value (NULL, -1, an error
 * code of the library's own). */
#define VMS_LAZY_FORWARD_OR(lib, fn, fail, ...) \
  do { VMS_LAZY_RESOLVE (lib, fn); \
       return real ? real (__VA_ARGS__) : (fail); } while (0)

#endif /* VMS_LAZY_LIB_H */

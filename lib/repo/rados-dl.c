/* librados, loaded when first used (issue 15).
 *
 * The RADOS backend (storage-rados.c) and the RBD snapshots of stopped VMs
 * (writers/libvirt/vm-rbd.c) call these functions; every other run of
 * vmshadow never does. Linked against librados (and through it
 * libceph-common, libstdc++, boost, libibverbs…), each start of the
 * program mapped and relocated some 20 MB more: measured with a cold page
 * cache, a program linking vmshadow's libraries started in 0.07–0.09 s
 * without the Ceph libraries and 0.12–0.14 s with them — a tenth of an
 * incremental backup's wall time. So the program is linked against these
 * definitions instead, which open librados.so.2 at their first call and
 * forward to it. The prototypes come from librados.h, so the compiler
 * checks each one against the library's.
 *
 * A function of librados used elsewhere needs its line here (the link
 * fails with an undefined reference otherwise). Without librados on the
 * host, the calls that can fail return -ELIBACC (the first one after a
 * debug line with dlerror's reason); the others are only reached after
 * rados_create succeeded. */
#include <rados/librados.h>

#include "lazy-lib.h"

static struct vms_lazy_lib rados = { .soname = "librados.so.2",
                                     .lock = PTHREAD_MUTEX_INITIALIZER };

#define FORWARD_INT(fn, ...) VMS_LAZY_FORWARD_INT (&rados, fn, __VA_ARGS__)
#define FORWARD_VOID(fn, ...) VMS_LAZY_FORWARD_VOID (&rados, fn, __VA_ARGS__)

int rados_create (rados_t *cluster, const char * const id)
{ FORWARD_INT (rados_create, cluster, id); }
int rados_conf_read_file (rados_t cluster, const char *path)
{ FORWARD_INT (rados_conf_read_file, cluster, path); }
int rados_conf_set (rados_t cluster, const char *option, const char *value)
{ FORWARD_INT (rados_conf_set, cluster, option, value); }
int rados_connect (rados_t cluster)
{ FORWARD_INT (rados_connect, cluster); }
void rados_shutdown (rados_t cluster)
{ FORWARD_VOID (rados_shutdown, cluster); }
int rados_ioctx_create (rados_t cluster, const char *pool_name,
                        rados_ioctx_t *ioctx)
{ FORWARD_INT (rados_ioctx_create, cluster, pool_name, ioctx); }
void rados_ioctx_destroy (rados_ioctx_t io)
{ FORWARD_VOID (rados_ioctx_destroy, io); }
void rados_ioctx_set_namespace (rados_ioctx_t io, const char *nspace)
{ FORWARD_VOID (rados_ioctx_set_namespace, io, nspace); }
int rados_nobjects_list_open (rados_ioctx_t io, rados_list_ctx_t *ctx)
{ FORWARD_INT (rados_nobjects_list_open, io, ctx); }
int rados_nobjects_list_next (rados_list_ctx_t ctx, const char **entry,
                              const char **key, const char **nspace)
{ FORWARD_INT (rados_nobjects_list_next, ctx, entry, key, nspace); }
void rados_nobjects_list_close (rados_list_ctx_t ctx)
{ FORWARD_VOID (rados_nobjects_list_close, ctx); }
int rados_read (rados_ioctx_t io, const char *oid, char *buf, size_t len,
                uint64_t off)
{ FORWARD_INT (rados_read, io, oid, buf, len, off); }
int rados_stat (rados_ioctx_t io, const char *o, uint64_t *psize,
                time_t *pmtime)
{ FORWARD_INT (rados_stat, io, o, psize, pmtime); }
int rados_aio_create_completion2 (void *cb_arg, rados_callback_t cb_complete,
                                  rados_completion_t *pc)
{ FORWARD_INT (rados_aio_create_completion2, cb_arg, cb_complete, pc); }
int rados_aio_get_return_value (rados_completion_t c)
{ FORWARD_INT (rados_aio_get_return_value, c); }
void rados_aio_release (rados_completion_t c)
{ FORWARD_VOID (rados_aio_release, c); }
int rados_aio_read (rados_ioctx_t io, const char *oid,
                    rados_completion_t completion, char *buf, size_t len,
                    uint64_t off)
{ FORWARD_INT (rados_aio_read, io, oid, completion, buf, len, off); }
int rados_aio_flush (rados_ioctx_t io)
{ FORWARD_INT (rados_aio_flush, io); }
rados_write_op_t rados_create_write_op (void)
{
  VMS_LAZY_RESOLVE (&rados, rados_create_write_op);
  return real ? real () : NULL;
}
void rados_release_write_op (rados_write_op_t write_op)
{ FORWARD_VOID (rados_release_write_op, write_op); }
void rados_write_op_create (rados_write_op_t write_op, int exclusive,
                            const char *category)
{ FORWARD_VOID (rados_write_op_create, write_op, exclusive, category); }
void rados_write_op_write_full (rados_write_op_t write_op, const char *buffer,
                                size_t len)
{ FORWARD_VOID (rados_write_op_write_full, write_op, buffer, len); }
void rados_write_op_remove (rados_write_op_t write_op)
{ FORWARD_VOID (rados_write_op_remove, write_op); }
int rados_write_op_operate (rados_write_op_t write_op, rados_ioctx_t io,
                            const char *oid, time_t *mtime, int flags)
{ FORWARD_INT (rados_write_op_operate, write_op, io, oid, mtime, flags); }
int rados_aio_write_op_operate (rados_write_op_t write_op, rados_ioctx_t io,
                                rados_completion_t completion,
                                const char *oid, time_t *mtime, int flags)
{
  FORWARD_INT (rados_aio_write_op_operate, write_op, io, completion, oid,
               mtime, flags);
}

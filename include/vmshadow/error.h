/* vmshadow — error reporting shared by every part of the library.
 *
 * One convention everywhere (as libnbd's nbd_get_error): a function that
 * fails returns -1 or NULL and leaves a thread-local error behind: an errno
 * value and a message that says what failed, on what, and what to do.
 */
#ifndef VMSHADOW_ERROR_H
#define VMSHADOW_ERROR_H

#include "vmshadow/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The message of the last error on this thread, or NULL if none.
 * Borrowed: valid until the next vmshadow call on this thread. */
extern VMS_API const char *vms_get_error (void);

/* The errno of the last error on this thread (0 if it had none). */
extern VMS_API int vms_get_errno (void);

/* Set the error of this thread. errnum may be 0. Writers and providers
 * call this before returning -1 from a callback. */
extern VMS_API void vms_set_error (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Forget the error of this thread. */
extern VMS_API void vms_clear_error (void);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_ERROR_H */

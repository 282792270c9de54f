/* The first error of a group of threads working on one job (the copy and
 * extract pipelines): what went wrong first is the cause; what fails after
 * it is a consequence and is dropped. */
#ifndef VMS_FIRST_ERROR_H
#define VMS_FIRST_ERROR_H

#include <stdarg.h>

struct vms_first_error {
  int failed;                   /* an error was recorded */
  int errnum;
  char message[2048];
};

/* Record an error unless one is recorded already. Not locked: callers
 * hold the lock of the job it belongs to (and wake its waiters). */
extern void vms_first_error_record (struct vms_first_error *fe, int errnum,
                                    const char *fmt, va_list ap)
  __attribute__ ((format (printf, 3, 0)));

/* If an error was recorded: make it this thread's error and return -1;
 * else return 0. */
extern int vms_first_error_raise (const struct vms_first_error *fe);

#endif /* VMS_FIRST_ERROR_H */

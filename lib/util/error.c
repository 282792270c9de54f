/* Thread-local last error (include/vmshadow/error.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/error.h"

static _Thread_local char error_message[4096];
static _Thread_local int error_errno;
static _Thread_local int error_set;

const char *
vms_get_error (void)
{
  return error_set ? error_message : NULL;
}

int
vms_get_errno (void)
{
  return error_errno;
}

void
vms_set_error (int errnum, const char *fmt, ...)
{
  /* The message may be built from the previous one (to add context), so
   * format into a scratch buffer first. */
  char buf[sizeof error_message];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  memcpy (error_message, buf, sizeof buf);
  error_errno = errnum;
  error_set = 1;
}

void
vms_clear_error (void)
{
  error_message[0] = '\0';
  error_errno = 0;
  error_set = 0;
}

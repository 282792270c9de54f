/* The first error of a multi-threaded job (first-error.h). */
#include <stdio.h>

#include "first-error.h"
#include "vmshadow/error.h"

void
vms_first_error_record (struct vms_first_error *fe, int errnum,
                        const char *fmt, va_list ap)
{
  if (fe->failed)
    return;
  fe->failed = 1;
  fe->errnum = errnum;
  vsnprintf (fe->message, sizeof fe->message, fmt, ap);
}

int
vms_first_error_raise (const struct vms_first_error *fe)
{
  if (!fe->failed)
    return 0;
  vms_set_error (fe->errnum, "%s", fe->message);
  return -1;
}

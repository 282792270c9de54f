/* Small string builders that C lacks, for the text vmshadow composes
 * (paths, names, messages): each returns a new string the caller frees,
 * or NULL on ENOMEM. */
#ifndef VMS_STR_H
#define VMS_STR_H

#include <stdarg.h>

/* printf into a new string. */
extern char *vms_strdup_printf (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
extern char *vms_strdup_vprintf (const char *fmt, va_list ap)
  __attribute__ ((format (printf, 1, 0)));

/* s with every occurrence of from replaced by to; an empty or NULL from
 * gives a copy of s. */
extern char *vms_str_replace (const char *s, const char *from, const char *to);

#endif /* VMS_STR_H */

/* String builders (str.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"

char *
vms_strdup_vprintf (const char *fmt, va_list ap)
{
  char *s;
  return vasprintf (&s, fmt, ap) == -1 ? NULL : s;
}

char *
vms_strdup_printf (const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  s = vms_strdup_vprintf (fmt, ap);
  va_end (ap);
  return s;
}

char *
vms_str_replace (const char *s, const char *from, const char *to)
{
  size_t fl = from ? strlen (from) : 0, tl = strlen (to), n = 0;
  const char *p;
  char *out, *o;

  if (fl == 0)
    return strdup (s);
  for (p = s; (p = strstr (p, from)) != NULL; p += fl)
    n++;
  if ((out = malloc (strlen (s) + n * tl + 1)) == NULL)
    return NULL;
  for (o = out, p = s; *p;) {
    if (strncmp (p, from, fl) == 0) {
      memcpy (o, to, tl);
      o += tl;
      p += fl;
    }
    else
      *o++ = *p++;
  }
  *o = '\0';
  return out;
}

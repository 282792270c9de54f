/* A minimal TAP producer shared by the exec writer's test programs:
 * ok() prints one "ok N - …" / "not ok N - …" line, tap_done() the plan
 * and the exit status. A failure whose text has "# TODO" is a known gap
 * (TAP's TODO directive) and does not fail the run. */
#ifndef VMS_TEST_TAP_H
#define VMS_TEST_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_nr, tap_failed;

static inline int __attribute__ ((format (printf, 2, 3)))
ok (int cond, const char *fmt, ...)
{
  va_list ap;
  tap_nr++;
  printf ("%sok %d - ", cond ? "" : "not ", tap_nr);
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  printf ("\n");
  fflush (stdout);
  if (!cond && strstr (fmt, "# TODO") == NULL)
    tap_failed = 1;
  return cond;
}

/* Print the plan; the exit status for main. */
static inline int
tap_done (void)
{
  printf ("1..%d\n", tap_nr);
  return tap_failed;
}

#endif /* VMS_TEST_TAP_H */

/* Debug logging and monotonic clocks (log.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "text.h"

static int debug_state = -1;   /* -1: not decided yet, read the env */
static int64_t start_us;        /* monotonic clock when the program began */

static void __attribute__ ((constructor))
log_start (void)
{
  start_us = vms_now_us ();
}

void
vms_log_set_debug (int on)
{
  debug_state = on ? 1 : 0;
}

int
vms_log_debug_enabled (void)
{
  if (debug_state == -1) {
    const char *e = getenv ("VMSHADOW_DEBUG");
    debug_state = e != NULL && *e != '\0' && *e != '0';
  }
  return debug_state;
}

static void
log_emit (const char *level, const char *fmt, va_list ap)
{
  /* One fprintf per line so lines from several threads don't interleave. */
  char buf[2048];
  vsnprintf (buf, sizeof buf, fmt, ap);
  /* Messages carry writer and guest text: escaped for the terminal
   * (issue 9, item 7). */
  char *safe = vms_term_escape (buf, VMS_ESCAPE_KEEP_NEWLINE);
  fprintf (stderr, "vmshadow: %s%s\n", level, safe ? safe : "(out of memory)");
  free (safe);
}

void
vms_debug (const char *fmt, ...)
{
  va_list ap;
  char level[48];
  if (!vms_log_debug_enabled ())
    return;
  /* Seconds since the program began: the steps of a run, timed by their
   * debug lines (docs/performance.md, issue 15). */
  int64_t t = vms_now_us () - start_us;
  snprintf (level, sizeof level, "debug: [+%" PRId64 ".%03d] ", t / 1000000,
            (int) (t % 1000000 / 1000));
  va_start (ap, fmt);
  log_emit (level, fmt, ap);
  va_end (ap);
}

void
vms_warn (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  log_emit ("warning: ", fmt, ap);
  va_end (ap);
}

int64_t
vms_now_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
vms_now_ms (void)
{
  return vms_now_us () / 1000;
}

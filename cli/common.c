/* Helpers shared by the subcommands (cli.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exec-writer.h"
#include "file-provider.h"
#include "log.h"
#include "vmshadow/error.h"

vms_coordinator *
cli_load_coordinator (const struct options *opts)
{
  vms_coordinator *coord = vms_coordinator_new ();
  if (coord == NULL)
    return NULL;
  /* Writers first, then providers in the order they are asked (R1). */
  if (vms_exec_writers_load (coord, opts->writers_dir) == -1 ||
      vms_file_provider_add (coord, NULL) == -1) {
    vms_coordinator_free (coord);
    return NULL;
  }
  return coord;
}

int
cli_fail (const char *cmd)
{
  const char *err = vms_get_error ();
  fprintf (stderr, "vmshadow %s: %s\n", cmd, err ? err : "failed");
  return EXIT_FAILURE;
}

void
cli_print_json (json_object *value)
{
  printf ("%s\n", json_object_to_json_string_ext (
            value, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
            JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (value);
}

const char *
cli_bytes (uint64_t n, char buf[32])
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = (double) n;
  size_t u = 0;
  while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, 32, "%" PRIu64 " B", n);
  else
    snprintf (buf, 32, "%.1f %s", v, units[u]);
  return buf;
}

void
progress_init (struct progress *p, const char *label)
{
  memset (p, 0, sizeof *p);
  p->enabled = isatty (STDERR_FILENO) && !vms_log_debug_enabled ();
  p->label = label;
  p->start_ms = vms_now_ms ();
}

void
progress_update (void *opaque, uint64_t done, uint64_t total)
{
  struct progress *p = opaque;
  int64_t now = vms_now_ms ();
  char b1[32], b2[32], b3[32];

  if (!p->enabled || now - p->last_ms < 250)
    return;
  p->last_ms = now;
  double secs = (double) (now - p->start_ms) / 1000.0;
  double rate = secs > 0 ? (double) done / secs : 0;
  double eta = rate > 0 && total > done ? (double) (total - done) / rate : 0;
  fprintf (stderr, "\r%s: %s of %s, %s/s, ETA %02d:%02d   ", p->label,
           cli_bytes (done, b1), cli_bytes (total, b2),
           cli_bytes ((uint64_t) rate, b3), (int) eta / 60, (int) eta % 60);
}

void
progress_done (struct progress *p)
{
  if (p->enabled && p->last_ms)
    fprintf (stderr, "\r\033[K");
}

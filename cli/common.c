/* Helpers shared by the subcommands (cli.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "log.h"
#include "text.h"
#include "vmshadow/error.h"

int cli_json_errors;
int cli_quiet;

int
cli_exit_code (enum vms_outcome o)
{
  switch (o) {
  case VMS_OUTCOME_SUCCESS: return EXIT_SUCCESS;
  case VMS_OUTCOME_WARNINGS: return EXIT_WARNINGS;
  case VMS_OUTCOME_PARTIAL: return EXIT_PARTIAL;
  case VMS_OUTCOME_FAILURE: return EXIT_FAILURE;
  }
  return EXIT_FAILURE;
}

int
cli_error (const char *cmd, int code, const char *fmt, ...)
{
  va_list ap;
  char *msg = NULL;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  va_end (ap);
  if (cli_json_errors) {
    json_object *out = json_object_new_object ();
    if (cmd)
      json_object_object_add (out, "command", json_object_new_string (cmd));
    json_object_object_add (out, "error",
                            json_object_new_string (msg ? msg : "out of memory"));
    json_object_object_add (out, "exit_code", json_object_new_int (code));
    fflush (stdout);
    cli_print_json (out);
  }
  else if (cmd)
    fprintf (stderr, "vmshadow %s: %s\n", cmd, msg ? cli_message (msg) : "out of memory");
  else
    fprintf (stderr, "vmshadow: %s\n", msg ? cli_message (msg) : "out of memory");
  free (msg);
  return code;
}

int
cli_fail (const char *cmd)
{
  const char *err = vms_get_error ();
  return cli_error (cmd, EXIT_FAILURE, "%s", err ? err : "failed");
}

/* The escaped strings handed out by cli_text and cli_message: a ring, so
 * that one printf can take several, each freed when its slot comes round
 * again. */
#define CLI_TEXT_SLOTS 16
static _Thread_local char *cli_text_ring[CLI_TEXT_SLOTS];
static _Thread_local unsigned cli_text_next;

static const char *
cli_escape (const char *s, unsigned flags)
{
  char **slot = &cli_text_ring[cli_text_next++ % CLI_TEXT_SLOTS];
  free (*slot);
  *slot = vms_term_escape (s, flags);
  return *slot ? *slot : "(out of memory)";
}

const char *
cli_text (const char *s)
{
  return cli_escape (s, 0);
}

const char *
cli_message (const char *s)
{
  return cli_escape (s, VMS_ESCAPE_KEEP_NEWLINE);
}

/* Every string of value valid UTF-8, so that the output is valid JSON
 * whatever a writer, a guest or a repository put in it: a string or key
 * that is not UTF-8 is replaced by its escaped form (text.h). Documents
 * are checked where they enter; this holds for messages and anything
 * else too. */
static void
json_make_utf8 (json_object *v)
{
  switch (json_object_get_type (v)) {
  case json_type_string: {
    const char *s = json_object_get_string (v);
    size_t len = (size_t) json_object_get_string_len (v);
    if (!vms_utf8_valid (s, len, NULL)) {
      char *safe = vms_term_escape (s, 0);  /* up to a NUL it may hold */
      json_object_set_string (v, safe ? safe : "");
      free (safe);
    }
    break;
  }
  case json_type_array:
    for (size_t i = 0; i < json_object_array_length (v); i++)
      json_make_utf8 (json_object_array_get_idx (v, i));
    break;
  case json_type_object: {
    /* Keys cannot change while iterating: collect the bad ones first. */
    size_t nbad = 0, n = (size_t) json_object_object_length (v);
    const char **bad = calloc (n ? n : 1, sizeof *bad);
    json_object_object_foreach (v, key, val) {
      json_make_utf8 (val);
      if (bad && !vms_utf8_valid (key, strlen (key), NULL))
        bad[nbad++] = key;
    }
    for (size_t i = 0; i < nbad; i++) {
      char *safe = vms_term_escape (bad[i], 0);
      json_object *moved = json_object_get (json_object_object_get (v, bad[i]));
      json_object_object_del (v, bad[i]);   /* bad[i] is freed here */
      if (safe == NULL || json_object_object_add (v, safe, moved) != 0)
        json_object_put (moved);
      free (safe);
    }
    free (bad);
    break;
  }
  default:
    break;
  }
}

void
cli_print_json (json_object *value)
{
  json_make_utf8 (value);
  printf ("%s\n", json_object_to_json_string_ext (
            value, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
            JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (value);
}

void
cli_print_text (char *text)
{
  json_object *v = text ? json_tokener_parse (text) : NULL;
  free (text);
  if (v == NULL) {
    cli_fail ("json");
    return;
  }
  cli_print_json (v);
}

void
cli_print_report (char *text, int exit_code)
{
  json_object *v = text ? json_tokener_parse (text) : NULL;
  free (text);
  if (v == NULL) {
    cli_fail ("json");
    return;
  }
  json_object_object_add (v, "exit_code", json_object_new_int (exit_code));
  cli_print_json (v);
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
  p->enabled = isatty (STDERR_FILENO) && !vms_log_debug_enabled () && !cli_quiet;
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
  fprintf (stderr, "\r%s: %s of %s, %s/s, ETA %02d:%02d   ", cli_text (p->label),
           cli_bytes (done, b1), cli_bytes (total, b2),
           cli_bytes ((uint64_t) rate, b3), (int) eta / 60, (int) eta % 60);
}

void
progress_done (struct progress *p)
{
  if (p->enabled && p->last_ms)
    fprintf (stderr, "\r\033[K");
}

void
progress_file (void *opaque, const struct vms_progress *vp)
{
  struct progress *p = opaque;
  if (p->label == NULL || strcmp (p->label, vp->path) != 0) {
    progress_done (p);
    progress_init (p, NULL);
    snprintf (p->path, sizeof p->path, "%s", vp->path);
    p->label = p->path;
  }
  if (vp->end) {
    progress_done (p);
    p->label = NULL;
  }
  else
    progress_update (p, vp->done, vp->total);
}

/* vmshadow — the requester (R1): the command an administrator runs.
 * Each subcommand is one function in the table at the bottom; they share
 * the global options parsed here. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "exec-writer.h"
#include "log.h"
#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"

#define EXIT_USAGE 2

struct options {
  int json;
  const char *writers_dir;      /* NULL: VMSHADOW_WRITERS_DIR or default */
};

/* Load every writer this host has. */
static vms_coordinator *
load_writers (const struct options *opts)
{
  vms_coordinator *coord = vms_coordinator_new ();
  if (coord == NULL)
    return NULL;
  if (vms_exec_writers_load (coord, opts->writers_dir) == -1) {
    vms_coordinator_free (coord);
    return NULL;
  }
  return coord;
}

/* ---- vmshadow writers ---- */

static void
print_writer_text (const struct vms_writer_status *st)
{
  printf ("Writer name: '%s'\n", st->name);
  printf ("   Writer Id: {%s}\n", st->id ? st->id : "unknown");
  printf ("   State: %s\n", vms_writer_state_name (st->state, st->failed_at));
  printf ("   Last error: %s\n", st->failure == VMS_FAILURE_NONE
          ? "none" : vms_failure_name (st->failure));
  if (st->message)
    printf ("   Message: %s\n", st->message);
  if (st->metadata == NULL) {
    printf ("\n");
    return;
  }
  size_t n = vms_document_component_count (st->metadata, NULL);
  printf ("   Components: %zu\n", n);
  for (size_t i = 0; i < n; i++) {
    vms_component *c = vms_document_component (st->metadata, NULL, i);
    printf ("      %s", vms_component_name (c));
    if (*vms_component_caption (c))
      printf ("  \"%s\"", vms_component_caption (c));
    printf ("\n");
    for (size_t f = 0; f < vms_component_file_count (c); f++) {
      struct vms_file_info info;
      vms_component_file (c, f, &info);
      printf ("         %-5s %s\n", vms_file_kind_name (info.kind), info.path);
    }
    for (size_t e = 0; e < vms_component_excluded_count (c); e++)
      printf ("         excluded %s: %s\n", vms_component_excluded_path (c, e),
              vms_component_excluded_reason (c, e));
  }
  printf ("\n");
}

static json_object *
writer_json (const struct vms_writer_status *st)
{
  json_object *w = json_object_new_object ();
  json_object_object_add (w, "name", json_object_new_string (st->name));
  json_object_object_add (w, "id", st->id ? json_object_new_string (st->id) : NULL);
  json_object_object_add (w, "state", json_object_new_string (
                            vms_writer_state_name (st->state, st->failed_at)));
  json_object_object_add (w, "failure", json_object_new_string (
                            vms_failure_name (st->failure)));
  json_object_object_add (w, "message", st->message
                          ? json_object_new_string (st->message) : NULL);
  /* The components exactly as the writer's metadata document has them. */
  json_object *components = json_object_new_array ();
  if (st->metadata) {
    char *text = vms_document_format (st->metadata);
    json_object *md = text ? json_tokener_parse (text) : NULL;
    json_object *list;
    if (md && json_object_object_get_ex (md, "components", &list))
      json_object_object_add (w, "components", json_object_get (list));
    json_object_put (md);
    free (text);
  }
  if (!json_object_object_get_ex (w, "components", NULL))
    json_object_object_add (w, "components", components);
  else
    json_object_put (components);
  return w;
}

static int
cmd_writers (const struct options *opts, int argc, char **argv)
{
  if (argc > 0) {
    fprintf (stderr, "vmshadow writers: unexpected argument '%s'\n", argv[0]);
    return EXIT_USAGE;
  }
  vms_coordinator *coord = load_writers (opts);
  if (coord == NULL) {
    fprintf (stderr, "vmshadow writers: %s\n", vms_get_error ());
    return EXIT_FAILURE;
  }
  /* Like `vssadmin list writers`: ask every writer to identify itself and
   * show each one's state, also the ones that failed. */
  int rc = vms_coordinator_gather_metadata (coord) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
  size_t n = vms_coordinator_writer_count (coord);

  if (opts->json) {
    json_object *root = json_object_new_object ();
    json_object *list = json_object_new_array ();
    for (size_t i = 0; i < n; i++) {
      struct vms_writer_status st;
      vms_coordinator_writer_status (coord, i, &st);
      json_object_array_add (list, writer_json (&st));
    }
    json_object_object_add (root, "writers", list);
    printf ("%s\n", json_object_to_json_string_ext (
              root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
              JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (root);
  }
  else if (n == 0)
    printf ("No writers on this host.\n");
  else
    for (size_t i = 0; i < n; i++) {
      struct vms_writer_status st;
      vms_coordinator_writer_status (coord, i, &st);
      print_writer_text (&st);
    }
  vms_coordinator_free (coord);
  return rc;
}

/* ---- the command line ---- */

static const struct command {
  const char *name;
  int (*run) (const struct options *, int, char **);
  const char *summary;
} commands[] = {
  { "writers", cmd_writers, "list every writer with its ID, state and components" },
};

static void
usage (FILE *fp)
{
  fprintf (fp,
           "Usage: vmshadow [OPTION...] COMMAND [ARG...]\n"
           "Consistent backup and restore of the VMs and applications of a host.\n"
           "\n"
           "Commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf (fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (fp,
           "\n"
           "Options:\n"
           "  --json               print results as JSON\n"
           "  --writers-dir DIR    exec writers directory (default $VMSHADOW_WRITERS_DIR\n"
           "                       or " VMS_EXEC_WRITERS_DIR ")\n"
           "  -v, --verbose        debug messages on stderr\n"
           "  -h, --help           show this help\n"
           "  -V, --version        show the version\n");
}

int
main (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, 'j' },
    { "writers-dir", required_argument, NULL, 'w' },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  struct options opts = { 0 };
  int c;

  /* Options may come before or after the command ("vmshadow writers
   * --json"), so let getopt permute. */
  while ((c = getopt_long (argc, argv, "vhV", long_options, NULL)) != -1) {
    switch (c) {
    case 'j': opts.json = 1; break;
    case 'w': opts.writers_dir = optarg; break;
    case 'v': vms_log_set_debug (1); break;
    case 'h': usage (stdout); return EXIT_SUCCESS;
    case 'V': printf ("vmshadow %s\n", VMSHADOW_VERSION); return EXIT_SUCCESS;
    default: usage (stderr); return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    usage (stderr);
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (argv[optind], commands[i].name) == 0)
      return commands[i].run (&opts, argc - optind - 1, argv + optind + 1);
  fprintf (stderr, "vmshadow: unknown command '%s' (try 'vmshadow --help')\n",
           argv[optind]);
  return EXIT_USAGE;
}

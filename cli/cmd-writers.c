/* vmshadow writers: every writer of the host with its ID, state and
 * components, like `vssadmin list writers` (R4, R7). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vmshadow/error.h"
#include "vmshadow/requester.h"

static void
print_writer_text (const struct vms_writer_status *st)
{
  printf ("Writer name: '%s'\n", cli_text (st->name));
  printf ("   Writer Id: {%s}\n", st->id ? cli_text (st->id) : "unknown");
  printf ("   State: %s\n", vms_writer_state_name (st->state, st->failed_at));
  printf ("   Last error: %s\n", st->failure == VMS_FAILURE_NONE
          ? "none" : vms_failure_name (st->failure));
  if (st->message)
    printf ("   Message: %s\n", cli_message (st->message));
  if (st->metadata == NULL) {
    printf ("\n");
    return;
  }
  size_t n = vms_document_component_count (st->metadata, NULL);
  printf ("   Components: %zu\n", n);
  for (size_t i = 0; i < n; i++) {
    vms_component *c = vms_document_component (st->metadata, NULL, i);
    printf ("      %s", cli_text (vms_component_name (c)));
    if (*vms_component_caption (c))
      printf ("  \"%s\"", cli_text (vms_component_caption (c)));
    printf ("\n");
    /* R22: a cluster-managed component says so. */
    const char *cluster = vms_component_get_string (c, VMS_ATTR_CLUSTER);
    if (cluster)
      printf ("         cluster: %s\n", cli_text (cluster));
    for (size_t f = 0; f < vms_component_file_count (c); f++) {
      struct vms_file_info info;
      vms_component_file (c, f, &info);
      printf ("         %-5s %s\n", vms_file_kind_name (info.kind), cli_text (info.path));
    }
    for (size_t e = 0; e < vms_component_excluded_count (c); e++)
      printf ("         excluded %s: %s\n", cli_text (vms_component_excluded_path (c, e)),
              cli_text (vms_component_excluded_reason (c, e)));
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

int
cmd_writers (const struct options *opts, int argc, char **argv)
{
  if (argc > 0) {
    return cli_error ("writers", EXIT_USAGE, "unexpected argument '%s'", argv[0]);
  }
  /* The VM writer too when libvirt is there (or a URI is given). */
  const struct vms_host_options host = {
    .writers_dir = opts->writers_dir,
    .libvirt_uri = opts->connect,
    .probe_vms = 1,
  };
  vms_coordinator *coord = vms_requester_host (&host);
  if (coord == NULL)
    return cli_fail ("writers");
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
    cli_print_json (root);
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

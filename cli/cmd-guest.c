/* vmshadow guest install VM: put the guest side (guest/vmshadow-guest)
 * into a running VM through its guest agent (issue 17;
 * docs/guest-writers.md). The library does it; this prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "vmshadow/error.h"
#include "vmshadow/requester.h"

int
cmd_guest (const struct options *opts, int argc, char **argv)
{
  char *answer = NULL;

  if (argc != 2 || strcmp (argv[0], "install") != 0)
    return cli_error ("guest", EXIT_USAGE, "usage: vmshadow guest install VM");
  if (vms_requester_guest_install (opts->connect, argv[1], NULL, &answer) == -1)
    return cli_fail ("guest");
  if (opts->json) {
    json_object *o = json_object_new_object ();
    json_object_object_add (o, "vm", json_object_new_string (argv[1]));
    json_object_object_add (o, "installed", json_object_new_boolean (1));
    json_object_object_add (o, "answer", json_tokener_parse (answer));
    printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
    json_object_put (o);
  }
  else
    printf ("Installed the guest side in %s: /usr/sbin/vmshadow-guest answers "
            "%s; add guest writers to /etc/vmshadow/guest-writers.d\n",
            cli_text (argv[1]), cli_text (answer));
  free (answer);
  return EXIT_SUCCESS;
}

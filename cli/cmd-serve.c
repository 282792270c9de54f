/* vmshadow serve: one disk of a backup as a read-only NBD export until
 * stopped (issue 16). The URI goes to stdout, alone on its line (or as
 * JSON), so scripts can read it; the server stops on SIGINT, SIGTERM or
 * SIGHUP, and with us if we are killed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

/* A line the server logged, on stderr. */
static void
server_said (void *opaque, const char *line)
{
  fprintf (stderr, "vmshadow serve: %s\n", cli_text (line));
}

int
cmd_serve (const struct options *opts, int argc, char **argv)
{
  struct vms_repo_export_options o = {
    .repo_dir = opts->repo_dir ? opts->repo_dir : getenv ("VMSHADOW_REPO"),
  };
  sigset_t stop;
  vms_repo_export *e;
  int sig, rc = EXIT_SUCCESS;
  char b[32];

  if (o.repo_dir == NULL || *o.repo_dir == '\0')
    o.repo_dir = VMS_REPO_DEFAULT_DIR;
  /* serve BACKUP --vm VM [--disk TARGET] | serve BACKUP COMPONENT [FILE] */
  if (argc < 1 || argc > 3 || (opts->vms && argc != 1) || (!opts->vms && argc < 2) ||
      (opts->vms && opts->vms[1]) || (opts->disk && !opts->vms)) {
    return cli_error ("serve", EXIT_USAGE, "usage: vmshadow serve BACKUP --vm VM "
                      "[--disk TARGET] | vmshadow serve BACKUP COMPONENT [FILE]");
  }
  o.backup_id = argv[0];
  o.select.vm = opts->vms ? opts->vms[0] : NULL;
  o.select.disk = opts->disk;
  o.select.component = argc >= 2 ? argv[1] : NULL;
  o.select.file = argc == 3 ? argv[2] : NULL;

  /* Blocked before the server starts, so a signal is never lost; the
   * server itself starts with a clean mask (vms_spawn). */
  sigemptyset (&stop);
  sigaddset (&stop, SIGINT);
  sigaddset (&stop, SIGTERM);
  sigaddset (&stop, SIGHUP);
  sigprocmask (SIG_BLOCK, &stop, NULL);
  if ((e = vms_repo_export_open (&o)) == NULL)
    return cli_fail ("serve");

  if (opts->json) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "uri", json_object_new_string (vms_repo_export_uri (e)));
    json_object_object_add (out, "backup_id", json_object_new_string (o.backup_id));
    json_object_object_add (out, "size",
                            json_object_new_int64 ((int64_t) vms_repo_export_size (e)));
    cli_print_json (out);
  }
  else {
    printf ("%s\n", vms_repo_export_uri (e));
    fprintf (stderr, "vmshadow serve: serving %s of backup %s (%s, read-only) "
             "until stopped (Ctrl-C)\n",
             o.select.vm ? cli_text (o.select.disk ? o.select.disk : o.select.vm)
             : cli_text (o.select.file ? o.select.file : o.select.component),
             cli_text (o.backup_id), cli_bytes (vms_repo_export_size (e), b));
  }
  fflush (stdout);

  /* Until a stop signal, or the server ends by itself. */
  for (;;) {
    struct timespec tick = { .tv_sec = 1 };
    sig = sigtimedwait (&stop, NULL, &tick);
    vms_repo_export_messages (e, server_said, NULL);
    if (sig > 0)
      break;
    if (vms_repo_export_ended (e)) {
      rc = cli_fail ("serve");
      break;
    }
  }
  vms_repo_export_close (e);
  return rc;
}

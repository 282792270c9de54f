/* vmshadow restore: put the VMs and the other writers' components of a
 * backup back as a Hyper-V host does (R14–R21), run by the requester
 * library (vmshadow/requester.h, docs/restore.md); this file only prints
 * its report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "vmshadow/error.h"
#include "vmshadow/requester.h"

/* The plan: every change, in order (issue 20). */
static void
print_changes (const struct vms_restored_component *c)
{
  for (size_t k = 0; k < c->nr_changes; k++) {
    const struct vms_restore_change *ch = &c->changes[k];
    printf ("    %-10s %s", cli_text (ch->action), cli_text (ch->object));
    if (ch->detail)
      printf (": %s", cli_message (ch->detail));
    printf ("\n");
  }
}

static void
print_plan (const struct vms_restore_report *r)
{
  printf ("Restore of backup %s (dry run: nothing was changed) would do:\n",
          cli_text (r->backup_id));
  for (size_t i = 0; i < r->nr_components; i++) {
    const struct vms_restored_component *c = &r->components[i];
    printf ("  %s \"%s\" (%s):\n", c->kind, cli_text (c->name),
            cli_text (c->component));
    print_changes (c);
  }
}

static void
print_report (const struct vms_restore_report *r)
{
  size_t bad = 0;

  if (r->dry_run) {
    print_plan (r);
    return;
  }
  printf ("Restore of backup %s:\n", cli_text (r->backup_id));
  for (size_t i = 0; i < r->nr_components; i++) {
    const struct vms_restored_component *c = &r->components[i];
    bad += !c->ok;
    if (c->kind && strcmp (c->kind, "vm") == 0)
      printf ("  %s \"%s\" (%s): %s, %s\n", c->kind, cli_text (c->name),
              cli_text (c->component), c->ok ? "restored" : "FAILED",
              c->resumed ? "resumed from its saved state" : cli_text (c->state));
    else
      printf ("  component \"%s\" of writer %s (%s): %s, file restore status "
              "%s\n", cli_text (c->component), cli_text (c->writer),
              cli_text (c->writer_id), c->ok ? "restored" : "FAILED",
              vms_restore_status_name (c->status));
    print_changes (c);
    if (c->error)
      printf ("    error: %s\n", cli_message (c->error));
    for (size_t k = 0; k < c->nr_files; k++) {
      const struct vms_restored_file *f = &c->files[k];
      char b[32];
      if (f->outcome == VMS_FILE_FAILED)
        printf ("    file %s: FAILED: %s\n", cli_text (f->path),
                f->error ? cli_message (f->error) : "?");
      else if (f->outcome == VMS_FILE_NOT_WRITTEN)
        printf ("    file %s: not written\n", cli_text (f->path));
      else
        printf ("    file %s -> %s (%s, %s)\n", cli_text (f->path),
                cli_text (f->target), cli_text (f->format), cli_bytes (f->size, b));
    }
    for (size_t k = 0; k < c->nr_notes; k++)
      printf ("    %s\n", cli_message (c->notes[k]));
    for (size_t k = 0; k < c->nr_disconnected; k++)
      printf ("    interface %s\n", cli_text (c->disconnected[k]));
  }
  size_t vms = 0;
  for (size_t i = 0; i < r->nr_components; i++)
    vms += r->components[i].kind && strcmp (r->components[i].kind, "vm") == 0;
  if (vms == r->nr_components)
    printf ("%zu of %zu VM%s restored in %.1f s.\n", r->nr_components - bad,
            r->nr_components, r->nr_components == 1 ? "" : "s",
            (double) r->elapsed_ms / 1000.0);
  else
    printf ("%zu of %zu component%s restored (%zu VM%s) in %.1f s.\n",
            r->nr_components - bad, r->nr_components,
            r->nr_components == 1 ? "" : "s", vms, vms == 1 ? "" : "s",
            (double) r->elapsed_ms / 1000.0);
}

/* restore --resume|--rollback [VM] (issue 16): finish or undo pending
 * instant restores. */
static int
restore_pending (const struct options *opts, int argc, char **argv)
{
  const char *what = opts->rollback ? "--rollback" : "--resume";
  struct progress prog;
  char **done = NULL;
  size_t n = 0;
  int r;

  if (opts->resume && opts->rollback)
    return cli_error ("restore", EXIT_USAGE, "--resume or --rollback, not both");
  if (argc > 1 || opts->instant ||
      (opts->given & ~(OPT_INSTANT | OPT_JSON | OPT_CONNECT | OPT_REPO)))
    return cli_error ("restore", EXIT_USAGE, "usage: vmshadow restore %s [VM] "
                      "(%s takes no BACKUP and no other restore option)", what,
                      what);
  if (opts->rollback && opts->bandwidth)
    return cli_error ("restore", EXIT_USAGE, "--bandwidth applies to --instant "
                      "and --resume, not to --rollback");
  progress_init (&prog, NULL);
  r = vms_requester_instant_finish (argc ? argv[0] : NULL, opts->rollback,
                                    opts->bandwidth, progress_file, &prog,
                                    &done, &n);
  if (opts->json) {
    json_object *out = json_object_new_object (), *list = json_object_new_array ();
    for (size_t i = 0; i < n; i++)
      json_object_array_add (list, json_object_new_string (done[i]));
    json_object_object_add (out, opts->rollback ? "rolled_back" : "resumed", list);
    json_object_object_add (out, "error", r == -1 ? json_object_new_string (vms_get_error ()) : NULL);
    json_object_object_add (out, "exit_code", json_object_new_int (r == -1 ? EXIT_FAILURE : 0));
    cli_print_json (out);
  }
  else {
    for (size_t i = 0; i < n; i++)
      printf ("VM \"%s\": %s\n", cli_text (done[i]), opts->rollback
              ? "rolled back (turned off, undefined, its overlays, exports and "
                "partly moved disks removed)"
              : "runs from its final disks; nothing of the backup is used any more");
    if (r == -1)
      fprintf (stderr, "vmshadow restore: %s\n", cli_message (vms_get_error ()));
  }
  for (size_t i = 0; i < n; i++)
    free (done[i]);
  free (done);
  return r == -1 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int
cmd_restore (const struct options *opts, int argc, char **argv)
{
  struct progress prog;

  if (opts->resume || opts->rollback)
    return restore_pending (opts, argc, argv);
  if (opts->bandwidth && !opts->instant)
    return cli_error ("restore", EXIT_USAGE, "--bandwidth applies to --instant "
                      "and --resume");
  if (argc != 1)
    return cli_error ("restore", EXIT_USAGE, "give one BACKUP (see 'vmshadow "
                      "list'), not %d arguments", argc);
  vms_repo *repo = vms_repo_open (opts->repo_dir, 0);
  if (repo == NULL)
    return cli_fail ("restore");
  progress_init (&prog, NULL);
  const struct vms_restore_request rq = {
    .backup_id = argv[0],
    .libvirt_uri = opts->connect,
    .vms = opts->vms,
    .components = opts->components,
    .writers_dir = opts->writers_dir,
    .to = opts->to,
    .new_name = opts->new_name,
    .replace = opts->replace,
    .write_devices = opts->write_devices,
    .existing = opts->existing,
    .dry_run = opts->dry_run,
    .start = opts->start,
    .network_map = opts->network_map,
    .progress = progress_file,
    .progress_opaque = &prog,
    .instant = opts->instant,
    .instant_bandwidth = opts->bandwidth,
  };
  struct vms_restore_report *r = vms_requester_restore (repo, &rq);
  int rc = r ? cli_exit_code (r->outcome) : EXIT_FAILURE;

  if (r == NULL)
    cli_fail ("restore");
  else if (opts->json)
    cli_print_report (vms_restore_report_json (r), rc);
  else {
    print_report (r);
    if (r->instant && r->running_ms > 0)
      printf ("Instant restore: the VM ran %.1f s after the start; %s\n",
              (double) r->running_ms / 1000.0,
              r->moved ? "its disks moved to their final place meanwhile"
              : "its disks did NOT move (see below)");
    if (r->instant && r->agent_ms > 0)
      printf ("Its guest agent answered %.1f s after the start; the move "
              "began then.\n", (double) r->agent_ms / 1000.0);
    if (r->instant && r->moved)
      printf ("Moved in %.1f s; no export, overlay or nbdkit is left.\n",
              (double) r->move_ms / 1000.0);
    if (r->error)
      fprintf (stderr, "vmshadow restore: %s\n", cli_message (r->error));
    if (rc == EXIT_PARTIAL || rc == EXIT_FAILURE)
      fprintf (stderr, "vmshadow restore: not everything was restored (see "
               "above)\n");
    else if (rc == EXIT_WARNINGS)
      fprintf (stderr, "vmshadow restore: restored, but interfaces were left "
               "disconnected (see above)\n");
  }
  vms_restore_report_free (r);
  vms_repo_close (repo);
  return rc;
}

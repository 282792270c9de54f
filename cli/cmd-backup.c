/* vmshadow backup: one backup session over every writer of the host (R2),
 * run by the requester library (vmshadow/requester.h); this file only
 * prints its report. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "vmshadow/error.h"
#include "vmshadow/requester.h"

/* Say which writer failed, where and why (R4). */
static void
print_failure (const struct vms_backup_set *set)
{
  if (set->failure.failed && set->state == VMS_SET_FAILED) {
    /* The message already names the writer or provider that failed. */
    if (set->failure.culprit)
      fprintf (stderr, "vmshadow backup: no backup was made: %s (%s, at %s)\n",
               cli_message (set->failure.message), vms_failure_name (set->failure.kind),
               vms_event_name (set->failure.phase));
    else
      fprintf (stderr, "vmshadow backup: %s\n", cli_message (set->failure.message));
  }
  else if (set->failure.failed)
    fprintf (stderr, "  %s (%s, at %s)\n", cli_message (set->failure.message),
             vms_failure_name (set->failure.kind),
             vms_event_name (set->failure.phase));
  for (size_t i = 0; i < set->nr_writers; i++) {
    const struct vms_writer_report *w = &set->writers[i];
    if (w->writer_state == VMS_WRITER_FAILED)
      fprintf (stderr, "  writer \"%s\": %s, %s%s\n", cli_text (w->name), w->state,
               vms_failure_name (w->failure),
               w->failure == VMS_FAILURE_RETRYABLE || w->failure == VMS_FAILURE_TIMEOUT
               ? " (may be retried)" : "");
  }
}

/* µs since the epoch as HH:MM:SS.mmm (UTC). */
static const char *
clock_text (int64_t us, char buf[32])
{
  time_t t = (time_t) (us / 1000000);
  struct tm tm;
  if (gmtime_r (&t, &tm) == NULL)
    snprintf (buf, 32, "?");
  else
    snprintf (buf, 32, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
              (int) (us % 1000000 / 1000));
  return buf;
}

/* Issue 17: whether the frozen intervals shared an instant. */
static void
print_consistency (const struct vms_backup_set *set)
{
  struct vms_frozen_summary fs;
  char a[32], b[32];

  vms_backup_set_frozen (set, &fs);
  if (fs.nr < 2 && fs.grouped == 0)
    return;
  if (fs.grouped == fs.nr)
    printf ("Consistency group of %zu frozen VM%s: ", fs.nr, fs.nr == 1 ? "" : "s");
  else
    printf ("Not grouped (%zu frozen VMs): ", fs.nr);
  if (fs.from_us < fs.until_us)
    printf ("common frozen interval %s-%s UTC (%.1f ms)\n", clock_text (fs.from_us, a),
            clock_text (fs.until_us, b), (double) (fs.until_us - fs.from_us) / 1000.0);
  else
    printf ("no common frozen instant (the first thaw, %s UTC, came %.1f ms "
            "before the last freeze, %s UTC)\n", clock_text (fs.until_us, a),
            (double) (fs.from_us - fs.until_us) / 1000.0, clock_text (fs.from_us, b));
}

static void
print_summary (const struct vms_backup_set *set, int64_t ms)
{
  char b1[32], b2[32], b3[32];

  printf ("Backup %s complete.\n", cli_text (set->backup_id));
  for (size_t i = 0; i < set->nr_components; i++) {
    const struct vms_component_report *t = &set->components[i];
    char how[96] = "";
    if (t->method && t->freeze_window_ms >= 0)
      snprintf (how, sizeof how, " (%s, freeze window %" PRId64 " ms)",
                cli_text (t->method), t->freeze_window_ms);
    else if (t->method && t->downtime_ms >= 0)
      snprintf (how, sizeof how, " (%s, downtime %" PRId64 " ms)",
                cli_text (t->method), t->downtime_ms);
    else if (t->method)
      snprintf (how, sizeof how, " (%s)", cli_text (t->method));
    printf ("  %s%s: %zu file%s, %s, read %s, stored %s, %.1f s\n",
            cli_text (t->caption && *t->caption ? t->caption : t->component), how,
            t->files, t->files == 1 ? "" : "s",
            cli_bytes (t->size, b1), cli_bytes (t->bytes_read, b2),
            cli_bytes (t->bytes_stored, b3), (double) t->elapsed_ms / 1000.0);
    if (t->guest_processing)
      printf ("    guest processing: %s\n", cli_text (t->guest_processing));
    if (t->frozen_from_us >= 0 && t->frozen_until_us >= 0) {
      char a[32], b[32];
      printf ("    frozen %s-%s UTC%s\n", clock_text (t->frozen_from_us, a),
              clock_text (t->frozen_until_us, b), t->grouped ? " (grouped)" : "");
    }
    /* R13: what was left out, and that it must be backed up otherwise. */
    for (size_t e = 0; e < t->nr_excluded; e++)
      printf ("    not backed up: %s: %s\n", cli_text (t->excluded[e].path),
              cli_text (t->excluded[e].reason));
    /* Issue 11: how each disk was read, and why. */
    for (size_t k = 0; k < t->nr_reads; k++) {
      char r1[32];
      printf ("    %s: %s, read %s%s%s\n", cli_text (t->reads[k].path),
              cli_text (t->reads[k].how), cli_bytes (t->reads[k].bytes_read, r1),
              t->reads[k].why ? ": " : "",
              t->reads[k].why ? cli_text (t->reads[k].why) : "");
    }
    /* Issue 21: stored whole, but the host's tracking lied. */
    for (size_t k = 0; k < t->nr_cbt_wrong; k++)
      printf ("    changed-block tracking was wrong for %s: %" PRIu64 " of %"
              PRIu64 " sampled chunks differed; it was read in full\n",
              cli_text (t->cbt_wrong[k].path), t->cbt_wrong[k].differed,
              t->cbt_wrong[k].sampled);
  }
  print_consistency (set);
  printf ("Read %s, stored %s new, in %.1f s.\n", cli_bytes (set->bytes_read, b1),
          cli_bytes (set->bytes_stored, b2), (double) ms / 1000.0);
}

/* --dry-run (issue 20): the library plans, this prints. */
static void
print_plan (const struct vms_backup_plan *p)
{
  char b[32];

  printf ("Backup plan (dry run: nothing was changed)\n");
  for (size_t i = 0; i < p->nr_components; i++) {
    const struct vms_plan_component *c = &p->components[i];
    if (c->vm_name)
      printf ("  VM %s (%s), %s: %s\n", cli_text (c->vm_name),
              cli_text (c->component), cli_text (c->state ? c->state : "?"),
              cli_text (c->method ? c->method : "?"));
    else
      printf ("  %s (writer %s)%s%s\n",
              cli_text (c->caption && *c->caption ? c->caption : c->component),
              cli_text (c->writer), c->method ? ": " : "",
              c->method ? cli_text (c->method) : "");
    if (c->method_reason)
      printf ("    why: %s\n", cli_text (c->method_reason));
    if (c->policy)
      printf ("    policy: %s (from %s)\n", cli_text (c->policy),
              cli_text (c->policy_source ? c->policy_source : "?"));
    if (c->agent)
      printf ("    guest agent: %s\n", cli_text (c->agent));
    if (c->fallback_reason)
      printf ("    fallback because: %s\n", cli_text (c->fallback_reason));
    for (size_t f = 0; f < c->nr_files; f++)
      printf ("    %s: %s%s%s%s\n",
              strcmp (c->files[f].kind, "disk") == 0 ? "disk" : "file",
              cli_text (c->files[f].path), c->files[f].format ? " (" : "",
              c->files[f].format ? cli_text (c->files[f].format) : "",
              c->files[f].format ? ")" : "");
    for (size_t e = 0; e < c->nr_excluded; e++)
      printf ("    not backed up: %s: %s\n", cli_text (c->excluded[e].path),
              cli_text (c->excluded[e].reason));
    if (c->scratch_bytes > 0)
      printf ("    scratch space: up to %s in %s\n",
              cli_bytes ((uint64_t) c->scratch_bytes, b),
              cli_text (c->scratch_dir ? c->scratch_dir : "?"));
    else if (c->scratch_bytes == 0)
      printf ("    scratch space: none (read as it is)\n");
  }
  printf ("Scratch space needed: up to %s.\n",
          cli_bytes ((uint64_t) p->scratch_bytes, b));
  for (size_t i = 0; i < p->nr_errors; i++)
    fprintf (stderr, "vmshadow backup: %s\n", cli_message (p->errors[i]));
}

static int
backup_plan (const struct options *opts, const struct vms_backup_request *rq)
{
  struct vms_backup_plan *p = vms_requester_plan (rq);
  int rc;

  if (p == NULL)
    return cli_fail ("backup");
  rc = p->nr_errors ? EXIT_FAILURE : EXIT_SUCCESS;
  if (opts->json)
    cli_print_text (vms_backup_plan_json (p));
  else
    print_plan (p);
  vms_backup_plan_free (p);
  return rc;
}

/* What a set is, in a line of its report. */
static const char *
set_name (const struct vms_backup_report *r, const struct vms_backup_set *set,
          char *buf, size_t len)
{
  if (!r->each)
    snprintf (buf, len, "backup");
  else if (set->vm)
    snprintf (buf, len, "vm \"%s\"", cli_text (set->vm));
  else
    snprintf (buf, len, "host applications");
  return buf;
}

static void
print_text (const struct vms_backup_report *r)
{
  size_t excluded = 0;
  char name[512];

  for (size_t i = 0; i < r->nr_sets; i++) {
    const struct vms_backup_set *set = &r->sets[i];
    if (r->each)
      printf ("%s: %s%s%s\n", set_name (r, set, name, sizeof name),
              vms_set_state_name (set->state),
              set->state == VMS_SET_FAILED ? "" : ", backup ",
              set->state == VMS_SET_FAILED ? "" : cli_text (set->backup_id));
    if (set->state != VMS_SET_FAILED)
      for (size_t c = 0; c < set->nr_components; c++)
        excluded += set->components[c].nr_excluded;
    if (set->state == VMS_SET_COMPLETE)
      print_summary (set, r->each ? set->elapsed_ms : r->elapsed_ms);
    else if (set->state == VMS_SET_STORED_WITH_ERRORS) {
      /* The data was captured consistently and is stored; a writer could
       * not finish its own post-backup work (e.g. log truncation). */
      fprintf (stderr, "vmshadow backup: backup %s is stored, but a writer "
               "failed at BackupComplete:\n", cli_text (set->backup_id));
      print_failure (set);
    }
    else {
      if (r->each)
        fprintf (stderr, "vmshadow backup: %s:\n", set_name (r, set, name, sizeof name));
      print_failure (set);
    }
  }
  if (r->each) {
    size_t failed = 0;
    for (size_t i = 0; i < r->nr_sets; i++)
      failed += r->sets[i].state == VMS_SET_FAILED;
    printf ("%zu of %zu set%s stored in %.1f s%s\n", r->nr_sets - failed,
            r->nr_sets, r->nr_sets == 1 ? "" : "s",
            (double) r->elapsed_ms / 1000.0, failed ? "; failed:" : ".");
    for (size_t i = 0; failed && i < r->nr_sets; i++)
      if (r->sets[i].state == VMS_SET_FAILED)
        printf ("  %s\n", set_name (r, &r->sets[i], name, sizeof name));
  }
  if (excluded)
    fprintf (stderr, "vmshadow backup: warning: %zu disk%s not backed up "
             "(listed above): back %s up from inside the guest\n", excluded,
             excluded == 1 ? " was" : "s were", excluded == 1 ? "it" : "them");
}

int
cmd_backup (const struct options *opts, int argc, char **argv)
{
  struct progress prog;

  if (opts->all && argc > 0)
    return cli_error ("backup", EXIT_USAGE, "give --all or VM names, not both");
  if (opts->each && !opts->all && argc == 0)
    return cli_error ("backup", EXIT_USAGE, "--each backs up each VM as a set "
                      "of its own: give --all or VM names with it");
  if (opts->each && opts->group)
    return cli_error ("backup", EXIT_USAGE, "--group makes the VMs of one set "
                      "one instant; --each makes one set per VM: give one");
  argv[argc] = NULL;            /* argv is NULL-terminated: a VM list */
  progress_init (&prog, NULL);
  /* Every argument is checked before anything changes: the repository is
   * made only once the writers are loaded and its path can be made whole
   * (issue 9, item 9). */
  const struct vms_backup_request rq = {
    .repo_dir = opts->repo_dir,
    .host = {
      .writers_dir = opts->writers_dir,
      .libvirt_uri = opts->connect,
      .all_vms = opts->all,
      .vms = (const char *const *) argv,
      .method = opts->method,
      .full = opts->full,
      .fallback = opts->fallback,
      .wait_ms = opts->wait ? opts->wait_seconds * 1000 : 0,
      .no_exec_writers = opts->no_exec_writers,
      .group = opts->group,
      .guest_processing = opts->guest_processing,
    },
    .progress = progress_file,
    .progress_opaque = &prog,
    .each = opts->each,
    .cbt_sample = opts->sample_percent / 100.0,
    .job = opts->job,
  };
  if (opts->dry_run)
    return backup_plan (opts, &rq);
  struct vms_backup_report *r = vms_requester_backup (NULL, &rq);
  int rc;

  if (r == NULL)
    return cli_fail ("backup");
  rc = cli_exit_code (r->outcome);
  if (opts->report)
    *opts->report = vms_backup_report_json (r);
  if (opts->json)
    cli_print_report (vms_backup_report_json (r), rc);
  else
    print_text (r);
  vms_backup_report_free (r);
  return rc;
}

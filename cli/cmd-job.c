/* Running it every day (issue 19): vmshadow config check, job run, status.
 * The configuration is lib/requester's (vmshadow/config.h); a job's run is
 * `vmshadow backup` and `vmshadow prune` with the job's options; status
 * reads the manifests of the jobs' repositories, as list does. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "vmshadow/config.h"
#include "vmshadow/document.h"
#include "vmshadow/error.h"
#include "vmshadow/writer.h"

/* The configuration, or NULL after saying why (exit code in *rc). */
static struct vms_config *
load (const char *cmd, const struct options *opts, int *rc)
{
  struct vms_config *c = vms_config_load (opts->config_dir);

  if (c == NULL) {
    *rc = cli_fail (cmd);
    return NULL;
  }
  return c;
}

static void
print_errors (const char *cmd, const struct vms_config *c)
{
  for (size_t i = 0; i < c->nr_errors; i++)
    fprintf (stderr, "vmshadow %s: %s\n", cmd, cli_message (c->errors[i]));
}

int
cmd_config (const struct options *opts, int argc, char **argv)
{
  int rc = EXIT_SUCCESS;

  if (argc != 1 || strcmp (argv[0], "check") != 0)
    return cli_error ("config", EXIT_USAGE, "usage: vmshadow config check "
                      "[--config DIR]");
  struct vms_config *c = load ("config", opts, &rc);
  if (c == NULL)
    return rc;
  rc = c->nr_errors ? EXIT_USAGE : EXIT_SUCCESS;
  if (opts->json) {
    json_object *out = json_object_new_object ();
    json_object *errors = json_object_new_array ();
    json_object *jobs = json_object_new_array ();
    json_object *repos = json_object_new_array ();
    for (size_t i = 0; i < c->nr_errors; i++)
      json_object_array_add (errors, json_object_new_string (c->errors[i]));
    for (size_t i = 0; i < c->nr_repos; i++) {
      json_object *r = json_object_new_object ();
      json_object_object_add (r, "name", json_object_new_string (c->repos[i].name));
      json_object_object_add (r, "path", c->repos[i].path
                              ? json_object_new_string (c->repos[i].path) : NULL);
      json_object_array_add (repos, r);
    }
    for (size_t i = 0; i < c->nr_jobs; i++) {
      const struct vms_config_job *j = &c->jobs[i];
      json_object *o = json_object_new_object ();
      json_object *vms = json_object_new_array ();
      for (size_t k = 0; j->vms && j->vms[k]; k++)
        json_object_array_add (vms, json_object_new_string (j->vms[k]));
      json_object_object_add (o, "name", json_object_new_string (j->name));
      json_object_object_add (o, "repository", j->repository
                              ? json_object_new_string (j->repository) : NULL);
      json_object_object_add (o, "all_vms", json_object_new_boolean (j->all_vms));
      json_object_object_add (o, "vms", vms);
      json_object *excl = json_object_new_array ();
      for (size_t k = 0; j->exclude && j->exclude[k]; k++)
        json_object_array_add (excl, json_object_new_string (j->exclude[k]));
      json_object_object_add (o, "exclude", excl);
      json_object_object_add (o, "exec_writers", json_object_new_boolean (j->exec_writers));
      json_object_object_add (o, "each", json_object_new_boolean (j->each));
      json_object_object_add (o, "method", json_object_new_string (j->method ? j->method : "auto"));
      json_object_object_add (o, "max_age_s", json_object_new_int64 (j->max_age_s));
      json_object_array_add (jobs, o);
    }
    json_object_object_add (out, "dir", json_object_new_string (c->dir));
    json_object_object_add (out, "ok", json_object_new_boolean (c->nr_errors == 0));
    json_object_object_add (out, "errors", errors);
    json_object_object_add (out, "repositories", repos);
    json_object_object_add (out, "jobs", jobs);
    json_object_object_add (out, "exit_code", json_object_new_int (rc));
    cli_print_json (out);
  }
  else if (c->nr_errors) {
    print_errors ("config", c);
    fprintf (stderr, "vmshadow config: %zu error%s in %s\n", c->nr_errors,
             c->nr_errors == 1 ? "" : "s", cli_text (c->dir));
  }
  else
    printf ("Configuration %s is good: %zu repositor%s, %zu job%s.\n",
            cli_text (c->dir), c->nr_repos, c->nr_repos == 1 ? "y" : "ies",
            c->nr_jobs, c->nr_jobs == 1 ? "" : "s");
  vms_config_free (c);
  return rc;
}

/* The job's result (docs/configuration.md, "The job's result"): printed
 * with --json, and told to the notifiers. */
static void
finish_run (const struct options *opts, const struct vms_config *c,
            const struct vms_config_job *j, int64_t started, int rc,
            const char *error, char *report, char *const *selected, int prune_rc,
            const char *prune_skipped)
{
  static const char *const outcome[] = {
    [EXIT_SUCCESS] = "success", [EXIT_FAILURE] = "failure",
    [EXIT_USAGE] = "failure", [EXIT_WARNINGS] = "warnings",
    [EXIT_PARTIAL] = "partial",
  };
  const char *word = rc >= 0 && rc <= EXIT_PARTIAL ? outcome[rc] : "failure";
  const struct vms_config_repository *r = vms_config_repository (c, j->repository);
  struct vms_job_result in = {
    .job = j->name, .repository = r->name, .repository_path = r->path,
    .started = started, .finished = (int64_t) time (NULL), .exit_code = rc,
    .error = error, .backup_report = report, .selected = selected,
    .prune_exit_code = prune_rc, .prune_skipped = prune_skipped,
  };
  char *text = vms_job_result_json (&in);

  if (opts->json) {
    if (text)
      cli_print_text (strdup (text));
    else
      cli_fail ("job");
  }
  if (text)
    vms_config_notify (c, j->name, word, rc, text);
  else
    fprintf (stderr, "vmshadow job: no notification: out of memory\n");
  free (text);
  free (report);
}

/* --json: the job's result is the one document on stdout; what backup and
 * prune print goes to /dev/null (their errors still reach stderr, as
 * text). Returns the saved stdout for quiet_end, or -1. */
static int
quiet_begin (const struct options *opts)
{
  if (!opts->json)
    return -1;
  int null = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  fflush (stdout);
  int saved = null == -1 ? -1 : fcntl (STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  if (saved != -1 && dup2 (null, STDOUT_FILENO) == -1) {
    close (saved);
    saved = -1;
  }
  if (null != -1)
    close (null);
  cli_json_errors = 0;
  return saved;
}

static void
quiet_end (const struct options *opts, int saved)
{
  if (!opts->json)
    return;
  fflush (stdout);
  if (saved != -1) {
    dup2 (saved, STDOUT_FILENO);
    close (saved);
  }
  cli_json_errors = 1;
}

static void
free_vms (char **vms, size_t n)
{
  for (size_t k = 0; vms && k < n; k++)
    free (vms[k]);
  free (vms);
}

/* The job's repository, with this process's repository clients pointed at
 * its credentials; NULL with the error set. */
static const char *
job_repository (const struct vms_config *c, const struct vms_config_job *j)
{
  const struct vms_config_repository *r = vms_config_repository (c, j->repository);
  return vms_config_repository_use (r) == 0 ? r->path : NULL;
}

/* Keep the outcome of a verify of the job's repository, for status. A
 * record that cannot be kept is a warning: the verify itself is done. */
static void
record_verify (const struct vms_config_job *j, int deep, int rc)
{
  /* A verify that could not read the repository found nothing: the last
   * verify that did stays status's (it says damage when not ok). */
  if (rc == EXIT_UNREACHABLE)
    return;
  json_object *o = json_object_new_object ();
  json_object_object_add (o, "time", json_object_new_int64 ((int64_t) time (NULL)));
  json_object_object_add (o, "deep", json_object_new_boolean (deep));
  json_object_object_add (o, "exit_code", json_object_new_int (rc));
  json_object_object_add (o, "ok", json_object_new_boolean (rc == EXIT_SUCCESS));
  const char *text = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN);
  if (text == NULL || vms_config_job_note_put (j, "verify", text) == -1)
    fprintf (stderr, "vmshadow job: warning: the verify's outcome is not kept "
             "for status: %s\n", cli_text (vms_get_error () ? vms_get_error ()
                                             : "out of memory"));
  json_object_put (o);
}

/* What a job does after its backup and prune (verify-after, sync-to):
 * verify its repository; sync every backup the sync-to repository lacks
 * into it (the job's own and any other's: a sync that failed once catches
 * up at the next run), with that repository's credentials in force.
 * EXIT_SUCCESS, or the first failure's exit code. */
static int
after_run (const struct options *opts, const struct vms_config *c,
           const struct vms_config_job *j, const struct options *run)
{
  int rc = EXIT_SUCCESS, r;
  struct options o = *run;

  o.given &= ~(uint64_t) (OPT_KEEP | OPT_CONNECT);
  if (j->verify_after) {
    o.deep = j->verify_after == 2;
    if (!opts->json)
      printf ("Job %s: verify%s\n", cli_text (j->name), o.deep ? " (deep)" : "");
    r = cmd_verify (&o, 0, NULL);
    record_verify (j, o.deep, r);
    if (r != EXIT_SUCCESS)
      rc = r;
  }
  if (j->sync_to) {
    const struct vms_config_repository *to = vms_config_repository (c, j->sync_to);
    char *argv[] = { (char *) run->repo_dir, to->path, NULL };
    if (!opts->json)
      printf ("Job %s: sync into %s\n", cli_text (j->name), cli_text (to->path));
    if (vms_config_repository_use (to) == -1)
      r = cli_fail ("job");
    else
      r = cmd_sync (&o, 2, argv);
    if (r != EXIT_SUCCESS && rc == EXIT_SUCCESS)
      rc = r;
  }
  return rc;
}

/* job verify JOB: `vmshadow verify` of the job's repository (--deep with
 * verify-deep = yes), under a lock of its own so that two verifies of the
 * job never overlap (a verify may run beside the job's backup: the
 * repository's own lock orders them). For vmshadow-verify@JOB.service. */
static int
job_verify (const struct options *opts, const struct vms_config *c,
            const struct vms_config_job *j)
{
  int lock = vms_config_job_lock_kind (j, "verify");
  if (lock == -1)
    return cli_fail ("job");
  struct options o = *opts;
  if ((o.repo_dir = job_repository (c, j)) == NULL) {
    close (lock);
    return cli_fail ("job");
  }
  o.deep = j->verify_deep;
  o.given &= ~(uint64_t) OPT_CONNECT;
  /* A nightly verify killed (a reboot, a timeout) or stopped by a lost
   * connection continues where it was next time, instead of starting
   * over and never reaching the end of a large repository (issue 12). */
  o.resume = 2;
  if (!opts->json)
    printf ("Job %s: verify %s%s\n", cli_text (j->name), cli_text (o.repo_dir),
            o.deep ? " (deep)" : "");
  int rc = cmd_verify (&o, 0, NULL);
  record_verify (j, o.deep, rc);
  close (lock);
  return rc;
}

/* Why a job's prune is not this host's to run, malloc'd, or NULL when it
 * is (issue 14, R29): an append-only repository is pruned only with
 * --admin, from the host holding the admin's credentials, so a job (which
 * never passes --admin) skips its keep-* rules there by policy, saying
 * so, rather than failing every night. A repository that cannot be
 * opened here is prune's to report (NULL). */
static char *
prune_skip_reason (const char *path)
{
  vms_repo *repo = vms_repo_open (path, VMS_REPO_NO_KEY);
  unsigned days = 0;
  const char *mode = NULL;
  int append_only = 0;
  char *why = NULL;

  if (repo == NULL)
    return NULL;
  vms_repo_protection (repo, &days, &mode, &append_only);
  vms_repo_close (repo);
  if (append_only &&
      asprintf (&why, "repository %s is append-only: its backups are "
                "pruned by its admin ('vmshadow prune --admin' where the "
                "admin's credentials are), not by this host's jobs",
                path) == -1)
    why = NULL;
  return why;
}

/* job prune JOB: the job's keep-* rules on its own backups, as after its
 * backup, under the job's run lock (never beside its own run). For
 * vmshadow-prune@JOB.service. */
static int
job_prune (const struct options *opts, const struct vms_config *c,
           const struct vms_config_job *j)
{
  const struct vms_prune_policy *k = &j->keep;
  if (!k->keep_last && !k->keep_daily && !k->keep_weekly && !k->keep_monthly)
    return cli_error ("job", EXIT_USAGE, "job '%s' has no keep-* rules: "
                      "nothing to prune by", j->name);
  int lock = vms_config_job_lock (j);
  if (lock == -1)
    return cli_fail ("job");
  struct options o = *opts;
  if ((o.repo_dir = job_repository (c, j)) == NULL) {
    close (lock);
    return cli_fail ("job");
  }
  o.keep = *k;
  o.keep.job = j->name;         /* only this job's backups */
  o.given |= OPT_KEEP;
  o.dry_run = 0;
  char *skip = prune_skip_reason (o.repo_dir);
  if (skip) {
    /* Not this host's to prune: done, by policy (exit 0). */
    if (opts->json) {
      json_object *out = json_object_new_object ();
      json_object_object_add (out, "skipped", json_object_new_string (skip));
      json_object_object_add (out, "removed", json_object_new_int (0));
      json_object_object_add (out, "exit_code", json_object_new_int (EXIT_SUCCESS));
      cli_print_json (out);
    }
    else
      printf ("Job %s: prune skipped: %s\n", cli_text (j->name), cli_text (skip));
    free (skip);
    close (lock);
    return EXIT_SUCCESS;
  }
  if (!opts->json)
    printf ("Job %s: prune %s\n", cli_text (j->name), cli_text (o.repo_dir));
  int rc = cmd_prune (&o, 0, NULL);
  close (lock);
  return rc;
}

/* The timers a job's schedules make (docs/configuration.md, "Schedules"). */
static const struct {
  const char *unit;             /* the template, before "@" */
  size_t offset;                /* of the schedule in struct vms_config_job */
} timer_kinds[] = {
  { "vmshadow-backup", offsetof (struct vms_config_job, schedule) },
  { "vmshadow-verify", offsetof (struct vms_config_job, verify_schedule) },
  { "vmshadow-prune", offsetof (struct vms_config_job, prune_schedule) },
};
#define NR_TIMER_KINDS (sizeof timer_kinds / sizeof timer_kinds[0])

static const char *
schedule_of (const struct vms_config_job *j, size_t kind)
{
  return *(char *const *) ((const char *) j + timer_kinds[kind].offset);
}

/* Write DIR/UNIT@JOB.timer.d/50-vmshadow-schedule.conf and the link
 * DIR/timers.target.wants/UNIT@JOB.timer -> UNITDIR/UNIT@.timer. dir is
 * the generator's fresh directory; nothing in it is followed. */
static int
write_timer (int dfd, const char *unitdir, const char *unit,
             const struct vms_config_job *j, const char *when)
{
  char d[PATH_MAX], target[PATH_MAX], link[PATH_MAX];
  snprintf (d, sizeof d, "%s@%s.timer.d", unit, j->name);
  snprintf (link, sizeof link, "%s@%s.timer", unit, j->name);
  if ((size_t) snprintf (target, sizeof target, "%s/%s@.timer", unitdir, unit)
      >= sizeof target)
    return cli_error ("job", EXIT_USAGE, "%s: name too long", unitdir);
  if (mkdirat (dfd, d, 0755) == -1 && errno != EEXIST)
    return cli_error ("job", EXIT_FAILURE, "cannot make %s: %s", d, strerror (errno));
  int sub = openat (dfd, d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int fd = sub == -1 ? -1 : openat (sub, "50-vmshadow-schedule.conf",
                                    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
                                    O_CLOEXEC, 0644);
  FILE *fp = fd == -1 ? NULL : fdopen (fd, "w");
  if (fp == NULL) {
    int e = errno;
    if (fd != -1)
      close (fd);
    if (sub != -1)
      close (sub);
    return cli_error ("job", EXIT_FAILURE, "cannot write %s/50-vmshadow-schedule.conf: "
                      "%s", d, strerror (e));
  }
  /* The name and the expression were checked (vms_config_job_unit_name_ok,
   * vms_config_calendar_valid): no newline, no '%' reaches the file. */
  fprintf (fp, "# Made by 'vmshadow job timers' (the systemd generator) from "
           "the schedule of\n# job %s in the vmshadow configuration, at every "
           "systemctl daemon-reload.\n# Change the job's configuration, not "
           "this file.\n[Timer]\nOnCalendar=\nOnCalendar=%s\n", j->name, when);
  int bad = fflush (fp) != 0 || ferror (fp);
  bad |= fclose (fp) != 0;
  close (sub);
  if (bad)
    return cli_error ("job", EXIT_FAILURE, "cannot write %s: %s", d, strerror (errno));
  if (mkdirat (dfd, "timers.target.wants", 0755) == -1 && errno != EEXIST)
    return cli_error ("job", EXIT_FAILURE, "cannot make timers.target.wants: %s",
                      strerror (errno));
  int wants = openat (dfd, "timers.target.wants", O_RDONLY | O_DIRECTORY |
                      O_NOFOLLOW | O_CLOEXEC);
  if (wants == -1 || (symlinkat (target, wants, link) == -1 &&
                      !(errno == EEXIST && unlinkat (wants, link, 0) == 0 &&
                        symlinkat (target, wants, link) == 0))) {
    int e = errno;
    if (wants != -1)
      close (wants);
    return cli_error ("job", EXIT_FAILURE, "cannot link timers.target.wants/%s: %s",
                      link, strerror (e));
  }
  close (wants);
  return 0;
}

/* job timers [DIR [UNITDIR]]: the timers the jobs' schedules ask for.
 * Without DIR, listed; with DIR (the systemd generator's directory), a
 * drop-in with each OnCalendar= and the timer enabled (a link in
 * timers.target.wants), so that a schedule in the job is all it takes. */
static int
job_timers (const struct options *opts, const struct vms_config *c, int argc,
            char **argv)
{
  const char *unitdir = argc > 1 ? argv[1] : "/usr/lib/systemd/system";
  int rc = EXIT_SUCCESS, dfd = -1;
  json_object *list = opts->json ? json_object_new_array () : NULL;

  if (argc > 1 && unitdir[0] != '/')
    return cli_error ("job", EXIT_USAGE, "job timers: UNITDIR must be absolute");
  if (argc > 0 &&
      (dfd = open (argv[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
    json_object_put (list);
    return cli_error ("job", EXIT_FAILURE, "cannot open %s: %s", argv[0],
                      strerror (errno));
  }
  if (argc == 0 && !opts->json)
    printf ("%-20s %-40s %s\n", "JOB", "TIMER", "ONCALENDAR");
  for (size_t i = 0; i < c->nr_jobs; i++) {
    const struct vms_config_job *j = &c->jobs[i];
    for (size_t k = 0; k < NR_TIMER_KINDS; k++) {
      const char *when = schedule_of (j, k);
      if (when == NULL)
        continue;
      if (!vms_config_job_unit_name_ok (j->name)) {
        rc = cli_error ("job", EXIT_FAILURE, "job '%s' (%s:%d): its name cannot "
                        "be a systemd unit's instance (letters, digits and : _ . "
                        "- only): no timer for it", j->name, j->file, j->line);
        break;
      }
      if (list) {
        json_object *o = json_object_new_object ();
        char t[256];
        snprintf (t, sizeof t, "%s@%s.timer", timer_kinds[k].unit, j->name);
        json_object_object_add (o, "job", json_object_new_string (j->name));
        json_object_object_add (o, "timer", json_object_new_string (t));
        json_object_object_add (o, "on_calendar", json_object_new_string (when));
        json_object_array_add (list, o);
      }
      else if (argc == 0) {
        char t[256];
        snprintf (t, sizeof t, "%s@%s.timer", timer_kinds[k].unit, j->name);
        printf ("%-20s %-40s %s\n", cli_text (j->name), cli_text (t), cli_text (when));
      }
      if (dfd != -1 && write_timer (dfd, unitdir, timer_kinds[k].unit, j, when) != 0)
        rc = EXIT_FAILURE;
    }
  }
  if (dfd != -1)
    close (dfd);
  if (list) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "timers", list);
    json_object_object_add (out, "exit_code", json_object_new_int (rc));
    cli_print_json (out);
  }
  return rc;
}

int
cmd_job (const struct options *opts, int argc, char **argv)
{
  int rc = EXIT_SUCCESS, prune_rc = -1;
  int64_t started = (int64_t) time (NULL);
  char *report = NULL, *error = NULL;

  int per_job = argc == 2 && (strcmp (argv[0], "run") == 0 ||
                              strcmp (argv[0], "verify") == 0 ||
                              strcmp (argv[0], "prune") == 0);
  int timers = argc >= 1 && argc <= 3 && strcmp (argv[0], "timers") == 0;
  if (!per_job && !timers)
    return cli_error ("job", EXIT_USAGE, "usage: vmshadow job run|verify|prune "
                      "JOB [--json] [--config DIR], or vmshadow job timers "
                      "[DIR [UNITDIR]]");
  struct vms_config *c = load ("job", opts, &rc);
  if (c == NULL)
    return rc;
  /* No configuration at all (no /etc/vmshadow, or nothing in it): no job,
   * so no timer. The generator runs at every daemon-reload on every host
   * with the package, configured or not, and must not complain there. */
  if (timers && c->nr_files == 0) {
    if (opts->json) {
      json_object *out = json_object_new_object ();
      json_object_object_add (out, "timers", json_object_new_array ());
      json_object_object_add (out, "exit_code", json_object_new_int (0));
      cli_print_json (out);
    }
    vms_config_free (c);
    return EXIT_SUCCESS;
  }
  /* A broken configuration runs nothing, not even a good job of it, and
   * notifies no one (its [notify] may be what is broken). */
  if (c->nr_errors) {
    print_errors ("job", c);
    rc = cli_error ("job", EXIT_USAGE, "the configuration has errors (see "
                    "'vmshadow config check'); nothing was run");
    vms_config_free (c);
    return rc;
  }
  if (timers) {
    rc = job_timers (opts, c, argc - 1, argv + 1);
    vms_config_free (c);
    return rc;
  }
  const struct vms_config_job *j = vms_config_job (c, argv[1]);
  if (j == NULL) {
    rc = cli_error ("job", EXIT_USAGE, "no job '%s' in %s", argv[1], c->dir);
    vms_config_free (c);
    return rc;
  }
  if (strcmp (argv[0], "run") != 0) {
    rc = strcmp (argv[0], "verify") == 0 ? job_verify (opts, c, j)
      : job_prune (opts, c, j);
    vms_config_free (c);
    return rc;
  }
  /* Never two runs of one job at once: the second fails at once (and
   * says so to the notifiers: the night's run did not happen). */
  int lock = vms_config_job_lock (j);
  if (lock == -1) {
    rc = opts->json ? EXIT_FAILURE : cli_fail ("job");
    finish_run (opts, c, j, started, rc, vms_get_error (), NULL, NULL, -1, NULL);
    vms_config_free (c);
    return rc;
  }
  struct options o = *opts;
  size_t n = 0;
  char **vms = NULL;
  if ((o.repo_dir = job_repository (c, j)) == NULL) {
    rc = opts->json ? EXIT_FAILURE : cli_fail ("job");
    finish_run (opts, c, j, started, rc, vms_get_error (), NULL, NULL, -1, NULL);
    close (lock);
    vms_config_free (c);
    return rc;
  }
  /* Globs and exclude are matched against the host's VMs now; plain names
   * are taken as they are (the backup names one it cannot find). */
  int listed = vms_config_job_needs_host_vms (j);
  if (listed) {
    if (vms_config_job_select (j, opts->connect, &vms, &n) == -1) {
      rc = opts->json ? EXIT_FAILURE : cli_fail ("job");
      finish_run (opts, c, j, started, rc, vms_get_error (), NULL, NULL, -1, NULL);
      close (lock);
      vms_config_free (c);
      return rc;
    }
  }
  else {
    while (j->vms && j->vms[n])
      n++;
    vms = calloc (n + 1, sizeof *vms);
    for (size_t k = 0; vms && k < n; k++)
      if ((vms[k] = strdup (j->vms[k])) == NULL) {
        for (size_t i = 0; i < k; i++)
          free (vms[i]);
        free (vms);
        vms = NULL;
      }
  }
  if (vms == NULL) {
    close (lock);
    vms_config_free (c);
    return cli_error ("job", EXIT_FAILURE, "out of memory");
  }
  if (listed && n == 0 && !j->exec_writers) {
    rc = opts->json ? EXIT_FAILURE
      : cli_error ("job", EXIT_FAILURE, "job '%s': no VM of the host is "
                   "selected by its vms and exclude; nothing was backed up",
                   j->name);
    finish_run (opts, c, j, started, rc, "no VM of the host is selected by "
                "the job's vms and exclude", NULL, vms, -1, NULL);
    free (vms);
    close (lock);
    vms_config_free (c);
    return rc;
  }
  o.method = j->method;
  o.fallback = j->fallback;
  o.all = j->all_vms && !listed;
  o.each = j->each && (o.all || n > 0);
  o.group = j->group;
  o.guest_processing = j->guest_processing;
  o.no_exec_writers = !j->exec_writers;
  o.job = j->name;
  o.full = 0;
  o.dry_run = 0;
  o.report = &report;
  o.json = 0;
  if (!opts->json)
    printf ("Job %s: backup into %s\n", cli_text (j->name), cli_text (o.repo_dir));
  int saved = quiet_begin (opts);
  rc = cmd_backup (&o, (int) n, vms);
  /* A backup that never got to a report failed with this error. */
  if (report == NULL && rc != EXIT_SUCCESS && vms_get_error ())
    error = strdup (vms_get_error ());
  o.report = NULL;
  const struct vms_prune_policy *k = &j->keep;
  char *prune_skipped = NULL;
  if ((rc == EXIT_SUCCESS || rc == EXIT_WARNINGS || rc == EXIT_PARTIAL) &&
      (k->keep_last || k->keep_daily || k->keep_weekly || k->keep_monthly) &&
      (prune_skipped = prune_skip_reason (o.repo_dir)) != NULL) {
    /* The repository's policy leaves pruning to its admin (issue 14): the
     * run is not worse for it. */
    if (!opts->json)
      printf ("Job %s: prune skipped: %s\n", cli_text (j->name),
              cli_text (prune_skipped));
  }
  else if ((rc == EXIT_SUCCESS || rc == EXIT_WARNINGS || rc == EXIT_PARTIAL) &&
      (k->keep_last || k->keep_daily || k->keep_weekly || k->keep_monthly)) {
    o.keep = *k;
    o.keep.job = j->name;       /* only this job's backups */
    o.given |= OPT_KEEP;
    if (!opts->json)
      printf ("Job %s: prune\n", cli_text (j->name));
    prune_rc = cmd_prune (&o, 0, NULL);
    /* The backup is stored: a prune that failed is a warning. */
    if (prune_rc != EXIT_SUCCESS && rc == EXIT_SUCCESS)
      rc = EXIT_WARNINGS;
  }
  if (rc == EXIT_SUCCESS || rc == EXIT_WARNINGS || rc == EXIT_PARTIAL) {
    /* Verify and sync after (issue 19): the backup is stored, so what they
     * find is a warning of this run, and said on stderr. */
    if (after_run (opts, c, j, &o) != EXIT_SUCCESS && rc == EXIT_SUCCESS)
      rc = EXIT_WARNINGS;
  }
  quiet_end (opts, saved);
  close (lock);
  finish_run (opts, c, j, started, rc, error, report, o.all ? NULL : vms, prune_rc,
              prune_skipped);
  free_vms (vms, n);
  free (error);
  free (prune_skipped);
  vms_config_free (c);
  return rc;
}

/* ---- status ---- */

enum health { H_OK, H_WARNING, H_CRITICAL, H_NEVER };
static const char *const health_name[] = { "ok", "warning", "critical", "never" };

struct entry {
  const char *job;
  char *writer, *component, *caption;
  char *backup_id;
  int64_t time;
  char *method;
  int incremental;
  uint64_t size;
  int64_t max_age_s;
  enum health health;
  /* The job's last verify (job verify, verify-after): time 0 if never. */
  int64_t verify_time;
  int verify_deep, verify_ok;
  /* The VM's last boot check (verify --boot, issue 16) in any backup of
   * the job: time 0 if never. */
  int64_t boot_time;
  int boot_ok;
  char *boot_backup;
};

struct status {
  struct entry *e;
  size_t n;
  int oom;
};

static char *
sdup (struct status *st, const char *s)
{
  char *d = s ? strdup (s) : NULL;
  if (s && d == NULL)
    st->oom = 1;
  return d;
}

static struct entry *
entry_for (struct status *st, const char *job, const char *writer,
           const char *component)
{
  for (size_t i = 0; i < st->n; i++)
    if (strcmp (st->e[i].job, job) == 0 &&
        ((st->e[i].writer == NULL && writer == NULL) ||
         (st->e[i].writer && writer && strcmp (st->e[i].writer, writer) == 0)) &&
        ((st->e[i].component == NULL && component == NULL) ||
         (st->e[i].component && component &&
          strcmp (st->e[i].component, component) == 0)))
      return &st->e[i];
  struct entry *e = realloc (st->e, (st->n + 1) * sizeof *e);
  if (e == NULL) {
    st->oom = 1;
    return NULL;
  }
  st->e = e;
  e = &st->e[st->n++];
  *e = (struct entry) { .job = job, .writer = sdup (st, writer),
                        .component = sdup (st, component) };
  return e;
}

/* Whether job made the backup (its manifest says so; issue 19). */
static int
made_by (const vms_manifest *m, const char *job)
{
  const char *j = vms_manifest_job (m);
  return j && strcmp (j, job) == 0;
}

/* A VM's component caption is "Online\NAME" or "Offline\NAME" (R7): 1
 * when it is the VM name's. */
static int
vm_caption_is (const char *caption, const char *name)
{
  const char *bs = strchr (caption, '\\');
  size_t n = bs ? (size_t) (bs - caption) : 0;
  return bs && ((n == 6 && strncmp (caption, "Online", 6) == 0) ||
                (n == 7 && strncmp (caption, "Offline", 7) == 0)) &&
    strcmp (bs + 1, name) == 0;
}

/* The job's last verify, as record_verify kept it, onto its entries. A
 * record that is not ours to trust (unreadable, not the shape we write)
 * is said and left out. */
static int
job_last_verify (struct status *st, const struct vms_config_job *j)
{
  char *text = vms_config_job_note_get (j, "verify");
  json_object *o = text ? json_tokener_parse (text) : NULL, *t = NULL, *d = NULL, *ok = NULL;

  if (text == NULL && errno != ENOENT)
    fprintf (stderr, "vmshadow status: warning: %s\n", cli_text (vms_get_error ()));
  else if (text && !(o && json_object_object_get_ex (o, "time", &t) &&
                     json_object_is_type (t, json_type_int) &&
                     json_object_object_get_ex (o, "deep", &d) &&
                     json_object_is_type (d, json_type_boolean) &&
                     json_object_object_get_ex (o, "ok", &ok) &&
                     json_object_is_type (ok, json_type_boolean)))
    fprintf (stderr, "vmshadow status: warning: job '%s': its verify record "
             "is not one vmshadow wrote; ignored\n", cli_text (j->name));
  else if (text)
    for (size_t i = 0; i < st->n; i++)
      if (strcmp (st->e[i].job, j->name) == 0) {
        st->e[i].verify_time = json_object_get_int64 (t);
        st->e[i].verify_deep = json_object_get_boolean (d);
        st->e[i].verify_ok = json_object_get_boolean (ok);
      }
  json_object_put (o);
  free (text);
  return 0;
}

/* A VM's boot check in backup id's boot check (its component is the VM's
 * UUID), onto e when it is the latest seen. */
static void
note_boot_check (struct status *st, struct entry *e,
                 const struct vms_boot_check_report *boot, const char *id)
{
  if (boot == NULL || boot->checked < e->boot_time || e->component == NULL)
    return;
  for (size_t k = 0; k < boot->nr_vms; k++)
    if (strcasecmp (boot->vms[k].uuid, e->component) == 0) {
      e->boot_time = boot->checked;
      e->boot_ok = boot->vms[k].ok;
      free (e->boot_backup);
      e->boot_backup = sdup (st, id);
    }
}

/* Every component of the job's backups, at its newest backup. */
static int
job_status (struct status *st, const struct vms_config *c,
            const struct vms_config_job *j)
{
  const char *path = job_repository (c, j);
  vms_repo *repo = path ? vms_repo_open (path, 0) : NULL;
  char **ids = NULL;
  size_t n = 0;

  /* No repository yet: no backup of the job yet. */
  if (repo == NULL && vms_get_errno () != ENOENT)
    return -1;
  if (repo && vms_repo_list (repo, &ids, &n) == -1) {
    vms_repo_close (repo);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    vms_manifest *m = vms_manifest_open (repo, ids[i]);
    const vms_document *bcd = m ? vms_manifest_components (m) : NULL;
    struct vms_boot_check_report *boot = bcd && made_by (m, j->name) ? cli_boot_check (repo, ids[i]) : NULL;
    for (size_t w = 0; bcd && made_by (m, j->name) &&
           w < vms_components_writer_count (bcd); w++) {
      const char *wid = vms_components_writer_id (bcd, w);
      const char *wname = vms_components_writer_name (bcd, w);
      for (size_t k = 0; k < vms_document_component_count (bcd, wid); k++) {
        vms_component *comp = vms_document_component (bcd, wid, k);
        const char *cname = vms_component_name (comp);
        struct entry *e = entry_for (st, j->name, wname, cname);
        if (e == NULL)
          break;
        free (e->backup_id); free (e->method); free (e->caption);
        e->backup_id = sdup (st, ids[i]);
        e->caption = sdup (st, vms_component_caption (comp));
        e->time = vms_manifest_time (m);
        e->method = sdup (st, vms_component_get_string (comp, VMS_ATTR_METHOD));
        e->incremental = vms_component_get_string (comp, VMS_ATTR_PREVIOUS_CHECKPOINT) != NULL;
        e->size = 0;
        for (size_t f = 0; f < vms_manifest_file_count (m); f++) {
          struct vms_stored_file sf;
          uint64_t sz;
          if (vms_manifest_file (m, f, &sf, &sz) == 0 && sf.writer_id &&
              strcmp (sf.writer_id, wid) == 0 && strcmp (sf.component, cname) == 0)
            e->size += sz;
        }
        note_boot_check (st, e, boot, ids[i]);
      }
    }
    vms_boot_check_report_free (boot);
    vms_manifest_free (m);
    free (ids[i]);
  }
  free (ids);
  vms_repo_close (repo);
  /* The VMs it names that no backup of it holds yet. */
  for (size_t k = 0; j->vms && j->vms[k]; k++) {
    int found = 0;
    if (strpbrk (j->vms[k], "*?[") ||
        strncmp (j->vms[k], VMS_CONFIG_TAG_PREFIX, sizeof VMS_CONFIG_TAG_PREFIX - 1) == 0)
      continue;                 /* a glob or tag: which VMs it means is libvirt's */
    for (size_t i = 0; i < st->n && !found; i++)
      found = strcmp (st->e[i].job, j->name) == 0 &&
        ((st->e[i].component && strcmp (st->e[i].component, j->vms[k]) == 0) ||
         (st->e[i].caption && (strcmp (st->e[i].caption, j->vms[k]) == 0 ||
                               vm_caption_is (st->e[i].caption, j->vms[k]))));
    if (!found)
      entry_for (st, j->name, NULL, j->vms[k]);
  }
  int any = 0;
  for (size_t i = 0; i < st->n; i++)
    any |= strcmp (st->e[i].job, j->name) == 0;
  if (!any)
    entry_for (st, j->name, NULL, NULL);
  return st->oom ? -1 : job_last_verify (st, j);
}

/* Prometheus label values: backslash, quote and newline escaped. */
static void
label (FILE *fp, const char *name, const char *v, int comma)
{
  fprintf (fp, "%s%s=\"", comma ? "," : "", name);
  for (const char *p = v ? v : ""; *p; p++)
    if (*p == '\\' || *p == '"')
      fprintf (fp, "\\%c", *p);
    else if (*p == '\n')
      fputs ("\\n", fp);
    else
      fputc (*p, fp);
  fputc ('"', fp);
}

static void
labels (FILE *fp, const struct entry *e)
{
  fputc ('{', fp);
  label (fp, "job", e->job, 0);
  label (fp, "writer", e->writer, 1);
  label (fp, "component", e->component, 1);
  label (fp, "caption", e->caption, 1);
  fputc ('}', fp);
}

/* The node_exporter textfile's gauges, one value per status entry that
 * has it. */
enum metric {
  M_STATUS, M_TIME, M_AGE, M_SIZE, M_MAX_AGE, M_BOOT_OK, M_VERIFY_OK,
  M_VERIFY_TIME, NR_METRICS
};
static const struct { const char *name, *help; } metrics[NR_METRICS] = {
  [M_STATUS] = { "vmshadow_status", "Health of the last good backup: 0 ok, "
                 "1 warning, 2 critical, 3 never backed up." },
  [M_TIME] = { "vmshadow_last_backup_timestamp_seconds", "Commit time of the "
               "last good backup." },
  [M_AGE] = { "vmshadow_last_backup_age_seconds", "Age of the last good "
              "backup when status ran." },
  [M_SIZE] = { "vmshadow_last_backup_size_bytes", "Size of the component in "
               "the last good backup." },
  [M_MAX_AGE] = { "vmshadow_max_age_seconds", "The job's max-age." },
  [M_BOOT_OK] = { "vmshadow_last_boot_check_ok", "1 if the VM's last boot "
                  "check (verify --boot) passed, 0 if it failed." },
  [M_VERIFY_OK] = { "vmshadow_last_verify_ok", "1 if the last verify of the "
                    "job's repository passed, 0 if it found damage." },
  [M_VERIFY_TIME] = { "vmshadow_last_verify_timestamp_seconds", "When the "
                      "job's repository was last verified." },
};

/* Whether e has metric m, and its value in *v. */
static int
metric_value (enum metric m, const struct entry *e, int64_t now, int64_t *v)
{
  switch (m) {
  case M_STATUS: *v = e->health; return 1;
  case M_TIME: *v = e->time; return e->backup_id != NULL;
  case M_AGE: *v = now - e->time; return e->backup_id != NULL;
  case M_SIZE: *v = (int64_t) e->size; return e->backup_id != NULL;
  case M_MAX_AGE: *v = e->max_age_s; return 1;
  case M_BOOT_OK: *v = e->boot_ok; return e->boot_time != 0;
  case M_VERIFY_OK: *v = e->verify_ok; return e->verify_time != 0;
  case M_VERIFY_TIME: *v = e->verify_time; return e->verify_time != 0;
  case NR_METRICS: break;
  }
  return 0;
}

/* The node_exporter textfile, written whole or not at all: a temporary
 * file beside it, then rename. */
static int
write_prometheus (const char *file, const struct status *st, int64_t now)
{
  char tmp[PATH_MAX];
  if ((size_t) snprintf (tmp, sizeof tmp, "%s.tmp.%ld", file, (long) getpid ())
      >= sizeof tmp)
    return cli_error ("status", EXIT_USAGE, "--prometheus: name too long");
  int fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd == -1)
    return cli_error ("status", EXIT_FAILURE, "cannot make %s: %s", tmp,
                      strerror (errno));
  FILE *fp = fdopen (fd, "w");
  if (fp == NULL) {
    close (fd);
    unlink (tmp);
    return cli_error ("status", EXIT_FAILURE, "out of memory");
  }
  for (int m = 0; m < NR_METRICS; m++) {
    fprintf (fp, "# HELP %s %s\n# TYPE %s gauge\n", metrics[m].name,
             metrics[m].help, metrics[m].name);
    for (size_t i = 0; i < st->n; i++) {
      int64_t v;
      if (metric_value ((enum metric) m, &st->e[i], now, &v)) {
        fputs (metrics[m].name, fp);
        labels (fp, &st->e[i]);
        fprintf (fp, " %" PRId64 "\n", v);
      }
    }
  }
  int bad = fflush (fp) != 0 || ferror (fp) || fsync (fd) == -1;
  int e = errno;
  if (fclose (fp) != 0)
    bad = 1, e = errno;
  if (bad || rename (tmp, file) == -1) {
    if (!bad)
      e = errno;
    unlink (tmp);
    return cli_error ("status", EXIT_FAILURE, "cannot write %s: %s", file,
                      strerror (e));
  }
  return 0;
}

int
cmd_status (const struct options *opts, int argc, char **argv)
{
  struct status st = { NULL, 0, 0 };
  int rc = EXIT_SUCCESS;
  int64_t now = (int64_t) time (NULL);

  (void) argv;
  if (argc != 0)
    return cli_error ("status", EXIT_USAGE, "usage: vmshadow status [--json] "
                      "[--prometheus FILE] [--config DIR]");
  struct vms_config *c = load ("status", opts, &rc);
  if (c == NULL)
    return rc;
  if (c->nr_errors) {
    print_errors ("status", c);
    rc = cli_error ("status", EXIT_USAGE, "the configuration has errors (see "
                    "'vmshadow config check')");
    vms_config_free (c);
    return rc;
  }
  for (size_t i = 0; i < c->nr_jobs; i++)
    if (job_status (&st, c, &c->jobs[i]) == -1) {
      rc = cli_fail ("status");
      goto out;
    }
  /* Health: older than max-age critical, older than 80 % of it warning
   * (docs/configuration.md); the exit code is the worst (Nagios). */
  int worst = H_OK;
  for (size_t i = 0; i < st.n; i++) {
    struct entry *e = &st.e[i];
    e->max_age_s = vms_config_job (c, e->job)->max_age_s;
    int64_t age = now - e->time;
    e->health = e->backup_id == NULL ? H_NEVER
      : age > e->max_age_s ? H_CRITICAL
      : age * 5 > e->max_age_s * 4 ? H_WARNING : H_OK;
    /* The last verify of its repository found damage: critical, whatever
     * the age (issue 19). */
    if (e->backup_id && e->verify_time && !e->verify_ok)
      e->health = H_CRITICAL;
    if ((int) e->health > worst)
      worst = e->health;
  }
  rc = worst == H_OK ? 0 : worst == H_WARNING ? 1 : 2;
  if (opts->prometheus && write_prometheus (opts->prometheus, &st, now) != 0) {
    rc = EXIT_FAILURE;
    goto out;
  }
  if (opts->json) {
    json_object *out = json_object_new_object (), *list = json_object_new_array ();
    for (size_t i = 0; i < st.n; i++) {
      const struct entry *e = &st.e[i];
      json_object *o = json_object_new_object ();
#define S(k, v) json_object_object_add (o, k, (v) ? json_object_new_string (v) : NULL)
      S ("job", e->job);
      S ("repository", vms_config_job (c, e->job)->repository);
      S ("writer", e->writer);
      S ("component", e->component);
      S ("caption", e->caption);
      S ("last_backup_id", e->backup_id);
#undef S
      if (e->backup_id) {
        json_object_object_add (o, "time", json_object_new_int64 (e->time));
        json_object_object_add (o, "age_s", json_object_new_int64 (now - e->time));
        json_object_object_add (o, "method", e->method ? json_object_new_string (e->method) : NULL);
        json_object_object_add (o, "type", json_object_new_string (e->incremental ? "incremental" : "full"));
        json_object_object_add (o, "size", json_object_new_int64 ((int64_t) e->size));
      }
      json_object *v = NULL;
      if (e->verify_time) {
        v = json_object_new_object ();
        json_object_object_add (v, "time", json_object_new_int64 (e->verify_time));
        json_object_object_add (v, "deep", json_object_new_boolean (e->verify_deep));
        json_object_object_add (v, "ok", json_object_new_boolean (e->verify_ok));
      }
      json_object_object_add (o, "last_verify", v);
      json_object *b = NULL;
      if (e->boot_time) {
        b = json_object_new_object ();
        json_object_object_add (b, "time", json_object_new_int64 (e->boot_time));
        json_object_object_add (b, "ok", json_object_new_boolean (e->boot_ok));
        json_object_object_add (b, "backup_id", e->boot_backup ? json_object_new_string (e->boot_backup) : NULL);
      }
      json_object_object_add (o, "last_boot_check", b);
      json_object_object_add (o, "max_age_s", json_object_new_int64 (e->max_age_s));
      json_object_object_add (o, "health", json_object_new_string (health_name[e->health]));
      json_object_array_add (list, o);
    }
    json_object_object_add (out, "components", list);
    json_object_object_add (out, "health", json_object_new_string (
                              worst == H_NEVER ? "critical" : health_name[worst]));
    json_object_object_add (out, "exit_code", json_object_new_int (rc));
    cli_print_json (out);
  }
  else {
    char b[32];
    printf ("%-12s %-24s %-9s %-10s %-16s %-11s %10s  %s\n", "JOB", "COMPONENT",
            "HEALTH", "AGE", "METHOD", "TYPE", "SIZE", "BACKUP");
    for (size_t i = 0; i < st.n; i++) {
      const struct entry *e = &st.e[i];
      char age[32] = "-", what[300];
      if (e->backup_id) {
        int64_t a = now - e->time;
        if (a >= 86400) snprintf (age, sizeof age, "%" PRId64 "d%" PRId64 "h", a / 86400, a % 86400 / 3600);
        else if (a >= 3600) snprintf (age, sizeof age, "%" PRId64 "h%" PRId64 "m", a / 3600, a % 3600 / 60);
        else snprintf (age, sizeof age, "%" PRId64 "s", a);
      }
      snprintf (what, sizeof what, "%s%s%s", e->writer ? e->writer : "",
                e->writer ? ":" : "", e->component ? e->component : "(nothing yet)");
      printf ("%-12s %-24s %-9s %-10s %-16s %-11s %10s  %s\n", cli_text (e->job),
              cli_text (what), health_name[e->health], age,
              e->backup_id ? cli_text (e->method ? e->method : "-") : "-",
              e->backup_id ? (e->incremental ? "incremental" : "full") : "-",
              e->backup_id ? cli_bytes (e->size, b) : "-",
              e->backup_id ? cli_text (e->backup_id) : "-");
    }
    for (size_t i = 0; i < c->nr_jobs; i++) {
      const struct entry *e = NULL;
      for (size_t k = 0; k < st.n && e == NULL; k++)
        if (strcmp (st.e[k].job, c->jobs[i].name) == 0)
          e = &st.e[k];
      if (e == NULL || e->verify_time == 0) {
        printf ("Last verify of job %s: never\n", cli_text (c->jobs[i].name));
        continue;
      }
      char when[64];
      time_t vt = (time_t) e->verify_time;
      strftime (when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime (&vt));
      printf ("Last verify of job %s: %s%s, %s\n", cli_text (c->jobs[i].name), when,
              e->verify_deep ? " (deep)" : "", e->verify_ok ? "ok" : "FAILED");
    }
  }
 out:
  for (size_t i = 0; i < st.n; i++) {
    free (st.e[i].writer); free (st.e[i].component); free (st.e[i].caption);
    free (st.e[i].backup_id); free (st.e[i].method); free (st.e[i].boot_backup);
  }
  free (st.e);
  vms_config_free (c);
  return rc;
}

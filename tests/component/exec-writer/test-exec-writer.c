/* Component test of the exec writer (writers/exec) through the real
 * coordinator: shell scripts written into a temp dir act as writers, log
 * the events they get and the input they read, and misbehave on purpose.
 * Each case asserts what an administrator would see: session and writer
 * states, failure kinds and phases, messages naming the executable, the
 * exact event sequence (R2, R6), time-outs that kill the whole process
 * group (R3), and attributes added to components (R5). TAP output. */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "exec-writer.h"
#include "log.h"
#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"
#include "tap.h"

static char top[] = "/tmp/vmshadow-exec-writer-XXXXXX";


static void
diag (const char *fmt, ...)
{
  va_list ap;
  printf ("# ");
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  printf ("\n");
}

static int
contains (const char *s, const char *needle)
{
  return s != NULL && strstr (s, needle) != NULL;
}

/* ---- files and scripts ---- */

static char *
new_dir (const char *name)
{
  char *d;
  if (asprintf (&d, "%s/%s", top, name) == -1 || mkdir (d, 0755) == -1) {
    perror (name);
    exit (1);
  }
  return d;
}

static void
write_file (const char *path, const char *text, mode_t mode)
{
  FILE *fp = fopen (path, "w");
  if (fp == NULL || fputs (text, fp) == EOF || fclose (fp) == EOF ||
      chmod (path, mode) == -1) {
    perror (path);
    exit (1);
  }
}

static char *
read_text (const char *path)
{
  FILE *fp = fopen (path, "r");
  char *buf = NULL;
  size_t len = 0;
  if (fp == NULL)
    return strdup ("");
  if (getdelim (&buf, &len, '\0', fp) == -1) {
    free (buf);
    buf = strdup ("");
  }
  fclose (fp);
  return buf;
}

/* The events a script logged, one line each, as "a b c". */
static char *
read_events (const char *dir, const char *script)
{
  char path[4096];
  snprintf (path, sizeof path, "%s/%s.log", dir, script);
  char *t = read_text (path);
  size_t n = strlen (t);
  while (n > 0 && t[n - 1] == '\n') t[--n] = '\0';
  for (char *p = t; *p; p++)
    if (*p == '\n') *p = ' ';
  return t;
}

static json_object *
read_input (const char *dir, const char *script, const char *event)
{
  char path[4096];
  snprintf (path, sizeof path, "%s/%s.%s.in", dir, script, event);
  return json_object_from_file (path);
}

static const char *
jstr (json_object *o, const char *dotted)
{
  char key[256];
  const char *p = dotted;
  while (o && *p) {
    size_t n = strcspn (p, ".");
    snprintf (key, sizeof key, "%.*s", (int) n, p);
    if (json_object_is_type (o, json_type_array))
      o = json_object_array_get_idx (o, (size_t) atoi (key));
    else if (!json_object_object_get_ex (o, key, &o))
      return NULL;
    p += n;
    if (*p == '.') p++;
  }
  return o ? json_object_get_string (o) : NULL;
}

/* A writer script. `cases` are extra shell case branches, tried before the
 * default ones; the default identify prints a metadata document with one
 * component "db" (no files, so no provider is needed). */
static void
make_writer (const char *dir, const char *file, const char *name,
             const char *id, const char *cases)
{
  char path[4096], *text;
  snprintf (path, sizeof path, "%s/%s", dir, file);
  if (asprintf (&text,
    "#!/bin/sh\n"
    "D='%s'; F='%s'\n"
    "ev=\"$1\"\n"
    "cat > \"$D/$F.$ev.in\"\n"
    "echo \"$VMSHADOW_EVENT|$VMSHADOW_SESSION_ID|$VMSHADOW_SESSION_TYPE|$VMSHADOW_PROTOCOL|$(pwd)\" > \"$D/$F.$ev.env\"\n"
    "echo \"$ev\" >> \"$D/$F.log\"\n"
    "case \"$ev\" in\n"
    "%s\n"
    "identify)\n"
    "  cat <<'EOF'\n"
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,\n"
    " \"writer\": {\"name\": \"%s\", \"id\": \"%s\"},\n"
    " \"components\": [{\"name\": \"db\", \"caption\": \"test data\",\n"
    "                   \"files\": [], \"attributes\": {\"engine\": \"test\"}}]}\n"
    "EOF\n"
    "  ;;\n"
    "esac\n"
    "exit 0\n", dir, file, cases ? cases : "", name, id) == -1)
    exit (1);
  write_file (path, text, 0755);
  free (text);
}

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void) st; (void) flag; (void) ftw;
  remove (path);
  return 0;
}

/* ---- running sessions ---- */

struct outcome {
  int load;                     /* vms_exec_writers_load result */
  int rc;                       /* result of the failing (or last) step */
  enum vms_session_state state; /* before free */
  int failed;
  struct vms_session_failure f;
  char culprit[256], message[2048];
  size_t nr;
  struct {
    char name[256], message[2048];
    enum vms_writer_state state;
    enum vms_event failed_at;
    enum vms_failure failure;
  } w[4];
  int64_t snapshot_ms;          /* how long do_snapshot_set took */
  vms_document *bcd;            /* copy, for restores */
  vms_document *md[4];
  size_t nr_md;
};

static void
outcome_free (struct outcome *o)
{
  vms_document_free (o->bcd);
  for (size_t i = 0; i < o->nr_md; i++)
    vms_document_free (o->md[i]);
}

static void
take_status (vms_session *s, struct outcome *o)
{
  o->state = vms_session_state (s);
  o->failed = vms_session_failure (s, &o->f) == 0;
  if (o->failed) {
    snprintf (o->culprit, sizeof o->culprit, "%s", o->f.culprit ? o->f.culprit : "");
    snprintf (o->message, sizeof o->message, "%s", o->f.message ? o->f.message : "");
  }
  o->nr = vms_session_writer_count (s);
  for (size_t i = 0; i < o->nr && i < 4; i++) {
    struct vms_writer_status st;
    vms_session_writer_status (s, i, &st);
    snprintf (o->w[i].name, sizeof o->w[i].name, "%s", st.name);
    snprintf (o->w[i].message, sizeof o->w[i].message, "%s",
              st.message ? st.message : "");
    o->w[i].state = st.state;
    o->w[i].failed_at = st.failed_at;
    o->w[i].failure = st.failure;
  }
}

/* A whole backup of the exec writers in dir: identify, prepare_backup,
 * do_snapshot_set, backup_complete, free; stops at the first failure. */
static void
run_backup (const char *dir, uint32_t freeze_budget_ms, struct outcome *o)
{
  struct vms_exec_writer_options opts = { .freeze_budget_ms = freeze_budget_ms };
  vms_coordinator *coord = vms_coordinator_new ();
  vms_session *s;

  memset (o, 0, sizeof *o);
  o->load = vms_exec_writers_load_with (coord, dir, &opts);
  s = vms_backup_session_new (coord, "test-backup-1");
  if (s == NULL) {
    diag ("cannot make a session: %s", vms_get_error ());
    exit (1);
  }
  o->rc = vms_session_identify (s);
  if (o->rc == 0)
    o->rc = vms_session_prepare_backup (s);
  if (o->rc == 0) {
    int64_t t0 = vms_now_ms ();
    o->rc = vms_session_do_snapshot_set (s);
    o->snapshot_ms = vms_now_ms () - t0;
  }
  if (o->rc == 0)
    o->rc = vms_session_backup_complete (s, 1);
  take_status (s, o);
  if (o->rc == 0) {
    o->bcd = vms_document_copy (vms_session_components (s));
    for (size_t i = 0; i < vms_session_metadata_count (s) && i < 4; i++)
      o->md[o->nr_md++] = vms_document_copy (vms_session_metadata (s, i));
  }
  vms_session_free (s);
  vms_coordinator_free (coord);
}

/* ---- the cases ---- */

static void
test_success_and_restore (void)
{
  char *d = new_dir ("success");
  struct outcome o;

  diag ("backup-runs-every-event-in-r2-order");
  make_writer (d, "10-alpha", "alpha-db", "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a01",
    "post-snapshot)\n"
    "  echo '{\"components\": {\"db\": {\"attributes\": "
    "{\"lsn\": \"0/16B3748\", \"pages\": 42, \"clean\": true}}}}'\n"
    "  ;;\n"
    "backup-complete)\n"
    "  echo '{\"components\": {\"db\": {\"attributes\": {\"late\": \"no\"}}}}'\n"
    "  ;;\n"
    "post-restore)\n"
    "  grep -q '\"restore_status\":\"all\"' \"$D/$F.$ev.in\" && exit 0\n"
    "  echo '{\"failure\": \"non-retryable\", \"message\": \"db was not restored\"}'\n"
    "  exit 1\n"
    "  ;;\n");
  make_writer (d, "20-beta", "beta-db", "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a02",
    "post-restore)\n"
    "  grep -q '\"restore_status\":\"all\"' \"$D/$F.$ev.in\" && exit 0\n"
    "  echo 'checking restored files' >&2\n"
    "  echo '{\"failure\": \"non-retryable\", \"message\": \"db was not restored\"}'\n"
    "  exit 1\n"
    "  ;;\n");
  /* Files the loader must skip. */
  char p[4096];
  snprintf (p, sizeof p, "%s/30-not-executable", d);
  write_file (p, "#!/bin/sh\nexit 1\n", 0644);
  snprintf (p, sizeof p, "%s/.hidden", d);
  write_file (p, "#!/bin/sh\nexit 1\n", 0755);
  snprintf (p, sizeof p, "%s/10-alpha~", d);
  write_file (p, "#!/bin/sh\nexit 1\n", 0755);
  snprintf (p, sizeof p, "%s/40-world-writable", d);
  write_file (p, "#!/bin/sh\nexit 1\n", 0777);
  snprintf (p, sizeof p, "%s/50-dir", d);
  mkdir (p, 0755);

  run_backup (d, 0, &o);
  ok (o.load == 2, "two writers are loaded; non-executables, dotfiles, backups, "
      "world-writable files and directories are skipped (got %d)", o.load);
  ok (o.rc == 0 && !o.failed, "the backup succeeds%s%s", o.failed ? ": " : "",
      o.failed ? o.message : "");
  ok (o.state == VMS_SESSION_COMPLETED, "the session is completed (%s)",
      vms_session_state_name (o.state));
  ok (o.nr == 2 && strcmp (o.w[0].name, "alpha-db") == 0 &&
      strcmp (o.w[1].name, "beta-db") == 0,
      "writers are in name order and named by their metadata (%s, %s)",
      o.w[0].name, o.w[1].name);
  ok (o.w[0].state == VMS_WRITER_STABLE && o.w[1].state == VMS_WRITER_STABLE,
      "both writers end stable");

  const char *want = "identify prepare-backup prepare-snapshot freeze thaw "
    "post-snapshot backup-complete backup-shutdown";
  char *ev = read_events (d, "10-alpha");
  ok (strcmp (ev, want) == 0, "alpha got exactly the R2 sequence: %s", ev);
  free (ev);
  ev = read_events (d, "20-beta");
  ok (strcmp (ev, want) == 0, "beta got exactly the R2 sequence: %s", ev);
  free (ev);

  /* What the executable saw. */
  json_object *in = read_input (d, "10-alpha", "freeze");
  ok (in && contains (jstr (in, "event"), "freeze") &&
      strcmp (jstr (in, "session_id"), "test-backup-1") == 0 &&
      strcmp (jstr (in, "session_type"), "backup") == 0 &&
      strcmp (jstr (in, "protocol"), "1") == 0 &&
      strcmp (jstr (in, "writer.id"), "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a01") == 0 &&
      strcmp (jstr (in, "metadata.format"), "vmshadow-writer-metadata") == 0 &&
      strcmp (jstr (in, "components.0.name"), "db") == 0 &&
      strcmp (jstr (in, "components.0.attributes.engine"), "test") == 0 &&
      atoll (jstr (in, "budget_ms")) > 50000 &&
      atoll (jstr (in, "budget_ms")) <= 60000,
      "stdin of freeze carries event, session, writer, metadata, components "
      "and the budget (%s ms)", in ? jstr (in, "budget_ms") : "?");
  json_object_put (in);
  snprintf (p, sizeof p, "%s/10-alpha.freeze.env", d);
  char *env = read_text (p);
  ok (strcmp (env, "freeze|test-backup-1|backup|1|/\n") == 0,
      "VMSHADOW_EVENT, _SESSION_ID, _SESSION_TYPE, _PROTOCOL are set and cwd is /");
  free (env);
  in = read_input (d, "10-alpha", "backup-shutdown");
  ok (in && contains (jstr (in, "components.0.attributes.lsn"), "0/16B3748"),
      "attributes added at post-snapshot show in later input");
  json_object_put (in);

  /* R5: attributes from post-snapshot are in the document, later ones not. */
  vms_component *c = o.bcd
    ? vms_document_find_component (o.bcd, "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a01", "db")
    : NULL;
  ok (c && contains (vms_component_get_string (c, "lsn"), "0/16B3748") &&
      vms_component_get_int (c, "pages", -1) == 42 &&
      vms_component_get_int (c, "clean", -1) == 1,
      "attributes the reply added at post-snapshot are in the backup components document");
  ok (c && vms_component_get_string (c, "late") == NULL,
      "attributes a reply adds after post-snapshot are ignored (R5)");

  /* Restore from the stored documents (R6). */
  diag ("restore-runs-pre-restore-then-post-restore");
  if (o.bcd == NULL) {
    ok (0, "# the backup failed: no restore");
    outcome_free (&o);
    free (d);
    return;
  }
  vms_coordinator *coord = vms_coordinator_new ();
  int loaded = vms_exec_writers_load (coord, d);
  vms_session *s = vms_restore_session_new (coord, o.bcd,
                                            (const vms_document *const *) o.md,
                                            o.nr_md);
  ok (loaded == 2 && s != NULL, "a restore session is made from the stored documents");
  int rc = s ? vms_session_pre_restore (s) : -1;
  ok (rc == 0, "pre-restore succeeds%s%s", rc ? ": " : "", rc ? vms_get_error () : "");
  rc = vms_session_set_restore_status (s, "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a01",
                                       "db", VMS_RESTORE_ALL) |
       vms_session_set_restore_status (s, "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a02",
                                       "db", VMS_RESTORE_FAILED);
  rc = vms_session_post_restore (s);
  take_status (s, &o);
  ok (rc == -1 && o.w[0].state == VMS_WRITER_STABLE &&
      o.w[1].state == VMS_WRITER_FAILED &&
      o.w[1].failed_at == VMS_EVENT_POST_RESTORE &&
      o.w[1].failure == VMS_FAILURE_NON_RETRYABLE,
      "post-restore: alpha (status all) succeeds, beta (status failed) vetoes");
  snprintf (p, sizeof p, "%s/20-beta", d);
  ok (contains (o.w[1].message, p) && contains (o.w[1].message, "db was not restored") &&
      contains (o.w[1].message, "exited with status 1") &&
      contains (o.w[1].message, "checking restored files"),
      "the veto message names the executable, its reply and its stderr: %s",
      o.w[1].message);
  vms_session_free (s);
  vms_coordinator_free (coord);

  ev = read_events (d, "10-alpha");
  ok (strcmp (ev, "identify prepare-backup prepare-snapshot freeze thaw "
              "post-snapshot backup-complete backup-shutdown "
              "identify pre-restore post-restore") == 0,
      "restore sent identify, pre-restore, post-restore: %s", ev);
  free (ev);
  in = read_input (d, "10-alpha", "post-restore");
  ok (in && strcmp (jstr (in, "session_type"), "restore") == 0 &&
      strcmp (jstr (in, "components.0.restore_status"), "all") == 0 &&
      contains (jstr (in, "components.0.attributes.engine"), "test"),
      "post-restore input has the restore status and the metadata's attributes");
  /* Listed from the session's component (vms_component_format), also in a
   * restore run by a new process (issue 10). */
  ok (in && contains (jstr (in, "components.0.attributes.lsn"), "0/16B3748"),
      "post-restore input has the attributes added during the backup");
  json_object_put (in);

  outcome_free (&o);
  free (d);
}

static void
test_freeze_overrun (void)
{
  char *d = new_dir ("overrun");
  struct outcome o;
  char p[4096];

  diag ("freeze-overrun-is-killed-and-aborts-the-set");
  make_writer (d, "10-hang", "hang", "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a11",
    "freeze)\n"
    "  sleep 60 &\n"
    "  echo $! > \"$D/grandchild.pid\"\n"
    "  echo 'waiting for the table lock' >&2\n"
    "  sleep 60\n"
    "  ;;\n");
  make_writer (d, "20-fine", "fine", "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a12", NULL);
  run_backup (d, 1500, &o);

  ok (o.rc == -1 && o.state == VMS_SESSION_ABORTED,
      "the snapshot set fails and the session is aborted (%s)",
      vms_session_state_name (o.state));
  ok (o.snapshot_ms >= 1200 && o.snapshot_ms < 5000,
      "the freeze is cut off at its 1500 ms budget (the set took %lld ms)",
      (long long) o.snapshot_ms);
  ok (o.failed && o.f.phase == VMS_EVENT_FREEZE && o.f.kind == VMS_FAILURE_TIMEOUT &&
      strcmp (o.culprit, "hang") == 0,
      "the session failed at freeze with a time-out by \"hang\" (%s, %s, %s)",
      vms_event_name (o.f.phase), vms_failure_name (o.f.kind), o.culprit);
  ok (o.w[0].state == VMS_WRITER_FAILED && o.w[0].failed_at == VMS_EVENT_FREEZE &&
      o.w[0].failure == VMS_FAILURE_TIMEOUT,
      "hang's state is %s, kind %s",
      vms_writer_state_name (o.w[0].state, o.w[0].failed_at),
      vms_failure_name (o.w[0].failure));
  snprintf (p, sizeof p, "%s/10-hang", d);
  ok (contains (o.w[0].message, p) && contains (o.w[0].message, "timed out") &&
      contains (o.w[0].message, "waiting for the table lock"),
      "the message names the executable, says it timed out, and quotes stderr: %s",
      o.w[0].message);
  ok (o.w[1].state == VMS_WRITER_STABLE, "the other writer is back to stable");

  char *ev = read_events (d, "10-hang");
  ok (strcmp (ev, "identify prepare-backup prepare-snapshot freeze abort "
              "backup-shutdown") == 0,
      "hang got freeze, then abort and backup-shutdown: %s", ev);
  free (ev);
  ev = read_events (d, "20-fine");
  ok (strcmp (ev, "identify prepare-backup prepare-snapshot freeze abort "
              "backup-shutdown") == 0,
      "the other writer got abort and backup-shutdown too: %s", ev);
  free (ev);

  snprintf (p, sizeof p, "%s/grandchild.pid", d);
  char *pidtext = read_text (p);
  int gpid = atoi (pidtext);
  free (pidtext);
  int gone = 0;
  for (int i = 0; i < 100 && gpid > 0 && !gone; i++) {
    char proc[64], *stat;
    snprintf (proc, sizeof proc, "/proc/%d/stat", gpid);
    stat = read_text (proc);
    const char *rp = strrchr (stat, ')');
    gone = stat[0] == '\0' || (rp && (rp[2] == 'Z' || rp[2] == 'X'));
    free (stat);
    if (!gone) usleep (20000);
  }
  ok (gpid > 0 && gone, "the executable's own child (pid %d) was killed with it", gpid);
  if (gpid > 0 && !gone) kill (gpid, SIGKILL);
  outcome_free (&o);
  free (d);
}

/* One writer that fails at `event` with the given shell body; a second one
 * that behaves. Checks phase, kind, message, and that both got Abort and
 * BackupShutdown. */
static void
check_veto (const char *label, const char *event, const char *body,
            enum vms_failure want_kind, const char *want_msg,
            const char *want_events)
{
  char *d = new_dir (label);
  char cases[4096], p[4096];
  struct outcome o;

  diag ("%s", label);
  snprintf (cases, sizeof cases, "%s)\n%s\n  ;;\n", event, body);
  make_writer (d, "10-bad", "bad", "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a21", cases);
  make_writer (d, "20-good", "good", "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a22", NULL);
  run_backup (d, 0, &o);

  enum vms_event ev = (enum vms_event) vms_event_from_name (event);
  ok (o.rc == -1 && o.state == VMS_SESSION_ABORTED && o.failed &&
      o.f.phase == ev && o.f.kind == want_kind && strcmp (o.culprit, "bad") == 0,
      "%s: the set is aborted at %s, kind %s (got %s, %s, by %s)", label, event,
      vms_failure_name (want_kind), vms_event_name (o.f.phase),
      vms_failure_name (o.f.kind), o.culprit);
  ok (o.w[0].state == VMS_WRITER_FAILED && o.w[0].failed_at == ev &&
      o.w[0].failure == want_kind,
      "%s: the writer's state is %s", label,
      vms_writer_state_name (o.w[0].state, o.w[0].failed_at));
  snprintf (p, sizeof p, "%s/10-bad", d);
  ok (contains (o.w[0].message, p) && contains (o.w[0].message, want_msg),
      "%s: the message names the executable and says \"%s\": %s", label,
      want_msg, o.w[0].message);
  char *got = read_events (d, "10-bad");
  ok (strcmp (got, want_events) == 0, "%s: events %s", label, got);
  free (got);
  got = read_events (d, "20-good");
  ok (contains (got, "abort backup-shutdown"),
      "%s: the other writer got abort and backup-shutdown: %s", label, got);
  free (got);
  outcome_free (&o);
  free (d);
}

/* A writer whose identify misbehaves: the session stops at identify with a
 * message naming the executable. */
static void
check_bad_identify (const char *label, const char *body, const char *want_msg)
{
  char *d = new_dir (label);
  char cases[8192], p[4096];
  struct outcome o;

  diag ("%s", label);
  snprintf (cases, sizeof cases, "identify)\n%s\n  ;;\n", body);
  make_writer (d, "10-broken", "broken", "6a0c1f52-3b1e-4b43-9d39-1f7e0c6a7a31", cases);
  run_backup (d, 0, &o);
  snprintf (p, sizeof p, "%s/10-broken", d);
  ok (o.load == 1 && o.rc == -1 && o.failed && o.f.phase == VMS_EVENT_IDENTIFY &&
      o.w[0].state == VMS_WRITER_FAILED && o.w[0].failed_at == VMS_EVENT_IDENTIFY,
      "%s: the backup stops at identify (%s)", label,
      vms_writer_state_name (o.w[0].state, o.w[0].failed_at));
  ok (contains (o.w[0].message, p) && contains (o.w[0].message, want_msg),
      "%s: the message names the executable and says \"%s\": %s", label,
      want_msg, o.w[0].message);
  char *got = read_events (d, "10-broken");
  ok (strcmp (got, "identify backup-shutdown") == 0,
      "%s: no event but backup-shutdown follows: %s", label, got);
  free (got);
  outcome_free (&o);
  free (d);
}

static void
test_missing_directory (void)
{
  char path[4096];
  vms_coordinator *coord = vms_coordinator_new ();

  diag ("missing-writers-directory");
  snprintf (path, sizeof path, "%s/no-such-dir", top);
  vms_clear_error ();
  int r = vms_exec_writers_load (coord, path);
  ok (r == -1 && contains (vms_get_error (), path),
      "a named directory that does not exist is an error naming it: %s",
      vms_get_error () ? vms_get_error () : "(none)");

  setenv (VMS_EXEC_WRITERS_DIR_ENV, path, 1);
  vms_clear_error ();
  r = vms_exec_writers_load (coord, NULL);
  ok (r == -1 && contains (vms_get_error (), path) &&
      contains (vms_get_error (), VMS_EXEC_WRITERS_DIR_ENV),
      "so is one set by VMSHADOW_WRITERS_DIR, and the message says so: %s",
      vms_get_error () ? vms_get_error () : "(none)");
  unsetenv (VMS_EXEC_WRITERS_DIR_ENV);

  struct stat st;
  if (stat (VMS_EXEC_WRITERS_DIR, &st) == -1 && errno == ENOENT) {
    r = vms_exec_writers_load (coord, NULL);
    ok (r == 0 && vms_coordinator_writer_count (coord) == 0,
        "the default directory may be missing: no exec writers, no error");
  }
  else
    ok (1, "# SKIP %s exists on this host", VMS_EXEC_WRITERS_DIR);

  char *d = new_dir ("empty");
  r = vms_exec_writers_load (coord, d);
  ok (r == 0 && vms_coordinator_writer_count (coord) == 0,
      "an empty directory gives no writers");
  free (d);
  vms_coordinator_free (coord);
}

/* ---- the table of cases: `test-exec-writer NAME` runs one ---- */

struct test_case {
  const char *name;
  void (*fn) (const struct test_case *);
  const char *event, *body;     /* check_veto, check_bad_identify */
  enum vms_failure kind;
  const char *msg, *events;
};

static void
run_veto (const struct test_case *t)
{
  check_veto (t->name, t->event, t->body, t->kind, t->msg, t->events);
}

static void
run_bad_identify (const struct test_case *t)
{
  check_bad_identify (t->name, t->body, t->msg);
}

static void run_success (const struct test_case *t) { (void) t; test_success_and_restore (); }
static void run_overrun (const struct test_case *t) { (void) t; test_freeze_overrun (); }
static void run_missing (const struct test_case *t) { (void) t; test_missing_directory (); }

#define MD_HEAD "  echo '{\"format\": \"vmshadow-writer-metadata\", \"version\": 1, "

#define PLAIN(n, f) { .name = (n), .fn = (f) }
#define VETO(n, ev, b, k, m, evs) \
  { .name = (n), .fn = run_veto, .event = (ev), .body = (b), .kind = (k), \
    .msg = (m), .events = (evs) }
#define BAD_IDENTIFY(n, b, m) \
  { .name = (n), .fn = run_bad_identify, .body = (b), .msg = (m) }

static const struct test_case cases[] = {
  PLAIN ("backup-and-restore-send-events-in-r2-r6-order", run_success),
  PLAIN ("freeze-overrun-is-killed-as-timeout-and-aborts-the-set", run_overrun),
  VETO ("veto-exit-75-is-retryable", "prepare-snapshot",
    "  echo 'database is locked' >&2; exit 75",
    VMS_FAILURE_RETRYABLE, "exited with status 75",
    "identify prepare-backup prepare-snapshot abort backup-shutdown"),
  VETO ("veto-exit-3-is-non-retryable", "thaw", "  exit 3",
    VMS_FAILURE_NON_RETRYABLE, "exited with status 3",
    "identify prepare-backup prepare-snapshot freeze thaw abort backup-shutdown"),
  VETO ("veto-reply-names-the-kind-and-message", "prepare-backup",
    "  echo '{\"failure\": \"out-of-resources\", \"message\": \"spool disk full\"}'; exit 1",
    VMS_FAILURE_OUT_OF_RESOURCES, "spool disk full",
    "identify prepare-backup abort backup-shutdown"),
  VETO ("veto-reply-kind-overrides-exit-code", "post-snapshot",
    "  echo '{\"failure\": \"retryable\", \"message\": \"replica lagging\"}'; exit 2",
    VMS_FAILURE_RETRYABLE, "replica lagging",
    "identify prepare-backup prepare-snapshot freeze thaw post-snapshot abort backup-shutdown"),
  VETO ("crash-is-non-retryable", "freeze",
    "  echo 'about to crash' >&2; kill -SEGV $$",
    VMS_FAILURE_NON_RETRYABLE, "crashed (signal 11",
    "identify prepare-backup prepare-snapshot freeze abort backup-shutdown"),
  VETO ("exit-0-with-garbage-on-stdout-is-a-protocol-error", "prepare-backup",
    "  echo 'all good!'; exit 0",
    VMS_FAILURE_NON_RETRYABLE, "not a JSON object",
    "identify prepare-backup abort backup-shutdown"),
  VETO ("reply-attribute-of-bad-type-is-a-protocol-error", "prepare-snapshot",
    "  echo '{\"components\": {\"db\": {\"attributes\": {\"x\": [1]}}}}'",
    VMS_FAILURE_NON_RETRYABLE, "must be a string, an integer or a boolean",
    "identify prepare-backup prepare-snapshot abort backup-shutdown"),
  BAD_IDENTIFY ("identify-malformed-json-is-rejected",
    "  echo '{\"format\": \"vmshadow-writer-metadata\", '", "malformed metadata document"),
  BAD_IDENTIFY ("identify-relative-file-path-is-rejected",
    MD_HEAD "\"writer\": {\"name\": \"x\", \"id\": \"u\"}, \"components\": "
    "[{\"name\": \"c\", \"files\": [{\"path\": \"data.db\", \"kind\": \"plain\"}]}]}'", "must be an absolute path"),
  BAD_IDENTIFY ("identify-without-writer-id-is-rejected",
    MD_HEAD "\"writer\": {\"name\": \"x\"}, \"components\": []}'", "no writer id"),
  BAD_IDENTIFY ("identify-printing-nothing-is-rejected", "  :", "printed no metadata document"),
  BAD_IDENTIFY ("identify-printing-garbage-is-rejected",
    "  echo 'hello, world'", "malformed metadata document"),
  BAD_IDENTIFY ("identify-printing-binary-is-rejected",
    "  head -c 300 /dev/urandom", "malformed metadata document"),
  BAD_IDENTIFY ("identify-output-over-1-mib-is-rejected",
    "  yes | head -c 3000000", "more than 1048576 bytes"),
  BAD_IDENTIFY ("identify-exiting-non-zero-is-rejected",
    "  echo 'config file missing' >&2; exit 2", "exited with status 2"),
  BAD_IDENTIFY ("identify-crashing-is-rejected",
    "  kill -SEGV $$", "signal 11"),
  PLAIN ("missing-writers-directory-is-an-error-unless-default", run_missing),
};

int
main (int argc, char *argv[])
{
  size_t n = sizeof cases / sizeof cases[0];
  int found = 0;

  /* A writer that does not read its stdin must not kill us with SIGPIPE. */
  signal (SIGPIPE, SIG_DFL);
  if (argc > 1 && strcmp (argv[1], "--list") == 0) {
    for (size_t i = 0; i < n; i++)
      printf ("%s\n", cases[i].name);
    return 0;
  }
  if (mkdtemp (top) == NULL) {
    perror ("mkdtemp");
    return 1;
  }
  for (size_t i = 0; i < n; i++)
    if (argc < 2 || strcmp (argv[1], cases[i].name) == 0) {
      found = 1;
      cases[i].fn (&cases[i]);
    }
  nftw (top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  if (!found) {
    fprintf (stderr, "test-exec-writer: no test named %s (see --list)\n", argv[1]);
    return 1;
  }
  return tap_done ();
}

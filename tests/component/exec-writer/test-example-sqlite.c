/* The example exec writer examples/writers.d/sqlite, run for real: a temp
 * SQLite database is backed up through the coordinator and the file
 * provider, the point-in-time copy is checked and kept, the live database
 * is changed, and a restore puts the backed-up content back (R2, R5, R6).
 * A restore whose files were not all written must leave the database
 * alone (R17). Skips (exit 77) without sqlite3. TAP output.
 *
 * Usage: test-example-sqlite PATH-OF-THE-EXAMPLE */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec-writer.h"
#include "file-provider.h"
#include "subprocess.h"
#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"
#include "tap.h"

#define SQLITE_WRITER_ID "3f0b6a0e-5c2d-4e8e-9a51-7d2f0c1b9e47"

static char top[] = "/tmp/vmshadow-example-sqlite-XXXXXX";


static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void) st; (void) flag; (void) ftw;
  remove (path);
  return 0;
}

/* Run sqlite3 on db with one SQL statement; returns its trimmed stdout
 * (caller frees) or NULL if it failed. */
static char *
sql (const char *db, const char *statement)
{
  const char *argv[] = { "sqlite3", "-batch", db, statement, NULL };
  struct vms_subprocess_options o = { .argv = argv, .timeout_ms = 20000 };
  struct vms_subprocess_result r = { 0 };
  char *out = NULL;

  if (vms_subprocess_run (&o, &r) == 0 && vms_subprocess_succeeded (&r)) {
    while (r.out_len > 0 && r.out[r.out_len - 1] == '\n')
      r.out[--r.out_len] = '\0';
    out = strdup (r.out);
  }
  else
    fprintf (stderr, "sqlite3 %s \"%s\" failed: %s\n", db, statement,
             r.err ? r.err : vms_get_error ());
  vms_subprocess_result_reset (&r);
  return out;
}

static int
sql_is (const char *db, const char *statement, const char *want)
{
  char *got = sql (db, statement);
  int same = got && strcmp (got, want) == 0;
  if (!same)
    printf ("# %s: \"%s\" gave \"%s\", not \"%s\"\n", db, statement,
            got ? got : "(failed)", want);
  free (got);
  return same;
}

static int
copy_file (const char *from, const char *to)
{
  const char *argv[] = { "cp", "--", from, to, NULL };
  struct vms_subprocess_options o = { .argv = argv, .timeout_ms = 20000 };
  struct vms_subprocess_result r = { 0 };
  int rc = vms_subprocess_run (&o, &r) == 0 && vms_subprocess_succeeded (&r) ? 0 : -1;
  vms_subprocess_result_reset (&r);
  return rc;
}

static int
access_path_gone (const char *path)
{
  return access (path, F_OK) == -1;
}

static int
have_sqlite3 (void)
{
  const char *argv[] = { "sqlite3", "-version", NULL };
  struct vms_subprocess_options o = { .argv = argv, .timeout_ms = 10000 };
  struct vms_subprocess_result r = { 0 };
  int found = vms_subprocess_run (&o, &r) == 0 && vms_subprocess_succeeded (&r);
  vms_subprocess_result_reset (&r);
  return found;
}

/* A restore of the saved copy with the given file restore status; returns
 * the post-restore result and the writer's message. */
static int
restore (const char *example, const char *saved, const char *spool_copy,
         const vms_document *bcd, const vms_document *md,
         enum vms_restore_status status, char *msg, size_t msglen)
{
  vms_coordinator *coord = vms_coordinator_new ();
  vms_session *s;
  int rc = -1;

  msg[0] = '\0';
  if (vms_exec_writer_add (coord, example, NULL) == -1 ||
      (s = vms_restore_session_new (coord, bcd, &md, 1)) == NULL) {
    snprintf (msg, msglen, "%s", vms_get_error ());
    vms_coordinator_free (coord);
    return -1;
  }
  if (vms_session_pre_restore (s) == 0 &&
      /* The requester writes the files back (here: only when "all"). */
      (status != VMS_RESTORE_ALL || copy_file (saved, spool_copy) == 0) &&
      vms_session_set_restore_status (s, SQLITE_WRITER_ID, "app.db", status) == 0)
    rc = vms_session_post_restore (s);
  struct vms_writer_status st;
  if (vms_session_writer_status (s, 0, &st) == 0 && st.message)
    snprintf (msg, msglen, "%s", st.message);
  else if (rc == -1 && vms_get_error ())
    snprintf (msg, msglen, "%s", vms_get_error ());
  vms_session_free (s);
  vms_coordinator_free (coord);
  return rc;
}

int
main (int argc, char *argv[])
{
  char db[512], spool[512], scratch[512], saved[512], spool_copy[600];
  char example[4096];

  if (argc != 2) {
    fprintf (stderr, "usage: test-example-sqlite PATH-OF-THE-EXAMPLE\n");
    return 1;
  }
  if (!have_sqlite3 ()) {
    printf ("1..0 # SKIP sqlite3 is not installed (apt-get install sqlite3)\n");
    return 77;
  }
  if (realpath (argv[1], example) == NULL) {
    perror (argv[1]);
    return 1;
  }
  if (mkdtemp (top) == NULL) {
    perror ("mkdtemp");
    return 1;
  }
  snprintf (db, sizeof db, "%s/app.db", top);
  snprintf (spool, sizeof spool, "%s/spool", top);
  snprintf (scratch, sizeof scratch, "%s/scratch", top);
  snprintf (saved, sizeof saved, "%s/saved.db", top);
  snprintf (spool_copy, sizeof spool_copy, "%s/app.db", spool);
  mkdir (scratch, 0700);
  setenv ("VMSHADOW_SQLITE_DATABASES", db, 1);
  setenv ("VMSHADOW_SQLITE_SPOOL", spool, 1);
  setenv ("VMSHADOW_SQLITE_CONF", "/nonexistent", 1);

  char *r = sql (db, "create table t (id integer primary key, v text);"
                 "with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000)"
                 " insert into t (v) select hex(randomblob(64)) from n;"
                 "select count(*) from t;");
  ok (r && strcmp (r, "1000") == 0, "a database with 1000 rows is made");
  free (r);

  /* ---- backup ---- */
  vms_coordinator *coord = vms_coordinator_new ();
  vms_session *s = NULL;
  int rc = vms_exec_writer_add (coord, example, NULL);
  if (rc == 0) rc = vms_file_provider_add (coord, scratch);
  if (rc == 0) rc = (s = vms_backup_session_new (coord, NULL)) ? 0 : -1;
  if (rc == 0) rc = vms_session_identify (s);
  ok (rc == 0, "the example identifies itself%s%s", rc ? ": " : "",
      rc ? vms_get_error () : "");
  if (rc == 0) rc = vms_session_prepare_backup (s);
  if (rc == 0) rc = vms_session_do_snapshot_set (s);
  ok (rc == 0, "prepare-backup and the snapshot set succeed%s%s", rc ? ": " : "",
      rc ? vms_get_error () : "");

  const char *access = rc == 0
    ? vms_session_file_access (s, SQLITE_WRITER_ID, "app.db", spool_copy) : NULL;
  ok (access != NULL, "the requester can read the component's file (%s)",
      access ? access : vms_get_error ());
  ok (access && sql_is (access, "pragma integrity_check", "ok") &&
      sql_is (access, "select count(*) from t", "1000"),
      "the point-in-time copy is a sound database with all 1000 rows");
  ok (access && copy_file (access, saved) == 0, "the requester stores the copy");

  const vms_document *bcd = s ? vms_session_components (s) : NULL;
  vms_component *c = bcd ? vms_document_find_component (bcd, SQLITE_WRITER_ID, "app.db") : NULL;
  ok (c && vms_component_get_int (c, "page_count", 0) > 1 &&
      vms_component_get_string (c, "sqlite_version") != NULL &&
      vms_component_get_string (c, "database") &&
      strcmp (vms_component_get_string (c, "database"), db) == 0,
      "the writer recorded the database, its page count and SQLite version (R5)");

  if (rc == 0) rc = vms_session_backup_complete (s, 1);
  ok (rc == 0, "backup-complete succeeds");
  vms_document *bcd_copy = s ? vms_document_copy (vms_session_components (s)) : NULL;
  vms_document *md_copy = s && vms_session_metadata_count (s) == 1
    ? vms_document_copy (vms_session_metadata (s, 0)) : NULL;
  vms_session_free (s);
  vms_coordinator_free (coord);
  ok (access_path_gone (spool_copy), "the spool copy is deleted when the session ends");

  /* ---- the database changes; then restores ---- */
  free (sql (db, "delete from t where id > 500"));
  ok (sql_is (db, "select count(*) from t", "500"), "the live database loses 500 rows");

  char msg[2048];
  rc = bcd_copy && md_copy
    ? restore (example, saved, spool_copy, bcd_copy, md_copy, VMS_RESTORE_FAILED,
               msg, sizeof msg)
    : -1;
  ok (rc == -1 && strstr (msg, "was not restored") && strstr (msg, example),
      "a restore whose files were not all written fails post-restore, naming the "
      "writer: %s", msg);
  ok (sql_is (db, "select count(*) from t", "500"),
      "and leaves the live database as it was");

  rc = bcd_copy && md_copy
    ? restore (example, saved, spool_copy, bcd_copy, md_copy, VMS_RESTORE_ALL,
               msg, sizeof msg)
    : -1;
  ok (rc == 0, "a restore with every file written succeeds%s%s", rc ? ": " : "", msg);
  ok (sql_is (db, "pragma integrity_check", "ok") &&
      sql_is (db, "select count(*) from t", "1000"),
      "the live database has its 1000 rows back and is sound");
  ok (access_path_gone (spool_copy), "the restored spool copy is removed");

  vms_document_free (bcd_copy);
  vms_document_free (md_copy);
  nftw (top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return tap_done ();
}

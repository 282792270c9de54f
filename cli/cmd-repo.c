/* The repository commands: list, show, verify, prune, gc, extract. Thin:
 * the work is in lib/repo and lib/datapath; here are the words. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "interrupt.h"
#include "log.h"
#include "vmshadow/config.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"
#include "vmshadow/requester.h"

static int
want_args (const char *cmd, int argc, int min, int max, const char *usage)
{
  if (argc < min || argc > max) {
    cli_error (cmd, EXIT_USAGE, "usage: vmshadow %s %s", cmd, usage);
    return -1;
  }
  return 0;
}

/* Local time of t; a time no calendar can show (the repository's word
 * only) as the number it is, never garbage (issue 9, item 9). */
static const char *
when (int64_t t, char buf[32])
{
  time_t tt = (time_t) t;
  struct tm tm;
  if ((int64_t) tt != t || localtime_r (&tt, &tm) == NULL ||
      strftime (buf, 32, "%Y-%m-%d %H:%M:%S", &tm) == 0)
    snprintf (buf, 32, "@%" PRId64, t);
  return buf;
}

/* Totals of a backup's files. */
static void
manifest_totals (const vms_manifest *m, uint64_t *size, uint64_t *stored)
{
  *size = *stored = 0;
  for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
    struct vms_stored_file f;
    uint64_t sz;
    if (vms_manifest_file (m, i, &f, &sz) == 0) {
      *size += sz;
      *stored += f.bytes_stored;
    }
  }
}

/* Open the repository; an encrypted one whose key cannot be had here (no
 * key file, no passphrase) is opened without it when keyless allows (R28:
 * verify's structure check, list where ids are visible), saying so. */
static vms_repo *
open_or_without_key (const struct options *opts, int keyless)
{
  vms_repo *repo = vms_repo_open (opts->repo_dir, 0);
  if (repo || !keyless || vms_get_errno () != ENOKEY)
    return repo;
  char *why = strdup (vms_get_error ());
  repo = vms_repo_open (opts->repo_dir, VMS_REPO_NO_KEY);
  if (repo)
    fprintf (stderr, "vmshadow: note: without the key (%s)\n",
             cli_message (why ? why : "?"));
  free (why);
  return repo;
}

/* An encrypted repository listed without its key: ids (where its owner
 * let them be seen) and the store's times of their manifests only. */
static int
list_without_key (const struct options *opts, vms_repo *repo)
{
  char **ids = NULL;
  size_t n = 0;
  if (vms_repo_list (repo, &ids, &n) == -1) {
    vms_repo_close (repo);
    return cli_fail ("list");
  }
  json_object *list = opts->json ? json_object_new_array () : NULL;
  if (!opts->json)
    printf ("%-28s  %s\n", "BACKUP", "(contents sealed: no key)");
  for (size_t i = 0; i < n; i++) {
    if (list) {
      json_object *b = json_object_new_object ();
      json_object_object_add (b, "backup_id", json_object_new_string (ids[i]));
      json_object_array_add (list, b);
    }
    else
      printf ("%s\n", cli_text (ids[i]));
    free (ids[i]);
  }
  free (ids);
  if (list) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "backups", list);
    json_object_object_add (out, "sealed", json_object_new_boolean (1));
    cli_print_json (out);
  }
  vms_repo_close (repo);
  return EXIT_SUCCESS;
}

/* The backup's boot check (issue 16, R27), as `verify --boot` recorded
 * it beside the backup. */
struct vms_boot_check_report *
cli_boot_check (vms_repo *repo, const char *id)
{
  struct vms_boot_check_report *r = vms_requester_boot_check_read (repo, id);
  if (r == NULL && vms_get_errno () != ENOENT)
    fprintf (stderr, "vmshadow: %s\n", cli_message (vms_get_error ()));
  return r;
}

json_object *
cli_boot_check_json (const struct vms_boot_check_report *r)
{
  char *text = r ? vms_boot_check_report_json (r) : NULL;
  json_object *o = text ? json_tokener_parse (text) : NULL;
  free (text);
  return o;
}

/* What a backup holds, for list --json (issue 19): each writer's
 * components (a VM, an application) with the capture method its writer
 * recorded and whether it is full or incremental. */
static json_object *
list_components (vms_manifest *m)
{
  const vms_document *bcd = vms_manifest_components (m);
  json_object *a = json_object_new_array ();

  for (size_t w = 0; bcd && w < vms_components_writer_count (bcd); w++) {
    const char *wid = vms_components_writer_id (bcd, w);
    for (size_t k = 0; k < vms_document_component_count (bcd, wid); k++) {
      vms_component *comp = vms_document_component (bcd, wid, k);
      const char *method = vms_component_get_string (comp, VMS_ATTR_METHOD);
      const char *caption = vms_component_caption (comp);
      const char *writer = vms_components_writer_name (bcd, w), *name = vms_component_name (comp);
      json_object *c = json_object_new_object ();
      json_object_object_add (c, "writer", writer ? json_object_new_string (writer) : NULL);
      json_object_object_add (c, "component", name ? json_object_new_string (name) : NULL);
      json_object_object_add (c, "caption", caption ? json_object_new_string (caption) : NULL);
      json_object_object_add (c, "method", method ? json_object_new_string (method) : NULL);
      json_object_object_add (c, "type", json_object_new_string (
                                vms_component_get_string (comp, VMS_ATTR_PREVIOUS_CHECKPOINT)
                                ? "incremental" : "full"));
      json_object_array_add (a, c);
    }
  }
  return a;
}

/* What a backup holds, for list's text: NAME/METHOD/TYPE per component
 * (a VM by its name, as its caption ends; an application by its component
 * name), joined by commas, with no blank so that the columns stay fields.
 * Freed by the caller; NULL when out of memory. */
static char *
list_contents_text (vms_manifest *m)
{
  const vms_document *bcd = vms_manifest_components (m);
  char *text = NULL;
  size_t len = 0;
  FILE *fp = open_memstream (&text, &len);

  if (fp == NULL)
    return NULL;
  for (size_t w = 0; bcd && w < vms_components_writer_count (bcd); w++) {
    const char *wid = vms_components_writer_id (bcd, w);
    for (size_t k = 0; k < vms_document_component_count (bcd, wid); k++) {
      vms_component *comp = vms_document_component (bcd, wid, k);
      const char *caption = vms_component_caption (comp), *bs;
      const char *name = caption && *caption
        ? ((bs = strrchr (caption, '\\')) ? bs + 1 : caption) : vms_component_name (comp);
      const char *method = vms_component_get_string (comp, VMS_ATTR_METHOD);
      if (ftell (fp) > 0)
        fputc (',', fp);
      for (const char *p = cli_text (name ? name : "?"); *p; p++)
        if (*p == ' ')
          fputs ("\\x20", fp);
        else
          fputc (*p, fp);
      fprintf (fp, "%s%s/%s", method ? "/" : "", method ? cli_text (method) : "",
               vms_component_get_string (comp, VMS_ATTR_PREVIOUS_CHECKPOINT)
               ? "incremental" : "full");
    }
  }
  if (fclose (fp) != 0) {
    free (text);
    return NULL;
  }
  return text;
}

int
cmd_list (const struct options *opts, int argc, char **argv)
{
  char **ids = NULL;
  size_t n = 0;
  int rc = EXIT_SUCCESS;

  if (want_args ("list", argc, 0, 0, "") == -1)
    return EXIT_USAGE;
  vms_repo *repo = open_or_without_key (opts, 1);
  if (repo && !vms_repo_has_key (repo))
    return list_without_key (opts, repo);
  if (repo == NULL || vms_repo_list (repo, &ids, &n) == -1) {
    vms_repo_close (repo);
    return cli_fail ("list");
  }
  json_object *list = opts->json ? json_object_new_array () : NULL;
  json_object *errors = opts->json ? json_object_new_array () : NULL;
  if (!opts->json)
    printf ("%-28s %-19s %6s %10s %10s  %-24s %-6s  %s\n", "BACKUP", "TIME", "FILES",
            "SIZE", "STORED", "HOLDS", "BOOT", "JOB");
  for (size_t i = 0; i < n; i++) {
    vms_manifest *m = vms_manifest_open (repo, ids[i]);
    char b1[32], b2[32], b3[32];
    uint64_t size, stored;
    if (m == NULL) {
      /* Under --json, in the output's "errors" (one JSON object on stdout). */
      if (errors)
        json_object_array_add (errors, json_object_new_string (vms_get_error ()));
      else
        fprintf (stderr, "vmshadow list: %s\n", cli_message (vms_get_error ()));
      rc = EXIT_FAILURE;
      free (ids[i]);
      continue;
    }
    manifest_totals (m, &size, &stored);
    const char *job = vms_manifest_job (m);
    struct vms_boot_check_report *boot = cli_boot_check (repo, ids[i]);
    if (list) {
      json_object *b = json_object_new_object ();
      json_object_object_add (b, "backup_id", json_object_new_string (ids[i]));
      json_object_object_add (b, "time", json_object_new_int64 (vms_manifest_time (m)));
      json_object_object_add (b, "files", json_object_new_int64 ((int64_t) vms_manifest_file_count (m)));
      json_object_object_add (b, "size", json_object_new_int64 ((int64_t) size));
      json_object_object_add (b, "bytes_stored", json_object_new_int64 ((int64_t) stored));
      json_object_object_add (b, "job", job ? json_object_new_string (job) : NULL);
      /* Issue 16: the last boot check (verify --boot), or null. */
      json_object_object_add (b, "boot_check", cli_boot_check_json (boot));
      json_object_object_add (b, "components", list_components (m));
      json_object_array_add (list, b);
    }
    else {
      char *holds = list_contents_text (m);
      printf ("%-28s %-19s %6zu %10s %10s  %-24s %-6s  %s\n", cli_text (ids[i]),
              when (vms_manifest_time (m), b1), vms_manifest_file_count (m),
              cli_bytes (size, b2), cli_bytes (stored, b3),
              holds && *holds ? holds : "-",
              boot ? (boot->ok ? "ok" : "FAILED") : "-",
              job ? cli_text (job) : "-");
      free (holds);
    }
    vms_boot_check_report_free (boot);
    vms_manifest_free (m);
    free (ids[i]);
  }
  free (ids);
  if (list) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "backups", list);
    if (rc != EXIT_SUCCESS) {
      json_object_object_add (out, "errors", errors);
      json_object_object_add (out, "exit_code", json_object_new_int (rc));
    }
    else
      json_object_put (errors);
    cli_print_json (out);
  }
  vms_repo_close (repo);
  return rc;
}

static void
show_file (const struct vms_stored_file *f, uint64_t size, const char *indent)
{
  char b1[32], b2[32], b3[32];
  printf ("%s%-5s %s  %s, read %s, stored %s\n", indent, vms_file_kind_name (f->kind),
          cli_text (f->path), cli_bytes (size, b1), cli_bytes (f->bytes_read, b2),
          cli_bytes (f->bytes_stored, b3));
}

/* Issue 21: the disks of the backup whose changed-block tracking was
 * wrong (read in full), from the manifest's attributes. Values are
 * checked: the manifest is outside data. */
static void
show_cbt_wrong (const vms_manifest *m)
{
  json_object *attrs = json_tokener_parse (vms_manifest_attrs (m)), *cbt;

  if (attrs && json_object_object_get_ex (attrs, "cbt_wrong", &cbt) &&
      json_object_is_type (cbt, json_type_array))
    for (size_t i = 0; i < json_object_array_length (cbt); i++) {
      json_object *o = json_object_array_get_idx (cbt, i), *path, *s, *d;
      if (json_object_object_get_ex (o, "path", &path) &&
          json_object_is_type (path, json_type_string) &&
          json_object_object_get_ex (o, "sampled", &s) &&
          json_object_object_get_ex (o, "differed", &d))
        printf ("Changed-block tracking was wrong for %s: %" PRId64 " of %" PRId64
                " sampled chunks differed; it was read in full\n",
                cli_text (json_object_get_string (path)), json_object_get_int64 (d),
                json_object_get_int64 (s));
    }
  json_object_put (attrs);
}

/* Issue 11: how each disk of component comp was read, and why, from the
 * manifest's attributes (checked: the manifest is outside data). */
static void
show_reads (const vms_manifest *m, const char *comp, const char *path)
{
  json_object *attrs = json_tokener_parse (vms_manifest_attrs (m)), *reads;

  if (attrs && json_object_object_get_ex (attrs, "reads", &reads) &&
      json_object_is_type (reads, json_type_array))
    for (size_t i = 0; i < json_object_array_length (reads); i++) {
      json_object *o = json_object_array_get_idx (reads, i), *c, *p, *how, *why;
      if (!json_object_object_get_ex (o, "component", &c) ||
          !json_object_is_type (c, json_type_string) ||
          strcmp (json_object_get_string (c), comp) != 0 ||
          !json_object_object_get_ex (o, "path", &p) ||
          !json_object_is_type (p, json_type_string) ||
          strcmp (json_object_get_string (p), path) != 0 ||
          !json_object_object_get_ex (o, "how", &how) ||
          !json_object_is_type (how, json_type_string))
        continue;
      int has_why = json_object_object_get_ex (o, "why", &why) &&
        json_object_is_type (why, json_type_string);
      printf ("      read by %s%s%s\n", cli_text (json_object_get_string (how)),
              has_why ? ": " : "", has_why ? cli_text (json_object_get_string (why)) : "");
    }
  json_object_put (attrs);
}

/* Issue 16: "Boot check: passed, 2026-12-03 07:00:00" and per VM. */
static void
show_boot_check (vms_repo *repo, const char *id)
{
  struct vms_boot_check_report *r = cli_boot_check (repo, id);
  char b[32];

  if (r == NULL) {
    printf ("Boot check: never (vmshadow verify --boot %s)\n", cli_text (id));
    return;
  }
  printf ("Boot check: %s, %s\n", r->ok ? "passed" : "FAILED", when (r->checked, b));
  for (size_t i = 0; i < r->nr_vms; i++) {
    const struct vms_boot_checked_vm *v = &r->vms[i];
    printf ("  VM %s: %s", cli_text (v->name ? v->name : "?"), v->ok ? "booted" : "FAILED");
    if (v->agent_ms > 0)
      printf (", agent answered after %.1f s", (double) v->agent_ms / 1000.0);
    if (v->probe) {
      printf (", probe '%s'", cli_text (v->probe));
      if (v->probe_ran)
        printf (" exited %d", v->probe_status);
    }
    if (v->error)
      printf (": %s", cli_message (v->error));
    printf ("\n");
  }
  vms_boot_check_report_free (r);
}

int
cmd_show (const struct options *opts, int argc, char **argv)
{
  if (want_args ("show", argc, 1, 1, "BACKUP") == -1)
    return EXIT_USAGE;
  vms_repo *repo = vms_repo_open (opts->repo_dir, 0);
  vms_manifest *m = repo ? vms_manifest_open (repo, argv[0]) : NULL;
  if (m == NULL) {
    vms_repo_close (repo);
    return cli_fail ("show");
  }
  /* NULL when the manifest says "components": false, which the format
   * allows: then only the manifest's file list is known (issue 9, item 5). */
  const vms_document *bcd = vms_manifest_components (m);

  if (opts->json) {
    /* The stored documents as they are, with the file list. */
    char *text = bcd ? vms_document_format (bcd) : NULL;
    json_object *out = json_object_new_object ();
    json_object *files = json_object_new_array ();
    json_object_object_add (out, "backup_id", json_object_new_string (argv[0]));
    json_object_object_add (out, "time", json_object_new_int64 (vms_manifest_time (m)));
    json_object_object_add (out, "components_document", text ? json_tokener_parse (text) : NULL);
    for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
      struct vms_stored_file f;
      uint64_t size;
      if (vms_manifest_file (m, i, &f, &size) == -1)
        continue;
      json_object *fo = json_object_new_object ();
      json_object_object_add (fo, "component", json_object_new_string (f.component));
      json_object_object_add (fo, "path", json_object_new_string (f.path));
      json_object_object_add (fo, "kind", json_object_new_string (vms_file_kind_name (f.kind)));
      json_object_object_add (fo, "size", json_object_new_int64 ((int64_t) size));
      json_object_object_add (fo, "bytes_read", json_object_new_int64 ((int64_t) f.bytes_read));
      json_object_object_add (fo, "bytes_stored", json_object_new_int64 ((int64_t) f.bytes_stored));
      json_object_array_add (files, fo);
    }
    json_object_object_add (out, "files", files);
    /* Issue 21: disks whose changed-block tracking was wrong. */
    json_object *attrs = json_tokener_parse (vms_manifest_attrs (m)), *cbt = NULL;
    if (attrs && json_object_object_get_ex (attrs, "cbt_wrong", &cbt) &&
        json_object_is_type (cbt, json_type_array))
      json_object_object_add (out, "cbt_wrong", json_object_get (cbt));
    else
      json_object_object_add (out, "cbt_wrong", json_object_new_array ());
    /* Issue 11: how each disk was read, and why. */
    json_object *reads = NULL;
    if (attrs && json_object_object_get_ex (attrs, "reads", &reads) &&
        json_object_is_type (reads, json_type_array))
      json_object_object_add (out, "reads", json_object_get (reads));
    else
      json_object_object_add (out, "reads", json_object_new_array ());
    json_object_put (attrs);
    struct vms_boot_check_report *boot = cli_boot_check (repo, argv[0]);
    json_object_object_add (out, "boot_check", cli_boot_check_json (boot));
    vms_boot_check_report_free (boot);
    free (text);
    cli_print_json (out);
  }
  else {
    char b1[32];
    size_t nf = vms_manifest_file_count (m);
    char *shown = calloc (nf ? nf : 1, 1);     /* files listed so far */
    printf ("Backup %s, %s\n", cli_text (argv[0]), when (vms_manifest_time (m), b1));
    if (bcd == NULL)
      printf ("  (no backup components document: this backup cannot be "
              "restored; its files:)\n");
    for (size_t w = 0; bcd && w < vms_components_writer_count (bcd); w++) {
      const char *wid = vms_components_writer_id (bcd, w);
      printf ("Writer '%s' {%s}\n", cli_text (vms_components_writer_name (bcd, w)),
              cli_text (wid));
      for (size_t c = 0; c < vms_document_component_count (bcd, wid); c++) {
        vms_component *comp = vms_document_component (bcd, wid, c);
        printf ("  Component %s  \"%s\"\n", cli_text (vms_component_name (comp)),
                cli_text (vms_component_caption (comp)));
        const char *method = vms_component_get_string (comp, VMS_ATTR_METHOD);
        printf ("    %s%s%s\n", method ? "method: " : "", method ? cli_text (method) : "",
                vms_component_get_string (comp, VMS_ATTR_PREVIOUS_CHECKPOINT)
                ? (method ? ", incremental" : "incremental") : (method ? ", full" : "full"));
        const char *cluster = vms_component_get_string (comp, VMS_ATTR_CLUSTER);
        if (cluster)             /* R22 */
          printf ("    cluster: %s\n", cli_text (cluster));
        int64_t fw = vms_component_get_int (comp, VMS_ATTR_FREEZE_WINDOW_MS, -1);
        if (fw >= 0)
          printf ("    freeze window: %" PRId64 " ms\n", fw);
        /* Issue 17: the guest writers, and a consistency group. */
        const char *gp = vms_component_get_string (comp, VMS_ATTR_GUEST_PROCESSING);
        if (gp)
          printf ("    guest processing: %s\n", cli_text (gp));
        if (vms_component_get_int (comp, VMS_ATTR_GROUP, 0) == 1)
          printf ("    captured in a consistency group\n");
        for (size_t e = 0; e < vms_component_excluded_count (comp); e++)
          printf ("    excluded %s: %s\n",
                  cli_text (vms_component_excluded_path (comp, e)),
                  cli_text (vms_component_excluded_reason (comp, e)));
        for (size_t i = 0; i < nf; i++) {
          struct vms_stored_file f;
          uint64_t size;
          if (vms_manifest_file (m, i, &f, &size) == -1 || f.writer_id == NULL ||
              strcmp (f.writer_id, wid) != 0 ||
              strcmp (f.component, vms_component_name (comp)) != 0)
            continue;
          show_file (&f, size, "    ");
          show_reads (m, vms_component_name (comp), f.path);
          if (shown)
            shown[i] = 1;
        }
      }
    }
    /* Files the components document does not describe (or all of them,
     * without one): listed too, never silently left out. */
    for (size_t i = 0; i < nf; i++) {
      struct vms_stored_file f;
      uint64_t size;
      if ((shown && shown[i]) || vms_manifest_file (m, i, &f, &size) == -1)
        continue;
      printf ("  %s of component %s\n", bcd ? "Not in the components document, file"
              : "File", cli_text (f.component));
      show_file (&f, size, "    ");
    }
    free (shown);
    show_cbt_wrong (m);
    show_boot_check (repo, argv[0]);
  }
  vms_manifest_free (m);
  vms_repo_close (repo);
  return EXIT_SUCCESS;
}

struct report_lines {
  json_object *list;            /* JSON output, or NULL for text */
  const char *prefix;
};

static void
report_line (void *opaque, const char *line)
{
  struct report_lines *r = opaque;
  if (r->list)
    json_object_array_add (r->list, json_object_new_string (line));
  else
    printf ("%s%s\n", r->prefix, cli_text (line));
}

/* verify --boot BACKUP (issue 16, R27): exit 0 when every VM booted
 * (and its probe exited 0), 1 otherwise. */
static int
verify_boot (const struct options *opts, int argc, char **argv)
{
  if (argc != 1 || opts->deep || opts->sample_percent)
    return cli_error ("verify", EXIT_USAGE, "usage: vmshadow verify --boot "
                      "BACKUP [--vm VM] [--probe COMMAND] (no --deep, --sample)");
  const char *repo_dir = opts->repo_dir ? opts->repo_dir : getenv ("VMSHADOW_REPO");
  const struct vms_boot_check_request rq = {
    .repo_dir = repo_dir && *repo_dir ? repo_dir : VMS_REPO_DEFAULT_DIR,
    .backup_id = argv[0], .vms = opts->vms, .probe = opts->probe,
    .timeout_s = opts->boot_timeout, .libvirt_uri = opts->connect,
  };
  struct vms_boot_check_report *r;
  int rc;

  /* SIGTERM or Ctrl-C while the copy boots: it is turned off and its
   * exports removed before we end (with 128 + the signal, as if killed). */
  vms_interrupt_catch ();
  r = vms_requester_boot_check (&rq);
  if (r == NULL) {
    rc = cli_fail ("verify");
    return vms_interrupted () ? 128 + vms_interrupted () : rc;
  }
  rc = r->interrupted ? 128 + r->interrupted :
    r->ok && r->recorded ? EXIT_SUCCESS : EXIT_FAILURE;
  if (opts->json) {
    json_object *out = cli_boot_check_json (r);
    if (out == NULL)
      return cli_error ("verify", EXIT_FAILURE, "out of memory");
    json_object_object_add (out, "backup_id", json_object_new_string (r->backup_id));
    json_object_object_add (out, "recorded", json_object_new_boolean (r->recorded));
    json_object_object_add (out, "record_error", r->record_error ? json_object_new_string (r->record_error) : NULL);
    json_object_object_add (out, "interrupted", r->interrupted ? json_object_new_int (r->interrupted) : NULL);
    json_object_object_add (out, "exit_code", json_object_new_int (rc));
    cli_print_json (out);
  }
  else {
    for (size_t i = 0; i < r->nr_vms; i++) {
      const struct vms_boot_checked_vm *v = &r->vms[i];
      printf ("VM %s (%s): %s", cli_text (v->name ? v->name : "?"),
              cli_text (v->uuid), v->ok ? "booted" : "FAILED");
      if (v->agent_ms > 0)
        printf (", guest agent answered after %.1f s", (double) v->agent_ms / 1000.0);
      if (v->probe_ran)
        printf (", probe exited %d", v->probe_status);
      if (v->error)
        printf (": %s", cli_message (v->error));
      printf ("\n");
    }
    if (r->recorded)
      printf ("Boot check of backup %s %s; recorded beside it.\n",
              cli_text (r->backup_id), r->ok ? "passed" : "FAILED");
    else if (r->interrupted)
      fprintf (stderr, "vmshadow verify: interrupted by signal %d: the "
               "throw-away copy was turned off and removed; nothing "
               "recorded\n", r->interrupted);
    else
      fprintf (stderr, "vmshadow verify: the result could not be recorded: %s\n",
               cli_message (r->record_error));
  }
  vms_boot_check_report_free (r);
  return rc;
}

/* Progress saved at most this often (ms): a resume re-checks at most
 * about this much work. $VMSHADOW_VERIFY_SAVE_MS (tests: 0, each pack). */
#define VERIFY_SAVE_MS 1000

/* Tests: $VMSHADOW_TEST_VERIFY_KILL_AFTER_PACKS=N kills the verify
 * (SIGKILL, as a crash) once its record says N packs are done;
 * $VMSHADOW_TEST_VERIFY_STOP_AFTER_PACKS=N stops it (SIGSTOP) there once,
 * so a test can take its storage away at that point and continue it. */
struct verify_test_hooks {
  uint64_t kill_after, stop_after;
};

static void
verify_saved (void *opaque, uint64_t packs_done)
{
  struct verify_test_hooks *h = opaque;
  if (h->kill_after && packs_done >= h->kill_after)
    raise (SIGKILL);
  if (h->stop_after && packs_done >= h->stop_after) {
    h->stop_after = 0;
    raise (SIGSTOP);
  }
}

int
cmd_verify (const struct options *opts, int argc, char **argv)
{
  if ((opts->given & (OPT_VM | OPT_CONNECT)) && !opts->boot)
    return cli_error ("verify", EXIT_USAGE, "--vm and --connect apply to "
                      "verify --boot");
  if ((opts->probe || opts->boot_timeout) && !opts->boot)
    return cli_error ("verify", EXIT_USAGE, "--probe and --boot-timeout apply "
                      "to verify --boot");
  /* (--resume shares its option bit with restore's --instant ones) */
  if (opts->instant || opts->rollback || opts->bandwidth)
    return cli_error ("verify", EXIT_USAGE, "option %s does not apply to "
                      "this command (see 'vmshadow help verify')",
                      opts->instant ? "--instant" : opts->rollback
                      ? "--rollback" : "--bandwidth");
  if (opts->boot && opts->resume)
    return cli_error ("verify", EXIT_USAGE, "--resume does not apply to "
                      "verify --boot");
  if (opts->boot)
    return verify_boot (opts, argc, argv);
  if (want_args ("verify", argc, 0, 1, "[BACKUP]") == -1)
    return EXIT_USAGE;
  vms_repo *repo = open_or_without_key (opts, !opts->deep && argc == 0 &&
                                        !opts->sample_percent &&
                                        opts->resume != 1);
  if (repo == NULL)
    return cli_fail ("verify");
  int keyless = !vms_repo_has_key (repo);
  struct report_lines r = { opts->json ? json_object_new_array () : NULL, "" };
  unsigned pct = opts->sample_percent ? opts->sample_percent : 100;
  /* Its progress is kept on the host (issue 12), so that an interrupted
   * verify can be resumed; a verify that cannot keep it still runs. */
  const char *save = getenv ("VMSHADOW_VERIFY_SAVE_MS");
  const char *kill_env = getenv ("VMSHADOW_TEST_VERIFY_KILL_AFTER_PACKS");
  const char *stop_env = getenv ("VMSHADOW_TEST_VERIFY_STOP_AFTER_PACKS");
  struct verify_test_hooks hooks = {
    kill_env ? strtoull (kill_env, NULL, 10) : 0,
    stop_env ? strtoull (stop_env, NULL, 10) : 0,
  };
  struct vms_verify_run run = { .state_dirfd = -1, .resume = opts->resume,
                                .save_ms = save && *save ?
                                (unsigned) strtoul (save, NULL, 10) :
                                VERIFY_SAVE_MS,
                                .saved = verify_saved, .opaque = &hooks };
  const char *state_name = NULL;
  char state_why[512] = "";
  if (!keyless) {
    run.state_dirfd = vms_config_state_dir (1, &state_name);
    run.state_dir = state_name;
    if (run.state_dirfd == -1)
      snprintf (state_why, sizeof state_why, "%s", vms_get_error ());
  }
  if (run.state_dirfd == -1 && opts->resume == 1 && !keyless) {
    vms_repo_close (repo);
    json_object_put (r.list);
    return cli_error ("verify", EXIT_FAILURE, "cannot resume: %s",
                      cli_message (state_why));
  }
  if (run.state_dirfd == -1 && !keyless)
    fprintf (stderr, "vmshadow verify: note: its progress is not recorded (an "
             "interruption cannot be resumed): %s\n", cli_message (state_why));
  int problems = vms_repo_verify_run (repo, argc ? argv[0] : NULL, opts->deep,
                                      pct, &run, report_line, &r);
  if (run.state_dirfd >= 0)
    close (run.state_dirfd);
  vms_repo_close (repo);
  if (problems == -1) {
    json_object_put (r.list);
    /* Not damage: its own exit code, so that a script or a job tells a
     * repository it could not read from one found bad (issue 12). */
    if (run.unreachable)
      return cli_error ("verify", EXIT_UNREACHABLE, "%s", vms_get_error ());
    return cli_fail ("verify");
  }
  if (run.note[0])
    fprintf (stderr, "vmshadow verify: note: %s\n", cli_message (run.note));
  if (r.list) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "deep", json_object_new_boolean (opts->deep));
    json_object_object_add (out, "sample_percent", json_object_new_int ((int) pct));
    json_object_object_add (out, "resumed", json_object_new_boolean (run.resumed));
    json_object_object_add (out, "packs", json_object_new_int64 ((int64_t) run.packs));
    json_object_object_add (out, "packs_checked_before",
                            json_object_new_int64 ((int64_t) run.packs_before));
    json_object_object_add (out, "packs_checked",
                            json_object_new_int64 ((int64_t) run.packs_checked));
    json_object_object_add (out, "bad_chunks_found_before",
                            json_object_new_int64 ((int64_t) run.bad_before));
    json_object_object_add (out, "problems", r.list);
    cli_print_json (out);
    return problems == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
  }
  if (run.resumed)
    printf ("Resumed: %" PRIu64 " of %" PRIu64 " packs were checked before the "
            "interruption (%" PRIu64 " bad chunk%s found then, reported again "
            "above), %" PRIu64 " checked now.\n", run.packs_before, run.packs,
            run.bad_before, run.bad_before == 1 ? "" : "s", run.packs_checked);
  if (keyless)
    printf ("%s (structure only: contents were not authenticated).\n",
            problems == 0 ? "No problems found" : "Problems found");
  else if (problems == 0 && pct < 100)
    printf ("No problems found in a random %u %% of the chunks%s.\n", pct,
            opts->deep ? " (re-hashed)" : "");
  else if (problems == 0)
    printf ("No problems found%s.\n", opts->deep ? " (every chunk re-hashed)" : "");
  else
    printf ("%d problem%s found.\n", problems, problems == 1 ? "" : "s");
  return problems == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int
cmd_prune (const struct options *opts, int argc, char **argv)
{
  if (want_args ("prune", argc, 0, 0, "--keep-last N ... [--dry-run]") == -1)
    return EXIT_USAGE;
  if (!(opts->given & OPT_KEEP)) {
    return cli_error ("prune", EXIT_USAGE, "say what to keep (--keep-last, "
                      "--keep-daily, --keep-weekly, --keep-monthly); prune "
                      "never deletes everything");
  }
  vms_repo *repo = vms_repo_open (opts->repo_dir, VMS_REPO_WRITE |
                                  (opts->admin ? VMS_REPO_ADMIN : 0));
  if (repo == NULL)
    return cli_fail ("prune");
  struct report_lines r = { opts->json ? json_object_new_array () : NULL,
                            opts->dry_run ? "would " : "" };
  int removed = vms_repo_prune (repo, &opts->keep, opts->dry_run, report_line, &r);
  if (removed == -1) {
    vms_repo_close (repo);
    json_object_put (r.list);
    return cli_fail ("prune");
  }
  /* Then the VMs' checkpoints no remaining backup needs (issue 20), still
   * under the repository's lock: no backup into it runs meanwhile. When
   * libvirt cannot be reached this is skipped with a note; any other
   * failure is one too, and the exit status says it. */
  struct report_lines cr = { opts->json ? json_object_new_array () : NULL, "" };
  int cps = vms_requester_prune_checkpoints (repo, opts->connect, opts->dry_run,
                                             report_line, &cr);
  int unreachable = cps == -1 && vms_get_errno () == ECONNREFUSED;
  char *cp_error = cps == -1 ? strdup (vms_get_error ()) : NULL;
  vms_repo_close (repo);
  if (r.list) {
    json_object *out = json_object_new_object ();
    json_object *co = json_object_new_object ();
    json_object_object_add (out, "dry_run", json_object_new_boolean (opts->dry_run));
    json_object_object_add (out, "removed", json_object_new_int (removed));
    json_object_object_add (out, "decisions", r.list);
    json_object_object_add (co, "deleted", json_object_new_int (cps > 0 ? cps : 0));
    json_object_object_add (co, "decisions", cr.list);
    if (cps == -1)
      json_object_object_add (co, unreachable ? "skipped" : "error",
                              json_object_new_string (cp_error ? cp_error : "?"));
    json_object_object_add (out, "checkpoints", co);
    json_object_object_add (out, "exit_code", json_object_new_int (
                              cps == -1 && !unreachable ? EXIT_WARNINGS : EXIT_SUCCESS));
    cli_print_json (out);
  }
  else {
    printf ("%s %d backup%s%s.\n", opts->dry_run ? "Would remove" : "Removed",
            removed, removed == 1 ? "" : "s",
            !opts->dry_run && removed ? "; run 'vmshadow gc' to free their chunks" : "");
    if (cps > 0)
      printf ("%s %d checkpoint%s no backup needs.\n",
              opts->dry_run ? "Would delete" : "Deleted", cps, cps == 1 ? "" : "s");
    else if (cps == -1)
      fprintf (stderr, "vmshadow prune: %s: %s\n", unreachable
               ? "note: the VMs' checkpoints were not pruned" : "warning: checkpoints",
               cli_message (cp_error ? cp_error : "?"));
  }
  free (cp_error);
  /* A checkpoint that could not be deleted needs a look; libvirt not
   * being there is normal on a host without VMs. */
  return cps == -1 && !unreachable ? EXIT_WARNINGS : EXIT_SUCCESS;
}

int
cmd_gc (const struct options *opts, int argc, char **argv)
{
  uint64_t chunks = 0, bytes = 0;
  char b[32];

  if (want_args ("gc", argc, 0, 0, "[--grace SECONDS]") == -1)
    return EXIT_USAGE;
  vms_repo *repo = vms_repo_open (opts->repo_dir, VMS_REPO_WRITE |
                                  (opts->admin ? VMS_REPO_ADMIN : 0));
  if (repo == NULL)
    return cli_fail ("gc");
  int r = vms_repo_gc (repo, opts->grace_seconds, &chunks, &bytes);
  /* What Object Lock kept (issue 14, R29): said, with the date. */
  uint64_t kept = 0, kept_bytes = 0;
  int64_t kept_until = 0;
  char until[32] = "";
  vms_repo_kept_locked (repo, &kept, &kept_bytes, &kept_until);
  if (kept) {
    time_t t = (time_t) kept_until;
    struct tm tm;
    gmtime_r (&t, &tm);
    strftime (until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
  }
  vms_repo_close (repo);
  if (r == -1)
    return cli_fail ("gc");
  /* Scratch copies and NBD directories of killed runs, outside the
   * repository (docs/security.md); a failure here is only a warning. */
  int stale = vms_requester_sweep ();
  if (stale == -1)
    vms_warn ("gc: %s", vms_get_error ());
  stale = stale > 0 ? stale : 0;
  if (opts->json) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "chunks_removed", json_object_new_int64 ((int64_t) chunks));
    json_object_object_add (out, "bytes_freed", json_object_new_int64 ((int64_t) bytes));
    json_object_object_add (out, "stale_scratch_removed", json_object_new_int (stale));
    json_object *k = json_object_new_object ();
    json_object_object_add (k, "objects", json_object_new_int64 ((int64_t) kept));
    json_object_object_add (k, "bytes", json_object_new_int64 ((int64_t) kept_bytes));
    json_object_object_add (k, "until", kept ? json_object_new_string (until) : NULL);
    json_object_object_add (out, "kept_locked", k);
    cli_print_json (out);
  }
  else {
    printf ("Removed %" PRIu64 " unused chunk%s, freed %s.\n", chunks,
            chunks == 1 ? "" : "s", cli_bytes (bytes, b));
    if (kept)
      printf ("Kept %" PRIu64 " unused object%s (%s) under Object Lock, "
              "retained until %s at the latest: deleted by a gc after that.\n",
              kept, kept == 1 ? "" : "s", cli_bytes (kept_bytes, b), until);
    if (stale > 0)
      printf ("Removed %d scratch director%s of killed runs.\n", stale,
              stale == 1 ? "y" : "ies");
  }
  return EXIT_SUCCESS;
}

int
cmd_init (const struct options *opts, int argc, char **argv)
{
  int format = opts->repo_format ? opts->repo_format : 2;

  if (want_args ("init", argc, 0, 0, "[--format 1|2] [--encrypt]") == -1)
    return EXIT_USAGE;
  if (((opts->given & (OPT_ENCRYPT | OPT_MASTER_KEY))) && !opts->encrypt)
    return cli_error ("init", EXIT_USAGE, "--key, --visible-backup-ids and "
                      "--master-key go with --encrypt");
  if (opts->encrypt && format != 2)
    return cli_error ("init", EXIT_USAGE, "--encrypt needs format version 2");
  if (opts->key && opts->master_key)
    return cli_error ("init", EXIT_USAGE, "--master-key wraps a new key; the "
                      "key given with --key is wrapped (or not) already");
  /* An existing repository is left as it is, whatever its version (an
   * encrypted one is recognised without its key). */
  vms_repo *repo = vms_repo_open (opts->repo_dir, VMS_REPO_NO_KEY);
  if (repo) {
    cli_error ("init", EXIT_FAILURE, "%s is a repository already (format "
               "version %d); nothing changed", vms_repo_path (repo),
               vms_repo_format_version (repo));
    vms_repo_close (repo);
    return EXIT_FAILURE;
  }
  if (format == 1)
    setenv ("VMSHADOW_REPO_FORMAT", "1", 1);
  /* Immutability (issue 14): the library reads it from the environment
   * as it creates the config, as it does the format. */
  if (opts->retention_mode && !opts->retention_days)
    return cli_error ("init", EXIT_USAGE, "--retention-mode goes with "
                      "--retention-days");
  if ((opts->retention_days || opts->append_only) && format != 2)
    return cli_error ("init", EXIT_USAGE, "--retention-days and --append-only "
                      "need format version 2");
  if (opts->retention_days) {
    char d[16];
    snprintf (d, sizeof d, "%u", opts->retention_days);
    setenv ("VMSHADOW_REPO_RETENTION_DAYS", d, 1);
    setenv ("VMSHADOW_REPO_RETENTION_MODE",
            opts->retention_mode ? opts->retention_mode : "governance", 1);
  }
  if (opts->append_only)
    setenv ("VMSHADOW_REPO_APPEND_ONLY", "1", 1);
  if (opts->encrypt) {
    struct vms_repo_encryption e = {
      .key_fingerprint = opts->key, .master_public_key = opts->master_key,
      .visible_backup_ids = opts->visible_ids,
    };
    repo = vms_repo_init_encrypted (opts->repo_dir, &e);
  }
  else
    repo = vms_repo_open (opts->repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE |
                          (format == 2 ? VMS_REPO_FORMAT_2 : 0));
  if (repo == NULL)
    return cli_fail ("init");
  format = vms_repo_format_version (repo);
  if (opts->json) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "repository",
                            json_object_new_string (vms_repo_path (repo)));
    json_object_object_add (out, "format_version", json_object_new_int (format));
    const char *fp = vms_repo_key_fingerprint (repo);
    json_object_object_add (out, "key_fingerprint", fp ? json_object_new_string (fp) : NULL);
    unsigned days;
    const char *mode;
    int ao;
    vms_repo_protection (repo, &days, &mode, &ao);
    json_object_object_add (out, "retention_days", json_object_new_int ((int) days));
    json_object_object_add (out, "retention_mode", mode ? json_object_new_string (mode) : NULL);
    json_object_object_add (out, "append_only", json_object_new_boolean (ao));
    cli_print_json (out);
  }
  else {
    const char *fp = vms_repo_key_fingerprint (repo);
    unsigned days;
    const char *mode;
    int ao;
    vms_repo_protection (repo, &days, &mode, &ao);
    printf ("Created repository %s (format version %d%s%s).\n",
            cli_text (vms_repo_path (repo)), format,
            fp ? ", encrypted with key " : "", fp ? fp : "");
    if (days)
      printf ("Every object of its backups is retained %u days from its "
              "session (S3 Object Lock, %s).\n", days, mode);
    if (ao)
      printf ("It is append-only: prune and gc need --admin (and credentials "
              "that may delete).\n");
    if (fp && opts->key == NULL)
      printf ("Without its key nothing in it can be read: print the key now "
              "and keep the paper\nsafe (vmshadow key export --paper %s).\n",
              fp);
  }
  vms_repo_close (repo);
  return EXIT_SUCCESS;
}

static void
print_line (void *opaque, const char *line)
{
  if (opaque == NULL)
    printf ("%s\n", cli_text (line));
}

int
cmd_upgrade (const struct options *opts, int argc, char **argv)
{
  if (want_args ("upgrade", argc, 0, 0, "") == -1)
    return EXIT_USAGE;
  vms_repo *repo = vms_repo_open (opts->repo_dir, VMS_REPO_WRITE);
  if (repo == NULL)
    return cli_fail ("upgrade");
  int n = vms_repo_upgrade (repo, print_line, opts->json ? repo : NULL);
  if (n == -1) {
    vms_repo_close (repo);
    return cli_fail ("upgrade");
  }
  if (opts->json) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "backups_upgraded", json_object_new_int (n));
    json_object_object_add (out, "format_version",
                            json_object_new_int (vms_repo_format_version (repo)));
    cli_print_json (out);
  }
  else
    printf ("Repository %s is format version 2 now (%d backup%s).\n",
            cli_text (vms_repo_path (repo)), n, n == 1 ? "" : "s");
  vms_repo_close (repo);
  return EXIT_SUCCESS;
}

int
cmd_extract (const struct options *opts, int argc, char **argv)
{
  struct vms_stored_file f;
  uint64_t size;

  if (want_args ("extract", argc, 3, 3, "BACKUP COMPONENT FILE --to PATH") == -1)
    return EXIT_USAGE;
  if (opts->to == NULL) {
    return cli_error ("extract", EXIT_USAGE, "say where to write the file "
                      "with --to PATH");
  }
  vms_repo *repo = vms_repo_open (opts->repo_dir, 0);
  vms_manifest *m = repo ? vms_manifest_open (repo, argv[0]) : NULL;
  if (m == NULL) {
    vms_repo_close (repo);
    return cli_fail ("extract");
  }
  int i = vms_manifest_find_file (m, argv[1], argv[2]);
  vms_index *idx = NULL;
  int rc = EXIT_FAILURE;
  if (i < 0)
    cli_error ("extract", EXIT_FAILURE, "backup %s has no file %s in component "
               "\"%s\" (see 'vmshadow show %s')", argv[0], argv[2], argv[1],
               argv[0]);
  else if (vms_manifest_file (m, (size_t) i, &f, &size) == -1 ||
           (idx = vms_manifest_load_index (repo, m, (size_t) i)) == NULL)
    cli_fail ("extract");
  else {
    const char *format = opts->format ? opts->format
      : f.kind == VMS_FILE_DISK && f.format ? f.format : "raw";
    struct progress prog;
    progress_init (&prog, opts->to);
    int r = vms_extract (repo, idx, opts->to, format, 0, progress_update, &prog);
    progress_done (&prog);
    if (r == -1)
      cli_fail ("extract");
    else {
      if (opts->json) {
        json_object *out = json_object_new_object ();
        json_object_object_add (out, "to", json_object_new_string (opts->to));
        json_object_object_add (out, "format", json_object_new_string (format));
        json_object_object_add (out, "size", json_object_new_int64 ((int64_t) size));
        cli_print_json (out);
      }
      rc = EXIT_SUCCESS;
    }
  }
  vms_index_free (idx);
  vms_manifest_free (m);
  vms_repo_close (repo);
  return rc;
}

/* vmshadow sync SRC DST [BACKUP...] (issue 14): the backups DST lacks,
 * only the chunks DST lacks (lib/repo/sync.c). DST is created (format 2)
 * when absent, like a backup creates its repository. */
int
cmd_sync (const struct options *opts, int argc, char **argv)
{
  struct vms_sync_stats st;

  if (want_args ("sync", argc, 2, 1024, "SRC DST [BACKUP...]") == -1)
    return EXIT_USAGE;
  if (strcmp (argv[0], argv[1]) == 0)
    return cli_error ("sync", EXIT_USAGE, "SRC and DST are the same "
                      "repository");
  vms_repo *src = vms_repo_open (argv[0], 0);
  if (src == NULL)
    return cli_fail ("sync");
  /* --vm and --since (issue 14): the backups of SRC (those named, or all)
   * that hold one of the VMs and were made at or after the time, chosen
   * before DST is touched. */
  char **sel = NULL;
  size_t nsel = 0;
  if (opts->given & (OPT_VM | OPT_SINCE)) {
    char **all = NULL;
    size_t nall = 0;
    if (argc > 2) {
      nall = (size_t) (argc - 2);
      all = calloc (nall + 1, sizeof *all);
      for (size_t i = 0; all && i < nall; i++)
        all[i] = strdup (argv[2 + i]);
    }
    else if (vms_repo_list (src, &all, &nall) == -1) {
      vms_repo_close (src);
      return cli_fail ("sync");
    }
    sel = calloc (nall + 1, sizeof *sel);
    if (all == NULL || sel == NULL) {
      vms_repo_close (src);
      return cli_error ("sync", EXIT_FAILURE, "out of memory");
    }
    for (size_t i = 0; i < nall; i++) {
      vms_manifest *m = all[i] ? vms_manifest_open (src, all[i]) : NULL;
      if (m == NULL) {
        int rc = cli_fail ("sync");
        for (size_t k = 0; k < nall; k++)
          free (all[k]);
        free (all);
        free (sel);
        vms_repo_close (src);
        return rc;
      }
      int take = opts->since == 0 || vms_manifest_time (m) >= opts->since;
      if (take && opts->vms) {
        take = 0;
        for (size_t v = 0; opts->vms[v] && !take; v++)
          take = vms_manifest_holds_vm (m, opts->vms[v]);
      }
      vms_manifest_free (m);
      if (take) {
        sel[nsel++] = all[i];
        all[i] = NULL;
      }
    }
    for (size_t k = 0; k < nall; k++)
      free (all[k]);
    free (all);
    if (nsel == 0) {
      free (sel);
      vms_repo_close (src);
      if (opts->json) {
        json_object *out = json_object_new_object ();
        json_object_object_add (out, "backups_selected", json_object_new_int (0));
        json_object_object_add (out, "backups_synced", json_object_new_int (0));
        cli_print_json (out);
      }
      else
        printf ("No backup of %s matches --vm/--since: nothing synced.\n",
                cli_text (argv[0]));
      return EXIT_SUCCESS;
    }
  }
  vms_repo *dst = vms_repo_open (argv[1], VMS_REPO_CREATE | VMS_REPO_WRITE |
                                 VMS_REPO_FORMAT_2);
  if (dst == NULL) {
    for (size_t k = 0; k < nsel; k++)
      free (sel[k]);
    free (sel);
    vms_repo_close (src);
    return cli_fail ("sync");
  }
  /* Where its packs are recorded (a rerun adopts one a kill left
   * unindexed); without it a rerun sends such a pack's chunks again. */
  const char *state_name;
  int state_fd = vms_config_state_dir (1, &state_name);
  if (state_fd == -1)
    fprintf (stderr, "vmshadow sync: warning: %s; a rerun after an "
             "interruption may send a pack again\n", vms_get_error ());
  int r = sel ? vms_repo_sync (src, dst, sel, nsel, state_fd, print_line,
                               opts->json ? src : NULL, &st)
    : vms_repo_sync (src, dst, argv + 2, (size_t) (argc - 2), state_fd,
                     print_line, opts->json ? src : NULL, &st);
  if (state_fd >= 0)
    close (state_fd);
  for (size_t k = 0; k < nsel; k++)
    free (sel[k]);
  free (sel);
  vms_repo_close (dst);
  vms_repo_close (src);
  if (r == -1)
    return cli_fail ("sync");
  if (opts->json) {
    json_object *out = json_object_new_object ();
    json_object_object_add (out, "backups_synced", json_object_new_int64 ((int64_t) st.backups_synced));
    json_object_object_add (out, "backups_present", json_object_new_int64 ((int64_t) st.backups_present));
    json_object_object_add (out, "chunks_sent", json_object_new_int64 ((int64_t) st.chunks_sent));
    json_object_object_add (out, "chunks_present", json_object_new_int64 ((int64_t) st.chunks_present));
    json_object_object_add (out, "bytes_read", json_object_new_int64 ((int64_t) st.bytes_read));
    json_object_object_add (out, "bytes_stored", json_object_new_int64 ((int64_t) st.bytes_stored));
    json_object_object_add (out, "packs_adopted", json_object_new_int64 ((int64_t) st.packs_adopted));
    json_object_object_add (out, "chunks_adopted", json_object_new_int64 ((int64_t) st.chunks_adopted));
    json_object_object_add (out, "source_reads", json_object_new_int64 ((int64_t) st.source_reads));
    cli_print_json (out);
  }
  else
    printf ("Synced %" PRIu64 " backup%s (%" PRIu64 " there already): %" PRIu64
            " chunks sent (%" PRIu64 " bytes stored), %" PRIu64 " there "
            "already.\n", st.backups_synced, st.backups_synced == 1 ? "" : "s",
            st.backups_present, st.chunks_sent, st.bytes_stored,
            st.chunks_present);
  return EXIT_SUCCESS;
}

/* Unit tests of the documents of a backup (document.h, R5, R6): a writer
 * metadata document and a backup components document survive format →
 * parse with every field intact, save is crash-safe, and every malformed
 * input is refused with a message that names the problem
 * (docs/documents.md is the spec these tests hold the code to).
 *
 * Usage: test-document [test-name]; output is TAP.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "vmshadow/document.h"
#include "vmshadow/error.h"

#include "document-internal.h"

#define MiB ((size_t) 1 << 20)

#define VM_WRITER_ID  "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00"
#define APP_WRITER_ID "0f6b1d9c-77a1-4d8e-a3c2-5e2f1a9b8c71"
#define WEB01_UUID    "3f1e9a52-0d1b-4a8f-9c3e-7d2b5a6c4e10"
#define DB01_UUID     "a7c2e0f4-5b3d-4e19-8f6a-2c1d0b9e8a73"

/* ---- helpers ---- */

static void
assert_error_contains (const char *expect)
{
  const char *msg = vms_get_error ();
  if (msg == NULL)
    fail_msg ("no error message was set (expected one containing \"%s\")",
              expect);
  if (strstr (msg, expect) == NULL)
    fail_msg ("error message \"%s\" does not contain \"%s\"", msg, expect);
}

static void
assert_string_or_null (const char *got, const char *want)
{
  if (want == NULL)
    assert_null (got);
  else {
    assert_non_null (got);
    assert_string_equal (got, want);
  }
}

static void
assert_file (const vms_component *c, size_t i, const char *path,
             enum vms_file_kind kind, const char *format,
             const char *provider)
{
  struct vms_file_info fi;

  assert_int_equal (vms_component_file (c, i, &fi), 0);
  assert_string_equal (fi.path, path);
  assert_int_equal (fi.kind, kind);
  assert_string_or_null (fi.format, format);
  assert_string_or_null (fi.provider, provider);
}

static vms_document *
parse_string (const char *text)
{
  return vms_document_parse (text, strlen (text));
}

/* format → parse, checking that the parsed document formats to the same
 * text (nothing lost, nothing reordered). */
static vms_document *
round_trip (const vms_document *doc)
{
  char *text = vms_document_format (doc);
  assert_non_null (text);
  assert_true (strlen (text) > 0 && text[strlen (text) - 1] == '\n');

  vms_document *back = parse_string (text);
  if (back == NULL)
    fail_msg ("formatted document does not parse: %s\n%s",
              vms_get_error (), text);
  char *again = vms_document_format (back);
  assert_non_null (again);
  assert_string_equal (again, text);
  free (again);
  free (text);
  return back;
}

/* The metadata document of a VM writer with two VMs: one online with
 * disk, configuration and NVRAM and two disks it cannot see (R7, R13), one
 * offline with a single raw disk and nothing else. */
static vms_document *
make_metadata (void)
{
  vms_document *md = vms_metadata_new ("vmshadow-libvirt", VM_WRITER_ID);
  assert_non_null (md);

  vms_component *c = vms_metadata_add_component (md, WEB01_UUID,
                                                 "Online\\web01");
  assert_non_null (c);
  assert_int_equal (vms_component_add_file (c,
                      "/var/lib/libvirt/images/web01.qcow2",
                      VMS_FILE_DISK, "qcow2", "qemu"), 0);
  assert_int_equal (vms_component_add_file (c,
                      "/etc/libvirt/qemu/web01.xml",
                      VMS_FILE_PLAIN, NULL, NULL), 0);
  assert_int_equal (vms_component_add_file (c,
                      "/var/lib/libvirt/qemu/nvram/web01_VARS.fd",
                      VMS_FILE_PLAIN, "raw", "file"), 0);
  assert_int_equal (vms_component_add_excluded (c, "/dev/sdb",
                      "pass-through disk: back it up from inside the guest"), 0);
  assert_int_equal (vms_component_add_excluded (c,
                      "iscsi://san.example/iqn.2024-01.example:web01/0",
                      "network disk: back it up from inside the guest"), 0);
  assert_int_equal (vms_component_set_string (c, "method", "online"), 0);
  assert_int_equal (vms_component_set_string (c, "vm_name", "web01 \"prod\" \xc3\xa9"), 0);
  assert_int_equal (vms_component_set_int (c, "freeze_window_ms", 1500), 0);
  assert_int_equal (vms_component_set_int (c, "most_negative", INT64_MIN), 0);
  assert_int_equal (vms_component_set_int (c, "most_positive", INT64_MAX), 0);

  c = vms_metadata_add_component (md, DB01_UUID, "Offline\\db01");
  assert_non_null (c);
  assert_int_equal (vms_component_add_file (c, "/srv/vm/db01.img",
                                            VMS_FILE_DISK, "raw", NULL), 0);
  return md;
}

/* Every field make_metadata put in, read through the accessors. */
static void
assert_metadata_fields (const vms_document *md)
{
  assert_int_equal (vms_document_kind (md), VMS_DOC_METADATA);
  assert_string_equal (vms_metadata_writer_name (md), "vmshadow-libvirt");
  assert_string_equal (vms_metadata_writer_id (md), VM_WRITER_ID);
  assert_int_equal (vms_document_component_count (md, NULL), 2);

  const vms_component *c = vms_document_component (md, NULL, 0);
  assert_non_null (c);
  assert_ptr_equal (vms_document_find_component (md, NULL, WEB01_UUID), c);
  assert_string_equal (vms_component_name (c), WEB01_UUID);
  assert_string_equal (vms_component_caption (c), "Online\\web01");
  assert_int_equal (vms_component_file_count (c), 3);
  assert_file (c, 0, "/var/lib/libvirt/images/web01.qcow2", VMS_FILE_DISK,
               "qcow2", "qemu");
  assert_file (c, 1, "/etc/libvirt/qemu/web01.xml", VMS_FILE_PLAIN,
               NULL, NULL);
  assert_file (c, 2, "/var/lib/libvirt/qemu/nvram/web01_VARS.fd",
               VMS_FILE_PLAIN, "raw", "file");
  assert_int_equal (vms_component_excluded_count (c), 2);
  assert_string_equal (vms_component_excluded_path (c, 0), "/dev/sdb");
  assert_string_equal (vms_component_excluded_reason (c, 0),
                       "pass-through disk: back it up from inside the guest");
  assert_string_equal (vms_component_excluded_path (c, 1),
                       "iscsi://san.example/iqn.2024-01.example:web01/0");
  assert_string_equal (vms_component_excluded_reason (c, 1),
                       "network disk: back it up from inside the guest");
  assert_null (vms_component_excluded_path (c, 2));
  assert_string_equal (vms_component_get_string (c, "method"), "online");
  assert_string_equal (vms_component_get_string (c, "vm_name"),
                       "web01 \"prod\" \xc3\xa9");
  assert_int_equal (vms_component_get_int (c, "freeze_window_ms", -1), 1500);
  assert_true (vms_component_get_int (c, "most_negative", 0) == INT64_MIN);
  assert_true (vms_component_get_int (c, "most_positive", 0) == INT64_MAX);
  /* Absent keys and keys of another type give NULL / the default. */
  assert_null (vms_component_get_string (c, "no-such-key"));
  assert_null (vms_component_get_string (c, "freeze_window_ms"));
  assert_int_equal (vms_component_get_int (c, "method", 42), 42);
  assert_int_equal (vms_component_get_int (c, "no-such-key", -7), -7);

  c = vms_document_component (md, NULL, 1);
  assert_non_null (c);
  assert_ptr_equal (vms_document_find_component (md, NULL, DB01_UUID), c);
  assert_string_equal (vms_component_name (c), DB01_UUID);
  assert_string_equal (vms_component_caption (c), "Offline\\db01");
  assert_int_equal (vms_component_file_count (c), 1);
  assert_file (c, 0, "/srv/vm/db01.img", VMS_FILE_DISK, "raw", NULL);
  assert_int_equal (vms_component_excluded_count (c), 0);
  assert_null (vms_component_get_string (c, "method"));

  assert_null (vms_document_component (md, NULL, 2));
  assert_null (vms_document_find_component (md, NULL, "no-such-vm"));
}

/* ---- metadata documents ---- */

static void
metadata_document_round_trips_every_field (void **state)
{
  vms_document *md = make_metadata ();
  assert_metadata_fields (md);

  vms_document *back = round_trip (md);
  assert_metadata_fields (back);

  vms_document_free (back);
  vms_document_free (md);
}

static void
metadata_refuses_a_second_component_of_the_same_name (void **state)
{
  vms_document *md = make_metadata ();

  assert_null (vms_metadata_add_component (md, WEB01_UUID, "again"));
  assert_int_equal (vms_get_errno (), EEXIST);
  assert_error_contains (WEB01_UUID);
  assert_int_equal (vms_document_component_count (md, NULL), 2);
  vms_document_free (md);
}

static void
component_refuses_a_relative_file_path (void **state)
{
  vms_document *md = make_metadata ();
  vms_component *c = vms_document_component (md, NULL, 1);

  assert_int_equal (vms_component_add_file (c, "images/db01.img",
                                            VMS_FILE_DISK, NULL, NULL), -1);
  assert_int_equal (vms_get_errno (), EINVAL);
  assert_error_contains ("images/db01.img");
  assert_int_equal (vms_component_file_count (c), 1);
  vms_document_free (md);
}

/* Issue 11: a network disk is named by its URI; only a disk may be, and
 * only a URI of the form scheme://…; a document holding one parses. */
static void
a_disk_may_be_a_network_disks_uri (void **state)
{
  vms_document *md = make_metadata ();
  vms_component *c = vms_document_component (md, NULL, 1);
  const char *bad[] = { "iscsi:/x", "1scsi://x", "://x", "is csi://x",
                        "iscsi://a\nb" };
  char *text;
  vms_document *back;

  assert_int_equal (vms_component_add_file (c, "iscsi://192.0.2.1:3260/iqn.2024-01.org.example:t/1",
                                            VMS_FILE_DISK, "raw", NULL), 0);
  assert_int_equal (vms_component_add_file (c, "nbd+unix:///e?socket=/run/s.sock",
                                            VMS_FILE_DISK, "raw", NULL), 0);
  assert_int_equal (vms_component_add_file (c, "iscsi://192.0.2.1/t/1",
                                            VMS_FILE_PLAIN, NULL, NULL), -1);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal (vms_component_add_file (c, bad[i], VMS_FILE_DISK,
                                              NULL, NULL), -1);
  assert_int_equal (vms_component_file_count (c), 3);
  text = vms_document_format (md);
  assert_non_null (text);
  back = vms_document_parse (text, strlen (text));
  if (back == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_document_free (back);
  /* The same URI as a plain file is refused by the parser too. */
  static const char plain[] =
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
    " \"writer\": {\"name\": \"w\"}, \"components\": [{\"name\": \"c\","
    " \"files\": [{\"path\": \"iscsi://h/t/1\", \"kind\": \"%s\"}]}]}";
  char doc[512];
  snprintf (doc, sizeof doc, plain, "disk");
  back = vms_document_parse (doc, strlen (doc));
  if (back == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_document_free (back);
  snprintf (doc, sizeof doc, plain, "plain");
  assert_null (vms_document_parse (doc, strlen (doc)));
  assert_error_contains ("absolute");
  free (text);
  vms_document_free (md);
}

static void
copy_formats_identically_and_is_independent (void **state)
{
  vms_document *md = make_metadata ();
  vms_document *copy = vms_document_copy (md);
  assert_non_null (copy);

  char *a = vms_document_format (md), *b = vms_document_format (copy);
  assert_string_equal (a, b);
  free (a);
  free (b);

  /* Changing the copy leaves the original alone. */
  assert_int_equal (vms_component_set_string (vms_document_component (copy, NULL, 0),
                                              "method", "saved-state"), 0);
  assert_string_equal (vms_component_get_string (vms_document_component (md, NULL, 0),
                                                 "method"), "online");
  vms_document_free (copy);
  vms_document_free (md);
}

static void
replace_fills_a_document_from_another_of_its_kind (void **state)
{
  vms_document *md = make_metadata ();
  vms_document *empty = vms_metadata_new (NULL, NULL);
  vms_document *bcd = vms_components_new ("b");

  assert_int_equal (vms_document_replace (empty, md), 0);
  assert_metadata_fields (empty);

  assert_int_equal (vms_document_replace (bcd, md), -1);
  assert_error_contains ("another kind");

  vms_document_free (bcd);
  vms_document_free (empty);
  vms_document_free (md);
}

static void
free_accepts_null (void **state)
{
  vms_document_free (NULL);
}

/* ---- backup components documents ---- */

/* A backup components document as the coordinator builds it: two writers,
 * the VM writer with both VMs of make_metadata (one restored fully, one
 * not) and an application writer that failed at Freeze (R4). */
static vms_document *
make_components (void)
{
  vms_document *md = make_metadata ();
  vms_document *bcd = vms_components_new ("20240501T120000Z-full");
  assert_non_null (bcd);

  assert_int_equal (vms_components_set_attr_json (bcd, "type", "\"full\""), 0);
  assert_int_equal (vms_components_set_attr_json (bcd, "started",
                                                  "1714564800"), 0);
  assert_int_equal (vms_components_set_attr_json (bcd, "host",
                      "{\"name\": \"kvm1\", \"cpus\": [0, 1]}"), 0);
  assert_int_equal (document_components_add_writer (bcd, "vmshadow-libvirt",
                                                    VM_WRITER_ID), 0);
  assert_int_equal (document_components_add_writer (bcd, "app-writer",
                                                    APP_WRITER_ID), 0);

  vms_component *web = document_components_add_copy (bcd, VM_WRITER_ID,
                         vms_document_component (md, NULL, 0));
  vms_component *db = document_components_add_copy (bcd, VM_WRITER_ID,
                        vms_document_component (md, NULL, 1));
  assert_non_null (web);
  assert_non_null (db);

  /* What the writer adds during the backup (R5). */
  assert_int_equal (vms_component_set_string (web, "capture",
                      "/var/lib/vmshadow/scratch/s1/web01.qcow2"), 0);
  assert_int_equal (vms_component_set_int (db, "saved_state_bytes",
                                           4294967296), 0);
  assert_int_equal (vms_component_add_file (db, "/srv/vm/db01.save",
                                            VMS_FILE_PLAIN, NULL, NULL), 0);

  document_component_set_restore_status (web, VMS_RESTORE_ALL);
  document_component_set_restore_status (db, VMS_RESTORE_FAILED);
  document_components_set_writer_result (bcd, VM_WRITER_ID,
                                         "stable", "none", NULL);
  document_components_set_writer_result (bcd, APP_WRITER_ID,
                                         "failed-at-freeze", "timeout",
                                         "did not answer Freeze within 60 s");
  vms_document_free (md);
  return bcd;
}

static void
assert_components_fields (const vms_document *bcd)
{
  assert_int_equal (vms_document_kind (bcd), VMS_DOC_COMPONENTS);
  assert_string_equal (vms_components_backup_id (bcd), "20240501T120000Z-full");
  assert_int_equal (vms_components_writer_count (bcd), 2);
  assert_string_equal (vms_components_writer_name (bcd, 0), "vmshadow-libvirt");
  assert_string_equal (vms_components_writer_id (bcd, 0), VM_WRITER_ID);
  assert_string_equal (vms_components_writer_name (bcd, 1), "app-writer");
  assert_string_equal (vms_components_writer_id (bcd, 1), APP_WRITER_ID);

  assert_int_equal (vms_document_component_count (bcd, VM_WRITER_ID), 2);
  assert_int_equal (vms_document_component_count (bcd, APP_WRITER_ID), 0);
  assert_int_equal (vms_document_component_count (bcd, "no-such-writer"), 0);
  assert_int_equal (vms_document_component_count (bcd, NULL), 0);
  assert_null (vms_document_find_component (bcd, APP_WRITER_ID, WEB01_UUID));

  const vms_component *web = vms_document_component (bcd, VM_WRITER_ID, 0);
  assert_non_null (web);
  assert_ptr_equal (vms_document_find_component (bcd, VM_WRITER_ID, WEB01_UUID),
                    web);
  assert_string_equal (vms_component_name (web), WEB01_UUID);
  assert_string_equal (vms_component_caption (web), "Online\\web01");
  assert_int_equal (vms_component_file_count (web), 3);
  assert_file (web, 0, "/var/lib/libvirt/images/web01.qcow2", VMS_FILE_DISK,
               "qcow2", "qemu");
  assert_file (web, 1, "/etc/libvirt/qemu/web01.xml", VMS_FILE_PLAIN,
               NULL, NULL);
  assert_file (web, 2, "/var/lib/libvirt/qemu/nvram/web01_VARS.fd",
               VMS_FILE_PLAIN, "raw", "file");
  assert_int_equal (vms_component_excluded_count (web), 2);
  assert_string_equal (vms_component_excluded_path (web, 0), "/dev/sdb");
  assert_string_equal (vms_component_get_string (web, "method"), "online");
  assert_string_equal (vms_component_get_string (web, "capture"),
                       "/var/lib/vmshadow/scratch/s1/web01.qcow2");
  assert_int_equal (vms_component_get_int (web, "freeze_window_ms", 0), 1500);
  assert_int_equal (vms_component_restore_status (web), VMS_RESTORE_ALL);

  const vms_component *db = vms_document_component (bcd, VM_WRITER_ID, 1);
  assert_non_null (db);
  assert_string_equal (vms_component_name (db), DB01_UUID);
  assert_int_equal (vms_component_file_count (db), 2);
  assert_file (db, 0, "/srv/vm/db01.img", VMS_FILE_DISK, "raw", NULL);
  assert_file (db, 1, "/srv/vm/db01.save", VMS_FILE_PLAIN, NULL, NULL);
  assert_true (vms_component_get_int (db, "saved_state_bytes", 0)
               == INT64_C (4294967296));
  assert_int_equal (vms_component_restore_status (db), VMS_RESTORE_FAILED);
}

/* The writer results and backup attributes have no accessors: read them
 * from the text, as a report or a later vmshadow would. */
static void
assert_components_text (const char *text)
{
  json_object *root = json_tokener_parse (text), *v, *a, *w;
  assert_non_null (root);

  assert_true (json_object_object_get_ex (root, "attributes", &a));
  assert_true (json_object_object_get_ex (a, "type", &v));
  assert_string_equal (json_object_get_string (v), "full");
  assert_true (json_object_object_get_ex (a, "started", &v));
  assert_true (json_object_get_int64 (v) == 1714564800);
  assert_true (json_object_object_get_ex (a, "host", &v));
  assert_true (json_object_is_type (v, json_type_object));

  assert_true (json_object_object_get_ex (root, "writers", &a));
  w = json_object_array_get_idx (a, 0);
  assert_true (json_object_object_get_ex (w, "state", &v));
  assert_string_equal (json_object_get_string (v), "stable");
  assert_true (json_object_object_get_ex (w, "failure", &v));
  assert_string_equal (json_object_get_string (v), "none");
  assert_false (json_object_object_get_ex (w, "message", &v));

  w = json_object_array_get_idx (a, 1);
  assert_true (json_object_object_get_ex (w, "state", &v));
  assert_string_equal (json_object_get_string (v), "failed-at-freeze");
  assert_true (json_object_object_get_ex (w, "failure", &v));
  assert_string_equal (json_object_get_string (v), "timeout");
  assert_true (json_object_object_get_ex (w, "message", &v));
  assert_string_equal (json_object_get_string (v),
                       "did not answer Freeze within 60 s");
  json_object_put (root);
}

static void
components_document_round_trips_every_field (void **state)
{
  vms_document *bcd = make_components ();
  assert_components_fields (bcd);

  vms_document *back = round_trip (bcd);
  assert_components_fields (back);

  char *text = vms_document_format (back);
  assert_components_text (text);
  free (text);
  vms_document_free (back);
  vms_document_free (bcd);
}

static void
components_document_refuses_changes_after_post_snapshot (void **state)
{
  vms_document *bcd = make_components ();
  vms_component *web = vms_document_component (bcd, VM_WRITER_ID, 0);

  document_seal (bcd, 1);
  assert_int_equal (vms_component_set_string (web, "late", "x"), -1);
  assert_int_equal (vms_get_errno (), EPERM);
  assert_error_contains ("PostSnapshot");
  assert_error_contains (WEB01_UUID);
  assert_int_equal (vms_component_set_int (web, "late", 1), -1);
  assert_int_equal (vms_component_add_file (web, "/late", VMS_FILE_PLAIN,
                                            NULL, NULL), -1);
  assert_int_equal (vms_component_add_excluded (web, "/late", "late"), -1);
  assert_null (vms_component_get_string (web, "late"));
  assert_int_equal (vms_component_file_count (web), 3);
  assert_int_equal (vms_component_excluded_count (web), 2);
  /* The coordinator still records the restore status (R6). */
  document_component_set_restore_status (web, VMS_RESTORE_NONE);
  assert_int_equal (vms_component_restore_status (web), VMS_RESTORE_NONE);

  document_seal (bcd, 0);
  assert_int_equal (vms_component_set_string (web, "late", "x"), 0);
  vms_document_free (bcd);
}

static void
new_components_document_starts_empty (void **state)
{
  vms_document *bcd = vms_components_new ("b1");
  assert_non_null (bcd);
  assert_int_equal (vms_components_writer_count (bcd), 0);

  vms_document *back = round_trip (bcd);
  assert_string_equal (vms_components_backup_id (back), "b1");
  assert_int_equal (vms_components_writer_count (back), 0);
  vms_document_free (back);
  vms_document_free (bcd);
}

/* ---- parsing: what is accepted ---- */

static void
parse_gives_minimal_components_their_defaults (void **state)
{
  vms_document *doc = parse_string (
    "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
    " \"backup_id\": \"b\", \"writers\": [{\"name\": \"w\", \"id\": \"i\","
    " \"components\": [{\"name\": \"c\"}]}]}");
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  const vms_component *c = vms_document_component (doc, "i", 0);
  assert_non_null (c);
  assert_string_equal (vms_component_caption (c), "");
  assert_int_equal (vms_component_file_count (c), 0);
  assert_int_equal (vms_component_excluded_count (c), 0);
  assert_null (vms_component_get_string (c, "method"));
  assert_int_equal (vms_component_get_int (c, "n", 9), 9);
  assert_int_equal (vms_component_restore_status (c), VMS_RESTORE_UNSET);

  struct vms_file_info fi;
  assert_int_equal (vms_component_file (c, 0, &fi), -1);
  assert_int_equal (vms_get_errno (), ERANGE);
  vms_document_free (doc);
}

static void
parse_treats_null_optional_fields_as_absent (void **state)
{
  vms_document *doc = parse_string (
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
    " \"writer\": {\"name\": \"w\", \"id\": null},"
    " \"components\": [{\"name\": \"c\", \"caption\": null, \"files\": null,"
    " \"excluded\": null, \"attributes\": null},"
    " {\"name\": \"d\", \"files\": [{\"path\": \"/x\", \"kind\": \"plain\","
    " \"format\": null, \"provider\": null}]}]}");
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  assert_null (vms_metadata_writer_id (doc));
  vms_component *c = vms_document_component (doc, NULL, 0);
  assert_string_equal (vms_component_caption (c), "");
  assert_int_equal (vms_component_file_count (c), 0);
  /* A component whose lists were null can still be added to. */
  assert_int_equal (vms_component_add_file (c, "/y", VMS_FILE_DISK, NULL, NULL), 0);
  assert_int_equal (vms_component_set_int (c, "k", 1), 0);
  assert_file (vms_document_component (doc, NULL, 1), 0, "/x", VMS_FILE_PLAIN,
               NULL, NULL);
  vms_document_free (doc);
}

static void
parse_keeps_unknown_fields_for_forward_compatibility (void **state)
{
  static const char text[] =
    "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
    " \"x-root\": {\"deep\": [1, 2.5, null, true]},"
    " \"backup_id\": \"b\", \"writers\": [{\"name\": \"w\", \"id\": \"i\","
    " \"x-writer\": 1, \"state\": \"stable\", \"failure\": \"none\","
    " \"components\": [{\"name\": \"c\", \"x-component\": \"y\","
    " \"files\": [{\"path\": \"/f\", \"kind\": \"disk\", \"x-file\": []}],"
    " \"excluded\": [{\"path\": \"/e\", \"reason\": \"r\", \"x-excluded\": {}}]"
    "}]}]}";
  vms_document *doc = parse_string (text);
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());

  vms_document *back = round_trip (doc);
  char *out = vms_document_format (back);
  const char *fields[] = { "\"x-root\"", "\"deep\"", "2.5", "\"x-writer\"",
                           "\"x-component\"", "\"x-file\"", "\"x-excluded\"" };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (strstr (out, fields[i]) == NULL)
      fail_msg ("%s was lost:\n%s", fields[i], out);
  assert_file (vms_document_component (back, "i", 0), 0, "/f", VMS_FILE_DISK,
               NULL, NULL);
  free (out);
  vms_document_free (back);
  vms_document_free (doc);
}

static void
parse_accepts_restore_status_values (void **state)
{
  static const char *const names[] = { "unset", "all", "none", "failed" };
  static const enum vms_restore_status values[] = {
    VMS_RESTORE_UNSET, VMS_RESTORE_ALL, VMS_RESTORE_NONE, VMS_RESTORE_FAILED
  };

  for (size_t i = 0; i < 4; i++) {
    char text[512];
    snprintf (text, sizeof text,
              "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
              " \"backup_id\": \"b\", \"writers\": [{\"name\": \"w\", \"id\": \"i\","
              " \"components\": [{\"name\": \"c\", \"restore_status\": \"%s\"}]}]}",
              names[i]);
    vms_document *doc = parse_string (text);
    if (doc == NULL)
      fail_msg ("restore_status \"%s\": %s", names[i], vms_get_error ());
    assert_int_equal (vms_component_restore_status (vms_document_component (doc, "i", 0)),
                      values[i]);
    assert_string_equal (vms_restore_status_name (values[i]), names[i]);
    vms_document_free (doc);
  }
}

static void
parse_ignores_restore_status_in_metadata (void **state)
{
  /* restore_status belongs to the backup components document; in a
   * metadata document it is an unknown field like any other. */
  vms_document *doc = parse_string (
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
    " \"writer\": {\"name\": \"w\"}, \"components\": [{\"name\": \"c\","
    " \"restore_status\": \"whatever\"}]}");
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_document_free (doc);
}

static void
parse_accepts_input_that_is_not_nul_terminated (void **state)
{
  static const char text[] =
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
    " \"writer\": {\"name\": \"w\"}, \"components\": []}";
  size_t len = sizeof text - 1;
  char *buf = malloc (len);     /* exactly the bytes, no terminator */
  assert_non_null (buf);
  memcpy (buf, text, len);
  vms_document *doc = vms_document_parse (buf, len);
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  assert_string_equal (vms_metadata_writer_name (doc), "w");
  vms_document_free (doc);
  free (buf);
}

/* A components document with an unknown field nested `levels` deep
 * (counting the document itself as the first level). */
static char *
nested_document (int levels)
{
  static const char head[] =
    "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
    " \"backup_id\": \"b\", \"writers\": [], \"x\": ";
  size_t n = levels - 1, len = sizeof head - 1 + 2 * n + 1;
  char *s = malloc (len + 1);
  assert_non_null (s);
  memcpy (s, head, sizeof head - 1);
  memset (s + sizeof head - 1, '[', n);
  memset (s + sizeof head - 1 + n, ']', n);
  s[len - 1] = '}';
  s[len] = '\0';
  return s;
}

static void
parse_accepts_nesting_of_32_levels (void **state)
{
  char *text = nested_document (32);
  vms_document *doc = parse_string (text);
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_document_free (round_trip (doc));
  vms_document_free (doc);
  free (text);
}

static void
parse_rejects_nesting_of_33_levels (void **state)
{
  char *text = nested_document (33);
  assert_null (parse_string (text));
  assert_error_contains ("too deep");
  free (text);
}

static void
parse_rejects_deep_nesting_of_a_million_levels (void **state)
{
  /* Must fail on the depth limit, not on the stack. */
  size_t n = 1000000;
  char *text = malloc (n);
  assert_non_null (text);
  memset (text, '[', n);
  assert_null (vms_document_parse (text, n));
  assert_error_contains ("too deep");
  free (text);
}

/* A metadata document with one component of the given name length. */
static char *
document_with_name_of (size_t name_len)
{
  static const char head[] =
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
    " \"writer\": {\"name\": \"w\"}, \"components\": [{\"name\": \"";
  static const char tail[] = "\"}]}";
  char *s = malloc (sizeof head - 1 + name_len + sizeof tail);
  assert_non_null (s);
  memcpy (s, head, sizeof head - 1);
  memset (s + sizeof head - 1, 'n', name_len);
  memcpy (s + sizeof head - 1 + name_len, tail, sizeof tail);
  return s;
}

static void
parse_accepts_component_name_of_1024_bytes (void **state)
{
  char *text = document_with_name_of (1024);
  vms_document *doc = parse_string (text);
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_document_free (doc);
  free (text);
}

static void
parse_rejects_component_name_over_1024_bytes (void **state)
{
  char *text = document_with_name_of (1025);
  assert_null (parse_string (text));
  assert_error_contains ("longer than 1024 bytes");
  free (text);
}

static void
parse_rejects_file_path_of_path_max_bytes (void **state)
{
  static const char head[] =
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
    " \"writer\": {\"name\": \"w\"}, \"components\": [{\"name\": \"c\","
    " \"files\": [{\"kind\": \"disk\", \"path\": \"/";
  static const char tail[] = "\"}]}]}";
  size_t n = PATH_MAX - 1;      /* with the slash: PATH_MAX bytes */
  char *s = malloc (sizeof head - 1 + n + sizeof tail);
  if (s == NULL)                /* not assert_non_null: gcc's -Warray-bounds */
    abort ();                   /* under ASan cannot see through it */
  memcpy (s, head, sizeof head - 1);
  memset (s + sizeof head - 1, 'p', n);
  memcpy (s + sizeof head - 1 + n, tail, sizeof tail);
  assert_null (parse_string (s));
  assert_error_contains ("must be an absolute path");

  /* One byte shorter fits. */
  memmove (s + sizeof head - 1 + n - 1, tail, sizeof tail);
  vms_document *doc = parse_string (s);
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_document_free (doc);
  free (s);
}

static void
parse_accepts_document_of_exactly_64_mib (void **state)
{
  static const char text[] =
    "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
    " \"writer\": {\"name\": \"w\"}, \"components\": []}";
  size_t len = 64 * MiB;
  char *buf = malloc (len);
  assert_non_null (buf);
  memcpy (buf, text, sizeof text - 1);
  memset (buf + sizeof text - 1, ' ', len - (sizeof text - 1));
  buf[len - 1] = '\n';
  vms_document *doc = vms_document_parse (buf, len);
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_document_free (doc);
  free (buf);
}

static void
parse_rejects_65_mib_input (void **state)
{
  /* Zero pages that are never written cost no memory; the size check
   * must come before anything reads them (they would also fail as NUL
   * bytes, with another message). */
  size_t len = 65 * MiB;
  char *buf = mmap (NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true (buf != MAP_FAILED);
  assert_null (vms_document_parse (buf, len));
  assert_int_equal (vms_get_errno (), EFBIG);
  assert_error_contains ("more than the 67108864 allowed");
  munmap (buf, len);
}

/* ---- parsing: what is rejected (one row per problem) ---- */

struct bad_input {
  const char *text;
  size_t len;
  const char *expect;           /* the error message contains this */
};

static void
parse_rejects (void **state)
{
  const struct bad_input *bad = *state;

  vms_clear_error ();
  vms_document *doc = vms_document_parse (bad->text, bad->len);
  if (doc != NULL) {
    vms_document_free (doc);
    fail_msg ("accepted: %.*s", (int) bad->len, bad->text);
  }
  assert_int_not_equal (vms_get_errno (), 0);
  assert_error_contains (bad->expect);
}

/* Documents for the rows: a valid metadata document with one component
 * whose body is C, and a valid components document with writers W. */
#define MD_WRITER(w, comps)                                                   \
  "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"                \
  " \"writer\": " w ", \"components\": [" comps "]}"
#define MD(comps) MD_WRITER ("{\"name\": \"w\", \"id\": \"i\"}", comps)
#define COMP(body) "{\"name\": \"c\"" body "}"
#define FILE1(f) COMP (", \"files\": [" f "]")
#define BCD(writers)                                                          \
  "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"              \
  " \"backup_id\": \"b\", \"writers\": [" writers "]}"
#define WRITER(id, comps)                                                     \
  "{\"name\": \"w\", \"id\": \"" id "\", \"components\": [" comps "]}"
#define VERSION(v)                                                            \
  "{\"format\": \"vmshadow-writer-metadata\", \"version\": " v ","            \
  " \"writer\": {\"name\": \"w\"}, \"components\": []}"

#define REJECT(name, text, expect)                                            \
  { name, parse_rejects, NULL, NULL,                                          \
    &(struct bad_input) { text, sizeof text - 1, expect } }

/* Issue 9, item 7: the whole int64 range is kept exactly, and UTF-8 text
 * of every length of sequence comes back as it was. */
static void
parse_keeps_int64_limits_and_utf8_text (void **state)
{
  static const char text[] =
    MD (COMP (", \"caption\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xbe\","
              " \"attributes\": {\"max\": 9223372036854775807,"
              " \"min\": -9223372036854775808, \"f\": 1.5e300}"));
  vms_document *doc = vms_document_parse (text, sizeof text - 1);
  if (doc == NULL)
    fail_msg ("%s", vms_get_error ());
  vms_component *c = vms_document_component (doc, NULL, 0);
  assert_int_equal (vms_component_get_int (c, "max", 0), INT64_MAX);
  assert_int_equal (vms_component_get_int (c, "min", 0), INT64_MIN);
  assert_string_equal (vms_component_caption (c),
                       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xbe");
  vms_document_free (doc);
}

/* The setters a writer in the process uses check UTF-8 the same way. */
static void
setters_refuse_text_that_is_not_utf_8 (void **state)
{
  vms_document *md = vms_metadata_new ("w", "i");
  assert_null (vms_metadata_add_component (md, "bad\xff", NULL));
  assert_null (vms_metadata_add_component (md, "c", "caption\xc3"));
  vms_component *c = vms_metadata_add_component (md, "c", "ok");
  assert_non_null (c);
  assert_int_equal (vms_component_set_string (c, "k", "\xed\xa0\x80"), -1);
  assert_error_contains ("is not UTF-8 text");
  assert_int_equal (vms_component_set_int (c, "\x80", 1), -1);
  assert_int_equal (vms_component_add_file (c, "/x\xfe", VMS_FILE_PLAIN, NULL, NULL), -1);
  assert_int_equal (vms_component_add_excluded (c, "/x", "why\xc0\x80"), -1);
  assert_int_equal (vms_component_file_count (c), 0);
  char *text = vms_document_format (md);
  assert_non_null (text);
  vms_document *again = vms_document_parse (text, strlen (text));
  assert_non_null (again);
  vms_document_free (again);
  free (text);
  vms_document_free (md);
}

static void
attribute_json_refuses_out_of_range_integers_and_bad_utf_8 (void **state)
{
  vms_document *bcd = vms_components_new ("b1");
  assert_int_equal (vms_components_set_attr_json (bcd, "n", "12345678901234567890"), -1);
  assert_error_contains ("out of range");
  assert_int_equal (vms_components_set_attr_json (bcd, "n", "[1, -99999999999999999999]"), -1);
  assert_int_equal (vms_components_set_attr_json (bcd, "s", "\"\xff\""), -1);
  assert_int_equal (vms_components_set_attr_json (bcd, "n", "9223372036854775807"), 0);
  vms_document_free (bcd);
}

static void
components_attribute_must_be_one_json_value (void **state)
{
  vms_document *bcd = vms_components_new ("b1");
  assert_int_equal (vms_components_set_attr_json (bcd, "n", "1 x"), -1);
  assert_int_equal (vms_components_set_attr_json (bcd, "n", "09e"), -1);
  assert_int_equal (vms_components_set_attr_json (bcd, "n", "null"), 0);
  assert_int_equal (vms_components_set_attr_json (bcd, "n", "12"), 0);
  vms_document_free (bcd);

  /* A parsed document without "attributes" gets them on demand. */
  static const char text[] =
    "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
    " \"backup_id\": \"b2\", \"writers\": []}";
  bcd = vms_document_parse (text, sizeof text - 1);
  assert_non_null (bcd);
  assert_int_equal (vms_components_set_attr_json (bcd, "type", "\"full\""), 0);
  vms_document_free (bcd);
}

#define TEST(name, fn) { name, fn, NULL, NULL, NULL }

/* ---- save and load ---- */

static char *
make_temp_dir (void)
{
  const char *tmp = getenv ("TMPDIR");
  char *dir;
  assert_true (asprintf (&dir, "%s/vms-test-document.XXXXXX",
                         tmp && *tmp ? tmp : "/tmp") > 0);
  assert_non_null (mkdtemp (dir));
  return dir;
}

static void
remove_temp_dir (char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  assert_non_null (d);
  while ((e = readdir (d)) != NULL) {
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    char *p;
    assert_true (asprintf (&p, "%s/%s", dir, e->d_name) > 0);
    unlink (p);
    free (p);
  }
  closedir (d);
  rmdir (dir);
  free (dir);
}

/* The names in dir, other than . and .., joined by spaces. */
static char *
list_dir (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  char *out = strdup ("");
  assert_non_null (d);
  while ((e = readdir (d)) != NULL) {
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    char *s;
    assert_true (asprintf (&s, "%s%s%s", out, *out ? " " : "", e->d_name) > 0);
    free (out);
    out = s;
  }
  closedir (d);
  return out;
}

static char *
read_file (const char *path)
{
  FILE *fp = fopen (path, "r");
  assert_non_null (fp);
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream (&buf, &len);
  char chunk[4096];
  size_t r;
  while ((r = fread (chunk, 1, sizeof chunk, fp)) > 0)
    fwrite (chunk, 1, r, mem);
  fclose (mem);
  fclose (fp);
  return buf;
}

static void
save_writes_a_private_file_and_no_temp_file (void **state)
{
  char *dir = make_temp_dir (), *path;
  vms_document *md = make_metadata ();
  assert_true (asprintf (&path, "%s/writer.json", dir) > 0);

  mode_t old = umask (022);
  int r = vms_document_save (md, path);
  umask (old);
  if (r != 0)
    fail_msg ("%s", vms_get_error ());

  struct stat st;
  assert_int_equal (stat (path, &st), 0);
  assert_true (S_ISREG (st.st_mode));
  assert_int_equal (st.st_mode & 07777, 0600);
  char *names = list_dir (dir);
  assert_string_equal (names, "writer.json");
  free (names);

  /* The file holds exactly the formatted text, and loads back. */
  char *text = vms_document_format (md), *saved = read_file (path);
  assert_string_equal (saved, text);
  vms_document *back = vms_document_load (path);
  if (back == NULL)
    fail_msg ("%s", vms_get_error ());
  assert_metadata_fields (back);

  free (saved);
  free (text);
  vms_document_free (back);
  vms_document_free (md);
  free (path);
  remove_temp_dir (dir);
}

static void
save_replaces_an_existing_document_whole (void **state)
{
  char *dir = make_temp_dir (), *path;
  vms_document *md = make_metadata ();
  vms_document *bcd = make_components ();
  assert_true (asprintf (&path, "%s/backup.json", dir) > 0);

  assert_int_equal (vms_document_save (md, path), 0);
  assert_int_equal (vms_document_save (bcd, path), 0);

  vms_document *back = vms_document_load (path);
  if (back == NULL)
    fail_msg ("%s", vms_get_error ());
  assert_components_fields (back);
  char *names = list_dir (dir);
  assert_string_equal (names, "backup.json");
  free (names);

  vms_document_free (back);
  vms_document_free (bcd);
  vms_document_free (md);
  free (path);
  remove_temp_dir (dir);
}

static void
save_into_a_missing_directory_names_the_path (void **state)
{
  char *dir = make_temp_dir (), *path;
  vms_document *md = make_metadata ();
  assert_true (asprintf (&path, "%s/no-such-dir/writer.json", dir) > 0);

  assert_int_equal (vms_document_save (md, path), -1);
  assert_int_equal (vms_get_errno (), ENOENT);
  assert_error_contains ("no-such-dir/writer.json");
  char *names = list_dir (dir);
  assert_string_equal (names, "");
  free (names);

  vms_document_free (md);
  free (path);
  remove_temp_dir (dir);
}

static void
load_of_a_missing_file_names_the_path (void **state)
{
  char *dir = make_temp_dir (), *path;
  assert_true (asprintf (&path, "%s/missing.json", dir) > 0);

  assert_null (vms_document_load (path));
  assert_int_equal (vms_get_errno (), ENOENT);
  assert_error_contains (path);
  assert_error_contains (strerror (ENOENT));

  free (path);
  remove_temp_dir (dir);
}

static void
load_of_a_malformed_file_names_the_path_and_the_problem (void **state)
{
  char *dir = make_temp_dir (), *path;
  assert_true (asprintf (&path, "%s/bad.json", dir) > 0);
  FILE *fp = fopen (path, "w");
  assert_non_null (fp);
  fputs (MD (FILE1 ("{\"path\": \"relative/disk.img\", \"kind\": \"disk\"}")), fp);
  fclose (fp);

  assert_null (vms_document_load (path));
  assert_int_equal (vms_get_errno (), EINVAL);
  assert_error_contains (path);
  assert_error_contains ("must be an absolute path");
  assert_error_contains ("relative/disk.img");

  free (path);
  remove_temp_dir (dir);
}

static void
load_rejects_a_file_over_64_mib (void **state)
{
  char *dir = make_temp_dir (), *path;
  assert_true (asprintf (&path, "%s/huge.json", dir) > 0);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, (off_t) (65 * MiB)), 0);   /* sparse */
  close (fd);

  assert_null (vms_document_load (path));
  assert_int_equal (vms_get_errno (), EFBIG);
  assert_error_contains (path);
  assert_error_contains ("larger than");

  free (path);
  remove_temp_dir (dir);
}

/* docs/documents.md: every ```json block is a document that parses and
 * formats to exactly the block (the examples are what vmshadow writes). */
static void
documented_examples_parse_and_format_as_shown (void **state)
{
  const char *root = getenv ("VMSHADOW_SOURCE_ROOT");
  char *path, *md;
  size_t blocks = 0;

  if (root == NULL)
    skip ();
  assert_true (asprintf (&path, "%s/docs/documents.md", root) > 0);
  md = read_file (path);
  for (char *p = md; (p = strstr (p, "```json\n")) != NULL; ) {
    p += strlen ("```json\n");
    char *end = strstr (p, "```\n");
    assert_non_null (end);
    *end = '\0';
    vms_document *doc = parse_string (p);
    if (doc == NULL)
      fail_msg ("example %zu in %s: %s", blocks + 1, path, vms_get_error ());
    char *text = vms_document_format (doc);
    assert_string_equal (text, p);
    free (text);
    vms_document_free (doc);
    blocks++;
    p = end + 1;
  }
  assert_int_equal (blocks, 2);   /* one of each kind */
  free (md);
  free (path);
}

static const struct CMUnitTest tests[] = {
  TEST ("metadata-document-round-trips-every-field",
        metadata_document_round_trips_every_field),
  TEST ("metadata-refuses-a-second-component-of-the-same-name",
        metadata_refuses_a_second_component_of_the_same_name),
  TEST ("component-refuses-a-relative-file-path",
        component_refuses_a_relative_file_path),
  TEST ("a-disk-may-be-a-network-disks-uri",
        a_disk_may_be_a_network_disks_uri),
  TEST ("copy-formats-identically-and-is-independent",
        copy_formats_identically_and_is_independent),
  TEST ("replace-fills-a-document-from-another-of-its-kind",
        replace_fills_a_document_from_another_of_its_kind),
  TEST ("free-accepts-null", free_accepts_null),
  TEST ("components-attribute-must-be-one-json-value",
        components_attribute_must_be_one_json_value),
  TEST ("components-document-round-trips-every-field",
        components_document_round_trips_every_field),
  TEST ("components-document-refuses-changes-after-post-snapshot",
        components_document_refuses_changes_after_post_snapshot),
  TEST ("new-components-document-starts-empty",
        new_components_document_starts_empty),

  TEST ("parse-gives-minimal-components-their-defaults",
        parse_gives_minimal_components_their_defaults),
  TEST ("parse-treats-null-optional-fields-as-absent",
        parse_treats_null_optional_fields_as_absent),
  TEST ("parse-keeps-unknown-fields-for-forward-compatibility",
        parse_keeps_unknown_fields_for_forward_compatibility),
  TEST ("parse-accepts-every-restore-status",
        parse_accepts_restore_status_values),
  TEST ("parse-ignores-restore-status-in-metadata",
        parse_ignores_restore_status_in_metadata),
  TEST ("parse-accepts-input-that-is-not-nul-terminated",
        parse_accepts_input_that_is_not_nul_terminated),
  TEST ("parse-keeps-int64-limits-and-utf8-text",
        parse_keeps_int64_limits_and_utf8_text),
  TEST ("setters-refuse-text-that-is-not-utf-8",
        setters_refuse_text_that_is_not_utf_8),
  TEST ("attribute-json-refuses-out-of-range-integers-and-bad-utf-8",
        attribute_json_refuses_out_of_range_integers_and_bad_utf_8),
  TEST ("parse-accepts-nesting-of-32-levels",
        parse_accepts_nesting_of_32_levels),
  TEST ("parse-rejects-nesting-of-33-levels",
        parse_rejects_nesting_of_33_levels),
  TEST ("parse-rejects-a-million-open-brackets",
        parse_rejects_deep_nesting_of_a_million_levels),
  TEST ("parse-accepts-component-name-of-1024-bytes",
        parse_accepts_component_name_of_1024_bytes),
  TEST ("parse-rejects-component-name-over-1024-bytes",
        parse_rejects_component_name_over_1024_bytes),
  TEST ("parse-rejects-file-path-of-path-max-bytes",
        parse_rejects_file_path_of_path_max_bytes),
  TEST ("parse-accepts-document-of-exactly-64-mib",
        parse_accepts_document_of_exactly_64_mib),
  TEST ("parse-rejects-65-mib-input", parse_rejects_65_mib_input),

  TEST ("save-writes-a-private-file-and-no-temp-file",
        save_writes_a_private_file_and_no_temp_file),
  TEST ("save-replaces-an-existing-document-whole",
        save_replaces_an_existing_document_whole),
  TEST ("save-into-a-missing-directory-names-the-path",
        save_into_a_missing_directory_names_the_path),
  TEST ("load-of-a-missing-file-names-the-path",
        load_of_a_missing_file_names_the_path),
  TEST ("load-of-a-malformed-file-names-the-path-and-the-problem",
        load_of_a_malformed_file_names_the_path_and_the_problem),
  TEST ("load-rejects-a-file-over-64-mib", load_rejects_a_file_over_64_mib),
  TEST ("documented-examples-parse-and-format-as-shown",
        documented_examples_parse_and_format_as_shown),

  REJECT ("parse-rejects-empty-input", "", "ends too early"),
  REJECT ("parse-rejects-text-that-is-not-json",
          "vmshadow-writer-metadata version 1", "not valid JSON"),
  REJECT ("parse-rejects-truncated-document",
          "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
          " \"writer\": {\"name\": \"w\"}, \"compo", "ends too early"),
  REJECT ("parse-rejects-trailing-garbage",
          MD ("") "\n}", "not valid JSON"),
  REJECT ("parse-rejects-a-second-document-after-the-first",
          MD ("") " " MD (""), "not valid JSON"),
  REJECT ("parse-rejects-nul-byte",
          MD ("") "\0", "NUL byte"),
  REJECT ("parse-rejects-nul-byte-inside-a-string",
          "{\"format\": \"vmshadow-writer\0-metadata\"}", "NUL byte"),
  REJECT ("parse-rejects-escaped-nul-in-a-component-name",
          MD ("{\"name\": \"c\\u0000d\"}"), "contains a NUL byte"),
  REJECT ("parse-rejects-a-top-level-array", "[" MD ("") "]",
          "must be a JSON object"),
  REJECT ("parse-rejects-a-top-level-string", "\"x\" ",
          "must be a JSON object"),
  REJECT ("parse-rejects-missing-format",
          "{\"version\": 1, \"writer\": {\"name\": \"w\"}, \"components\": []}",
          "\"format\" is missing"),
  REJECT ("parse-rejects-wrong-format-string",
          "{\"format\": \"vmshadow-writer-metadata-v2\", \"version\": 1}",
          "unknown format \"vmshadow-writer-metadata-v2\""),
  REJECT ("parse-rejects-format-that-is-not-a-string",
          "{\"format\": 1, \"version\": 1}", "\"format\" is missing or not a string"),
  REJECT ("parse-rejects-version-0", VERSION ("0"),
          "version 0 is not one this vmshadow reads (1 to 1)"),
  REJECT ("parse-rejects-version-2", VERSION ("2"),
          "version 2 is not one this vmshadow reads"),
  REJECT ("parse-rejects-negative-version", VERSION ("-1"), "version -1"),
  REJECT ("parse-rejects-version-as-string", VERSION ("\"1\""),
          "\"version\" is missing or not an integer"),
  REJECT ("parse-rejects-fractional-version", VERSION ("1.0"),
          "\"version\" is missing or not an integer"),
  REJECT ("parse-rejects-missing-version",
          "{\"format\": \"vmshadow-writer-metadata\","
          " \"writer\": {\"name\": \"w\"}, \"components\": []}",
          "\"version\" is missing"),
  REJECT ("parse-rejects-metadata-without-writer",
          "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
          " \"components\": []}",
          "metadata document: \"writer\" must be a JSON object"),
  REJECT ("parse-rejects-writer-that-is-a-string",
          MD_WRITER ("\"w\"", ""), "\"writer\" must be a JSON object"),
  REJECT ("parse-rejects-writer-without-name",
          MD_WRITER ("{\"id\": \"i\"}", ""), "writer: \"name\" is missing"),
  REJECT ("parse-rejects-writer-with-empty-name",
          MD_WRITER ("{\"name\": \"\"}", ""), "writer: \"name\" is empty"),
  REJECT ("parse-rejects-writer-id-that-is-a-number",
          MD_WRITER ("{\"name\": \"w\", \"id\": 7}", ""),
          "writer: \"id\" must be a string"),
  REJECT ("parse-rejects-metadata-without-components",
          "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
          " \"writer\": {\"name\": \"w\"}}", "\"components\" must be an array"),
  REJECT ("parse-rejects-components-that-is-an-object",
          "{\"format\": \"vmshadow-writer-metadata\", \"version\": 1,"
          " \"writer\": {\"name\": \"w\"}, \"components\": {}}",
          "\"components\" must be an array"),
  REJECT ("parse-rejects-component-that-is-not-an-object",
          MD ("[]"), "component 0 must be a JSON object"),
  REJECT ("parse-rejects-null-component", MD ("null"),
          "component 0 must be a JSON object"),
  REJECT ("parse-rejects-component-without-name",
          MD ("{\"caption\": \"x\"}"), "component 0: \"name\" is missing"),
  REJECT ("parse-rejects-empty-component-name",
          MD ("{\"name\": \"\"}"), "\"name\" is empty"),
  REJECT ("parse-rejects-caption-that-is-not-a-string",
          MD (COMP (", \"caption\": []")), "\"caption\" must be a string"),
  REJECT ("parse-rejects-duplicate-component-name",
          MD (COMP ("") ", {\"name\": \"d\"}, " COMP ("")),
          "component name \"c\" appears twice"),
  REJECT ("parse-rejects-files-that-is-not-an-array",
          MD (COMP (", \"files\": {}")), "\"files\" must be an array"),
  REJECT ("parse-rejects-file-that-is-not-an-object",
          MD (FILE1 ("\"/etc/x\"")), "file 0 must be a JSON object"),
  REJECT ("parse-rejects-file-without-path",
          MD (FILE1 ("{\"kind\": \"disk\"}")), "file 0: \"path\" is missing"),
  REJECT ("parse-rejects-relative-file-path",
          MD (FILE1 ("{\"path\": \"/ok\", \"kind\": \"disk\"},"
                     " {\"path\": \"images/a.img\", \"kind\": \"disk\"}")),
          "component 0 (\"c\"), file 1: \"path\" must be an absolute path,"
          " not \"images/a.img\""),
  REJECT ("parse-rejects-file-without-kind",
          MD (FILE1 ("{\"path\": \"/a\"}")), "file 0: \"kind\" is missing"),
  REJECT ("parse-rejects-bad-kind",
          MD (FILE1 ("{\"path\": \"/a\", \"kind\": \"block\"}")),
          "\"kind\" must be \"plain\" or \"disk\", not \"block\""),
  REJECT ("parse-rejects-kind-in-capitals",
          MD (FILE1 ("{\"path\": \"/a\", \"kind\": \"DISK\"}")),
          "not \"DISK\""),
  REJECT ("parse-rejects-image-format-that-is-not-a-string",
          MD (FILE1 ("{\"path\": \"/a\", \"kind\": \"disk\", \"format\": 2}")),
          "\"format\" must be a string"),
  REJECT ("parse-rejects-provider-that-is-not-a-string",
          MD (FILE1 ("{\"path\": \"/a\", \"kind\": \"disk\", \"provider\": true}")),
          "\"provider\" must be a string"),
  REJECT ("parse-rejects-excluded-that-is-not-an-array",
          MD (COMP (", \"excluded\": \"/dev/sdb\"")),
          "\"excluded\" must be an array"),
  REJECT ("parse-rejects-excluded-file-without-reason",
          MD (COMP (", \"excluded\": [{\"path\": \"/dev/sdb\"}]")),
          "excluded file 0: \"reason\" is missing"),
  REJECT ("parse-rejects-excluded-file-without-path",
          MD (COMP (", \"excluded\": [{\"reason\": \"r\"}]")),
          "excluded file 0: \"path\" is missing"),
  REJECT ("parse-rejects-attributes-not-an-object",
          MD (COMP (", \"attributes\": [\"method\", \"online\"]")),
          "\"attributes\" must be an object"),
  REJECT ("parse-rejects-components-document-without-backup-id",
          "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
          " \"writers\": []}", "\"backup_id\" is missing"),
  REJECT ("parse-rejects-components-document-without-writers",
          "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
          " \"backup_id\": \"b\"}", "\"writers\" must be an array"),
  REJECT ("parse-rejects-backup-attributes-not-an-object",
          "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
          " \"backup_id\": \"b\", \"attributes\": 1, \"writers\": []}",
          "backup components document: \"attributes\" must be an object"),
  REJECT ("parse-rejects-writer-entry-that-is-not-an-object",
          BCD ("1"), "writer 0 must be a JSON object"),
  REJECT ("parse-rejects-components-writer-without-id",
          BCD ("{\"name\": \"w\", \"components\": []}"),
          "writer 0: \"id\" is missing"),
  REJECT ("parse-rejects-components-writer-without-components",
          BCD ("{\"name\": \"w\", \"id\": \"i\"}"),
          "writer 0: \"components\" must be an array"),
  REJECT ("parse-rejects-duplicate-writer-id",
          BCD (WRITER ("i", "") ", " WRITER ("j", "") ", " WRITER ("i", "")),
          "writer 2: writer id \"i\" appears twice"),
  /* Issue 9, item 7: writer text is UTF-8, numbers are kept or refused. */
  REJECT ("parse-rejects-a-caption-that-is-not-utf-8",
          MD (COMP (", \"caption\": \"ok\xff\\u001b[31m\"")),
          "document is not UTF-8 text (byte"),
  REJECT ("parse-rejects-an-overlong-utf-8-slash-in-a-path",
          MD (FILE1 ("{\"path\": \"/a\xc0\xaf\" \"b\", \"kind\": \"plain\"}")),
          "is not UTF-8 text"),
  REJECT ("parse-rejects-an-attribute-key-that-is-not-utf-8",
          MD (COMP (", \"attributes\": {\"k\xed\xa0\x80\": 1}")),
          "is not UTF-8 text"),
  REJECT ("parse-rejects-an-integer-attribute-above-int64",
          MD (COMP (", \"attributes\": {\"n\": 12345678901234567890}")),
          "the integer 12345678901234567890 at byte"),
  REJECT ("parse-rejects-an-integer-attribute-below-int64",
          MD (COMP (", \"attributes\": {\"n\": [-9223372036854775809]}")),
          "the integer -9223372036854775809 at byte"),
  REJECT ("parse-rejects-duplicate-component-name-within-a-writer",
          BCD (WRITER ("i", COMP ("") ", " COMP (""))),
          "component name \"c\" appears twice"),
  REJECT ("parse-rejects-unknown-restore-status",
          BCD (WRITER ("i", COMP (", \"restore_status\": \"partial\""))),
          "unknown restore_status \"partial\""),
  REJECT ("parse-rejects-restore-status-in-capitals",
          BCD (WRITER ("i", COMP (", \"restore_status\": \"ALL\""))),
          "unknown restore_status \"ALL\""),
  REJECT ("parse-rejects-restore-status-that-is-not-a-string",
          BCD (WRITER ("i", COMP (", \"restore_status\": 1"))),
          "\"restore_status\" must be a string"),
  REJECT ("parse-rejects-bad-file-in-components-document",
          BCD (WRITER ("i", FILE1 ("{\"path\": \"\", \"kind\": \"disk\"}"))),
          "writer 0, component 0 (\"c\"), file 0: \"path\" is empty"),
};

int
main (int argc, char *argv[])
{
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("document", tests, NULL, NULL);
}

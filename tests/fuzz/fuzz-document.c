/* Fuzz target for vms_document_parse: documents are untrusted input (R5),
 * and a restore is driven only by them.
 *
 * Besides "never crash", it holds the parser to two properties:
 *  - an accepted document formats to text that is accepted again and
 *    formats to the same text (what a backup saves, a restore can load);
 *  - every accessor works on an accepted document (the parser's checks are
 *    what the accessors rely on), and so do the setters.
 * A failed property aborts, so libFuzzer and the replay program
 * (fuzz-replay.c) both report it as a crash with the input.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/document.h"
#include "vmshadow/error.h"

#include "fuzz-target.h"

#define broken(...) fuzz_broken ("fuzz-document", __VA_ARGS__)

/* Touch every field of a component through the accessors. */
static void
walk_component (const vms_component *c)
{
  struct vms_file_info fi;
  size_t n;

  if (vms_component_name (c) == NULL || vms_component_caption (c) == NULL)
    broken ("component without a name or caption");
  n = vms_component_file_count (c);
  for (size_t i = 0; i < n; i++) {
    if (vms_component_file (c, i, &fi) == -1)
      broken ("file %zu of %zu unreadable: %s", i, n, vms_get_error ());
    if (fi.path == NULL || fi.path[0] != '/')
      broken ("file %zu has no absolute path", i);
    (void) vms_file_kind_name (fi.kind);
  }
  if (vms_component_file (c, n, &fi) != -1)
    broken ("file %zu of %zu exists", n, n);
  n = vms_component_excluded_count (c);
  for (size_t i = 0; i < n; i++)
    if (vms_component_excluded_path (c, i) == NULL ||
        vms_component_excluded_reason (c, i) == NULL)
      broken ("excluded file %zu without path or reason", i);
  (void) vms_component_get_string (c, "method");
  (void) vms_component_get_int (c, "freeze_window_ms", 0);
  (void) vms_restore_status_name (vms_component_restore_status (c));
}

static void
walk (const vms_document *doc)
{
  if (vms_document_kind (doc) == VMS_DOC_METADATA) {
    if (vms_metadata_writer_name (doc) == NULL)
      broken ("metadata without a writer name");
    (void) vms_metadata_writer_id (doc);
    size_t n = vms_document_component_count (doc, NULL);
    for (size_t i = 0; i < n; i++) {
      const vms_component *c = vms_document_component (doc, NULL, i);
      if (c == NULL ||
          vms_document_find_component (doc, NULL, vms_component_name (c)) != c)
        broken ("component %zu cannot be found by its name", i);
      walk_component (c);
    }
    return;
  }

  if (vms_components_backup_id (doc) == NULL)
    broken ("backup components document without a backup id");
  size_t w = vms_components_writer_count (doc);
  for (size_t j = 0; j < w; j++) {
    const char *id = vms_components_writer_id (doc, j);
    if (id == NULL || vms_components_writer_name (doc, j) == NULL)
      broken ("writer %zu without a name or id", j);
    size_t n = vms_document_component_count (doc, id);
    for (size_t i = 0; i < n; i++) {
      const vms_component *c = vms_document_component (doc, id, i);
      if (c == NULL ||
          vms_document_find_component (doc, id, vms_component_name (c)) != c)
        broken ("writer %zu, component %zu cannot be found by its name", j, i);
      walk_component (c);
    }
  }
}

/* The document's text, or abort. */
static char *
format_or_die (const vms_document *doc, const char *what)
{
  char *text = vms_document_format (doc);
  if (text == NULL)
    broken ("%s does not format: %s", what, vms_get_error ());
  return text;
}

/* text must parse and format to itself. */
static void
check_stable (const char *text, const char *what)
{
  vms_document *again = vms_document_parse (text, strlen (text));
  if (again == NULL)
    broken ("%s does not parse again: %s\n%s", what, vms_get_error (), text);
  char *text2 = format_or_die (again, what);
  if (strcmp (text, text2) != 0)
    broken ("%s formats differently after a re-parse:\n%s\n---\n%s",
            what, text, text2);
  walk (again);
  free (text2);
  vms_document_free (again);
}

/* A writer adding to a copy of the document must keep it valid. */
static void
check_setters (const vms_document *doc)
{
  vms_document *copy = vms_document_copy (doc);
  if (copy == NULL)
    broken ("copy failed: %s", vms_get_error ());

  vms_component *c = NULL;
  if (vms_document_kind (copy) == VMS_DOC_METADATA)
    c = vms_metadata_add_component (copy, "fuzz-added", "Online\\fuzz");
  else if (vms_components_writer_count (copy) > 0)
    c = vms_document_component (copy, vms_components_writer_id (copy, 0), 0);
  if (c != NULL) {
    if (vms_component_set_string (c, "method", "saved-state") == -1 ||
        vms_component_set_int (c, "freeze_window_ms", 7) == -1 ||
        vms_component_add_file (c, "/fuzz/added.img", VMS_FILE_DISK,
                                "raw", NULL) == -1 ||
        vms_component_add_excluded (c, "/dev/fuzz", "added") == -1)
      broken ("a setter failed: %s", vms_get_error ());
    if (vms_component_get_int (c, "freeze_window_ms", 0) != 7)
      broken ("an attribute set is not read back");
  }
  char *text = format_or_die (copy, "the changed copy");
  check_stable (text, "the changed copy");
  free (text);
  vms_document_free (copy);
}

int
fuzz_accepts (const uint8_t *data, size_t size, const char **why)
{
  vms_clear_error ();
  vms_document *doc = vms_document_parse ((const char *) data, size);
  *why = doc ? NULL : vms_get_error ();
  vms_document_free (doc);
  return doc != NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  vms_clear_error ();
  vms_document *doc = vms_document_parse ((const char *) data, size);
  if (doc == NULL) {
    const char *msg = vms_get_error ();
    if (msg == NULL || *msg == '\0')
      broken ("rejected without a message");
    return 0;
  }

  walk (doc);
  char *text = format_or_die (doc, "an accepted document");
  check_stable (text, "an accepted document");
  check_setters (doc);
  free (text);
  vms_document_free (doc);
  return 0;
}

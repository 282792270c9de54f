/* Fuzz target for manifest parsing (lib/repo/manifest.c manifest_parse):
 * a manifest is read from the repository, which a restore trusts only as
 * far as this parser checks it.
 *
 * Besides "never crash", it holds the parser to:
 *  - a rejection always comes with a message;
 *  - an accepted manifest names only index files that stay inside its
 *    backup directory (no '/', no leading '.', ending ".idx");
 *  - an accepted manifest formats to text that parses again and formats
 *    to the same text (what a backup writes, a restore can read);
 *  - every accessor works on it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#include "repo-internal.h"
#include "fuzz-target.h"

#define broken(...) fuzz_broken ("fuzz-manifest", __VA_ARGS__)

static void
walk (const vms_manifest *m)
{
  size_t n = vms_manifest_file_count (m);
  struct vms_stored_file f;
  uint64_t size;

  if (vms_manifest_backup_id (m) == NULL || vms_manifest_attrs (m) == NULL)
    broken ("no backup id or attrs");
  for (size_t i = 0; i < n; i++) {
    const struct manifest_file *mf = manifest_file_at (m, i);
    if (vms_manifest_file (m, i, &f, &size) == -1 || mf == NULL)
      broken ("file %zu of %zu unreadable: %s", i, n, vms_get_error ());
    if (strchr (mf->index, '/') || mf->index[0] == '.' ||
        strlen (mf->index) < 5 ||
        strcmp (mf->index + strlen (mf->index) - 4, ".idx") != 0)
      broken ("file %zu has an unsafe index name \"%s\"", i, mf->index);
    if (f.writer_id == NULL || f.component == NULL || f.path == NULL)
      broken ("file %zu lacks a required string", i);
    if (vms_manifest_find_file (m, f.component, f.path) < 0)
      broken ("file %zu cannot be found by component and path", i);
  }
  if (vms_manifest_file (m, n, &f, &size) != -1)
    broken ("file %zu of %zu exists", n, n);
}

int
fuzz_accepts (const uint8_t *data, size_t size, const char **why)
{
  vms_clear_error ();
  vms_manifest *m = manifest_parse ((const char *) data, size, NULL);
  *why = m ? NULL : vms_get_error ();
  vms_manifest_free (m);
  return m != NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  vms_clear_error ();
  vms_manifest *m = manifest_parse ((const char *) data, size, NULL);
  if (m == NULL) {
    const char *msg = vms_get_error ();
    if (msg == NULL || *msg == '\0')
      broken ("rejected without a message");
    return 0;
  }
  walk (m);
  char *text = manifest_format (m);
  if (text == NULL)
    broken ("an accepted manifest does not format: %s", vms_get_error ());
  vms_manifest *again = manifest_parse (text, strlen (text),
                                        vms_manifest_backup_id (m));
  if (again == NULL)
    broken ("a formatted manifest does not parse: %s\n%s", vms_get_error (), text);
  walk (again);
  char *text2 = manifest_format (again);
  if (text2 == NULL || strcmp (text, text2) != 0)
    broken ("a manifest formats differently after a re-parse:\n%s\n---\n%s",
            text, text2 ? text2 : "(null)");
  free (text2);
  free (text);
  vms_manifest_free (again);
  vms_manifest_free (m);
  return 0;
}

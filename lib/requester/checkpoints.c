/* After a prune (issue 20): the vmshadow checkpoints of the VMs backed up
 * in a repository that no remaining backup needs are deleted, and so their
 * qcow2 bitmaps — else every online backup leaves one more bitmap on every
 * qcow2 disk, forever. The repository says what is needed (its catalogue:
 * where each disk's next incremental starts); the VM writer deletes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "requester-internal.h"
#include "vector.h"
#include "vm-writer.h"
#include "vmshadow/error.h"

static int
add_unique (string_vector *v, const char *s)
{
  if (string_vector_contains (v, s))
    return 0;
  if (string_vector_append_copy (v, s) == -1) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* The VMs (component UUIDs) of the VM writer in the remaining backups,
 * and each one's files (uuid "\n" path). */
static int
vm_files (vms_repo *repo, string_vector *uuids, string_vector *files)
{
  char **ids = NULL;
  size_t n = 0;
  int r = 0;

  if (vms_repo_list (repo, &ids, &n) == -1)
    return -1;
  for (size_t i = 0; i < n; i++) {
    vms_manifest *m = r == 0 ? vms_manifest_open (repo, ids[i]) : NULL;
    for (size_t k = 0; m && k < vms_manifest_file_count (m) && r == 0; k++) {
      struct vms_stored_file f;
      uint64_t size;
      CLEANUP_FREE char *key = NULL;
      if (vms_manifest_file (m, k, &f, &size) == -1 || f.writer_id == NULL ||
          strcmp (f.writer_id, VMS_VM_WRITER_ID) != 0 || f.kind != VMS_FILE_DISK)
        continue;
      if (asprintf (&key, "%s\n%s", f.component, f.path) == -1) {
        key = NULL;
        vms_set_error (ENOMEM, "out of memory");
        r = -1;
      }
      else if (add_unique (uuids, f.component) == -1 || add_unique (files, key) == -1)
        r = -1;
    }
    vms_manifest_free (m);
    free (ids[i]);
  }
  free (ids);
  return r;
}

int
vms_requester_prune_checkpoints (vms_repo *repo, const char *libvirt_uri,
                                 int dry_run, vms_repo_report_fn report,
                                 void *opaque)
{
  string_vector uuids = empty_vector, files = empty_vector;
  int total = 0;

  if (vm_files (repo, &uuids, &files) == -1)
    goto fail;
  for (size_t u = 0; u < uuids.len; u++) {
    string_vector needed = empty_vector;
    size_t ulen = strlen (uuids.ptr[u]);
    int r = 0;
    for (size_t i = 0; i < files.len && r == 0; i++) {
      const char *key = files.ptr[i];
      CLEANUP_FREE char *cp = NULL;
      if (strncmp (key, uuids.ptr[u], ulen) != 0 || key[ulen] != '\n')
        continue;
      /* Where this disk's next incremental starts (the catalogue). */
      int found = vms_repo_last_checkpoint (repo, VMS_VM_WRITER_ID, uuids.ptr[u],
                                            key + ulen + 1, &cp, NULL);
      if (found == -1 || (found == 1 && add_unique (&needed, cp) == -1))
        r = -1;
    }
    if (r == 0 && string_vector_append (&needed, NULL) == -1) {
      vms_set_error (ENOMEM, "out of memory");
      r = -1;
    }
    if (r == 0)
      r = vms_libvirt_prune_checkpoints (libvirt_uri, uuids.ptr[u],
                                         (const char *const *) needed.ptr,
                                         dry_run, report, opaque);
    string_vector_free_all (&needed);
    if (r == -1)
      goto fail;
    total += r;
  }
  string_vector_free_all (&uuids);
  string_vector_free_all (&files);
  return total;
 fail:
  string_vector_free_all (&uuids);
  string_vector_free_all (&files);
  return -1;
}

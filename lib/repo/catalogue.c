/* The checkpoint catalogue (issue 10): each stored file records the
 * checkpoint its next incremental may start from (struct vms_stored_file
 * .checkpoint: the VMS_ATTR_CHECKPOINT its component had when it was
 * backed up, or the file's own, issue 11); this finds the newest one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/error.h"
#include "vmshadow/repo.h"
#include "vmshadow/writer.h"

#include "str.h"

/* The checkpoint file f of manifest m records, or NULL. Backups made before
 * the catalogue have it only as their component's attribute. */
static const char *
file_checkpoint (const vms_manifest *m, const struct vms_stored_file *f)
{
  const vms_document *bcd = vms_manifest_components (m);
  vms_component *c;

  if (f->checkpoint)
    return f->checkpoint;
  c = bcd ? vms_document_find_component (bcd, f->writer_id, f->component) : NULL;
  return c ? vms_component_get_string (c, VMS_ATTR_CHECKPOINT) : NULL;
}

/* Whether checkpoint cp of file f is the file's own (issue 11: a stopped
 * VM's RBD disk records the image's snapshot,
 * VMS_ATTR_FILE_CHECKPOINT_PREFIX + path in its component), not one of
 * the whole component. */
static int
own_checkpoint (const vms_manifest *m, const struct vms_stored_file *f,
                const char *cp)
{
  const vms_document *bcd = vms_manifest_components (m);
  vms_component *c;
  const char *own;
  char *key;

  c = bcd ? vms_document_find_component (bcd, f->writer_id, f->component) : NULL;
  if (c == NULL)
    return 0;
  key = vms_strdup_printf ("%s%s", VMS_ATTR_FILE_CHECKPOINT_PREFIX, f->path);
  own = key ? vms_component_get_string (c, key) : NULL;
  free (key);
  return own != NULL && strcmp (own, cp) == 0;
}

int
vms_repo_last_checkpoint (vms_repo *repo, const char *writer_id,
                          const char *component, const char *path,
                          char **checkpoint, char **backup_id)
{
  char **ids = NULL;
  size_t n = 0;
  int found = 0;

  *checkpoint = NULL;
  if (backup_id)
    *backup_id = NULL;
  if (vms_repo_list (repo, &ids, &n) == -1)
    return -1;
  for (size_t i = n; i-- > 0 && !found; ) {     /* newest first */
    /* A backup that cannot be read is no base for anything. */
    vms_manifest *m = vms_manifest_open (repo, ids[i]);
    for (size_t k = 0; m && k < vms_manifest_file_count (m) && !found; k++) {
      struct vms_stored_file f;
      uint64_t size;
      const char *cp;
      if (vms_manifest_file (m, k, &f, &size) == -1 || f.writer_id == NULL ||
          strcmp (f.writer_id, writer_id) != 0 ||
          strcmp (f.component, component) != 0 ||
          (path && strcmp (f.path, path) != 0) ||
          (cp = file_checkpoint (m, &f)) == NULL ||
          /* A component's checkpoint is one of the whole component: a
           * file's own (the RBD snapshot of a stopped VM's backup) is no
           * checkpoint its other disks know, and would hide the one
           * they can start from (issue 11). */
          (path == NULL && own_checkpoint (m, &f, cp)))
        continue;
      found = 1;
      if ((*checkpoint = strdup (cp)) == NULL ||
          (backup_id && (*backup_id = strdup (ids[i])) == NULL))
        found = -1;
    }
    vms_manifest_free (m);
  }
  for (size_t i = 0; i < n; i++)
    free (ids[i]);
  free (ids);
  if (found == -1) {
    free (*checkpoint);
    *checkpoint = NULL;
    vms_set_error (ENOMEM, "out of memory");
  }
  return found;
}

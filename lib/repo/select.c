/* Finding one stored file of a backup by what an administrator knows: a
 * VM's name or UUID and a disk target ("vda"), or a component's name and a
 * file path. Used by `vmshadow serve` and the nbdkit plugin, so both
 * accept and refuse the same selections with the same words.
 *
 * VMs are found by the VM writer's documented component attributes
 * (docs/vm-writer.md): the component is named by the domain UUID and
 * carries "vm_name" and one "disk_target:<image path>" per disk. Nothing
 * else of that writer is known here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/document.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#define DISK_TARGET_ATTR "disk_target:"

/* Appends ", word" (or "word" first) to a bounded list for messages. */
static void
list_add (char *buf, size_t len, const char *word)
{
  size_t o = strlen (buf);
  if (o + 3 >= len)
    return;
  snprintf (buf + o, len - o, "%s%s", o ? ", " : "", word);
}

/* The component of the backup that sel names, with its writer. */
static const vms_component *
select_component (const vms_manifest *m, const struct vms_file_selector *sel)
{
  const vms_document *bcd = vms_manifest_components (m);
  const char *want = sel->vm ? sel->vm : sel->component;
  const vms_component *found = NULL;
  char names[512] = "";
  size_t nw = bcd ? vms_components_writer_count (bcd) : 0;

  for (size_t w = 0; w < nw; w++) {
    const char *wid = vms_components_writer_id (bcd, w);
    size_t nc = vms_document_component_count (bcd, wid);
    for (size_t i = 0; i < nc; i++) {
      const vms_component *c = vms_document_component (bcd, wid, i);
      const char *vm_name = vms_component_get_string (c, "vm_name");
      if (sel->vm && vm_name == NULL)
        continue;               /* not a VM */
      int match = strcmp (vms_component_name (c), want) == 0 ||
        (sel->vm && strcmp (vm_name, want) == 0);
      list_add (names, sizeof names, sel->vm ? vm_name : vms_component_name (c));
      if (!match)
        continue;
      if (found) {
        vms_set_error (EINVAL, "backup %s has more than one %s \"%s\"; name "
                       "it by UUID", vms_manifest_backup_id (m),
                       sel->vm ? "VM" : "component", want);
        return NULL;
      }
      found = c;
    }
  }
  if (found == NULL)
    vms_set_error (ENOENT, "backup %s has no %s \"%s\" (it has: %s)",
                   vms_manifest_backup_id (m), sel->vm ? "VM" : "component",
                   want, *names ? names : "none");
  return found;
}

/* The path of the disk whose target is sel->disk. */
static const char *
select_disk (const vms_manifest *m, const vms_component *c, const char *disk,
             const char *what)
{
  char targets[512] = "";
  size_t nf = vms_component_file_count (c);

  for (size_t i = 0; i < nf; i++) {
    struct vms_file_info fi;
    char key[4096];
    if (vms_component_file (c, i, &fi) == -1)
      continue;
    snprintf (key, sizeof key, DISK_TARGET_ATTR "%s", fi.path);
    const char *target = vms_component_get_string (c, key);
    if (target == NULL)
      continue;
    if (strcmp (target, disk) == 0)
      return fi.path;
    list_add (targets, sizeof targets, target);
  }
  vms_set_error (ENOENT, "%s in backup %s has no disk \"%s\" (its disks: %s)",
                 what, vms_manifest_backup_id (m), disk,
                 *targets ? targets : "none");
  return NULL;
}

int
vms_manifest_select_file (const vms_manifest *m,
                          const struct vms_file_selector *sel)
{
  const vms_component *c;
  const char *comp, *path = sel->file;
  char what[300];
  int i;

  if ((sel->vm == NULL) == (sel->component == NULL)) {
    vms_set_error (EINVAL, "name either a VM or a component, not %s",
                   sel->vm ? "both" : "neither");
    return -1;
  }
  if (sel->disk && sel->file) {
    vms_set_error (EINVAL, "name either a disk or a file, not both");
    return -1;
  }
  if ((c = select_component (m, sel)) == NULL)
    return -1;
  comp = vms_component_name (c);
  snprintf (what, sizeof what, "%s \"%s\"", sel->vm ? "VM" : "component",
            sel->vm ? sel->vm : comp);
  if (sel->disk && (path = select_disk (m, c, sel->disk, what)) == NULL)
    return -1;
  if (path == NULL) {
    /* Neither disk nor file: the component's only stored file. */
    size_t n = vms_manifest_file_count (m);
    int only = -1, count = 0;
    for (size_t f = 0; f < n; f++) {
      struct vms_stored_file sf;
      if (vms_manifest_file (m, f, &sf, NULL) == 0 &&
          strcmp (sf.component, comp) == 0)
        only = (int) f, count++;
    }
    if (count == 1)
      return only;
    vms_set_error (count ? EINVAL : ENOENT, "%s in backup %s has %s; say "
                   "which with %s", what, vms_manifest_backup_id (m),
                   count ? "more than one file" : "no stored file",
                   sel->vm ? "--disk TARGET" : "a file path");
    return -1;
  }
  i = vms_manifest_find_file (m, comp, path);
  if (i == -1)
    vms_set_error (ENOENT, "%s in backup %s has no stored file %s", what,
                   vms_manifest_backup_id (m), path);
  return i;
}

/* vda < vdb < … < vdz < vdaa: shorter targets first. */
static int
vm_disk_compare (const void *a, const void *b)
{
  const struct vms_vm_disk *x = a, *y = b;
  size_t lx = strlen (x->target), ly = strlen (y->target);
  return lx != ly ? (lx < ly ? -1 : 1) : strcmp (x->target, y->target);
}

int
vms_manifest_vm_disks (const vms_manifest *m, const char *vm,
                       struct vms_vm_disk **disks)
{
  const struct vms_file_selector sel = { .vm = vm };
  const vms_component *c;
  struct vms_vm_disk *out;
  size_t nf, n = 0;

  *disks = NULL;
  if (vm == NULL) {
    vms_set_error (EINVAL, "vms_manifest_vm_disks: no VM given");
    return -1;
  }
  if ((c = select_component (m, &sel)) == NULL)
    return -1;
  nf = vms_component_file_count (c);
  if ((out = calloc (nf ? nf : 1, sizeof *out)) == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < nf; i++) {
    struct vms_file_info fi;
    char key[4096];
    const char *target;
    int f;
    if (vms_component_file (c, i, &fi) == -1)
      continue;
    snprintf (key, sizeof key, DISK_TARGET_ATTR "%s", fi.path);
    if ((target = vms_component_get_string (c, key)) == NULL)
      continue;
    /* A disk the writer named but did not store (R13) is not there. */
    if ((f = vms_manifest_find_file (m, vms_component_name (c), fi.path)) < 0)
      continue;
    out[n].file = (size_t) f;
    out[n].target = target;
    n++;
  }
  if (n == 0) {
    free (out);
    vms_set_error (ENOENT, "VM \"%s\" in backup %s has no stored disk", vm,
                   vms_manifest_backup_id (m));
    return -1;
  }
  qsort (out, n, sizeof *out, vm_disk_compare);
  *disks = out;
  return (int) n;
}

int
vms_manifest_holds_vm (const vms_manifest *m, const char *vm)
{
  const vms_document *bcd = vms_manifest_components (m);
  size_t nw = bcd ? vms_components_writer_count (bcd) : 0;

  for (size_t w = 0; w < nw; w++) {
    const char *wid = vms_components_writer_id (bcd, w);
    size_t nc = vms_document_component_count (bcd, wid);
    for (size_t i = 0; i < nc; i++) {
      const vms_component *c = vms_document_component (bcd, wid, i);
      const char *vm_name = vms_component_get_string (c, "vm_name");
      if (vm_name && (strcmp (vm_name, vm) == 0 ||
                      strcmp (vms_component_name (c), vm) == 0))
        return 1;
    }
  }
  return 0;
}

/* The LV-recreation plan (issue 11; vm-lvm.h), and running LVM. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "cleanup.h"
#include "str.h"
#include "subprocess.h"
#include "vmshadow/error.h"

#include "vm-lvm.h"

/* 1 if s is a name LVM accepts for a VG or LV: letters, digits, '+', '_',
 * '.', '-', not starting with '-', not "." or "..". */
static int
lvm_name (const char *s)
{
  return s && *s && *s != '-' && strcmp (s, ".") != 0 && strcmp (s, "..") != 0
    && strlen (s) < 128
    && strspn (s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
               "0123456789+_.-") == strlen (s);
}

int
vm_lv_from_path (const char *device, char **vg, char **lv)
{
  CLEANUP_FREE char *v = NULL, *l = NULL;

  *vg = *lv = NULL;
  if (device && strncmp (device, "/dev/mapper/", 12) == 0) {
    /* VG-LV, each '-' inside a name doubled */
    const char *m = device + 12, *sep = NULL;
    for (const char *c = m; *c; c++) {
      if (c[0] == '-' && c[1] == '-') {
        c++;
        continue;
      }
      if (*c == '-') {
        sep = c;
        break;
      }
    }
    if (sep && (v = strndup (m, (size_t) (sep - m))) != NULL &&
        (l = strdup (sep + 1)) != NULL) {
      for (char *s = v, *w = v; (*w = *s) != '\0'; s += (s[0] == '-' && s[1] == '-') ? 2 : 1, w++)
        ;
      for (char *s = l, *w = l; (*w = *s) != '\0'; s += (s[0] == '-' && s[1] == '-') ? 2 : 1, w++)
        ;
    }
  }
  else if (device && strncmp (device, "/dev/", 5) == 0) {
    const char *m = device + 5, *slash = strchr (m, '/');
    if (slash && !strchr (slash + 1, '/') &&
        (v = strndup (m, (size_t) (slash - m))) != NULL)
      l = strdup (slash + 1);
  }
  if (!lvm_name (v) || !lvm_name (l)) {
    vms_set_error (EINVAL, "%s is no logical volume path (/dev/VG/LV or "
                   "/dev/mapper/VG-LV)", device ? device : "");
    return -1;
  }
  *vg = v;
  *lv = l;
  v = l = NULL;
  return 0;
}

/* The rows of report[0].<what> of an lvs/vgs JSON report, or NULL with the
 * error set. */
static json_object *
report_rows (json_object *doc, const char *what, const char *cmd)
{
  json_object *rep, *first, *rows;

  if (doc == NULL || !json_object_object_get_ex (doc, "report", &rep) ||
      !json_object_is_type (rep, json_type_array) ||
      json_object_array_length (rep) < 1 ||
      (first = json_object_array_get_idx (rep, 0)) == NULL ||
      !json_object_object_get_ex (first, what, &rows) ||
      !json_object_is_type (rows, json_type_array)) {
    vms_set_error (EINVAL, "the output of %s --reportformat json is not a "
                   "report of %s", cmd, what);
    return NULL;
  }
  return rows;
}

static const char *
field (json_object *row, const char *name)
{
  json_object *v;
  return json_object_object_get_ex (row, name, &v) &&
    json_object_is_type (v, json_type_string) ? json_object_get_string (v) : NULL;
}

/* A size as --units b prints it ("1073741824", "1073741824B"). */
static int
parse_bytes (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;

  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || (*end && strcmp (end, "B") != 0))
    return -1;
  *out = v;
  return 0;
}

/* The row of VG vg (and LV lv when not NULL). */
static json_object *
find_row (json_object *rows, const char *vg, const char *lv)
{
  for (size_t i = 0; i < json_object_array_length (rows); i++) {
    json_object *r = json_object_array_get_idx (rows, i);
    const char *v = field (r, "vg_name"), *l = field (r, "lv_name");
    if (v && strcmp (v, vg) == 0 && (lv == NULL || (l && strcmp (l, lv) == 0)))
      return r;
  }
  return NULL;
}

void
vm_lv_plan_clear (struct vm_lv_plan *p)
{
  free (p->vg); free (p->lv); free (p->pool);
  for (size_t i = 0; p->argv[i]; i++)
    free (p->argv[i]);
  memset (p, 0, sizeof *p);
}

int
vm_lv_plan (const char *lvs_json, const char *vgs_json, const char *device,
            uint64_t size, const char *thin_pool, struct vm_lv_plan *p)
{
  json_object *lvs = NULL, *vgs = NULL, *lrows, *vrows, *row;
  const char *attr;
  uint64_t n;
  size_t a = 0;
  int rc = -1;

  memset (p, 0, sizeof *p);
  if (vm_lv_from_path (device, &p->vg, &p->lv) == -1)
    return -1;
  if (thin_pool && !lvm_name (thin_pool)) {
    vms_set_error (EINVAL, "thin pool name \"%s\" is no LVM name", thin_pool);
    goto out;
  }
  lvs = json_tokener_parse (lvs_json ? lvs_json : "");
  vgs = json_tokener_parse (vgs_json ? vgs_json : "");
  if ((lrows = report_rows (lvs, "lv", "lvs")) == NULL ||
      (vrows = report_rows (vgs, "vg", "vgs")) == NULL)
    goto out;

  if ((row = find_row (lrows, p->vg, p->lv)) != NULL) {
    attr = field (row, "lv_attr");
    if (parse_bytes (field (row, "lv_size"), &n) == -1 || attr == NULL ||
        strlen (attr) < 1) {
      vms_set_error (EINVAL, "lvs gives LV %s/%s no size or attributes",
                     p->vg, p->lv);
      goto out;
    }
    /* '-': a plain volume, 'V': a thin volume; anything else (a pool 't',
     * a snapshot 's', a mirror, …) is never written over. */
    if (attr[0] != '-' && attr[0] != 'V') {
      vms_set_error (EINVAL, "LV %s/%s is no plain or thin volume (lv_attr "
                     "%s): it is never written over", p->vg, p->lv, attr);
      goto out;
    }
    if (n < size) {
      vms_set_error (ENOSPC, "LV %s/%s holds %" PRIu64 " bytes, fewer than "
                     "the %" PRIu64 " of the backup", p->vg, p->lv, n, size);
      goto out;
    }
    p->action = VM_LV_REUSE;
    p->lv_size = n;
    rc = 0;
    goto out;
  }

  if ((row = find_row (vrows, p->vg, NULL)) == NULL) {
    vms_set_error (ENOENT, "LV %s/%s is gone and its volume group %s does "
                   "not exist", p->vg, p->lv, p->vg);
    goto out;
  }
  p->action = VM_LV_CREATE;
  p->argv[a++] = strdup ("lvcreate");
  p->argv[a++] = strdup ("--yes");
  if (thin_pool) {
    json_object *pool = find_row (lrows, p->vg, thin_pool);
    attr = pool ? field (pool, "lv_attr") : NULL;
    if (attr == NULL || attr[0] != 't') {
      vms_set_error (ENOENT, "LV %s/%s was a thin volume of pool %s, which "
                     "is not a thin pool in volume group %s now", p->vg,
                     p->lv, thin_pool, p->vg);
      goto out;
    }
    /* Thin: the pool may be overcommitted; LVM warns, vmshadow does not
     * guess its future use. */
    p->pool = strdup (thin_pool);
    p->argv[a++] = strdup ("--virtualsize");
    p->argv[a++] = vms_strdup_printf ("%" PRIu64 "b", size);
    p->argv[a++] = strdup ("--thinpool");
    p->argv[a++] = vms_strdup_printf ("%s/%s", p->vg, thin_pool);
  }
  else {
    if (parse_bytes (field (row, "vg_free"), &n) == -1) {
      vms_set_error (EINVAL, "vgs gives volume group %s no free size", p->vg);
      goto out;
    }
    if (n < size) {
      vms_set_error (ENOSPC, "LV %s/%s is gone and volume group %s has no "
                     "room for it: %" PRIu64 " bytes free, %" PRIu64
                     " needed", p->vg, p->lv, p->vg, n, size);
      goto out;
    }
    p->argv[a++] = strdup ("--size");
    p->argv[a++] = vms_strdup_printf ("%" PRIu64 "b", size);
  }
  p->argv[a++] = strdup ("--name");
  p->argv[a++] = strdup (p->lv);
  if (!thin_pool)
    p->argv[a++] = strdup (p->vg);
  for (size_t i = 0; i < a; i++)
    if (p->argv[i] == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto out;
    }
  rc = 0;
 out:
  if (lvs)
    json_object_put (lvs);
  if (vgs)
    json_object_put (vgs);
  if (rc == -1) {
    int e = vms_get_errno ();
    CLEANUP_FREE char *m = strdup (vms_get_error ());
    vm_lv_plan_clear (p);
    vms_set_error (e, "%s", m ? m : "out of memory");
  }
  return rc;
}

int
vm_lv_thin_pool (const char *lvs_json, const char *device, char **pool)
{
  CLEANUP_FREE char *vg = NULL, *lv = NULL;
  json_object *lvs, *rows, *row;
  const char *attr, *name;
  int rc = -1;

  *pool = NULL;
  if (vm_lv_from_path (device, &vg, &lv) == -1)
    return 0;
  lvs = json_tokener_parse (lvs_json ? lvs_json : "");
  if ((rows = report_rows (lvs, "lv", "lvs")) == NULL)
    goto out;
  rc = 0;
  row = find_row (rows, vg, lv);
  attr = row ? field (row, "lv_attr") : NULL;
  name = row ? field (row, "pool_lv") : NULL;
  if (attr == NULL || attr[0] != 'V' || name == NULL || *name == '\0')
    goto out;                   /* not listed, or no thin volume */
  if (!lvm_name (name)) {
    vms_set_error (EINVAL, "lvs names the thin pool of %s/%s \"%s\", which "
                   "is no LVM name", vg, lv, name);
    rc = -1;
  }
  else if ((*pool = strdup (name)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    rc = -1;
  }
 out:
  if (lvs)
    json_object_put (lvs);
  return rc;
}

int
vm_lvm_run (const char *const *argv, char **out)
{
  const char *cmd = argv[0];
  /* (LVM warns on stderr of every descriptor it inherits) */
  const char *env[] = { "LVM_SUPPRESS_FD_WARNINGS=1", NULL };
  struct vms_subprocess_options o = { .argv = argv, .env = env,
                                      .timeout_ms = 60000 };
  struct vms_subprocess_result res = { 0 };
  char how[128], tail[600];
  int rc = -1;

  if (vms_subprocess_run (&o, &res) == -1)
    return -1;
  if (!vms_subprocess_succeeded (&res))
    vms_set_error (EIO, "%s %s: %s", cmd,
                   vms_subprocess_describe (&res, how, sizeof how),
                   vms_subprocess_error_tail (&res, 2, tail, sizeof tail));
  else if (out && (*out = strdup (res.out ? res.out : "")) == NULL)
    vms_set_error (ENOMEM, "out of memory");
  else
    rc = 0;
  vms_subprocess_result_reset (&res);
  return rc;
}

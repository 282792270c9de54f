/* The VM writer's restore plan (issue 20; R15–R20; docs/restore.md): from
 * the stored documents (R5), the options and a snapshot of the host, every
 * change a restore makes and every reason it refuses, decided before
 * anything changes. Pure: no libvirt call (vm-restore.c gathers the host
 * and executes the plan; test-vm-restore-plan.c tests this file).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"

#include "cleanup.h"
#include "str.h"
#include "vm-config.h"
#include "vm-restore-plan.h"

/* ---- small helpers ---- */

static const char *
base_name (const char *path)
{
  const char *b = strrchr (path, '/');
  return b ? b + 1 : path;
}

/* "a/b/c" → "a/b" (malloc'd); "/c" → "". */
static char *
dir_name (const char *path)
{
  const char *b = strrchr (path, '/');
  return b ? strndup (path, (size_t) (b - path)) : strdup (".");
}

int
vm_random_uuid (char out[37])
{
  unsigned char b[16];

  if (getrandom (b, sizeof b, 0) != (ssize_t) sizeof b) {
    vms_set_error (errno, "cannot make a new UUID: getrandom: %s",
                   strerror (errno));
    return -1;
  }
  b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);
  snprintf (out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
            b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return 0;
}

static void
changes_clear (change_vector *v)
{
  for (size_t i = 0; i < v->len; i++) {
    free (v->ptr[i].action);
    free (v->ptr[i].object);
    free (v->ptr[i].detail);
  }
  free (v->ptr);
  memset (v, 0, sizeof *v);
}

/* Append a change; detail may be NULL. */
static int
change_add (struct rs_vm *vm, const char *action, const char *object,
            const char *detail_fmt, ...)
  __attribute__ ((format (printf, 4, 5)));

static int
change_add (struct rs_vm *vm, const char *action, const char *object,
            const char *detail_fmt, ...)
{
  struct rs_change c = { 0 };
  va_list ap;

  c.action = strdup (action);
  c.object = strdup (object);
  if (detail_fmt) {
    va_start (ap, detail_fmt);
    if (vasprintf (&c.detail, detail_fmt, ap) == -1)
      c.detail = NULL;
    va_end (ap);
  }
  if (c.action == NULL || c.object == NULL || (detail_fmt && !c.detail) ||
      change_vector_append (&vm->changes, c) == -1) {
    free (c.action); free (c.object); free (c.detail);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

static void
rs_vm_clear (struct rs_vm *vm)
{
  free (vm->uuid); free (vm->name); free (vm->define_name);
  free (vm->define_uuid);
  free (vm->method); free (vm->state_before); free (vm->dir);
  free (vm->config_xml); free (vm->copy_xml);
  for (size_t i = 0; i < vm->nr_inst; i++) {
    free ((char *) vm->inst[i].path); free ((char *) vm->inst[i].overlay);
    free ((char *) vm->inst[i].socket); free ((char *) vm->inst[i].final);
    free ((char *) vm->inst[i].format);
  }
  free (vm->inst); free (vm->inst_final_xml);
  free (vm->cl_id); free (vm->cl_config);
  free (vm->cl_role_nvpair); free (vm->cl_role_value);
  for (size_t i = 0; i < vm->nr_files; i++) {
    free (vm->files[i].format);
    free (vm->files[i].thin_pool);
    free (vm->files[i].dev_error);
    free (vm->files[i].path);
    free (vm->files[i].target);
    free (vm->files[i].disk_target);
    free (vm->files[i].aside);
    free (vm->files[i].first_target);
  }
  free (vm->files);
  changes_clear (&vm->changes);
  free (vm->error);
  string_vector_free_all (&vm->notes);
  string_vector_free_all (&vm->disconnected);
}

void
vm_restore_free (struct vm_restore *r)
{
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->nr_vms; i++)
    rs_vm_clear (&r->vms[i]);
  free (r->vms);
  free (r->to); free (r->new_name); free (r->state_dir); free (r->stamp);
  string_vector_free_all (&r->map_old);
  string_vector_free_all (&r->map_new);
  free (r);
}

/* ---- from the documents ---- */

/* The role of a plain file: the writer's own files live in
 * <state_dir>/<uuid>/ at backup time. */
static int
file_role (const char *uuid, const struct vms_file_info *fi)
{
  CLEANUP_FREE char *seg = NULL;
  const char *b = base_name (fi->path);

  if (fi->kind == VMS_FILE_DISK)
    return RS_DISK;
  if (asprintf (&seg, "/%s/", uuid) == -1)
    return RS_OTHER;
  if (strstr (fi->path, seg) == NULL)
    return RS_OTHER;            /* NVRAM, TPM: back where they were */
  if (strcmp (b, "domain.xml") == 0)
    return RS_CONFIG;
  if (strcmp (b, "domain-live.xml") == 0)
    return RS_LIVE_CONFIG;
  return RS_STATE;              /* the saved memory state (R8) */
}

char *
vm_restore_clone_path (const struct vm_restore *r, const struct rs_vm *vm,
                       const struct rs_file *f)
{
  const char *b = base_name (f->path);

  switch (f->role) {
  case RS_DISK: {
    /* NEW-<target>.<ext of the original>, beside the original or in --to. */
    CLEANUP_FREE char *dir = r->to ? strdup (r->to) : dir_name (f->path);
    const char *dot = strrchr (b, '.');
    const char *ext = dot && dot != b && strlen (dot) <= 8 ? dot : "";
    CLEANUP_FREE char *tag = f->disk_target ? strdup (f->disk_target)
      : strndup (b, (size_t) (dot && dot != b ? dot - b : (ptrdiff_t) strlen (b)));
    if (dir == NULL || tag == NULL)
      return NULL;
    return vms_strdup_printf ("%s/%s-%s%s", dir, r->new_name, tag, ext);
  }
  case RS_CONFIG: case RS_LIVE_CONFIG: case RS_STATE:
    return vms_strdup_printf ("%s/%s", vm->dir, b);
  default: {
    /* NVRAM (".../nvram/<name>_VARS.fd"), TPM state (".../swtpm/<uuid>/…"):
     * per-VM files named after the VM. */
    CLEANUP_FREE char *dir = dir_name (f->path);
    if (dir == NULL)
      return NULL;
    if (strstr (f->path, vm->uuid))
      return vms_str_replace (f->path, vm->uuid, vm->define_uuid);
    if (strstr (b, vm->name)) {
      CLEANUP_FREE char *nb = vms_str_replace (b, vm->name, r->new_name);
      return nb ? vms_strdup_printf ("%s/%s", dir, nb) : NULL;
    }
    return vms_strdup_printf ("%s/%s-%s", dir, r->new_name, b);
  }
  }
}

/* "DIR/<VM name>-<disk target>.<format>" for a block or network disk
 * restored as a file (--to); characters other than letters, digits, '.',
 * '_' and '-' of the name become '_'. Caller frees; NULL (ENOMEM). */
static char *
device_file_name (const char *dir, const struct rs_vm *vm,
                  const struct rs_file *f)
{
  CLEANUP_FREE char *name = strdup (vm->name);

  if (name == NULL)
    return NULL;
  for (char *p = name; *p; p++)
    if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "0123456789._-", *p))
      *p = '_';
  if (name[0] == '.')
    name[0] = '_';
  return vms_strdup_printf ("%s/%s-%s.%s", dir, name,
                            f->disk_target ? f->disk_target : "disk",
                            f->format && strcmp (f->format, "qcow2") == 0
                            ? "qcow2" : "raw");
}

static int
plan_vm (struct vm_restore *r, const vms_component *c, struct rs_vm *vm)
{
  const char *uuid = vms_component_name (c);
  const char *name = vms_component_get_string (c, VMS_VM_ATTR_VM_NAME);
  const char *method = vms_component_get_string (c, VMS_VM_ATTR_METHOD);
  const char *before = vms_component_get_string (c, VMS_VM_ATTR_STATE_BEFORE);
  size_t n = vms_component_file_count (c);
  char newuuid[37];

  vm->clone = r->new_name != NULL;
  if (vm->clone && vm_random_uuid (newuuid) == -1)
    return -1;
  if ((vm->uuid = strdup (uuid)) == NULL ||
      (vm->name = strdup (name ? name : uuid)) == NULL ||
      (vm->define_name = strdup (r->new_name ? r->new_name
                                 : name ? name : uuid)) == NULL ||
      (vm->define_uuid = strdup (vm->clone ? newuuid : uuid)) == NULL ||
      (vm->method = strdup (method ? method : "offline")) == NULL ||
      (vm->state_before = strdup (before ? before : "shut-off")) == NULL ||
      asprintf (&vm->dir, "%s/%s/restore", r->state_dir, vm->define_uuid) == -1 ||
      (vm->files = calloc (n ? n : 1, sizeof *vm->files)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    struct vms_file_info fi;
    struct rs_file *f = &vm->files[vm->nr_files];
    CLEANUP_FREE char *key = NULL;
    const char *dt;

    if (vms_component_file (c, i, &fi) == -1)
      return -1;
    /* A network disk is named by its URI (issue 11); any other file by an
     * absolute path. */
    if (fi.path == NULL ||
        (fi.path[0] != '/' && !(fi.kind == VMS_FILE_DISK && strchr (fi.path, ':')))) {
      vms_set_error (EINVAL, "vm \"%s\" in the backup has a file with a "
                     "relative path \"%s\": the documents are damaged",
                     vm->name, fi.path ? fi.path : "");
      return -1;
    }
    f->kind = fi.kind;
    f->role = file_role (uuid, &fi);
    if (f->role == RS_DISK)
      f->device = fi.path[0] != '/' ? RS_DEV_NETWORK
        : strncmp (fi.path, "/dev/", 5) == 0 ? RS_DEV_BLOCK : RS_DEV_FILE;
    if (fi.format && (f->format = strdup (fi.format)) == NULL)
      goto oom;
    if ((f->path = strdup (fi.path)) == NULL ||
        asprintf (&key, "%s%s", VMS_VM_ATTR_DISK_TARGET_PREFIX, fi.path) == -1)
      goto oom;
    dt = vms_component_get_string (c, key);
    /* Issue 11: a thin LV's pool (its name is checked by the LV plan). */
    if (f->device == RS_DEV_BLOCK) {
      CLEANUP_FREE char *pkey = vms_strdup_printf (
        "%s%s", VMS_VM_ATTR_THIN_POOL_PREFIX, fi.path);
      const char *pool = pkey ? vms_component_get_string (c, pkey) : NULL;
      if (pkey == NULL || (pool && (f->thin_pool = strdup (pool)) == NULL))
        goto oom;
    }
    /* A disk target is a device name: used in a file name, so checked. */
    if (dt && *dt && strlen (dt) < 32 && strspn (dt, "abcdefghijklmnopqrstuvwxyz"
                                                  "0123456789") == strlen (dt) &&
        (f->disk_target = strdup (dt)) == NULL)
      goto oom;
    if (vm->clone)
      f->target = vm_restore_clone_path (r, vm, f);
    else
      switch (f->role) {
      case RS_DISK:
        if (r->to && f->device != RS_DEV_FILE)
          /* Issue 11: --to turns a device into a file, named after the VM
           * and the disk (a device's or URI's last part says little). */
          f->target = device_file_name (r->to, vm, f);
        else
          f->target = r->to ? vms_strdup_printf ("%s/%s", r->to, base_name (fi.path))
            : strdup (fi.path);
        break;
      case RS_CONFIG: case RS_LIVE_CONFIG: case RS_STATE:
        f->target = vms_strdup_printf ("%s/%s", vm->dir, base_name (fi.path));
        break;
      default:
        f->target = strdup (fi.path);
      }
    if (f->target == NULL)
      goto oom;
    vm->nr_files++;
  }
  for (size_t i = 0; i < vm->nr_files; i++)
    if (vm->files[i].role == RS_CONFIG)
      return 0;
  vms_set_error (EINVAL, "vm \"%s\" (%s) cannot be restored from this "
                 "backup: it holds no domain XML", vm->name, uuid);
  return -1;
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

/* Every VM of the backup, in document order, with their names: for
 * messages. */
static char *
backup_vm_list (const vms_document *bcd)
{
  char *s = strdup (""), *n;
  size_t nc = vms_document_component_count (bcd, VMS_VM_WRITER_ID);

  for (size_t i = 0; s && i < nc; i++) {
    const vms_component *c = vms_document_component (bcd, VMS_VM_WRITER_ID, i);
    const char *name = vms_component_get_string (c, VMS_VM_ATTR_VM_NAME);
    if (asprintf (&n, "%s%s%s (%s)", s, i ? ", " : "", name ? name : "?",
                  vms_component_name (c)) == -1)
      n = NULL;
    free (s);
    s = n;
  }
  return s;
}

static int
plan_build (struct vm_restore *r, const struct vms_vm_restore_options *o,
            const vms_document *bcd, const vms_document *md)
{
  size_t nc = vms_document_component_count (bcd, VMS_VM_WRITER_ID);
  CLEANUP_FREE int *want = calloc (nc ? nc : 1, sizeof *want);
  size_t nwant = 0;

  if (want == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (nc == 0) {
    vms_set_error (ENOENT, "backup %s holds no VMs (writer %s took no part)",
                   vms_components_backup_id (bcd), VMS_VM_WRITER_NAME);
    return -1;
  }
  for (size_t k = 0; o->vms && o->vms[k]; k++) {
    int found = 0;
    for (size_t i = 0; i < nc; i++) {
      const vms_component *c = vms_document_component (bcd, VMS_VM_WRITER_ID, i);
      const char *name = vms_component_get_string (c, VMS_VM_ATTR_VM_NAME);
      if (strcasecmp (vms_component_name (c), o->vms[k]) == 0 ||
          (name && strcmp (name, o->vms[k]) == 0)) {
        want[i] = found = 1;
      }
    }
    if (!found) {
      CLEANUP_FREE char *list = backup_vm_list (bcd);
      vms_set_error (ENOENT, "backup %s has no VM \"%s\"; it holds: %s",
                     vms_components_backup_id (bcd), o->vms[k],
                     list ? list : "?");
      return -1;
    }
  }
  for (size_t i = 0; i < nc; i++) {
    if (o->vms == NULL || o->vms[0] == NULL)
      want[i] = 1;
    nwant += want[i] != 0;
  }
  if (r->new_name && nwant != 1) {
    vms_set_error (EINVAL, "--name gives one VM a new name, but %zu VMs are "
                   "being restored; pick one with --vm", nwant);
    return -1;
  }
  if ((r->vms = calloc (nwant, sizeof *r->vms)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < nc; i++) {
    if (!want[i])
      continue;
    const vms_component *c = vms_document_component (bcd, VMS_VM_WRITER_ID, i);
    /* The stored metadata document has the files as Identify listed them;
     * the backup components document has the same component. */
    const vms_component *mc = md ? vms_document_find_component
      (md, NULL, vms_component_name (c)) : NULL;
    struct rs_vm *vm = &r->vms[r->nr_vms++];
    if (plan_vm (r, vms_component_file_count (c) ? c : mc ? mc : c, vm) == -1)
      return -1;
    /* Attributes set after Identify live in the components document. */
    if (vms_component_get_string (c, VMS_VM_ATTR_METHOD) == NULL && mc &&
        vms_component_get_string (mc, VMS_VM_ATTR_METHOD)) {
      free (vm->method);
      if ((vm->method = strdup (vms_component_get_string
                                (mc, VMS_VM_ATTR_METHOD))) == NULL)
        return -1;
    }
  }
  /* No two files may land on one path. */
  for (size_t a = 0; a < r->nr_vms; a++)
    for (size_t i = 0; i < r->vms[a].nr_files; i++)
      for (size_t b = a; b < r->nr_vms; b++)
        for (size_t j = b == a ? i + 1 : 0; j < r->vms[b].nr_files; j++)
          if (strcmp (r->vms[a].files[i].target,
                      r->vms[b].files[j].target) == 0) {
            vms_set_error (EINVAL, "%s of vm \"%s\" and %s of vm \"%s\" would "
                           "both be restored to %s; restore these VMs one at "
                           "a time (--vm) or to different directories (--to)",
                           r->vms[a].files[i].path, r->vms[a].name,
                           r->vms[b].files[j].path, r->vms[b].name,
                           r->vms[a].files[i].target);
            return -1;
          }
  return 0;
}

/* --name becomes a libvirt name and a part of file names. */
static int
check_new_name (const char *s)
{
  size_t n = strlen (s);

  if (n == 0 || n > 100 || s[0] == '.' || s[0] == '-' ||
      strspn (s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
              "0123456789._+-") != n) {
    vms_set_error (EINVAL, "--name \"%s\": a new VM name is 1 to 100 letters, "
                   "digits and . _ + - (not starting with . or -), as it also "
                   "names the copy's disk files", s);
    return -1;
  }
  return 0;
}

struct vm_restore *
vm_restore_new (const struct vms_vm_restore_options *o,
                const vms_document *bcd, const vms_document *md)
{
  const char *env = getenv ("VMSHADOW_VM_STATE_DIR");
  struct vm_restore *r;

  if (bcd == NULL || vms_document_kind (bcd) != VMS_DOC_COMPONENTS) {
    vms_set_error (EINVAL, "a restore needs the backup components document");
    return NULL;
  }
  if (o->to && o->to[0] != '/') {
    vms_set_error (EINVAL, "the restore directory must be an absolute path, "
                   "not \"%s\"", o->to);
    return NULL;
  }
  if (o->new_name && check_new_name (o->new_name) == -1)
    return NULL;
  if (o->new_name && o->replace) {
    vms_set_error (EINVAL, "--name makes a copy beside the original and "
                   "replaces nothing: leave out --replace");
    return NULL;
  }
  if (o->existing && o->to == NULL && o->new_name == NULL) {
    vms_set_error (EINVAL, "--existing decides what happens to a file at a "
                   "target of --to DIR or of a copy (--name); without them a "
                   "VM's own files are written back in place (--replace)");
    return NULL;
  }
  if ((r = calloc (1, sizeof *r)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  r->start = o->start;
  r->replace = o->replace;
  r->write_devices = o->write_devices;
  if (o->existing == NULL || strcmp (o->existing, "refuse") == 0)
    r->existing = RS_EXISTING_REFUSE;
  else if (strcmp (o->existing, "rename") == 0)
    r->existing = RS_EXISTING_RENAME;
  else if (strcmp (o->existing, "keep") == 0)
    r->existing = RS_EXISTING_KEEP;
  else {
    vms_set_error (EINVAL, "--existing takes keep, rename or refuse, not "
                   "\"%s\"", o->existing);
    goto fail;
  }
  r->stamp = o->stamp ? strdup (o->stamp)
    : vms_strdup_printf ("%" PRId64, (int64_t) time (NULL));
  if (r->stamp == NULL ||
      (o->to && (r->to = strdup (o->to)) == NULL) ||
      (o->new_name && (r->new_name = strdup (o->new_name)) == NULL) ||
      (r->state_dir = strdup (o->state_dir ? o->state_dir : env && *env ? env
                              : VMS_VM_DEFAULT_STATE_DIR)) == NULL)
    goto oom;
  /* Trailing slashes would make "DIR//disk" paths. */
  for (size_t l = r->to ? strlen (r->to) : 0; l > 1 && r->to[l - 1] == '/'; l--)
    r->to[l - 1] = '\0';
  for (size_t i = 0; o->network_map && o->network_map[i]; i++) {
    const char *eq = strchr (o->network_map[i], '=');
    char *a;
    if (eq == NULL || eq == o->network_map[i] || eq[1] == '\0') {
      vms_set_error (EINVAL, "--network-map takes OLD=NEW (a network or "
                     "bridge name each), not \"%s\"", o->network_map[i]);
      goto fail;
    }
    if ((a = strndup (o->network_map[i], (size_t) (eq - o->network_map[i]))) == NULL ||
        string_vector_append (&r->map_old, a) == -1) {
      free (a);
      goto oom;
    }
    if (string_vector_append_copy (&r->map_new, eq + 1) == -1)
      goto oom;
  }
  if (plan_build (r, o, bcd, md) == -1)
    goto fail;
  return r;
 oom:
  vms_set_error (ENOMEM, "out of memory");
 fail:
  vm_restore_free (r);
  return NULL;
}

char *
vm_restore_copy_xml (const struct rs_vm *vm, const char *xml,
                     string_vector *notes)
{
  CLEANUP_FREE const char **from = calloc (vm->nr_files + 1, sizeof *from);
  CLEANUP_FREE const char **to = calloc (vm->nr_files + 1, sizeof *to);
  size_t n = 0;

  if (from == NULL || to == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < vm->nr_files; i++)
    if (vm->files[i].role == RS_DISK || vm->files[i].role == RS_OTHER) {
      from[n] = vm->files[i].path;
      to[n++] = vm->files[i].target;
    }
  const struct vm_rewrite rw = {
    .name = vm->define_name, .uuid = vm->define_uuid, .new_macs = 1,
    .from = from, .to = to, .nr_paths = n,
    .old_name = vm->name, .old_uuid = vm->uuid,
  };
  return vm_config_rewrite (xml, strlen (xml), &rw, notes);
}

/* ---- against the host ---- */

struct why {
  char *text;
  int oom;
};

static void
why_add (struct why *w, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
why_add (struct why *w, const char *fmt, ...)
{
  va_list ap;
  char *line, *n;

  va_start (ap, fmt);
  if (vasprintf (&line, fmt, ap) == -1)
    line = NULL;
  va_end (ap);
  if (line == NULL) {
    w->oom = 1;
    return;
  }
  n = vms_strdup_printf ("%s%s%s", w->text ? w->text : "", w->text ? "; " : "", line);
  free (line);
  if (n == NULL) {
    w->oom = 1;
    return;
  }
  free (w->text);
  w->text = n;
}

static const struct vm_host_domain *
host_by_uuid (const struct vm_host *h, const char *uuid)
{
  for (size_t i = 0; i < h->nr_doms; i++)
    if (h->doms[i].uuid && strcasecmp (h->doms[i].uuid, uuid) == 0)
      return &h->doms[i];
  return NULL;
}

static const struct vm_host_domain *
host_by_name (const struct vm_host *h, const char *name)
{
  for (size_t i = 0; i < h->nr_doms; i++)
    if (h->doms[i].name && strcmp (h->doms[i].name, name) == 0)
      return &h->doms[i];
  return NULL;
}

/* The domain (other than skip_uuid's) that uses path, or NULL. */
static const struct vm_host_domain *
host_user_of (const struct vm_host *h, const char *path, const char *skip_uuid)
{
  for (size_t i = 0; i < h->nr_doms; i++) {
    if (skip_uuid && h->doms[i].uuid && strcasecmp (h->doms[i].uuid, skip_uuid) == 0)
      continue;
    for (size_t k = 0; k < h->doms[i].nr_paths; k++)
      if (strcmp (h->doms[i].paths[k], path) == 0)
        return &h->doms[i];
  }
  return NULL;
}

static int
host_exists (const struct vm_host *h, const char *path)
{
  return h->exists ? h->exists (h->opaque, path) : 0;
}

/* --existing keep: a name beside target that nothing has:
 * "DIR/disk.restored-STAMP.qcow2", then "…-2", … */
static char *
free_name_beside (const struct vm_restore *r, const struct vm_host *h,
                  const char *target)
{
  const char *b = base_name (target);
  const char *dot = strrchr (b, '.');
  int stem = (int) (dot && dot != b ? dot - target : (ptrdiff_t) strlen (target));
  const char *ext = dot && dot != b ? dot : "";

  for (int n = 1; n < 100; n++) {
    char *p = n == 1
      ? vms_strdup_printf ("%.*s.restored-%s%s", stem, target, r->stamp, ext)
      : vms_strdup_printf ("%.*s.restored-%s-%d%s", stem, target, r->stamp, n, ext);
    if (p == NULL || !host_exists (h, p))
      return p;
    free (p);
  }
  return NULL;
}

static const char *
role_name (const struct rs_file *f)
{
  switch (f->role) {
  case RS_DISK: return "disk";
  case RS_CONFIG: return "domain XML";
  case RS_LIVE_CONFIG: return "live domain XML";
  case RS_STATE: return "saved memory state";
  default: return "firmware state";
  }
}

/* The files of one VM: what is written where, what is kept aside. */
static int
plan_files (struct vm_restore *r, const struct vm_host *h, struct rs_vm *vm,
            struct why *why)
{
  /* --to and clones never write over anything (issue 20); in place, a
   * restore writes the VM's own files back where they were. */
  int careful = r->to != NULL || vm->clone;

  for (size_t i = 0; i < vm->nr_files; i++) {
    struct rs_file *f = &vm->files[i];
    const struct vm_host_domain *u;
    int own_dir = f->role == RS_CONFIG || f->role == RS_LIVE_CONFIG ||
      f->role == RS_STATE;

    free (f->aside);
    f->aside = NULL;
    /* Planned again: from the target the documents gave. */
    if (f->first_target == NULL && (f->first_target = strdup (f->target)) == NULL)
      return -1;
    if (strcmp (f->target, f->first_target) != 0) {
      char *t = strdup (f->first_target);
      if (t == NULL)
        return -1;
      free (f->target);
      f->target = t;
    }
    /* Issue 11: a host block device or a network disk. With --to it
     * becomes a file (below, like any file; the XML is rewritten to
     * match). A copy never writes into the original's device. In place it
     * is written into the device itself — only with --write-devices (its
     * bytes are gone for good: nothing can be kept aside), never into one
     * another defined VM uses, one in use on the host, or one smaller than
     * the backup; an RBD image that is gone is made again. */
    if (f->role == RS_DISK && f->device != RS_DEV_FILE && !r->to) {
      const char *kind = f->device == RS_DEV_BLOCK ? "host block device"
        : "network disk";
      const char *dt = f->disk_target ? f->disk_target : "?";
      f->into = f->recreate = 0;
      if (vm->clone) {
        why_add (why, "vm \"%s\": disk %s is the %s %s, which a copy "
                 "(--name) never writes into; add --to DIR to make the "
                 "copy's disk a file", vm->name, dt, kind, f->path);
        continue;
      }
      if (!r->write_devices) {
        why_add (why, "vm \"%s\": disk %s is the %s %s: restoring it writes "
                 "the backup into it in place, over whatever it holds now; "
                 "say so with --write-devices, or restore it as a file with "
                 "--to DIR", vm->name, dt, kind, f->path);
        continue;
      }
      if (f->format && strcmp (f->format, "raw") != 0) {
        why_add (why, "vm \"%s\": disk %s (%s) has format %s: vmshadow "
                 "writes only raw disks back into a device; restore it as a "
                 "file with --to DIR", vm->name, dt, f->path, f->format);
        continue;
      }
      u = host_user_of (h, f->path, vm->uuid);
      if (u) {
        why_add (why, "vm \"%s\": disk %s, the %s %s, is used by vm \"%s\"; "
                 "it is never written over: restore it as a file with --to "
                 "DIR", vm->name, dt, kind, f->path, u->name ? u->name : u->uuid);
        continue;
      }
      if (!f->dev_probed) {
        why_add (why, "vm \"%s\": disk %s, the %s %s, was not looked at",
                 vm->name, dt, kind, f->path);
        continue;
      }
      if (f->dev_error) {
        why_add (why, "vm \"%s\": disk %s, the %s %s: %s", vm->name, dt,
                 kind, f->path, f->dev_error);
        continue;
      }
      if (f->dev_size < 0) {
        /* Made again: a gone RBD image, or a gone LV the probe found room
         * for (a block device that cannot be has a dev_error). */
        const char *made = f->device != RS_DEV_BLOCK
          ? (strncmp (f->path, "rbd:", 4) == 0 ? "RBD image" : NULL)
          : f->thin_pool ? "thin logical volume" : "logical volume";
        if (made && f->size > 0) {
          f->recreate = 1;
          if (change_add (vm, "create", f->path, "%s of %" PRIu64
                          " bytes%s%s (it is gone)", made, f->size,
                          f->thin_pool ? " in pool " : "",
                          f->thin_pool ? f->thin_pool : "") == -1)
            return -1;
        }
        else {
          why_add (why, "vm \"%s\": disk %s, the %s %s, does not exist; "
                   "restore it as a file with --to DIR", vm->name, dt, kind,
                   f->path);
          continue;
        }
      }
      else if (f->size > 0 && (uint64_t) f->dev_size < f->size) {
        why_add (why, "vm \"%s\": disk %s, the %s %s, holds %" PRId64
                 " bytes, fewer than the %" PRIu64 " of the backup", vm->name,
                 dt, kind, f->path, f->dev_size, f->size);
        continue;
      }
      f->into = 1;
      if (change_add (vm, "write-into", f->path, "disk %s from the backup, "
                      "written into the %s in place (what it holds now is "
                      "lost)", dt, kind) == -1)
        return -1;
      continue;
    }
    if (f->role == RS_DISK && f->device != RS_DEV_FILE && vm->clone) {
      why_add (why, "vm \"%s\": disk %s is the %s %s: a copy (--name) of a "
               "VM with such a disk is not done yet; restore it under its "
               "own name with --to DIR", vm->name,
               f->disk_target ? f->disk_target : "?",
               f->device == RS_DEV_BLOCK ? "host block device" : "network disk",
               f->path);
      continue;
    }
    /* A clone touches nothing of the original: not even its files. */
    u = host_user_of (h, f->target, vm->clone ? NULL : vm->uuid);
    if (u)
      why_add (why, "vm \"%s\" cannot be restored: %s would overwrite a file "
               "of vm \"%s\"; restore elsewhere with --to DIR%s", vm->name,
               f->target, u->name ? u->name : u->uuid,
               vm->clone ? " or under another --name" : "");
    if (vm->clone)
      for (size_t k = 0; k < vm->nr_files; k++)
        if (strcmp (vm->files[k].path, f->target) == 0)
          why_add (why, "vm \"%s\": the copy's %s would be %s, a file of the "
                   "original; choose another --name", vm->name,
                   role_name (f), f->target);
    f->exists = host_exists (h, f->target);
    if (f->exists && careful && !own_dir) {
      switch (r->existing) {
      case RS_EXISTING_REFUSE:
        why_add (why, "vm \"%s\": %s exists already; %s never writes over a "
                 "file: remove it, or choose --existing rename (keep it aside "
                 "as %s.vmshadow-%s) or --existing keep (write the restored "
                 "%s beside it under a new name)", vm->name, f->target,
                 vm->clone ? "--name" : "--to", f->target, r->stamp,
                 role_name (f));
        break;
      case RS_EXISTING_RENAME:
        if ((f->aside = vms_strdup_printf ("%s.vmshadow-%s", f->target, r->stamp)) == NULL)
          return -1;
        if (host_exists (h, f->aside))
          why_add (why, "vm \"%s\": cannot keep %s aside: %s exists already",
                   vm->name, f->target, f->aside);
        if (change_add (vm, "keep-aside", f->target, "renamed to %s (never "
                        "deleted)", f->aside) == -1)
          return -1;
        f->exists = 0;          /* it is gone from there when we write */
        break;
      case RS_EXISTING_KEEP: {
        char *t = free_name_beside (r, h, f->target);
        if (t == NULL)
          return -1;
        if (change_add (vm, "keep", f->target, "left as it is; the restored "
                        "%s goes to %s", role_name (f), t) == -1) {
          free (t);
          return -1;
        }
        free (f->target);
        f->target = t;
        f->exists = 0;
        break;
      }
      }
    }
    if (change_add (vm, f->exists && !own_dir ? "overwrite" : "write",
                    f->target, "%s %s from the backup%s", role_name (f),
                    f->path, f->exists && !own_dir
                    ? " (the file there is replaced)" : "") == -1)
      return -1;
  }
  /* R19: links at the original paths of the disks (--to, not clones), made
   * only where nothing is: a file there is never removed. */
  if (r->to && !vm->clone)
    for (size_t i = 0; i < vm->nr_files; i++) {
      const struct rs_file *f = &vm->files[i];
      if (f->role != RS_DISK || strcmp (f->path, f->target) == 0 ||
          f->device != RS_DEV_FILE)
        continue;               /* no link in place of a device or a URI */
      if (host_exists (h, f->path)) {
        if (change_add (vm, "no-link", f->path, "something is there; it is "
                        "left as it is (a link to %s only if it is one "
                        "already)", f->target) == -1)
          return -1;
      }
      else if (change_add (vm, "link", f->path, "symbolic link to %s",
                           f->target) == -1)
        return -1;
    }
  return 0;
}

int
vm_restore_plan (struct vm_restore *r, const struct vm_host *h)
{
  struct why why = { 0 };

  r->planned = 0;
  for (size_t i = 0; i < r->nr_vms; i++) {
    struct rs_vm *vm = &r->vms[i];
    const struct vm_host_domain *same = host_by_uuid (h, vm->uuid);
    const struct vm_host_domain *named = host_by_name (h, vm->define_name);
    CLEANUP_FREE char *who = vms_strdup_printf ("vm \"%s\" (%s)", vm->name, vm->uuid);
    CLEANUP_FREE char *as = vms_strdup_printf ("vm \"%s\" (%s)", vm->define_name,
                                               vm->define_uuid);

    if (who == NULL || as == NULL)
      goto oom;
    changes_clear (&vm->changes);
    vm->present = same != NULL;
    vm->active = same && same->active;
    vm->persistent = same && same->persistent;
    if (vm->clone) {
      if (named)
        why_add (&why, "vm \"%s\" cannot be copied as \"%s\": a VM of that "
                 "name exists (%s); choose another --name", vm->name,
                 vm->define_name, named->uuid ? named->uuid : "?");
      if (same && change_add (vm, "untouched", who, "the original stays as it "
                              "is (%s); the copy gets a new UUID, new MAC "
                              "addresses and its own files",
                              same->active ? "running" : "not running") == -1)
        goto oom;
    }
    else {
      if (named && named->uuid && strcasecmp (named->uuid, vm->uuid) != 0)
        why_add (&why, "vm \"%s\" (%s) cannot be restored: another VM (%s) "
                 "has the name \"%s\"; restore it under a new name with "
                 "--name, or remove that VM first", vm->name, vm->uuid,
                 named->uuid, vm->define_name);
      if (same && !r->replace)
        why_add (&why, "vm \"%s\" (%s) exists on this host (%s); restoring it "
                 "replaces it: it would be turned off, undefined and its "
                 "files written over. Add --replace to do that, or restore a "
                 "copy beside it with --name NEW (new UUID, MAC addresses and "
                 "disk files)", same->name ? same->name : vm->name, vm->uuid,
                 same->active ? "running" : "not running");
      if (same && same->active &&
          change_add (vm, "turn-off", who, "replaced (--replace): turned off "
                      "at once (virDomainDestroy), the guest is not asked") == -1)
        goto oom;
      if (same && same->persistent &&
          change_add (vm, "undefine", who, "replaced (--replace): its "
                      "definition, snapshot and checkpoint metadata go; its "
                      "NVRAM and TPM state are restored over") == -1)
        goto oom;
    }
    if (plan_files (r, h, vm, &why) == -1)
      goto oom;
    /* The copy's XML from the stored one: its new MACs, paths, what it
     * leaves out, are changes too. */
    free (vm->copy_xml);
    vm->copy_xml = NULL;
    if (vm->clone && vm->config_xml) {
      string_vector notes = empty_vector;
      vm->copy_xml = vm_restore_copy_xml (vm, vm->config_xml, &notes);
      if (vm->copy_xml == NULL)
        why_add (&why, "vm \"%s\": its stored domain XML cannot be made a "
                 "copy's: %s", vm->name, vms_get_error ());
      for (size_t k = 0; k < notes.len; k++)
        if (change_add (vm, "rewrite", as, "%s", notes.ptr[k]) == -1) {
          string_vector_free_all (&notes);
          goto oom;
        }
      string_vector_free_all (&notes);
    }
    if (change_add (vm, "define", as, vm->clone
                    ? "a copy of vm \"%s\": new UUID, a new MAC address for "
                    "every interface, disks at the paths above"
                    : "from the backup's domain XML%s", vm->clone ? vm->name
                    : r->to ? ", disks at the paths above" : "") == -1)
      goto oom;
    if (strcmp (vm->method, "saved-state") == 0 && !vm->clone) {
      if (change_add (vm, "resume", as, "from its saved memory state, %s",
                      strcmp (vm->state_before, "paused") == 0 ? "paused"
                      : "running") == -1)
        goto oom;
    }
    else if (r->start) {
      if (change_add (vm, "start", as, "%s", strcmp (vm->method, "saved-state") == 0
                      ? "boots from its disks (a copy is not resumed from the "
                      "original's memory state)" : "--start") == -1)
        goto oom;
    }
  }
  if (why.oom)
    goto oom;
  if (why.text) {
    vms_set_error (EEXIST, "%s", why.text);
    free (why.text);
    return -1;
  }
  r->planned = 1;
  return 0;
 oom:
  free (why.text);
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

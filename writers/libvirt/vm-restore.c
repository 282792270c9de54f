/* vmshadow — the VM writer in a restore session (issue 6, R14–R21;
 * docs/restore.md).
 *
 * The plan comes from the stored documents alone (R5): which VMs, which
 * files, where each one goes. PreRestore first checks everything that could
 * make the restore refuse (a name taken by another VM, a file that is
 * another VM's disk, a --network-map target that does not exist) and only
 * then turns each VM off and undefines it (R15). PostRestore defines each
 * VM whose files were all written (R17, R18) from its stored XML with the
 * real disk paths (R20), links the original paths to them (R19),
 * reconnects or disconnects its interfaces (R21), and resumes a saved
 * state or starts it when asked. The guest takes no part (R14).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"

#include "cleanup.h"
#include "log.h"
#include "vm-internal.h"

struct rs_file {
  char *path;                   /* as backed up */
  char *target;                 /* where the requester writes it */
  enum vms_file_kind kind;
  int role;                     /* RS_* */
};

enum { RS_DISK, RS_CONFIG, RS_LIVE_CONFIG, RS_STATE, RS_OTHER };

struct rs_vm {
  char *uuid;
  char *name;                   /* as backed up */
  char *define_name;            /* as defined now */
  char *method, *state_before;
  struct rs_file *files;
  size_t nr_files;
  char *dir;                    /* <state_dir>/<uuid>/restore */
  string_vector owned;          /* paths the VM of this UUID used before */

  /* The outcome. */
  int defined, resumed;
  const char *state;
  char *error;
  string_vector notes, disconnected;
};

struct vms_vm_restore {
  struct vm_writer *w;
};

struct vm_restore {
  struct vms_vm_restore handle; /* what the requester holds */
  char *to;
  char *new_name;
  int start;
  string_vector map_old, map_new;
  char *state_dir;
  struct rs_vm *vms;
  size_t nr_vms;
};

/* ---- small helpers ---- */

static int
sv_add (string_vector *v, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static int
sv_add (string_vector *v, const char *fmt, ...)
{
  va_list ap;
  char *s;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1)
    return -1;
  if (string_vector_append (v, s) == -1) {
    free (s);
    return -1;
  }
  return 0;
}

static const char *
base_name (const char *path)
{
  const char *b = strrchr (path, '/');
  return b ? b + 1 : path;
}

static void
rs_vm_clear (struct rs_vm *vm)
{
  free (vm->uuid); free (vm->name); free (vm->define_name);
  free (vm->method); free (vm->state_before); free (vm->dir);
  for (size_t i = 0; i < vm->nr_files; i++) {
    free (vm->files[i].path);
    free (vm->files[i].target);
  }
  free (vm->files);
  string_vector_free_all (&vm->owned);
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
  free (r->to); free (r->new_name); free (r->state_dir);
  string_vector_free_all (&r->map_old);
  string_vector_free_all (&r->map_new);
  free (r);
}

/* The VM's failure, kept for the report (the first one wins). */
static void
rs_fail (struct rs_vm *vm, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
rs_fail (struct rs_vm *vm, const char *fmt, ...)
{
  va_list ap;
  char *s;

  if (vm->error)
    return;
  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    s = NULL;
  va_end (ap);
  vm->error = s ? s : strdup ("out of memory");
}

/* ---- the plan (no libvirt) ---- */

static const vms_document *
find_metadata (const vms_document *const *md, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    const char *id = vms_metadata_writer_id (md[i]);
    if (id && strcmp (id, VMS_VM_WRITER_ID) == 0)
      return md[i];
  }
  return NULL;
}

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

static int
plan_vm (struct vm_restore *r, const vms_component *c, struct rs_vm *vm)
{
  const char *uuid = vms_component_name (c);
  const char *name = vms_component_get_string (c, VMS_VM_ATTR_VM_NAME);
  const char *method = vms_component_get_string (c, VMS_VM_ATTR_METHOD);
  const char *before = vms_component_get_string (c, VMS_VM_ATTR_STATE_BEFORE);
  size_t n = vms_component_file_count (c);

  if ((vm->uuid = strdup (uuid)) == NULL ||
      (vm->name = strdup (name ? name : uuid)) == NULL ||
      (vm->define_name = strdup (r->new_name ? r->new_name
                                 : name ? name : uuid)) == NULL ||
      (vm->method = strdup (method ? method : "offline")) == NULL ||
      (vm->state_before = strdup (before ? before : "shut-off")) == NULL ||
      asprintf (&vm->dir, "%s/%s/restore", r->state_dir, uuid) == -1 ||
      (vm->files = calloc (n ? n : 1, sizeof *vm->files)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    struct vms_file_info fi;
    struct rs_file *f = &vm->files[vm->nr_files];
    int rc;

    if (vms_component_file (c, i, &fi) == -1)
      return -1;
    if (fi.path == NULL || fi.path[0] != '/') {
      vms_set_error (EINVAL, "vm \"%s\" in the backup has a file with a "
                     "relative path \"%s\": the documents are damaged",
                     vm->name, fi.path ? fi.path : "");
      return -1;
    }
    f->kind = fi.kind;
    f->role = file_role (uuid, &fi);
    if ((f->path = strdup (fi.path)) == NULL)
      goto oom;
    switch (f->role) {
    case RS_DISK:
      rc = r->to ? asprintf (&f->target, "%s/%s", r->to, base_name (fi.path))
        : ((f->target = strdup (fi.path)) ? 0 : -1);
      break;
    case RS_CONFIG: case RS_LIVE_CONFIG: case RS_STATE:
      rc = asprintf (&f->target, "%s/%s", vm->dir, base_name (fi.path));
      break;
    default:
      rc = (f->target = strdup (fi.path)) ? 0 : -1;
    }
    if (rc == -1) {
      f->target = NULL;
      goto oom;
    }
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

vms_vm_restore *
vms_libvirt_add_for_restore (vms_coordinator *coord,
                             const struct vms_vm_restore_options *o,
                             const vms_document *bcd,
                             const vms_document *const *metadata,
                             size_t nr_metadata)
{
  static const struct vms_vm_restore_options none = { 0 };
  struct vm_restore *r;
  struct vm_writer *w;
  const char *env = getenv ("VMSHADOW_VM_STATE_DIR");

  if (o == NULL)
    o = &none;
  if (bcd == NULL || vms_document_kind (bcd) != VMS_DOC_COMPONENTS) {
    vms_set_error (EINVAL, "a restore needs the backup components document");
    return NULL;
  }
  if (o->to && o->to[0] != '/') {
    vms_set_error (EINVAL, "the restore directory must be an absolute path, "
                   "not \"%s\"", o->to);
    return NULL;
  }
  if ((r = calloc (1, sizeof *r)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  r->start = o->start;
  if ((o->to && (r->to = strdup (o->to)) == NULL) ||
      (o->new_name && (r->new_name = strdup (o->new_name)) == NULL) ||
      (r->state_dir = strdup (o->state_dir ? o->state_dir : env && *env ? env
                              : VMS_VM_DEFAULT_STATE_DIR)) == NULL)
    goto oom;
  /* Trailing slashes would make "DIR//disk" paths. */
  for (size_t l = r->to ? strlen (r->to) : 0; l > 1 && r->to[l - 1] == '/'; l--)
    r->to[l - 1] = '\0';
  for (size_t i = 0; o->network_map && o->network_map[i]; i++) {
    const char *eq = strchr (o->network_map[i], '=');
    if (eq == NULL || eq == o->network_map[i] || eq[1] == '\0') {
      vms_set_error (EINVAL, "--network-map takes OLD=NEW (a network or "
                     "bridge name each), not \"%s\"", o->network_map[i]);
      goto fail;
    }
    if (sv_add (&r->map_old, "%.*s", (int) (eq - o->network_map[i]),
                o->network_map[i]) == -1 ||
        sv_add (&r->map_new, "%s", eq + 1) == -1)
      goto oom;
  }
  if (plan_build (r, o, bcd, find_metadata (metadata, nr_metadata)) == -1)
    goto fail;

  const struct vms_vm_options wo = {
    .uri = o->uri, .method = VMS_VM_METHOD_AUTO, .state_dir = r->state_dir,
  };
  if ((w = vm_writer_add (coord, &wo, r)) == NULL)
    return NULL;                /* r was freed with the writer */
  r->handle.w = w;
  return &r->handle;            /* lives as long as the writer */
 oom:
  vms_set_error (ENOMEM, "out of memory");
 fail:
  vm_restore_free (r);
  return NULL;
}

int
vms_vm_restore_selected (const vms_vm_restore *h, const char *uuid)
{
  const struct vm_restore *r = h->w->restore;
  for (size_t i = 0; i < r->nr_vms; i++)
    if (strcasecmp (r->vms[i].uuid, uuid) == 0)
      return 1;
  return 0;
}

const char *
vms_vm_restore_target (const vms_vm_restore *h, const char *uuid,
                       const char *path)
{
  const struct vm_restore *r = h->w->restore;
  for (size_t i = 0; i < r->nr_vms; i++)
    if (strcasecmp (r->vms[i].uuid, uuid) == 0)
      for (size_t j = 0; j < r->vms[i].nr_files; j++)
        if (strcmp (r->vms[i].files[j].path, path) == 0)
          return r->vms[i].files[j].target;
  return NULL;
}

size_t
vms_vm_restore_count (const vms_vm_restore *h)
{
  return h->w->restore->nr_vms;
}

int
vms_vm_restore_result (const vms_vm_restore *h, size_t i,
                       struct vms_vm_restore_result *res)
{
  const struct vm_restore *r = h->w->restore;
  const struct rs_vm *vm;

  if (i >= r->nr_vms) {
    vms_set_error (EINVAL, "no restored VM %zu", i);
    return -1;
  }
  vm = &r->vms[i];
  res->uuid = vm->uuid;
  res->name = vm->define_name;
  res->defined = vm->defined;
  res->state = vm->state ? vm->state : "not defined";
  res->resumed = vm->resumed;
  res->error = vm->error;
  res->nr_notes = vm->notes.len;
  res->notes = (const char *const *) vm->notes.ptr;
  res->nr_disconnected = vm->disconnected.len;
  res->disconnected = (const char *const *) vm->disconnected.ptr;
  return 0;
}

/* ---- switches (R21) ---- */

static int
linux_bridge_exists (const char *name)
{
  CLEANUP_FREE char *p = NULL;
  struct stat st;

  if (strchr (name, '/') || asprintf (&p, "/sys/class/net/%s/bridge",
                                      name) == -1)
    return 0;
  return stat (p, &st) == 0;
}

static int
netdev_exists (const char *name)
{
  CLEANUP_FREE char *p = NULL;
  struct stat st;

  if (strchr (name, '/') || asprintf (&p, "/sys/class/net/%s", name) == -1)
    return 0;
  return stat (p, &st) == 0;
}

/* 1 if a libvirt network of that name exists (defined or running). */
static int
network_exists (virConnectPtr conn, const char *name)
{
  virNetworkPtr n = virNetworkLookupByName (conn, name);
  if (n == NULL)
    return 0;
  virNetworkFree (n);
  return 1;
}

static const char *
map_switch (const struct vm_restore *r, const char *old)
{
  for (size_t i = 0; old && i < r->map_old.len; i++)
    if (strcmp (r->map_old.ptr[i], old) == 0)
      return r->map_new.ptr[i];
  return NULL;
}

/* ---- XML ---- */

static xmlNode *
xml_child (xmlNode *n, const char *name)
{
  for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && xmlStrcmp (c->name, BAD_CAST name) == 0)
      return c;
  return NULL;
}

static void
xml_drop_children (xmlNode *n, const char *name)
{
  xmlNode *c;
  while ((c = xml_child (n, name)) != NULL) {
    xmlUnlinkNode (c);
    xmlFreeNode (c);
  }
}

static char *
xml_attr (xmlNode *n, const char *name)
{
  xmlChar *v = n ? xmlGetProp (n, BAD_CAST name) : NULL;
  char *s = v ? strdup ((const char *) v) : NULL;
  xmlFree (v);
  return s;
}

static void
xml_set_text (xmlNode *parent, const char *name, const char *text)
{
  xmlNode *c = xml_child (parent, name);
  if (c == NULL)
    c = xmlNewChild (parent, NULL, BAD_CAST name, NULL);
  if (c)
    xmlNodeSetContent (c, BAD_CAST text);
}

static const struct rs_file *
disk_file (const struct rs_vm *vm, const char *path)
{
  for (size_t i = 0; path && i < vm->nr_files; i++)
    if (vm->files[i].role == RS_DISK && strcmp (vm->files[i].path, path) == 0)
      return &vm->files[i];
  return NULL;
}

/* One interface (R21): keep it on its switch if that still exists (or on
 * the --network-map replacement), else leave it in the VM disconnected:
 * type 'ethernet' (a tap on no switch, which libvirt starts without the
 * switch) with <link state='down'/>. MAC and model stay. */
static void
rewrite_interface (struct vm_writer *w, struct rs_vm *vm, xmlNode *n,
                   int report)
{
  struct vm_restore *r = w->restore;
  CLEANUP_FREE char *type = xml_attr (n, "type");
  xmlNode *src = xml_child (n, "source"), *vp = xml_child (n, "virtualport");
  xmlNode *macn = xml_child (n, "mac"), *link;
  CLEANUP_FREE char *mac = xml_attr (macn, "address");
  CLEANUP_FREE char *vptype = xml_attr (vp, "type");
  CLEANUP_FREE char *old = NULL;
  const char *kind, *what = mac ? mac : "(no MAC)";
  const char *to;
  int exists;

  if (type == NULL)
    return;
  if (strcmp (type, "network") == 0) {
    old = xml_attr (src, "network");
    kind = "libvirt network";
  }
  else if (strcmp (type, "bridge") == 0) {
    old = xml_attr (src, "bridge");
    kind = vptype && strcmp (vptype, "openvswitch") == 0
      ? "Open vSwitch bridge" : "bridge";
  }
  else if (strcmp (type, "direct") == 0) {
    old = xml_attr (src, "dev");
    kind = "host interface";
  }
  else
    return;                     /* user, ethernet, hostdev, …: as they were */
  if (old == NULL)
    return;

  if ((to = map_switch (r, old)) != NULL) {
    /* --network-map: a libvirt network, else a bridge (checked at
     * PreRestore). */
    if (network_exists (w->conn, to)) {
      xmlSetProp (n, BAD_CAST "type", BAD_CAST "network");
      xmlUnsetProp (src, BAD_CAST "bridge");
      xmlUnsetProp (src, BAD_CAST "dev");
      xmlSetProp (src, BAD_CAST "network", BAD_CAST to);
      if (report)
        sv_add (&vm->notes, "interface %s: connected to libvirt network \"%s\" "
                "(was %s \"%s\")", what, to, kind, old);
    }
    else {
      xmlSetProp (n, BAD_CAST "type", BAD_CAST "bridge");
      xmlUnsetProp (src, BAD_CAST "network");
      xmlUnsetProp (src, BAD_CAST "dev");
      xmlUnsetProp (src, BAD_CAST "mode");
      xmlSetProp (src, BAD_CAST "bridge", BAD_CAST to);
      xml_drop_children (n, "virtualport");
      if (!linux_bridge_exists (to)) {      /* an Open vSwitch bridge */
        xmlNode *v = xmlNewChild (n, NULL, BAD_CAST "virtualport", NULL);
        if (v)
          xmlSetProp (v, BAD_CAST "type", BAD_CAST "openvswitch");
      }
      if (report)
        sv_add (&vm->notes, "interface %s: connected to bridge \"%s\" (was %s "
                "\"%s\")", what, to, kind, old);
    }
    return;
  }

  if (strcmp (type, "network") == 0)
    exists = network_exists (w->conn, old);
  else if (strcmp (type, "bridge") == 0)
    exists = linux_bridge_exists (old) ||
      (vptype && strcmp (vptype, "openvswitch") == 0 && netdev_exists (old));
  else
    exists = netdev_exists (old);
  if (exists) {
    if (report)
      sv_add (&vm->notes, "interface %s: connected to %s \"%s\"", what, kind,
              old);
    return;
  }
  xmlSetProp (n, BAD_CAST "type", BAD_CAST "ethernet");
  xml_drop_children (n, "source");
  xml_drop_children (n, "virtualport");
  xml_drop_children (n, "vlan");
  xml_drop_children (n, "bandwidth");
  xml_drop_children (n, "link");
  link = xmlNewChild (n, NULL, BAD_CAST "link", NULL);
  if (link)
    xmlSetProp (link, BAD_CAST "state", BAD_CAST "down");
  if (report)
    sv_add (&vm->disconnected, "%s: %s \"%s\" no longer exists; the interface "
            "is in the VM but disconnected (link down)", what, kind, old);
}

/* The stored XML made ready to define (or to resume with): name, disk
 * paths (R20), interfaces (R21). Caller frees. */
static char *
rewrite_xml (struct vm_writer *w, struct rs_vm *vm, const char *xml,
             int report)
{
  xmlDoc *doc = xmlReadMemory (xml, (int) strlen (xml), NULL, NULL,
                               XML_PARSE_NONET | XML_PARSE_NOWARNING |
                               XML_PARSE_NOERROR);
  xmlNode *root, *devs;
  xmlChar *out = NULL;
  int len = 0;
  char *s;

  if (doc == NULL || (root = xmlDocGetRootElement (doc)) == NULL ||
      xmlStrcmp (root->name, BAD_CAST "domain") != 0) {
    xmlFreeDoc (doc);
    vms_set_error (EINVAL, "its stored domain XML does not parse");
    return NULL;
  }
  xml_set_text (root, "name", vm->define_name);
  devs = xml_child (root, "devices");
  for (xmlNode *n = devs ? devs->children : NULL; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE)
      continue;
    if (xmlStrcmp (n->name, BAD_CAST "disk") == 0) {
      xmlNode *src = xml_child (n, "source");
      CLEANUP_FREE char *file = xml_attr (src, "file");
      const struct rs_file *f = disk_file (vm, file);
      if (f == NULL)
        continue;               /* excluded (R13) or not a file */
      xmlSetProp (src, BAD_CAST "file", BAD_CAST f->target);
      /* The restored image stands alone: no backing chain. */
      xml_drop_children (n, "backingStore");
    }
    else if (xmlStrcmp (n->name, BAD_CAST "interface") == 0)
      rewrite_interface (w, vm, n, report);
  }
  xmlDocDumpMemory (doc, &out, &len);
  xmlFreeDoc (doc);
  if (out == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  s = strdup ((const char *) out);
  xmlFree (out);
  if (s == NULL)
    vms_set_error (ENOMEM, "out of memory");
  return s;
}

static char *
read_text (const char *path)
{
  CLEANUP_FCLOSE FILE *fp = fopen (path, "re");
  char *buf = NULL;
  size_t len = 0, cap = 0, n;

  if (fp == NULL) {
    vms_set_error (errno, "cannot open %s: %s", path, strerror (errno));
    return NULL;
  }
  do {
    if (cap - len < 65536) {
      char *b;
      if (cap > (16u << 20) || (b = realloc (buf, cap + 65537)) == NULL) {
        free (buf);
        vms_set_error (EFBIG, "%s is too large for a domain XML", path);
        return NULL;
      }
      buf = b;
      cap += 65536;
    }
    n = fread (buf + len, 1, cap - len, fp);
    len += n;
  } while (n > 0);
  if (ferror (fp)) {
    free (buf);
    vms_set_error (EIO, "cannot read %s", path);
    return NULL;
  }
  buf[len] = '\0';
  return buf;
}

/* ---- PreRestore (R15) ---- */

/* Paths a domain uses: disk images and NVRAM. */
static int
domain_paths (virDomainPtr dom, unsigned flags, string_vector *out)
{
  CLEANUP_FREE char *xml = virDomainGetXMLDesc (dom, flags);
  struct vm_config cfg = { 0 };

  if (xml == NULL || vm_config_parse (xml, strlen (xml), &cfg) == -1)
    return -1;
  for (size_t i = 0; i < cfg.nr_disks; i++)
    if (cfg.disks[i].source == VM_DISK_FILE && cfg.disks[i].path &&
        !string_vector_contains (out, cfg.disks[i].path))
      sv_add (out, "%s", cfg.disks[i].path);
  if (cfg.nvram && !string_vector_contains (out, cfg.nvram))
    sv_add (out, "%s", cfg.nvram);
  vm_config_clear (&cfg);
  return 0;
}

/* Everything that would make the restore refuse, checked before anything
 * is changed. Appends one line per problem to *why. */
static void
pre_check (struct vm_writer *w, char **why)
{
  struct vm_restore *r = w->restore;
  virDomainPtr *doms = NULL;
  int nd = virConnectListAllDomains (w->conn, &doms, 0);
  char *n;

#define PROBLEM(...) do {                                                  \
    CLEANUP_FREE char *line = NULL;                                        \
    if (asprintf (&line, __VA_ARGS__) != -1 &&                             \
        asprintf (&n, "%s%s%s", *why ? *why : "", *why ? "; " : "",       \
                  line) != -1) {                                           \
      free (*why);                                                         \
      *why = n;                                                            \
    }                                                                      \
  } while (0)

  if (nd < 0) {
    PROBLEM ("cannot list the domains at %s: %s", w->uri, vm_virt_error ());
    return;
  }
  for (size_t i = 0; i < r->nr_vms; i++) {
    struct rs_vm *vm = &r->vms[i];
    virDomainPtr dom = virDomainLookupByName (w->conn, vm->define_name);
    char uuid[VIR_UUID_STRING_BUFLEN];

    if (dom && virDomainGetUUIDString (dom, uuid) == 0 &&
        strcasecmp (uuid, vm->uuid) != 0)
      PROBLEM ("vm \"%s\" (%s) cannot be restored: another VM (%s) has the "
               "name \"%s\"; restore it under a new name with --name, or "
               "remove that VM first", vm->name, vm->uuid, uuid,
               vm->define_name);
    if (dom)
      virDomainFree (dom);
  }
  /* No file may be written over another VM's disk or NVRAM. */
  for (int d = 0; d < nd; d++) {
    char uuid[VIR_UUID_STRING_BUFLEN];
    string_vector paths = empty_vector;
    int ours = 0;

    if (virDomainGetUUIDString (doms[d], uuid) == -1)
      continue;
    for (size_t i = 0; i < r->nr_vms; i++)
      ours |= strcasecmp (uuid, r->vms[i].uuid) == 0;
    if (!ours) {
      domain_paths (doms[d], VIR_DOMAIN_XML_INACTIVE, &paths);
      if (virDomainIsActive (doms[d]) == 1)
        domain_paths (doms[d], 0, &paths);
    }
    for (size_t i = 0; i < r->nr_vms; i++)
      for (size_t j = 0; j < r->vms[i].nr_files; j++)
        if (string_vector_contains (&paths, r->vms[i].files[j].target))
          PROBLEM ("vm \"%s\" cannot be restored: %s would overwrite a file "
                   "of vm \"%s\"; restore elsewhere with --to DIR",
                   r->vms[i].name, r->vms[i].files[j].target,
                   virDomainGetName (doms[d]));
    string_vector_free_all (&paths);
  }
  for (int d = 0; d < nd; d++)
    virDomainFree (doms[d]);
  free (doms);
  for (size_t i = 0; i < r->map_new.len; i++)
    if (!network_exists (w->conn, r->map_new.ptr[i]) &&
        !netdev_exists (r->map_new.ptr[i]))
      PROBLEM ("--network-map %s=%s: there is no libvirt network or bridge "
               "named \"%s\"", r->map_old.ptr[i], r->map_new.ptr[i],
               r->map_new.ptr[i]);
#undef PROBLEM
}

/* The paths the VM of this UUID used, kept in its restore directory so that
 * a restore run again after an interruption still knows them (R19: only a
 * file of this VM is replaced by a link). */
static int
owned_save (struct rs_vm *vm)
{
  CLEANUP_FREE char *p = NULL;
  struct vms_atomic_file af;
  CLEANUP_FCLOSE FILE *fp = NULL;

  if (asprintf (&p, "%s/owned-paths", vm->dir) == -1) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (vms_atomic_file_open (&af, AT_FDCWD, p, 0600) == -1)
    return -1;
  if ((fp = fdopen (dup (af.fd), "w")) == NULL)
    goto fail;
  for (size_t i = 0; i < vm->owned.len; i++)
    fprintf (fp, "%s\n", vm->owned.ptr[i]);
  if (fflush (fp) != 0)
    goto fail;
  return vms_atomic_file_commit (&af, 0);

 fail:
  vms_set_error (errno, "cannot write %s: %s", p, strerror (errno));
  vms_atomic_file_discard (&af);
  return -1;
}

static void
owned_load (struct rs_vm *vm)
{
  CLEANUP_FREE char *p = NULL;
  CLEANUP_FCLOSE FILE *fp = NULL;
  char line[PATH_MAX + 2];

  if (asprintf (&p, "%s/owned-paths", vm->dir) == -1 ||
      (fp = fopen (p, "re")) == NULL)
    return;
  while (fgets (line, sizeof line, fp)) {
    line[strcspn (line, "\n")] = '\0';
    if (line[0] == '/' && !string_vector_contains (&vm->owned, line))
      sv_add (&vm->owned, "%s", line);
  }
}

int
vm_restore_pre (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  struct vm_restore *r = w->restore;
  CLEANUP_FREE char *why = NULL;

  if (r == NULL)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm writer: "
                          "added for backup, not for restore");
  if (w->conn == NULL && vm_connect (w, call) == -1)
    return -1;
  pre_check (w, &why);
  if (why)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "nothing was "
                          "changed: %s", why);

  for (size_t i = 0; i < r->nr_vms; i++) {
    struct rs_vm *vm = &r->vms[i];
    virDomainPtr dom = virDomainLookupByUUIDString (w->conn, vm->uuid);

    if (vms_mkdir_p (vm->dir, 0700) == -1)
      return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "vm \"%s\": "
                            "%s", vm->name, vms_get_error ());
    owned_load (vm);
    if (dom) {
      domain_paths (dom, VIR_DOMAIN_XML_INACTIVE, &vm->owned);
      if (virDomainIsActive (dom) == 1)
        domain_paths (dom, 0, &vm->owned);
    }
    if (owned_save (vm) == -1)
      vms_debug ("vm restore: cannot save the paths of %s in %s", vm->name,
                 vm->dir);
    if (dom == NULL)
      continue;
    /* R15: off and undefined. Its NVRAM and TPM state stay on disk: they
     * are restored over. */
    if (virDomainIsActive (dom) == 1 && virDomainDestroy (dom) == -1) {
      vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed at "
                     "pre-restore: cannot turn it off: %s", vm->name,
                     vm_virt_error ());
      virDomainFree (dom);
      return -1;
    }
    if (virDomainIsPersistent (dom) == 1 &&
        virDomainUndefineFlags (dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                                VIR_DOMAIN_UNDEFINE_KEEP_NVRAM |
                                VIR_DOMAIN_UNDEFINE_KEEP_TPM) == -1) {
      vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed at "
                     "pre-restore: cannot undefine it: %s", vm->name,
                     vm_virt_error ());
      virDomainFree (dom);
      return -1;
    }
    vms_debug ("vm restore: %s (%s) turned off and undefined", vm->name,
               vm->uuid);
    virDomainFree (dom);
  }
  /* The directories the files go to. */
  for (size_t i = 0; i < r->nr_vms; i++)
    for (size_t j = 0; j < r->vms[i].nr_files; j++) {
      CLEANUP_FREE char *d = strdup (r->vms[i].files[j].target);
      if (d == NULL || vms_mkdir_p (dirname (d), 0755) == -1)
        return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "vm \"%s\": "
                              "%s", r->vms[i].name, d ? vms_get_error ()
                              : "out of memory");
    }
  return 0;
}

/* ---- PostRestore (R17–R21) ---- */

/* R19: a link at each original disk path to the restored file, unless a
 * file is there that does not belong to this VM. */
static void
link_original (struct rs_vm *vm, const struct rs_file *f)
{
  struct stat st;
  char buf[PATH_MAX];
  ssize_t n;

  if (strcmp (f->path, f->target) == 0)
    return;
  if (lstat (f->path, &st) == 0) {
    if (S_ISLNK (st.st_mode) &&
        (n = readlink (f->path, buf, sizeof buf - 1)) >= 0) {
      buf[n] = '\0';
      if (strcmp (buf, f->target) == 0) {
        sv_add (&vm->notes, "link %s -> %s", f->path, f->target);
        return;
      }
    }
    if (!string_vector_contains (&vm->owned, f->path)) {
      sv_add (&vm->notes, "no link at %s: a file is there that does not "
              "belong to this VM (left as it is)", f->path);
      return;
    }
    if (unlink (f->path) == -1) {
      sv_add (&vm->notes, "no link at %s: cannot remove the old file: %s",
              f->path, strerror (errno));
      return;
    }
  }
  else {
    CLEANUP_FREE char *d = strdup (f->path);
    if (d)
      vms_mkdir_p (dirname (d), 0755);
  }
  if (symlink (f->target, f->path) == -1)
    sv_add (&vm->notes, "no link at %s: %s", f->path, strerror (errno));
  else
    sv_add (&vm->notes, "link %s -> %s", f->path, f->target);
}

static const struct rs_file *
file_of_role (const struct rs_vm *vm, int role)
{
  for (size_t i = 0; i < vm->nr_files; i++)
    if (vm->files[i].role == role)
      return &vm->files[i];
  return NULL;
}

static const char *
dom_state (virDomainPtr dom)
{
  int st, why;
  if (virDomainGetState (dom, &st, &why, 0) == -1)
    return "unknown";
  switch (st) {
  case VIR_DOMAIN_RUNNING: case VIR_DOMAIN_BLOCKED: return "running";
  case VIR_DOMAIN_PAUSED: return "paused";
  case VIR_DOMAIN_SHUTOFF: return "shut-off";
  default: return "other";
  }
}

/* Resume a saved-state backup from its state file (R8): libvirt's own
 * save-image format, with the image's XML rewritten like the definition. */
static int
resume_saved (struct vm_writer *w, struct rs_vm *vm, const char *file)
{
  CLEANUP_FREE char *img = NULL, *dxml = NULL;
  unsigned flags = strcmp (vm->state_before, "paused") == 0
    ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;

  img = virDomainSaveImageGetXMLDesc (w->conn, file,
                                      VIR_DOMAIN_SAVE_IMAGE_XML_SECURE);
  if (img == NULL) {
    rs_fail (vm, "defined, but its saved state %s cannot be read: %s", file,
             vm_virt_error ());
    return -1;
  }
  if ((dxml = rewrite_xml (w, vm, img, 0)) == NULL) {
    rs_fail (vm, "defined, but the XML of its saved state: %s",
             vms_get_error ());
    return -1;
  }
  if (virDomainRestoreFlags (w->conn, file, dxml, flags) == -1) {
    rs_fail (vm, "defined, but it did not resume from its saved state: %s",
             vm_virt_error ());
    return -1;
  }
  vm->resumed = 1;
  /* The state is consumed: a second resume would fork the guest's past. */
  if (unlink (file) == -1)
    vms_debug ("vm restore: cannot remove %s: %s", file, strerror (errno));
  return 0;
}

static void
post_one (struct vm_writer *w, vms_call *call, struct rs_vm *vm)
{
  struct vm_restore *r = w->restore;
  vms_component *c = vms_call_component (call, vm->uuid);
  enum vms_restore_status st = c ? vms_component_restore_status (c)
    : VMS_RESTORE_UNSET;
  const struct rs_file *cfg = file_of_role (vm, RS_CONFIG);
  const struct rs_file *state = file_of_role (vm, RS_STATE);
  CLEANUP_FREE char *xml = NULL, *def = NULL;
  virDomainPtr dom;

  vm->state = "not defined";
  /* R17: only a VM whose every file was written is registered. */
  if (st != VMS_RESTORE_ALL) {
    rs_fail (vm, "not defined: its file restore status is %s, not all%s",
             vms_restore_status_name (st),
             st == VMS_RESTORE_UNSET ? " (the requester did not say)" : "");
    return;
  }
  if ((xml = read_text (cfg->target)) == NULL ||
      (def = rewrite_xml (w, vm, xml, 1)) == NULL) {
    rs_fail (vm, "not defined: %s", vms_get_error ());
    return;
  }
  if (r->to)
    for (size_t i = 0; i < vm->nr_files; i++)
      if (vm->files[i].role == RS_DISK)
        link_original (vm, &vm->files[i]);
  /* R18. Defined last, so that a VM is never defined over incomplete
   * disks. */
  dom = virDomainDefineXML (w->conn, def);
  if (dom == NULL) {
    rs_fail (vm, "not defined: libvirt refused its XML: %s", vm_virt_error ());
    return;
  }
  vm->defined = 1;
  if (strcmp (vm->method, "saved-state") == 0 && state)
    resume_saved (w, vm, state->target);
  else if (strcmp (vm->method, "saved-state") == 0)
    sv_add (&vm->notes, "the backup holds no saved state: the VM comes back "
            "stopped");
  if (!vm->resumed && r->start && virDomainCreate (dom) == -1)
    rs_fail (vm, "defined, but it did not start: %s", vm_virt_error ());
  vm->state = dom_state (dom);
  virDomainFree (dom);
}

int
vm_restore_post (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  struct vm_restore *r = w->restore;
  CLEANUP_FREE char *report = NULL;

  if (r == NULL)
    return 0;
  if (w->conn == NULL && vm_connect (w, call) == -1)
    return -1;
  for (size_t i = 0; i < r->nr_vms; i++) {
    struct rs_vm *vm = &r->vms[i];
    char *n;

    post_one (w, call, vm);
    if (vm->error == NULL)
      continue;
    if (asprintf (&n, "%s%svm \"%s\": %s", report ? report : "",
                  report ? "; " : "", vm->name, vm->error) != -1) {
      free (report);
      report = n;
    }
  }
  if (report)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s", report);
  return 0;
}

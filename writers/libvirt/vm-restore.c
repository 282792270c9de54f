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
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <inttypes.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"

#include "cleanup.h"
#include "str.h"
#include "subprocess.h"
#include "log.h"
#include "vm-internal.h"

#include "vm-lvm.h"
#include "vm-rbd.h"
#include "vm-restore-plan.h"
#include "vm-xml.h"

/* ---- small helpers ---- */

static int
sv_add (string_vector *v, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static int
sv_add (string_vector *v, const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  s = vms_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (s == NULL)
    return -1;
  if (string_vector_append (v, s) == -1) {
    free (s);
    return -1;
  }
  return 0;
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

/* ---- the writer in restore mode ---- */

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

  if (o == NULL)
    o = &none;
  r = vm_restore_new (o, bcd, find_metadata (metadata, nr_metadata));
  if (r == NULL)
    return NULL;
  const struct vms_vm_options wo = {
    .uri = o->uri, .method = VMS_VM_METHOD_AUTO, .state_dir = r->state_dir,
  };
  if ((w = vm_writer_add (coord, &wo, r)) == NULL)
    return NULL;                /* r was freed with the writer */
  r->handle.w = w;
  return &r->handle;            /* lives as long as the writer */
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
  res->nr_changes = vm->changes.len;
  return 0;
}

const char *
vms_vm_restore_config_path (const vms_vm_restore *h, size_t i)
{
  const struct vm_restore *r = h->w->restore;

  if (i >= r->nr_vms)
    return NULL;
  for (size_t k = 0; k < r->vms[i].nr_files; k++)
    if (r->vms[i].files[k].role == RS_CONFIG)
      return r->vms[i].files[k].path;
  return NULL;
}

int
vms_vm_restore_set_config (const vms_vm_restore *h, size_t i, const char *xml,
                           size_t len)
{
  struct vm_restore *r = h->w->restore;
  char *s;

  if (i >= r->nr_vms || memchr (xml, '\0', len)) {
    vms_set_error (EINVAL, "no restored VM %zu, or its XML holds a NUL byte", i);
    return -1;
  }
  if ((s = strndup (xml, len)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  free (r->vms[i].config_xml);
  r->vms[i].config_xml = s;
  return 0;
}

int
vms_vm_restore_change (const vms_vm_restore *h, size_t i, size_t k,
                       struct vms_vm_restore_change *c)
{
  const struct vm_restore *r = h->w->restore;

  if (i >= r->nr_vms || k >= r->vms[i].changes.len) {
    vms_set_error (EINVAL, "no change %zu of restored VM %zu", k, i);
    return -1;
  }
  c->action = r->vms[i].changes.ptr[k].action;
  c->object = r->vms[i].changes.ptr[k].object;
  c->detail = r->vms[i].changes.ptr[k].detail;
  return 0;
}

static struct rs_vm *
find_vm (const struct vm_restore *r, const char *uuid)
{
  for (size_t i = 0; uuid && i < r->nr_vms; i++)
    if (strcasecmp (r->vms[i].uuid, uuid) == 0)
      return &r->vms[i];
  return NULL;
}

int
vms_vm_restore_set_instant (const vms_vm_restore *h, const char *uuid,
                            const struct vms_vm_instant_disk *d, size_t n,
                            const char *final_xml_path)
{
  struct rs_vm *vm = find_vm (h->w->restore, uuid);
  struct vms_vm_instant_disk *v;

  if (vm == NULL) {
    vms_set_error (ENOENT, "VM %s is not restored", uuid);
    return -1;
  }
  /* Issue 11: instant recovery moves disks into files; a disk written into
   * its device in place is not done that way. */
  for (size_t i = 0; i < vm->nr_files; i++)
    if (vm->files[i].role == RS_DISK && vm->files[i].device != RS_DEV_FILE &&
        strcmp (vm->files[i].target, vm->files[i].path) == 0) {
      vms_set_error (ENOTSUP, "vm \"%s\": disk %s is the %s %s: instant "
                     "recovery into a device is not done; restore it with "
                     "--write-devices without --instant, or with --to DIR",
                     vm->name, vm->files[i].disk_target
                     ? vm->files[i].disk_target : "?",
                     vm->files[i].device == RS_DEV_BLOCK ? "host block device"
                     : "network disk", vm->files[i].path);
      return -1;
    }
  if ((v = calloc (n + 1, sizeof *v)) == NULL ||
      (vm->inst_final_xml = strdup (final_xml_path)) == NULL) {
    free (v);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  vm->inst = v;
  for (size_t i = 0; i < n; i++) {
    v[i].path = strdup (d[i].path);
    v[i].overlay = strdup (d[i].overlay);
    v[i].socket = strdup (d[i].socket);
    v[i].final = strdup (d[i].final);
    v[i].format = strdup (d[i].format);
    vm->nr_inst++;
    if (!v[i].path || !v[i].overlay || !v[i].socket || !v[i].final ||
        !v[i].format) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  }
  return 0;
}

const char *
vms_vm_restore_define_name (const vms_vm_restore *h, const char *uuid)
{
  const struct rs_vm *vm = find_vm (h->w->restore, uuid);
  return vm ? vm->define_name : NULL;
}

const char *
vms_vm_restore_define_uuid (const vms_vm_restore *h, const char *uuid)
{
  const struct rs_vm *vm = find_vm (h->w->restore, uuid);
  return vm ? vm->define_uuid : NULL;
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

/* Issue 11, --to: a block or network disk restored as a file becomes
 * <disk type='file'> with <source file=…/> and the format written (R20);
 * its <auth> and the network <source>'s children go. 1 if disk was one. */
static int
device_to_file (const struct rs_vm *vm, xmlNode *disk)
{
  CLEANUP_FREE char *type = xml_attr (disk, "type");
  xmlNode *tgt = xml_child (disk, "target"), *src, *drv;
  CLEANUP_FREE char *dev = xml_attr (tgt, "dev");
  const struct rs_file *f = NULL;

  if (type == NULL || dev == NULL ||
      (strcmp (type, "block") != 0 && strcmp (type, "network") != 0))
    return 0;
  for (size_t i = 0; i < vm->nr_files; i++)
    if (vm->files[i].role == RS_DISK && vm->files[i].device != RS_DEV_FILE &&
        vm->files[i].disk_target && strcmp (vm->files[i].disk_target, dev) == 0)
      f = &vm->files[i];
  if (f == NULL || f->into || strcmp (f->target, f->path) == 0)
    return 0;                   /* not in the backup (R13), or in place */
  xmlSetProp (disk, BAD_CAST "type", BAD_CAST "file");
  xml_drop_children (disk, "source");
  xml_drop_children (disk, "auth");
  xml_drop_children (disk, "backingStore");
  src = xmlNewNode (NULL, BAD_CAST "source");
  xmlSetProp (src, BAD_CAST "file", BAD_CAST f->target);
  drv = xml_child (disk, "driver");
  if (drv)
    xmlAddNextSibling (drv, src);
  else
    xmlAddChild (disk, src);
  if (drv == NULL) {
    drv = xmlNewNode (NULL, BAD_CAST "driver");
    xmlSetProp (drv, BAD_CAST "name", BAD_CAST "qemu");
    xmlAddPrevSibling (src, drv);
  }
  xmlSetProp (drv, BAD_CAST "type", BAD_CAST (f->format && strcmp (f->format, "qcow2") == 0
                                              ? "qcow2" : "raw"));
  return 1;
}

/* The stored XML made ready to define (or to resume with): name, disk
 * paths (R20), interfaces (R21). Caller frees. */
static char *
rewrite_xml (struct vm_writer *w, struct rs_vm *vm, const char *xml,
             int report)
{
  xmlDoc *doc;
  xmlNode *root, *devs;
  char *s;

  doc = xml_read_domain (xml, strlen (xml), "its stored domain XML", &root);
  if (doc == NULL)
    return NULL;
  xml_set_text (root, "name", vm->define_name);
  devs = xml_child (root, "devices");
  for (xmlNode *n = devs ? devs->children : NULL; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE)
      continue;
    if (xmlStrcmp (n->name, BAD_CAST "disk") == 0 && device_to_file (vm, n))
      continue;
    if (xmlStrcmp (n->name, BAD_CAST "disk") == 0) {
      xmlNode *src = xml_child (n, "source");
      CLEANUP_FREE char *file = xml_attr (src, "file");
      const struct rs_file *f = disk_file (vm, file);
      const struct vms_vm_instant_disk *ov = NULL;
      if (f == NULL)
        continue;               /* excluded (R13) or not a file */
      for (size_t k = 0; vm->inst_live && k < vm->nr_inst; k++)
        if (strcmp (vm->inst[k].path, f->path) == 0)
          ov = &vm->inst[k];
      if (ov) {
        /* Instant recovery: it runs from the backup (issue 16). */
        vms_vm_instant_disk_xml (n, ov->overlay, ov->socket);
        continue;
      }
      xmlSetProp (src, BAD_CAST "file", BAD_CAST f->target);
      /* The restored image stands alone: no backing chain. */
      xml_drop_children (n, "backingStore");
    }
    else if (xmlStrcmp (n->name, BAD_CAST "interface") == 0)
      rewrite_interface (w, vm, n, report);
  }
  s = xml_doc_text (doc);
  xmlFreeDoc (doc);
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
  /* Files, and (issue 11) host block devices and network disks (their
   * URI, as the backup names them): a restore never writes into one
   * another VM uses. */
  for (size_t i = 0; i < cfg.nr_disks; i++)
    if ((cfg.disks[i].source == VM_DISK_FILE ||
         cfg.disks[i].source == VM_DISK_BLOCK ||
         cfg.disks[i].source == VM_DISK_NETWORK) && cfg.disks[i].path &&
        !string_vector_contains (out, cfg.disks[i].path))
      sv_add (out, "%s", cfg.disks[i].path);
  if (cfg.nvram && !string_vector_contains (out, cfg.nvram))
    sv_add (out, "%s", cfg.nvram);
  vm_config_clear (&cfg);
  return 0;
}

/* What libvirt knows now, for the plan (vm-restore-plan.h). */
struct host_snapshot {
  struct vm_host_domain *doms;
  string_vector *paths;         /* per domain */
  char **names;
  char (*uuids)[VIR_UUID_STRING_BUFLEN];
  size_t n;
};

static void
host_snapshot_free (struct host_snapshot *hs)
{
  for (size_t i = 0; i < hs->n; i++) {
    string_vector_free_all (&hs->paths[i]);
    free (hs->names[i]);
  }
  free (hs->doms); free (hs->paths); free (hs->names); free (hs->uuids);
  memset (hs, 0, sizeof *hs);
}

static int
path_exists (void *opaque, const char *path)
{
  struct stat st;
  (void) opaque;
  return lstat (path, &st) == 0 || errno != ENOENT;
}

static int
host_gather (struct vm_writer *w, struct host_snapshot *hs)
{
  virDomainPtr *doms = NULL;
  int nd = virConnectListAllDomains (w->conn, &doms, 0);

  memset (hs, 0, sizeof *hs);
  if (nd < 0) {
    vms_set_error (EIO, "cannot list the domains at %s: %s", w->uri,
                   vm_virt_error ());
    return -1;
  }
  hs->doms = calloc ((size_t) nd + 1, sizeof *hs->doms);
  hs->paths = calloc ((size_t) nd + 1, sizeof *hs->paths);
  hs->names = calloc ((size_t) nd + 1, sizeof *hs->names);
  hs->uuids = calloc ((size_t) nd + 1, sizeof *hs->uuids);
  for (int d = 0; d < nd; d++) {
    if (hs->doms && hs->paths && hs->names && hs->uuids &&
        virDomainGetUUIDString (doms[d], hs->uuids[hs->n]) == 0) {
      size_t k = hs->n++;
      const char *name = virDomainGetName (doms[d]);
      hs->names[k] = name ? strdup (name) : NULL;
      hs->doms[k].name = hs->names[k];
      hs->doms[k].uuid = hs->uuids[k];
      hs->doms[k].active = virDomainIsActive (doms[d]) == 1;
      hs->doms[k].persistent = virDomainIsPersistent (doms[d]) == 1;
      if (hs->doms[k].persistent)
        domain_paths (doms[d], VIR_DOMAIN_XML_INACTIVE, &hs->paths[k]);
      if (hs->doms[k].active)
        domain_paths (doms[d], 0, &hs->paths[k]);
      hs->doms[k].paths = (const char *const *) hs->paths[k].ptr;
      hs->doms[k].nr_paths = hs->paths[k].len;
    }
    virDomainFree (doms[d]);
  }
  free (doms);
  if (hs->doms == NULL || hs->paths == NULL || hs->names == NULL ||
      hs->uuids == NULL) {
    host_snapshot_free (hs);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* ---- issue 11: disks that are devices ---- */

/* The stored XML's disk with this target, parsed into *cfg (cleared by
 * the caller). NULL with the error set. */
static const struct vm_disk *
stored_disk (const struct rs_vm *vm, const struct rs_file *f,
             struct vm_config *cfg)
{
  const struct vm_disk *d;

  if (vm->config_xml == NULL ||
      vm_config_parse (vm->config_xml, strlen (vm->config_xml), cfg) == -1) {
    vms_set_error (EINVAL, "its stored domain XML cannot be read");
    return NULL;
  }
  if (f->disk_target == NULL ||
      (d = vm_config_disk (cfg, f->disk_target)) == NULL ||
      d->path == NULL || strcmp (d->path, f->path) != 0) {
    vms_set_error (EINVAL, "its stored domain XML has no disk %s on %s",
                   f->disk_target ? f->disk_target : "?", f->path);
    return NULL;
  }
  return d;
}

/* qemu-img ARGS… with the secret object VMS_ACCESS_SECRET_ID from
 * secret (or none); its stdout into *out (may be NULL). 0, or -1 with the
 * error set to qemu-img's last words; *missing set when they say the image
 * does not exist. */
static int
run_qemu_img (const char *const *args, const char *secret, char **out,
              int *missing)
{
  const char *argv[16];
  CLEANUP_FREE char *obj = NULL;
  struct vms_subprocess_options o = { 0 };
  struct vms_subprocess_result res = { 0 };
  char how[128], tail[600];
  size_t n = 0;
  int rc = -1;

  argv[n++] = "qemu-img";
  argv[n++] = args[0];
  if (secret) {
    if (strchr (secret, ',') ||
        asprintf (&obj, "secret,id=" VMS_ACCESS_SECRET_ID ",file=%s", secret) == -1) {
      obj = NULL;
      vms_set_error (EINVAL, "the secret file's path %s cannot be given to "
                     "qemu-img", secret);
      return -1;
    }
    argv[n++] = "--object";
    argv[n++] = obj;
  }
  for (size_t i = 1; args[i] && n < 15; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  o.argv = argv;
  o.timeout_ms = 120000;
  if (missing)
    *missing = 0;
  if (vms_subprocess_run (&o, &res) == -1)
    return -1;
  if (vms_subprocess_succeeded (&res)) {
    if (out && (*out = strdup (res.out ? res.out : "")) == NULL)
      vms_set_error (ENOMEM, "out of memory");
    else
      rc = 0;
  }
  else {
    if (missing && res.err && strstr (res.err, "No such file or directory"))
      *missing = 1;
    vms_set_error (EIO, "qemu-img %s %s: %s", args[0],
                   vms_subprocess_describe (&res, how, sizeof how),
                   vms_subprocess_error_tail (&res, 2, tail, sizeof tail));
  }
  vms_subprocess_result_reset (&res);
  return rc;
}

/* The LV-recreation plan (vm-lvm.h) for the disk f, an LV, on what lvs
 * and vgs say now. 0 with *plan filled, or -1 with the error set. */
static int
lv_plan_now (const struct rs_file *f, struct vm_lv_plan *plan)
{
  const char *lvs_argv[] = { "lvs", "--reportformat", "json", "--units", "b",
    "--nosuffix", "-o", "lv_name,vg_name,lv_attr,lv_size,pool_lv", NULL };
  const char *vgs_argv[] = { "vgs", "--reportformat", "json", "--units", "b",
    "--nosuffix", "-o", "vg_name,vg_free", NULL };
  CLEANUP_FREE char *lvs = NULL, *vgs = NULL;

  if (vm_lvm_run (lvs_argv, &lvs) == -1 || vm_lvm_run (vgs_argv, &vgs) == -1)
    return -1;
  return vm_lv_plan (lvs, vgs, f->path, f->size, f->thin_pool, plan);
}

/* The logical volume of disk f, gone since the backup, made again of its
 * size in its volume group (issue 11) — thin in its pool when it was thin
 * at backup — on what LVM says now: the plan found room for it before any
 * disk was written; then its device node must appear (udev makes the
 * /dev/VG/LV link). 0, or -1 with the error set. */
static int
make_lv_again (const struct rs_file *f)
{
  const char *path = f->path;
  struct vm_lv_plan plan;
  struct stat st;
  int rc = -1;

  if (lv_plan_now (f, &plan) == -1)
    return -1;
  if (plan.action == VM_LV_CREATE &&
      vm_lvm_run ((const char *const *) plan.argv, NULL) == -1)
    goto out;
  for (int i = 0; i < 100; i++) {       /* 10 s */
    if (stat (path, &st) == 0 && S_ISBLK (st.st_mode)) {
      vms_debug ("restore: made the logical volume %s/%s again (%" PRIu64
                 " bytes%s%s)", plan.vg, plan.lv, f->size,
                 plan.pool ? ", thin in pool " : "", plan.pool ? plan.pool : "");
      rc = 0;
      goto out;
    }
    usleep (100000);
  }
  vms_set_error (ENOENT, "lvcreate made %s/%s, but its device %s did not "
                 "appear within 10 s", plan.vg, plan.lv, path);
 out:
  vm_lv_plan_clear (&plan);
  return rc;
}

/* A block device that is gone: NULL when it is a logical volume
 * (/dev/VG/LV, /dev/mapper/VG-LV) that the restore can make again (the
 * LV-recreation plan, vm-lvm.h, on what lvs and vgs say now), else why the
 * restore cannot write it — no LV path, the VG is gone or has no room;
 * malloc'd. */
static char *
gone_block_why (const struct rs_file *f)
{
  const char *path = f->path;
  CLEANUP_FREE char *vg = NULL, *lv = NULL;
  struct vm_lv_plan plan;
  char *why = NULL;

  if (vm_lv_from_path (path, &vg, &lv) == -1)
    return strdup ("it does not exist; restore it as a file with --to DIR");
  if (lv_plan_now (f, &plan) == -1)
    return vms_strdup_printf ("its logical volume is gone and cannot be made "
                              "again: %s", vms_get_error ());
  if (plan.action == VM_LV_REUSE)
    why = vms_strdup_printf ("lvs lists the logical volume %s/%s, but its "
                             "device is not there (is it active?)", vg, lv);
  else {
    /* lvcreate needs the kernel's device-mapper: asked now, so that a
     * host without it refuses here rather than at the write, after other
     * disks were written (this lab's kernel has none). */
    const char *argv[] = { "dmsetup", "version", NULL };
    if (vm_lvm_run (argv, NULL) == -1)
      why = vms_strdup_printf ("its logical volume is gone; volume group %s "
                               "has room to make it again, but the kernel's "
                               "device-mapper does not answer (%s), so no "
                               "logical volume can be made: restore it as a "
                               "file with --to DIR", vg, vms_get_error ());
  }
  vm_lv_plan_clear (&plan);
  return why;
}

/* What is at a network disk now: its size into *size, or -1 when it does
 * not exist. 0, or -1 with the error set (it cannot be reached, the login
 * is refused, …). */
static int
probe_network (struct vm_writer *w, const struct vm_disk *d, int64_t *size)
{
  char dir[] = "/tmp/vmshadow-probe-XXXXXX";
  CLEANUP_FREE char *graph = NULL, *secret = NULL, *out = NULL;
  const char *p;
  int missing = 0, rc = -1;

  if (mkdtemp (dir) == NULL) {
    vms_set_error (errno, "cannot make a directory for its secret: %s",
                   strerror (errno));
    return -1;
  }
  if ((graph = vm_disk_qemu_json (d, d->auth_user ? VMS_ACCESS_SECRET_ID
                                  : NULL)) != NULL &&
      (d->auth_user == NULL || (secret = vm_secret_file (w->conn, dir, d)) != NULL)) {
    const char *args[] = { "info", "--output=json", graph, NULL };
    if (run_qemu_img (args, secret, &out, &missing) == 0) {
      char *end;
      long long v;
      if ((p = strstr (out, "\"virtual-size\":")) == NULL ||
          (v = strtoll (p + 15, &end, 10)) < 0) {
        vms_set_error (EIO, "qemu-img info gives no size");
      }
      else {
        *size = v;
        rc = 0;
      }
    }
    else if (missing && d->protocol && strcmp (d->protocol, "rbd") == 0) {
      /* Gone: made again at the restore, if vmshadow can name it so and
       * its pool is there. qemu-img says "No such file or directory" for
       * a gone pool too: asked here, so that the plan refuses before any
       * disk is written rather than the image's creation failing after
       * the others were (issue 11: no VM half-restored). */
      CLEANUP_FREE char *name = vm_rbd_create_name (d);
      if (name && (vm_rbd_pool_check (d, secret) == 0 || vms_get_errno () == ENOTSUP)) {
        /* (built without librbd: qemu-img create will say) */
        *size = -1;
        rc = 0;
      }
      else if (name)
        vms_set_error (vms_get_errno (), "the RBD image is gone and cannot be "
                       "made again: %s", vms_get_error ());
    }
  }
  if (secret)
    unlink (secret);
  rmdir (dir);
  return rc;
}

/* Look at each block or network disk a restore writes in place (issue 11)
 * for the plan: whether it exists, its size, why it cannot be used. */
static void
probe_devices (struct vm_writer *w)
{
  struct vm_restore *r = w->restore;

  for (size_t i = 0; i < r->nr_vms; i++) {
    struct rs_vm *vm = &r->vms[i];
    for (size_t k = 0; k < vm->nr_files; k++) {
      struct rs_file *f = &vm->files[k];
      struct vm_config cfg = { 0 };
      const struct vm_disk *d;

      free (f->dev_error);
      f->dev_error = NULL;
      f->dev_probed = 0;
      f->dev_size = -1;
      if (f->role != RS_DISK || f->device == RS_DEV_FILE || r->to ||
          vm->clone || !r->write_devices)
        continue;
      f->dev_probed = 1;
      if (f->device == RS_DEV_BLOCK) {
        /* O_EXCL: refused (EBUSY) while the host has it mounted or held
         * (a filesystem, device-mapper, md). A /dev link (an LV's) is
         * udev's and followed. */
        int fd = open (f->path, O_RDONLY | O_EXCL | O_CLOEXEC);
        struct stat st;
        uint64_t bytes;
        if (fd == -1)
          f->dev_error = errno == ENOENT ? gone_block_why (f)
            : vms_strdup_printf ("%s", errno == EBUSY
                                 ? "it is in use on the host (mounted, or held "
                                 "by another device)" : strerror (errno));
        else if (fstat (fd, &st) == -1 || !S_ISBLK (st.st_mode))
          f->dev_error = strdup ("it is no block device now");
        else if (ioctl (fd, BLKGETSIZE64, &bytes) == -1)
          f->dev_error = vms_strdup_printf ("its size cannot be read: %s",
                                            strerror (errno));
        else
          f->dev_size = (int64_t) bytes;
        if (fd != -1)
          close (fd);
        continue;
      }
      if ((d = stored_disk (vm, f, &cfg)) == NULL ||
          probe_network (w, d, &f->dev_size) == -1)
        f->dev_error = strdup (vms_get_error ());
      vm_config_clear (&cfg);
    }
  }
}

int
vms_vm_restore_set_size (const vms_vm_restore *h, const char *uuid,
                         const char *path, uint64_t size)
{
  struct vm_restore *r = h->w->restore;

  for (size_t i = 0; i < r->nr_vms; i++)
    if (strcasecmp (r->vms[i].uuid, uuid) == 0)
      for (size_t j = 0; j < r->vms[i].nr_files; j++)
        if (strcmp (r->vms[i].files[j].path, path) == 0) {
          r->vms[i].files[j].size = size;
          return 0;
        }
  vms_set_error (ENOENT, "vm %s has no file %s", uuid, path);
  return -1;
}

int
vms_vm_restore_into (const vms_vm_restore *h, const char *uuid,
                     const char *path, char **graph, char **secret_file)
{
  struct vm_writer *w = h->w;
  struct vm_restore *r = w->restore;
  struct rs_vm *vm = NULL;
  struct rs_file *f = NULL;
  struct vm_config cfg = { 0 };
  const struct vm_disk *d;
  int rc = -1;

  *graph = *secret_file = NULL;
  for (size_t i = 0; vm == NULL && i < r->nr_vms; i++)
    if (strcasecmp (r->vms[i].uuid, uuid) == 0)
      vm = &r->vms[i];
  for (size_t j = 0; vm && f == NULL && j < vm->nr_files; j++)
    if (strcmp (vm->files[j].path, path) == 0)
      f = &vm->files[j];
  if (f == NULL || !f->into) {
    /* Never a file made at a device's path or a URI. */
    if (f && f->role == RS_DISK && f->device != RS_DEV_FILE &&
        strcmp (f->target, f->path) == 0) {
      vms_set_error (EINVAL, "disk %s (%s) was not planned to be written "
                     "into", f->disk_target ? f->disk_target : "?", f->path);
      return -1;
    }
    return 0;
  }
  if (f->device == RS_DEV_BLOCK) {
    if ((f->recreate && make_lv_again (f) == -1) ||
        (*graph = vm_block_qemu_json (f->path)) == NULL)
      goto out;
    rc = 0;
    goto out;
  }
  if ((d = stored_disk (vm, f, &cfg)) == NULL)
    goto out;
  if (d->auth_user &&
      (vms_mkdir_p (vm->dir, 0700) == -1 ||
       (*secret_file = vm_secret_file (w->conn, vm->dir, d)) == NULL))
    goto out;
  if (f->recreate) {
    /* The RBD image is gone: made again, of the backup's size. */
    CLEANUP_FREE char *name = vm_rbd_create_name (d), *sz = NULL;
    if (name == NULL ||
        asprintf (&sz, "%" PRIu64, f->size) == -1)
      goto out;
    const char *args[] = { "create", "-q", "-f", "rbd", name, sz, NULL, NULL,
      NULL };
    if (d->auth_user) {
      args[6] = "-o";
      args[7] = "password-secret=" VMS_ACCESS_SECRET_ID;
    }
    if (run_qemu_img (args, *secret_file, NULL, NULL) == -1) {
      vms_set_error (vms_get_errno (), "the RBD image %s cannot be made "
                     "again: %s", d->source_name, vms_get_error ());
      goto out;
    }
    vms_debug ("restore: made the RBD image %s again (%" PRIu64 " bytes)",
              d->source_name, f->size);
  }
  if ((*graph = vm_disk_qemu_json_writable (d, d->auth_user
                                            ? VMS_ACCESS_SECRET_ID : NULL)) == NULL)
    goto out;
  rc = 0;
 out:
  if (rc == -1) {
    int e = vms_get_errno ();
    CLEANUP_FREE char *m = strdup (vms_get_error ());
    if (*secret_file) {
      unlink (*secret_file);
      free (*secret_file);
      *secret_file = NULL;
    }
    vms_set_error (e, "vm \"%s\", disk %s (%s): %s", vm->name,
                   f->disk_target ? f->disk_target : "?", f->path,
                   m ? m : "failed");
  }
  vm_config_clear (&cfg);
  return rc;
}

/* The plan against the host as it is now; also the --network-map targets
 * (libvirt networks and bridges). 0, or -1 with every reason to refuse. */
static int
plan_now (struct vm_writer *w)
{
  struct vm_restore *r = w->restore;
  struct host_snapshot hs;
  CLEANUP_FREE char *why = NULL;
  int rc;

  if (host_gather (w, &hs) == -1)
    return -1;
  probe_devices (w);
  const struct vm_host host = {
    .doms = hs.doms, .nr_doms = hs.n, .exists = path_exists,
  };
  rc = vm_restore_plan (r, &host);
  host_snapshot_free (&hs);
  if (rc == -1 && (why = strdup (vms_get_error ())) == NULL)
    return -1;
  for (size_t i = 0; i < r->map_new.len; i++)
    if (!network_exists (w->conn, r->map_new.ptr[i]) &&
        !netdev_exists (r->map_new.ptr[i])) {
      char *n;
      if (asprintf (&n, "%s%s--network-map %s=%s: there is no libvirt network "
                    "or bridge named \"%s\"", why ? why : "", why ? "; " : "",
                    r->map_old.ptr[i], r->map_new.ptr[i],
                    r->map_new.ptr[i]) == -1)
        return -1;
      free (why);
      why = n;
      r->planned = 0;
    }
  if (why) {
    vms_set_error (EEXIST, "%s", why);
    return -1;
  }
  return 0;
}

int
vms_vm_restore_plan (const vms_vm_restore *h)
{
  struct vm_writer *w = h->w;

  if (w->conn == NULL || virConnectIsAlive (w->conn) != 1) {
    if (w->conn)
      virConnectClose (w->conn);
    if ((w->conn = virConnectOpen (w->uri)) == NULL) {
      vms_set_error (EIO, "cannot connect to libvirt at %s: %s; is libvirtd "
                     "running (and is this the right URI, -c/--connect)?",
                     w->uri, vm_virt_error ());
      return -1;
    }
  }
  return plan_now (w);
}

/* Keep a file aside (--existing rename): renamed, never deleted. */
static int
keep_aside (const struct rs_file *f)
{
  struct stat st;

  if (f->aside == NULL || lstat (f->target, &st) == -1)
    return 0;                   /* gone already (a run again) */
  /* Never over a file that appeared there since the plan. */
  if (renameat2 (AT_FDCWD, f->target, AT_FDCWD, f->aside,
                 RENAME_NOREPLACE) == -1) {
    vms_set_error (errno, "cannot keep %s aside as %s: %s", f->target,
                   f->aside, strerror (errno));
    return -1;
  }
  return 0;
}

/* ---- cluster resources (issue 18, R22) ---- */

#define RS_CLUSTER_STOP_S 120
#define RS_CLUSTER_START_S 180

/* The restored VMs that are Pacemaker VirtualDomain resources: each one's
 * resource is disabled (target-role Stopped) and its failure history
 * cleaned before anything of the VM changes, so the cluster neither
 * recovers it nor counts a failure. A copy (--name) is never one. */
static int
cluster_disable (struct vm_writer *w, vms_call *call)
{
  struct vm_restore *r = w->restore;
  struct vm_cluster cl;
  int rc = 0;

  if (vm_cluster_scan (&cl) == -1)
    return vms_call_fail (call, VMS_FAILURE_RETRYABLE, "nothing was changed: "
                          "%s", vms_get_error ());
  for (size_t i = 0; i < r->nr_vms && rc == 0; i++) {
    struct rs_vm *vm = &r->vms[i];
    const struct vm_cluster_rsc *res;
    struct vm_cluster_meta_prev prev = { 0 };

    if (vm->clone || !cl.up ||
        (res = vm_cluster_find (&cl, w->uri, vm->uuid, vm->name)) == NULL)
      continue;
    if (res->node && cl.local_node && strcmp (res->node, cl.local_node) != 0) {
      rc = vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\" is the "
                          "cluster resource %s, running on node %s: restore "
                          "it there; nothing was changed here", vm->name,
                          res->id, res->node);
      break;
    }
    if ((vm->cl_id = strdup (res->id)) == NULL ||
        (vm->cl_config = strdup (res->config)) == NULL) {
      rc = vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
      break;
    }
    if (vm_cluster_meta_set (res->id, "target-role", "Stopped", &prev) == -1) {
      rc = vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed at "
                          "pre-restore: cannot disable its cluster resource "
                          "%s: %s", vm->name, res->id, vms_get_error ());
      break;
    }
    vm->cl_disabled = 1;
    vm->cl_role_unchanged = prev.unchanged;
    vm->cl_role_nvpair = prev.nvpair_id; prev.nvpair_id = NULL;
    vm->cl_role_value = prev.value; prev.value = NULL;
    vm_cluster_meta_prev_clear (&prev);
    if (vm_cluster_settle (RS_CLUSTER_STOP_S) == -1 ||
        vm_cluster_running_on (res->id, cl.local_node) == 1) {
      rc = vms_call_fail (call, VMS_FAILURE_RETRYABLE, "vm \"%s\" failed at "
                          "pre-restore: the cluster did not stop its resource "
                          "%s within %d s (it stays disabled: target-role "
                          "Stopped)", vm->name, res->id, RS_CLUSTER_STOP_S);
      break;
    }
    if (vm_cluster_cleanup (res->id) == -1)
      vms_debug ("vm restore: %s: %s", res->id, vms_get_error ());
    sv_add (&vm->notes, "cluster resource %s disabled (target-role Stopped) "
            "and its failures cleaned", res->id);
  }
  vm_cluster_clear (&cl);
  return rc;
}

/* PostRestore of a resource's VM (defined now, dom): the agent's config
 * file gets the restored XML, libvirt forgets the domain again (the agent
 * runs it transient from that file, as before; a VM resumed from its saved
 * state keeps running, transient), and the resource is enabled, its
 * target-role exactly as before. The resource is left disabled when
 * anything before failed: a half-restored VM is not started. */
static void
cluster_enable (struct vm_writer *w, struct rs_vm *vm, virDomainPtr dom)
{
  CLEANUP_FREE char *xml = NULL;
  struct vm_cluster_meta_prev prev = {
    .nvpair_id = vm->cl_role_nvpair, .value = vm->cl_role_value,
    .unchanged = vm->cl_role_unchanged,
  };
  struct stat st = { 0 };
  CLEANUP_FREE char *node = NULL;
  struct vm_cluster cl;
  mode_t mode = 0600;

  if (vm->error)
    return;                     /* left disabled (vm_restore_post says so) */
  xml = virDomainGetXMLDesc (dom, VIR_DOMAIN_XML_INACTIVE |
                             VIR_DOMAIN_XML_SECURE);
  if (xml == NULL) {
    rs_fail (vm, "defined, but its XML cannot be read for the cluster "
             "resource %s: %s (left disabled)", vm->cl_id, vm_virt_error ());
    return;
  }
  /* Never through a link we did not make: the config is replaced as a
   * file, with its mode. */
  if (lstat (vm->cl_config, &st) == 0 && S_ISREG (st.st_mode))
    mode = st.st_mode & 07777;
  else if (errno != ENOENT || st.st_mode) {
    rs_fail (vm, "defined, but the config %s of cluster resource %s is not "
             "a regular file (a link?): copy the restored XML there by hand, "
             "then enable the resource", vm->cl_config, vm->cl_id);
    return;
  }
  if (vms_write_file_atomic (AT_FDCWD, vm->cl_config, xml, strlen (xml),
                             mode) == -1) {
    rs_fail (vm, "defined, but the config of cluster resource %s: %s (left "
             "disabled)", vm->cl_id, vms_get_error ());
    return;
  }
  sv_add (&vm->notes, "cluster resource %s: its config %s holds the restored "
          "XML", vm->cl_id, vm->cl_config);
  if (virDomainUndefineFlags (dom, VIR_DOMAIN_UNDEFINE_KEEP_NVRAM |
                              VIR_DOMAIN_UNDEFINE_KEEP_TPM) == -1)
    vms_debug ("vm restore: %s: undefine: %s", vm->name, vm_virt_error ());
  if (vm_cluster_meta_restore (vm->cl_id, "target-role", &prev) == -1) {
    rs_fail (vm, "restored, but its cluster resource %s could not be "
             "enabled: %s", vm->cl_id, vms_get_error ());
    return;
  }
  vm->cl_disabled = 0;
  if (vm_cluster_settle (RS_CLUSTER_START_S) == -1) {
    rs_fail (vm, "restored and its cluster resource %s enabled, but the "
             "cluster did not settle within %d s: %s", vm->cl_id,
             RS_CLUSTER_START_S, vms_get_error ());
    return;
  }
  if (vm_cluster_scan (&cl) == 0) {
    const struct vm_cluster_rsc *res = vm_cluster_find (&cl, w->uri,
                                                        vm->uuid, vm->name);
    if (res && res->node)
      node = strdup (res->node);
    vm_cluster_clear (&cl);
  }
  sv_add (&vm->notes, "cluster resource %s enabled: %s%s", vm->cl_id,
          node ? "running on node " : "not running (its target-role says so)",
          node ? node : "");
}

int
vm_restore_pre (void *data, vms_call *call)
{
  struct vm_writer *w = data;
  struct vm_restore *r = w->restore;

  if (r == NULL)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm writer: "
                          "added for backup, not for restore");
  if (w->conn == NULL && vm_connect (w, call) == -1)
    return -1;
  /* The host may have changed since the requester's plan: plan again, and
   * refuse before anything changes. */
  if (plan_now (w) == -1)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "nothing was "
                          "changed: %s", vms_get_error ());
  /* R22: a cluster resource is taken offline through the cluster first. */
  if (cluster_disable (w, call) == -1)
    return -1;

  for (size_t i = 0; i < r->nr_vms; i++) {
    struct rs_vm *vm = &r->vms[i];
    virDomainPtr dom;

    if (vms_mkdir_p (vm->dir, 0700) == -1)
      return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "vm \"%s\": "
                            "%s", vm->name, vms_get_error ());
    /* A copy never touches the VM it was made from. */
    if (vm->clone || !vm->present)
      continue;
    assert (r->replace);
    if ((dom = virDomainLookupByUUIDString (w->conn, vm->uuid)) == NULL)
      continue;                 /* gone since the plan */
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
    vms_debug ("vm restore: %s (%s) turned off and undefined (--replace)",
               vm->name, vm->uuid);
    virDomainFree (dom);
  }
  /* The directories the files go to; the files kept aside. */
  for (size_t i = 0; i < r->nr_vms; i++)
    for (size_t j = 0; j < r->vms[i].nr_files; j++) {
      CLEANUP_FREE char *d = NULL;
      if (r->vms[i].files[j].into)
        continue;               /* a device or a URI (issue 11): no dir */
      d = strdup (r->vms[i].files[j].target);
      if (d == NULL || vms_mkdir_p (dirname (d), 0755) == -1)
        return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "vm \"%s\": "
                              "%s", r->vms[i].name, d ? vms_get_error ()
                              : "out of memory");
      if (keep_aside (&r->vms[i].files[j]) == -1)
        return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "vm \"%s\": "
                              "%s", r->vms[i].name, vms_get_error ());
    }
  return 0;
}

/* ---- PostRestore (R17–R21) ---- */

/* R19: a link at each original disk path to the restored file, made only
 * where nothing is: a file there (the VM's old disk, or anything else) is
 * never removed (issue 20). */
static void
link_original (struct rs_vm *vm, const struct rs_file *f)
{
  struct stat st;
  char buf[PATH_MAX];
  ssize_t n;

  if (strcmp (f->path, f->target) == 0)
    return;
  /* Issue 11: never a link (nor directories) at a device's path or at a
   * URI, which a relative lstat/symlink would make in the cwd. */
  if (f->role == RS_DISK && f->device != RS_DEV_FILE)
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
    sv_add (&vm->notes, "no link at %s: a file is there (left as it is; "
            "vmshadow never removes one)", f->path);
    return;
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
  /* A copy's XML was made by the plan from the stored XML (the same
   * bytes as the file just restored); else it is made now. */
  if (vm->copy_xml)
    for (size_t i = 0; i < vm->changes.len; i++) {
      if (strcmp (vm->changes.ptr[i].action, "rewrite") == 0)
        sv_add (&vm->notes, "%s", vm->changes.ptr[i].detail);
    }
  else if (vm->clone) {
    if ((xml = read_text (cfg->target)) == NULL ||
        (vm->copy_xml = vm_restore_copy_xml (vm, xml, &vm->notes)) == NULL) {
      rs_fail (vm, "not defined: %s", vms_get_error ());
      return;
    }
  }
  if ((vm->copy_xml == NULL && xml == NULL &&
       (xml = read_text (cfg->target)) == NULL) ||
      (def = rewrite_xml (w, vm, vm->copy_xml ? vm->copy_xml : xml, 1)) == NULL) {
    rs_fail (vm, "not defined: %s", vms_get_error ());
    return;
  }
  if (vm->nr_inst) {
    /* Instant recovery (issue 16): def, the final definition, is kept for
     * the end of the move; the VM is defined on its overlays now. */
    CLEANUP_FREE char *live = NULL;
    vm->inst_live = 1;
    live = rewrite_xml (w, vm, vm->copy_xml ? vm->copy_xml : xml, 0);
    if (live == NULL ||
        vms_write_file_atomic (AT_FDCWD, vm->inst_final_xml, def, strlen (def),
                               0600) == -1) {
      rs_fail (vm, "not defined: %s", vms_get_error ());
      return;
    }
    free (def);
    def = live;
    live = NULL;
  }
  if (r->to && !vm->clone)
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
  /* A copy never inherits autostart (nor the cluster resource). */
  if (vm->clone && virDomainSetAutostart (dom, 0) == -1)
    vms_debug ("vm restore: %s: autostart: %s", vm->name, vm_virt_error ());
  if (strcmp (vm->method, "saved-state") == 0 && state && vm->clone) {
    /* The memory state is the original's (its UUID, MACs, files): a copy
     * boots from its disks instead. */
    sv_add (&vm->notes, "a copy is not resumed from the original's saved "
            "state: it boots from its disks%s", r->start ? "" : " (--start)");
    unlink (state->target);
  }
  else if (strcmp (vm->method, "saved-state") == 0 && state)
    resume_saved (w, vm, state->target);
  else if (strcmp (vm->method, "saved-state") == 0)
    sv_add (&vm->notes, "the backup holds no saved state: the VM comes back "
            "stopped");
  if (vm->cl_id) {
    /* R22: the cluster starts it (or not: its target-role as before). */
    cluster_enable (w, vm, dom);
    virDomainFree (dom);
    dom = virDomainLookupByUUIDString (w->conn, vm->define_uuid
                                       ? vm->define_uuid : vm->uuid);
    vm->state = dom ? dom_state (dom) : "shut-off";
    if (dom)
      virDomainFree (dom);
    return;
  }
  if (!vm->resumed && (r->start || vm->nr_inst) && virDomainCreate (dom) == -1)
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
    if (vm->cl_disabled && vm->error)
      sv_add (&vm->notes, "cluster resource %s left disabled (target-role "
              "Stopped): the VM was not restored whole", vm->cl_id);
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
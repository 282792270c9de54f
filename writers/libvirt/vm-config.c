/* Domain XML → what the VM writer backs up (R7, R13); the method choice of
 * R9; the backup and checkpoint XML the writer sends. Pure functions over
 * strings: no libvirt calls, so the unit tests drive them with sample XML.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "str.h"
#include "vm-config.h"
#include "vm-xml.h"

/* ---- small helpers ---- */

static int
is_elem (const xmlNode *n, const char *name)
{
  return n->type == XML_ELEMENT_NODE &&
    strcmp ((const char *) n->name, name) == 0;
}

static int
attr_is (const xmlNode *n, const char *name, const char *value)
{
  CLEANUP_FREE char *v = xml_attr (n, name);
  return v != NULL && strcmp (v, value) == 0;
}

/* The element's text, trimmed (malloc'd), or NULL when empty. */
static char *
text (const xmlNode *n)
{
  xmlChar *v = n ? xmlNodeGetContent (n) : NULL;
  const char *s, *e;
  char *r = NULL;

  if (v == NULL)
    return NULL;
  s = (const char *) v;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  e = s + strlen (s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
                   e[-1] == '\r'))
    e--;
  if (e > s)
    r = strndup (s, (size_t) (e - s));
  xmlFree (v);
  return r;
}

/* ---- domain XML ---- */

static void
disk_clear (struct vm_disk *d)
{
  free (d->target); free (d->device); free (d->path); free (d->format);
  free (d->pool); free (d->volume); free (d->reason);
  free (d->protocol); free (d->source_name);
  for (size_t i = 0; i < d->nr_hosts; i++) {
    free (d->hosts[i].name); free (d->hosts[i].port); free (d->hosts[i].socket);
  }
  free (d->hosts);
  free (d->auth_user); free (d->secret_type); free (d->secret_usage);
  free (d->secret_uuid); free (d->initiator); free (d->rbd_conf);
}

void
vm_config_clear (struct vm_config *cfg)
{
  if (cfg == NULL)
    return;
  for (size_t i = 0; i < cfg->nr_disks; i++)
    disk_clear (&cfg->disks[i]);
  free (cfg->disks);
  for (size_t i = 0; i < cfg->nr_excluded; i++) {
    free (cfg->excluded[i].path);
    free (cfg->excluded[i].reason);
  }
  free (cfg->excluded);
  free (cfg->name);
  free (cfg->uuid);
  free (cfg->nvram);
  free (cfg->policy_error);
  free (cfg->dac_label);
  memset (cfg, 0, sizeof *cfg);
}

/* A network disk's source as a URI-like string, for messages and as the
 * excluded "path". */
static char *
network_path (const xmlNode *src)
{
  CLEANUP_FREE char *proto = xml_attr (src, "protocol");
  CLEANUP_FREE char *name = xml_attr (src, "name");
  const xmlNode *host = xml_child (src, "host");
  CLEANUP_FREE char *hname = xml_attr (host, "name");
  CLEANUP_FREE char *port = xml_attr (host, "port");
  CLEANUP_FREE char *transport = xml_attr (host, "transport");
  CLEANUP_FREE char *sock = xml_attr (host, "socket");
  const char *p = proto ? proto : "network";

  if (transport && strcmp (transport, "unix") == 0)
    return vms_strdup_printf ("%s+unix:///%s?socket=%s", p, name ? name : "",
                              sock ? sock : "");
  if (hname)
    return vms_strdup_printf ("%s://%s%s%s/%s", p, hname, port ? ":" : "",
                              port ? port : "", name ? name : "");
  return vms_strdup_printf ("%s:%s", p, name ? name : "");
}

/* Network protocols QEMU 7.2 opens itself (its block drivers: Debian's
 * qemu-block-extra has iscsi, rbd, gluster, curl, ssh, nfs), so that a
 * running VM's backup job reads them like any other disk (R13, issue
 * 11). */
static const char *const vm_protocols[] = {
  "nbd", "iscsi", "rbd", "gluster", "http", "https", "ftp", "ftps", "ssh",
  "nfs",
};

int
vm_protocol_known (const char *protocol)
{
  for (size_t i = 0; protocol && i < sizeof vm_protocols / sizeof vm_protocols[0]; i++)
    if (strcmp (protocol, vm_protocols[i]) == 0)
      return 1;
  return 0;
}

int
vm_protocol_offline (const char *protocol)
{
  static const char *const ok[] = {
    "nbd", "iscsi", "rbd", "http", "https", "ftp", "ftps",
  };
  for (size_t i = 0; protocol && i < sizeof ok / sizeof ok[0]; i++)
    if (strcmp (protocol, ok[i]) == 0)
      return 1;
  return 0;
}

/* The network details of <source protocol=…> (and <auth>, which older
 * libvirt put under <disk>). Returns 0 or -1 (ENOMEM). */
static int
parse_network_source (const xmlNode *disk, const xmlNode *src,
                      struct vm_disk *d)
{
  const xmlNode *auth = xml_child (src, "auth");
  const xmlNode *init = xml_child (xml_child (src, "initiator"), "iqn");
  CLEANUP_FREE char *tls = xml_attr (src, "tls");

  if (auth == NULL)
    auth = xml_child (disk, "auth");
  d->protocol = xml_attr (src, "protocol");
  d->source_name = xml_attr (src, "name");
  d->tls = tls && strcmp (tls, "yes") == 0;
  for (const xmlNode *h = src->children; h; h = h->next) {
    struct vm_disk_host *p, *e;
    CLEANUP_FREE char *transport = NULL;

    if (!is_elem (h, "host"))
      continue;
    p = realloc (d->hosts, (d->nr_hosts + 1) * sizeof *p);
    if (p == NULL)
      return -1;
    d->hosts = p;
    e = &p[d->nr_hosts++];
    memset (e, 0, sizeof *e);
    transport = xml_attr (h, "transport");
    if (transport && strcmp (transport, "unix") == 0)
      e->socket = xml_attr (h, "socket");
    else {
      e->name = xml_attr (h, "name");
      e->port = xml_attr (h, "port");
    }
  }
  if (auth) {
    const xmlNode *sec = xml_child (auth, "secret");
    d->auth_user = xml_attr (auth, "username");
    d->secret_type = xml_attr (sec, "type");
    d->secret_usage = xml_attr (sec, "usage");
    d->secret_uuid = xml_attr (sec, "uuid");
  }
  d->initiator = xml_attr (init, "name");
  d->rbd_conf = xml_attr (xml_child (src, "config"), "file");
  return 0;
}

/* Fill d from a <disk> element. Returns 1 when kept, 0 when the disk has
 * no source (left out), -1 on error. */
static int
parse_disk (const xmlNode *n, struct vm_disk *d)
{
  CLEANUP_FREE char *type = xml_attr (n, "type");
  const xmlNode *src = xml_child (n, "source");
  const xmlNode *tgt = xml_child (n, "target");

  d->device = xml_attr (n, "device");
  if (d->device == NULL && (d->device = strdup ("disk")) == NULL)
    return -1;
  d->target = xml_attr (tgt, "dev");
  d->format = xml_attr (xml_child (n, "driver"), "type");
  if (d->target == NULL) {
    vms_set_error (EINVAL, "domain XML: a <disk> has no <target dev>");
    return -1;
  }
  if (type == NULL || strcmp (type, "file") == 0) {
    d->source = VM_DISK_FILE;
    d->path = xml_attr (src, "file");
  }
  else if (strcmp (type, "block") == 0) {
    d->source = VM_DISK_BLOCK;
    d->path = xml_attr (src, "dev");
  }
  else if (strcmp (type, "network") == 0) {
    d->source = VM_DISK_NETWORK;
    if (src == NULL)
      return 0;
    d->path = network_path (src);
    if (d->path && parse_network_source (n, src, d) == -1)
      return -1;
  }
  else if (strcmp (type, "volume") == 0) {
    d->source = VM_DISK_VOLUME;
    d->pool = xml_attr (src, "pool");
    d->volume = xml_attr (src, "volume");
    if (d->pool && d->volume)
      d->path = vms_strdup_printf ("%s/%s", d->pool, d->volume);
  }
  else if (strcmp (type, "dir") == 0) {
    d->source = VM_DISK_DIR;
    d->path = xml_attr (src, "dir");
  }
  else {
    d->source = VM_DISK_OTHER;
    d->path = vms_strdup_printf ("%s:%s", type, d->target);
  }
  if (d->path == NULL)
    return 0;                   /* no medium */

  /* R13 read for KVM (issue 11): "the host cannot see it" means QEMU does
   * not open it. QEMU opens files, host block devices (LVM, zvols,
   * partitions, whole disks), pool volumes and network disks of the
   * protocols it has drivers for: those are backed up. What bypasses its
   * block layer is the guest's to back up: SCSI pass-through (device='lun',
   * the guest talks SCSI to the device), vhost-user and vhost-vdpa disks
   * (served by another process or the kernel), NVMe controllers handed to
   * QEMU's user-space driver, and directories (a synthesized FAT view). */
  if (strcmp (d->device, "cdrom") == 0 || strcmp (d->device, "floppy") == 0)
    d->reason = vms_strdup_printf ("removable medium (%s %s) is not part of the "
                                   "VM's state; back up the image itself if needed",
                                   d->device, d->path);
  else if (strcmp (d->device, "lun") == 0)
    d->reason = vms_strdup_printf ("backed up from inside the guest: pass-through "
                                   "SCSI LUN %s (disk %s): the guest sends SCSI "
                                   "commands to the device, past QEMU's block "
                                   "layer", d->path, d->target);
  else if (d->source == VM_DISK_NETWORK && !vm_protocol_known (d->protocol))
    d->reason = vms_strdup_printf ("backed up from inside the guest: network disk "
                                   "%s (disk %s) uses protocol \"%s\", which "
                                   "QEMU 7.2 has no block driver for",
                                   d->path, d->target,
                                   d->protocol ? d->protocol : "");
  else if (d->source == VM_DISK_DIR)
    d->reason = vms_strdup_printf ("backed up from inside the guest: directory "
                                   "disk %s (disk %s)", d->path, d->target);
  else if (xml_child (src, "slices"))
    /* QEMU opens only part of the file (<slices>: an offset and a size).
     * A stopped VM's image would be read, and a restore written, whole,
     * from byte 0: the wrong bytes, over the rest of the file. So it is
     * named, not backed up. */
    d->reason = vms_strdup_printf ("backed up from inside the guest: disk %s "
                                   "is a slice of %s (<slices>), and vmshadow "
                                   "reads and restores whole images only",
                                   d->target, d->path);
  else if (d->source == VM_DISK_OTHER)
    d->reason = vms_strdup_printf ("backed up from inside the guest: disk %s of "
                                   "type %s is served %s, past QEMU's block "
                                   "layer", d->target, type,
                                   strcmp (type, "vhostuser") == 0
                                   ? "by a vhost-user process"
                                   : strcmp (type, "vhostvdpa") == 0
                                   ? "by a vDPA device"
                                   : strcmp (type, "nvme") == 0
                                   ? "by an NVMe controller given to QEMU's "
                                     "user-space driver"
                                   : "in a way vmshadow does not read");
  else
    d->included = 1;
  if (!d->included && d->reason == NULL)
    return -1;
  return 1;
}

/* A host device given to the guest (<hostdev>: PCI, SCSI, USB, mdev,
 * vhost-scsi): the guest drives it itself, past QEMU's block layer, so it
 * is named as excluded (R13). */
static int
parse_hostdev (const xmlNode *n, struct vm_config *cfg)
{
  const xmlNode *src = xml_child (n, "source");
  const xmlNode *ad = xml_child (src, "adapter");
  const xmlNode *addr = xml_child (src, "address");
  CLEANUP_FREE char *type = xml_attr (n, "type");
  CLEANUP_FREE char *proto = xml_attr (src, "protocol");
  CLEANUP_FREE char *aname = xml_attr (ad, "name");
  CLEANUP_FREE char *bus = xml_attr (addr, "bus");
  CLEANUP_FREE char *tgt = xml_attr (addr, "target");
  CLEANUP_FREE char *unit = xml_attr (addr, "unit");
  CLEANUP_FREE char *domain = xml_attr (addr, "domain");
  CLEANUP_FREE char *slot = xml_attr (addr, "slot");
  CLEANUP_FREE char *fn = xml_attr (addr, "function");
  CLEANUP_FREE char *device = xml_attr (addr, "device");
  CLEANUP_FREE char *uuid = xml_attr (addr, "uuid");
  CLEANUP_FREE char *wwpn = xml_attr (src, "wwpn");
  CLEANUP_FREE char *vendor = xml_attr (xml_child (src, "vendor"), "id");
  CLEANUP_FREE char *product = xml_attr (xml_child (src, "product"), "id");
  const char *what;
  struct vm_excluded *e, *p;
  char *path;

  if (type == NULL)
    type = strdup ("?");
  if (type == NULL)
    return -1;
  if (strcmp (type, "scsi") == 0) {
    what = "SCSI host device";
    if (proto)
      path = network_path (src);
    else
      path = vms_strdup_printf ("scsi:%s:%s:%s:%s", aname ? aname : "?",
                                bus ? bus : "0", tgt ? tgt : "0",
                                unit ? unit : "0");
  }
  else if (strcmp (type, "pci") == 0) {
    what = "PCI device";
    path = vms_strdup_printf ("pci:%s:%s:%s.%s", domain ? domain : "0x0000",
                              bus ? bus : "?", slot ? slot : "?",
                              fn ? fn : "0");
  }
  else if (strcmp (type, "usb") == 0) {
    what = "USB device";
    if (vendor || product)
      path = vms_strdup_printf ("usb:%s:%s", vendor ? vendor : "?",
                                product ? product : "?");
    else
      path = vms_strdup_printf ("usb:%s.%s", bus ? bus : "?",
                                device ? device : "?");
  }
  else if (strcmp (type, "mdev") == 0) {
    what = "mediated device";
    path = vms_strdup_printf ("mdev:%s", uuid ? uuid : "?");
  }
  else if (strcmp (type, "scsi_host") == 0) {
    what = "vhost-scsi host";
    path = vms_strdup_printf ("vhost-scsi:%s", wwpn ? wwpn : "?");
  }
  else {
    what = "host device";
    path = vms_strdup_printf ("hostdev:%s", type);
  }
  if (path == NULL)
    return -1;
  p = realloc (cfg->excluded, (cfg->nr_excluded + 1) * sizeof *p);
  if (p == NULL) {
    free (path);
    return -1;
  }
  cfg->excluded = p;
  e = &p[cfg->nr_excluded];
  e->path = path;
  e->reason = vms_strdup_printf ("backed up from inside the guest: pass-through "
                                 "%s %s: the guest drives it itself, past "
                                 "QEMU's block layer", what, path);
  if (e->reason == NULL) {
    free (path);
    return -1;
  }
  cfg->nr_excluded++;
  return 0;
}

/* ---- a network disk as QEMU's block graph (issue 11) ---- */

/* Append s to *out as a JSON string. Returns 0 or -1 (ENOMEM). */
static int
json_str (char **out, const char *key, const char *s)
{
  size_t n = strlen (s);
  CLEANUP_FREE char *q = malloc (n * 6 + 3);
  char *w, *r;

  if (q == NULL)
    return -1;
  w = q;
  *w++ = '"';
  for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      *w++ = '\\';
      *w++ = (char) *c;
    }
    else if (*c < 0x20 || *c == 0x7f)
      w += sprintf (w, "\\u%04x", *c);
    else
      *w++ = (char) *c;
  }
  *w++ = '"';
  *w = '\0';
  r = vms_strdup_printf ("%s%s\"%s\":%s", *out ? *out : "",
                         *out && (*out)[strlen (*out) - 1] != '{' &&
                         (*out)[strlen (*out) - 1] != '[' ? "," : "", key, q);
  if (r == NULL)
    return -1;
  free (*out);
  *out = r;
  return 0;
}

/* Append raw text (structure) to *out. */
static int
json_raw (char **out, const char *text)
{
  char *r = vms_strdup_printf ("%s%s", *out ? *out : "", text);
  if (r == NULL)
    return -1;
  free (*out);
  *out = r;
  return 0;
}

/* 1 if s is a decimal number within 1..65535 (a port) or 0..maxv. */
static int
is_number (const char *s, unsigned long maxv)
{
  char *end;
  unsigned long v;

  if (s == NULL || *s < '0' || *s > '9')
    return 0;
  errno = 0;
  v = strtoul (s, &end, 10);
  return !*end && errno == 0 && v <= maxv;
}

static char *disk_json (const struct vm_disk *d, const char *secret_id,
                        int writable);

char *
vm_disk_qemu_json (const struct vm_disk *d, const char *secret_id)
{
  return disk_json (d, secret_id, 0);
}

char *
vm_disk_qemu_json_writable (const struct vm_disk *d, const char *secret_id)
{
  return disk_json (d, secret_id, 1);
}

char *
vm_block_qemu_json (const char *device)
{
  char *j = NULL;

  if (json_raw (&j, "json:{\"driver\":\"raw\",\"file\":{") == -1 ||
      json_str (&j, "driver", "host_device") == -1 ||
      json_str (&j, "filename", device) == -1 || json_raw (&j, "}}") == -1) {
    free (j);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return j;
}

/* 1 if s is a plain Ceph name (pool, image, user): letters, digits, '.',
 * '_', '-', not starting with '.' or '-'. */
static int
plain_ceph_name (const char *s)
{
  return s && *s && *s != '.' && *s != '-' &&
    strspn (s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "0123456789._-") == strlen (s);
}

char *
vm_rbd_create_name (const struct vm_disk *d)
{
  const char *name = d->source_name ? d->source_name : "";
  const char *slash = strchr (name, '/');
  CLEANUP_FREE char *pool = NULL, *mons = NULL;
  char *out;

  if (d->source != VM_DISK_NETWORK || d->protocol == NULL ||
      strcmp (d->protocol, "rbd") != 0) {
    vms_set_error (EINVAL, "disk %s is not an RBD disk", d->target);
    return NULL;
  }
  if (slash == NULL || strchr (slash + 1, '/') || strchr (name, '@') ||
      (pool = strndup (name, (size_t) (slash - name))) == NULL ||
      !plain_ceph_name (pool) || !plain_ceph_name (slash + 1) ||
      (d->auth_user && !plain_ceph_name (d->auth_user)) || d->rbd_conf) {
    vms_set_error (ENOTSUP, "disk %s (%s): vmshadow makes an RBD image "
                   "again only as POOL/IMAGE of plain names (letters, "
                   "digits, '.', '_', '-'), with no namespace, snapshot or "
                   "<config file>", d->target, d->path);
    return NULL;
  }
  if (d->nr_hosts == 0) {
    vms_set_error (ENOTSUP, "disk %s (%s): an RBD disk without <host> "
                   "monitors cannot be made again", d->target, d->path);
    return NULL;
  }
  mons = strdup ("");
  for (size_t i = 0; mons && i < d->nr_hosts; i++) {
    const char *h = d->hosts[i].name, *p = d->hosts[i].port;
    char *m;
    if (h == NULL || strspn (h, "0123456789.abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ-") != strlen (h) ||
        (p && !is_number (p, 65535))) {
      vms_set_error (ENOTSUP, "disk %s (%s): monitor host \"%s\" is no "
                     "plain host name or IPv4 address", d->target, d->path,
                     h ? h : "");
      return NULL;
    }
    m = vms_strdup_printf ("%s%s%s\\:%s", mons, i ? ";" : "", h,
                           p ? p : "6789");
    free (mons);
    mons = m;
  }
  if (mons == NULL)
    goto oom;
  /* QEMU's legacy rbd: file name (qemu-img create takes no json:). */
  out = vms_strdup_printf ("rbd:%s:id=%s:mon_host=%s%s", name,
                           d->auth_user ? d->auth_user : "admin", mons,
                           d->auth_user ? ":auth_supported=cephx" : "");
  if (out == NULL)
    goto oom;
  return out;
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return NULL;
}

static char *
disk_json (const struct vm_disk *d, const char *secret_id, int writable)
{
  CLEANUP_FREE char *j = NULL, *target = NULL;
  const char *fmt = d->format ? d->format : "raw";
  const char *proto = d->protocol ? d->protocol : "";
  const char *name = d->source_name ? d->source_name : "";
  int secret = d->auth_user && secret_id;
  int oom = 0;

  if (d->source != VM_DISK_NETWORK) {
    vms_set_error (EINVAL, "disk %s is not a network disk", d->target);
    return NULL;
  }
  if (!vm_protocol_offline (proto)) {
    vms_set_error (ENOTSUP, "disk %s (%s): vmshadow reads a stopped VM's "
                   "network disk only over nbd, iscsi, rbd, http(s) or "
                   "ftp(s), not \"%s\"", d->target, d->path, proto);
    return NULL;
  }
  if (d->tls) {
    vms_set_error (ENOTSUP, "disk %s (%s): reading a stopped VM's disk over "
                   "TLS is not done yet", d->target, d->path);
    return NULL;
  }
  if (strcmp (fmt, "raw") != 0 && strcmp (fmt, "qcow2") != 0) {
    vms_set_error (ENOTSUP, "disk %s (%s): format \"%s\" (raw or qcow2)",
                   d->target, d->path, fmt);
    return NULL;
  }
  for (size_t i = 0; i < d->nr_hosts; i++)
    if (d->hosts[i].port && !is_number (d->hosts[i].port, 65535)) {
      vms_set_error (EINVAL, "disk %s (%s): host port \"%s\" is no number",
                     d->target, d->path, d->hosts[i].port);
      return NULL;
    }

  oom |= json_raw (&j, "json:{");
  oom |= json_str (&j, "driver", fmt);
  oom |= json_raw (&j, writable ? ",\"file\":{" : ",\"read-only\":true,\"file\":{");
  oom |= json_str (&j, "driver", proto);
  if (strcmp (proto, "nbd") == 0) {
    const struct vm_disk_host *h = d->nr_hosts ? &d->hosts[0] : NULL;
    if (h == NULL || (h->socket == NULL && h->name == NULL)) {
      vms_set_error (EINVAL, "disk %s (%s): an NBD disk needs a <host>",
                     d->target, d->path);
      return NULL;
    }
    oom |= json_raw (&j, ",\"server\":{");
    if (h->socket) {
      oom |= json_str (&j, "type", "unix");
      oom |= json_str (&j, "path", h->socket);
    }
    else {
      oom |= json_str (&j, "type", "inet");
      oom |= json_str (&j, "host", h->name);
      oom |= json_str (&j, "port", h->port ? h->port : "10809");
    }
    oom |= json_raw (&j, "}");
    if (*name)
      oom |= json_str (&j, "export", name);
  }
  else if (strcmp (proto, "iscsi") == 0) {
    const struct vm_disk_host *h = d->nr_hosts ? &d->hosts[0] : NULL;
    const char *slash = strrchr (name, '/');
    CLEANUP_FREE char *portal = NULL;
    const char *lun = slash ? slash + 1 : "0";

    if (h == NULL || h->name == NULL || !*name || (slash && !is_number (lun, 16383))) {
      vms_set_error (EINVAL, "disk %s (%s): an iSCSI disk needs a <host name> "
                     "and a name IQN/LUN", d->target, d->path);
      return NULL;
    }
    target = strndup (name, slash ? (size_t) (slash - name) : strlen (name));
    portal = vms_strdup_printf ("%s%s%s:%s", strchr (h->name, ':') ? "[" : "",
                                h->name, strchr (h->name, ':') ? "]" : "",
                                h->port ? h->port : "3260");
    if (target == NULL || portal == NULL)
      goto oom;
    oom |= json_str (&j, "transport", "tcp");
    oom |= json_str (&j, "portal", portal);
    oom |= json_str (&j, "target", target);
    oom |= json_raw (&j, ",\"lun\":");
    oom |= json_raw (&j, lun);
    if (d->initiator)
      oom |= json_str (&j, "initiator-name", d->initiator);
    if (secret) {
      oom |= json_str (&j, "user", d->auth_user);
      oom |= json_str (&j, "password-secret", secret_id);
    }
  }
  else if (strcmp (proto, "rbd") == 0) {
    /* name: pool/image or pool/namespace/image; "@snap" names a snapshot. */
    const char *s1 = strchr (name, '/'), *s2 = s1 ? strchr (s1 + 1, '/') : NULL;
    const char *at = strchr (name, '@');
    CLEANUP_FREE char *pool = NULL, *ns = NULL, *image = NULL;

    if (s1 == NULL || s1 == name || (s2 && strchr (s2 + 1, '/'))) {
      vms_set_error (EINVAL, "disk %s (%s): an RBD disk's name must be "
                     "POOL/IMAGE or POOL/NAMESPACE/IMAGE", d->target, d->path);
      return NULL;
    }
    pool = strndup (name, (size_t) (s1 - name));
    if (s2)
      ns = strndup (s1 + 1, (size_t) (s2 - s1 - 1));
    image = strndup (s2 ? s2 + 1 : s1 + 1,
                     at ? (size_t) (at - (s2 ? s2 + 1 : s1 + 1))
                     : strlen (s2 ? s2 + 1 : s1 + 1));
    if (pool == NULL || (s2 && ns == NULL) || image == NULL)
      goto oom;
    if (!*image) {
      vms_set_error (EINVAL, "disk %s (%s): an RBD disk names no image",
                     d->target, d->path);
      return NULL;
    }
    oom |= json_str (&j, "pool", pool);
    if (ns)
      oom |= json_str (&j, "namespace", ns);
    oom |= json_str (&j, "image", image);
    if (at)
      oom |= json_str (&j, "snapshot", at + 1);
    if (d->rbd_conf)
      oom |= json_str (&j, "conf", d->rbd_conf);
    if (d->nr_hosts) {
      oom |= json_raw (&j, ",\"server\":[");
      for (size_t i = 0; i < d->nr_hosts; i++) {
        if (d->hosts[i].name == NULL)
          continue;
        oom |= json_raw (&j, i ? ",{" : "{");
        oom |= json_str (&j, "host", d->hosts[i].name);
        oom |= json_str (&j, "port", d->hosts[i].port ? d->hosts[i].port : "6789");
        oom |= json_raw (&j, "}");
      }
      oom |= json_raw (&j, "]");
    }
    if (d->auth_user)
      oom |= json_str (&j, "user", d->auth_user);
    if (secret) {
      /* QEMU 7.2 takes a list here ("Invalid parameter type for
       * 'auth-client-required', expected: array" for a string). */
      oom |= json_raw (&j, ",\"auth-client-required\":[\"cephx\"]");
      oom |= json_str (&j, "key-secret", secret_id);
    }
  }
  else {                        /* curl: http, https, ftp, ftps */
    CLEANUP_FREE char *url = NULL;
    const struct vm_disk_host *h = d->nr_hosts ? &d->hosts[0] : NULL;
    if (h == NULL || h->name == NULL) {
      vms_set_error (EINVAL, "disk %s (%s): a %s disk needs a <host name>",
                     d->target, d->path, proto);
      return NULL;
    }
    url = vms_strdup_printf ("%s://%s%s%s%s%s", proto, h->name,
                             h->port ? ":" : "", h->port ? h->port : "",
                             name[0] == '/' ? "" : "/", name);
    if (url == NULL)
      goto oom;
    oom |= json_str (&j, "url", url);
  }
  oom |= json_raw (&j, "}}");
  if (oom)
    goto oom;
  return vms_strdup_printf ("%s", j);
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return NULL;
}

/* ---- names and the per-VM policy (issue 20) ---- */

const char *
vms_vm_method_name (enum vms_vm_method m)
{
  switch (m) {
  case VMS_VM_METHOD_ONLINE: return "online";
  case VMS_VM_METHOD_SAVED_STATE: return "saved-state";
  case VMS_VM_METHOD_CRASH_CONSISTENT: return "crash-consistent";
  case VMS_VM_METHOD_AUTO: break;
  }
  return "auto";
}

int
vms_vm_method_from_name (const char *name)
{
  static const enum vms_vm_method all[] = {
    VMS_VM_METHOD_AUTO, VMS_VM_METHOD_ONLINE, VMS_VM_METHOD_SAVED_STATE,
    VMS_VM_METHOD_CRASH_CONSISTENT,
  };
  for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
    if (strcmp (name, vms_vm_method_name (all[i])) == 0)
      return (int) all[i];
  return -1;
}

const char *
vms_vm_fallback_name (enum vms_vm_fallback f)
{
  switch (f) {
  case VMS_VM_FALLBACK_SAVED_STATE: return "saved-state";
  case VMS_VM_FALLBACK_FAIL: return "fail";
  case VMS_VM_FALLBACK_CRASH_CONSISTENT: break;
  }
  return "crash-consistent";
}

int
vms_vm_fallback_from_name (const char *name)
{
  static const enum vms_vm_fallback all[] = {
    VMS_VM_FALLBACK_CRASH_CONSISTENT, VMS_VM_FALLBACK_SAVED_STATE,
    VMS_VM_FALLBACK_FAIL,
  };
  for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
    if (strcmp (name, vms_vm_fallback_name (all[i])) == 0)
      return (int) all[i];
  return -1;
}

const char *
vms_vm_guest_name (enum vms_vm_guest g)
{
  switch (g) {
  case VMS_VM_GUEST_TRIED: return "tried";
  case VMS_VM_GUEST_REQUIRED: return "required";
  case VMS_VM_GUEST_OFF: break;
  }
  return "off";
}

int
vms_vm_guest_from_name (const char *name)
{
  static const enum vms_vm_guest all[] = {
    VMS_VM_GUEST_OFF, VMS_VM_GUEST_TRIED, VMS_VM_GUEST_REQUIRED,
  };
  for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
    if (strcmp (name, vms_vm_guest_name (all[i])) == 0)
      return (int) all[i];
  return -1;
}

static int
in_policy_ns (const xmlNode *n)
{
  return n->ns && n->ns->href &&
    strcmp ((const char *) n->ns->href, VMS_VM_POLICY_NS) == 0;
}

/* <metadata><vmshadow:policy method='…' fallback='…'/></metadata>: exactly
 * one element of our namespace, named policy, with only those attributes
 * (no namespace on them), each with a known value, and nothing inside.
 * Anything else is an error said in cfg->policy_error, never a guess. */
static int
parse_policy (const xmlNode *md, struct vm_config *cfg)
{
  const xmlNode *pol = NULL;
  CLEANUP_FREE char *method = NULL, *fallback = NULL, *guest = NULL;

  for (const xmlNode *c = md ? md->children : NULL; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || !in_policy_ns (c))
      continue;
    if (strcmp ((const char *) c->name, "policy") != 0) {
      cfg->policy_error = vms_strdup_printf ("its metadata has an element <%s> in "
                                             "vmshadow's namespace %s; only <policy> "
                                             "is known", (const char *) c->name,
                                             VMS_VM_POLICY_NS);
      return cfg->policy_error ? 0 : -1;
    }
    if (pol) {
      cfg->policy_error = vms_strdup_printf ("its metadata has more than one "
                                             "vmshadow policy (namespace %s)",
                                             VMS_VM_POLICY_NS);
      return cfg->policy_error ? 0 : -1;
    }
    pol = c;
  }
  if (pol == NULL)
    return 0;
  for (const xmlNode *c = pol->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE ||
        ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
         c->content && strspn ((const char *) c->content, " \t\r\n") !=
         strlen ((const char *) c->content))) {
      cfg->policy_error = strdup ("its vmshadow policy (metadata) has "
                                  "content; it takes only the attributes "
                                  "method, fallback and guest");
      return cfg->policy_error ? 0 : -1;
    }
  for (const xmlAttr *a = pol->properties; a; a = a->next) {
    const char *an = (const char *) a->name;
    if (a->ns != NULL ||
        (strcmp (an, "method") != 0 && strcmp (an, "fallback") != 0 &&
         strcmp (an, "guest") != 0)) {
      cfg->policy_error = vms_strdup_printf ("its vmshadow policy (metadata) has an "
                                             "unknown attribute \"%s\"; it takes "
                                             "method, fallback and guest", an);
      return cfg->policy_error ? 0 : -1;
    }
  }
  method = xml_attr (pol, "method");
  fallback = xml_attr (pol, "fallback");
  guest = xml_attr (pol, "guest");
  if (method == NULL && fallback == NULL && guest == NULL) {
    cfg->policy_error = strdup ("its vmshadow policy (metadata) names "
                                "neither a method nor a fallback nor guest "
                                "processing");
    return cfg->policy_error ? 0 : -1;
  }
  /* Issue 17: guest processing, required, tried or off. */
  if (guest && (cfg->policy_guest = vms_vm_guest_from_name (guest)) == -1) {
    cfg->policy_error = vms_strdup_printf ("its vmshadow policy (metadata) has "
                                           "guest=\"%s\"; it must be required, "
                                           "tried or off", guest);
    return cfg->policy_error ? 0 : -1;
  }
  if (method &&
      (cfg->policy_method = vms_vm_method_from_name (method)) == -1) {
    cfg->policy_error = vms_strdup_printf ("its vmshadow policy (metadata) has "
                                           "method=\"%s\"; it must be auto, online, "
                                           "crash-consistent or saved-state", method);
    return cfg->policy_error ? 0 : -1;
  }
  if (fallback &&
      (cfg->policy_fallback = vms_vm_fallback_from_name (fallback)) == -1) {
    cfg->policy_error = vms_strdup_printf ("its vmshadow policy (metadata) has "
                                           "fallback=\"%s\"; it must be "
                                           "crash-consistent, saved-state or fail",
                                           fallback);
    return cfg->policy_error ? 0 : -1;
  }
  return 0;
}

int
vm_config_parse (const char *xml, size_t len, struct vm_config *cfg)
{
  xmlDoc *doc;
  xmlNode *root, *devs, *os, *nv;
  int r = -1;

  memset (cfg, 0, sizeof *cfg);
  cfg->policy_method = cfg->policy_fallback = cfg->policy_guest = -1;
  if ((doc = xml_read (xml, len, "domain XML")) == NULL)
    return -1;
  root = xmlDocGetRootElement (doc);
  if (root == NULL || !is_elem (root, "domain")) {
    vms_set_error (EINVAL, "domain XML: the root element is not <domain>");
    goto out;
  }
  cfg->name = text (xml_child (root, "name"));
  cfg->uuid = text (xml_child (root, "uuid"));
  if (cfg->name == NULL || cfg->uuid == NULL) {
    vms_set_error (EINVAL, "domain XML: <name> or <uuid> is missing");
    goto out;
  }
  if (parse_policy (xml_child (root, "metadata"), cfg) == -1) {
    vms_set_error (ENOMEM, "out of memory parsing domain XML");
    goto out;
  }
  os = xml_child (root, "os");
  if ((nv = xml_child (os, "nvram")) != NULL) {
    const xmlNode *s = xml_child (nv, "source");
    cfg->nvram = s ? xml_attr (s, "file") : text (nv);
  }
  for (xmlNode *c = root->children; c && !cfg->dac_label; c = c->next)
    if (is_elem (c, "seclabel") && attr_is (c, "model", "dac")) {
      cfg->dac_label = text (xml_child (c, "imagelabel"));
      if (cfg->dac_label == NULL)
        cfg->dac_label = text (xml_child (c, "label"));
    }
  devs = xml_child (root, "devices");
  for (xmlNode *c = devs ? devs->children : NULL; c; c = c->next) {
    if (is_elem (c, "disk")) {
      struct vm_disk d = { 0 }, *p;
      int k = parse_disk (c, &d);
      if (k <= 0) {
        disk_clear (&d);
        if (k == -1) {
          if (vms_get_error () == NULL)
            vms_set_error (ENOMEM, "out of memory parsing domain XML");
          goto out;
        }
        continue;
      }
      p = realloc (cfg->disks, (cfg->nr_disks + 1) * sizeof *p);
      if (p == NULL) {
        disk_clear (&d);
        vms_set_error (ENOMEM, "out of memory parsing domain XML");
        goto out;
      }
      cfg->disks = p;
      p[cfg->nr_disks++] = d;
    }
    else if (is_elem (c, "hostdev")) {
      if (parse_hostdev (c, cfg) == -1) {
        vms_set_error (ENOMEM, "out of memory parsing domain XML");
        goto out;
      }
    }
    else if (is_elem (c, "tpm")) {
      if (attr_is (xml_child (c, "backend"), "type", "emulator"))
        cfg->tpm_emulator = 1;
    }
  }
  r = 0;
 out:
  xmlFreeDoc (doc);
  if (r == -1)
    vm_config_clear (cfg);
  return r;
}

/* One half of a DAC label: "+N" is a number, anything else a name. */
static int
dac_id (const char *s, size_t len, int group, unsigned *id)
{
  CLEANUP_FREE char *name = strndup (s, len);
  char *end;

  if (name == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (name[0] == '+') {
    unsigned long v;
    errno = 0;
    v = strtoul (name + 1, &end, 10);
    if (name[1] < '0' || name[1] > '9' || *end || errno || v > 0xfffffffeUL)
      goto bad;
    *id = (unsigned) v;
    return 0;
  }
  if (group) {
    struct group *g = getgrnam (name);
    if (g == NULL)
      goto bad;
    *id = g->gr_gid;
  }
  else {
    struct passwd *u = getpwnam (name);
    if (u == NULL)
      goto bad;
    *id = u->pw_uid;
  }
  return 0;
 bad:
  vms_set_error (EINVAL, "the DAC label's %s \"%s\" is no number (+N) and "
                 "no known %s name", group ? "group" : "user", name,
                 group ? "group" : "user");
  return -1;
}

int
vm_dac_label_ids (const char *label, unsigned *uid, unsigned *gid)
{
  const char *colon = label ? strchr (label, ':') : NULL;

  if (colon == NULL || colon == label || colon[1] == '\0') {
    vms_set_error (EINVAL, "the DAC label \"%s\" is not USER:GROUP",
                   label ? label : "");
    return -1;
  }
  if (dac_id (label, (size_t) (colon - label), 0, uid) == -1 ||
      dac_id (colon + 1, strlen (colon + 1), 1, gid) == -1)
    return -1;
  return 0;
}

const struct vm_disk *
vm_config_disk (const struct vm_config *cfg, const char *target)
{
  for (size_t i = 0; i < cfg->nr_disks; i++)
    if (strcmp (cfg->disks[i].target, target) == 0)
      return &cfg->disks[i];
  return NULL;
}

/* ---- R9 ---- */

const char *
vm_method_name (enum vm_method m)
{
  switch (m) {
  case VM_METHOD_ONLINE: return "online";
  case VM_METHOD_SAVED_STATE: return "saved-state";
  case VM_METHOD_CRASH_CONSISTENT: return "crash-consistent";
  case VM_METHOD_OFFLINE: break;
  }
  return "offline";
}

struct vm_policy
vm_policy_for (const struct vm_config *cfg, enum vms_vm_method method,
               enum vms_vm_fallback fallback)
{
  struct vm_policy p = { .method = method, .fallback = fallback };

  if (cfg && cfg->policy_method >= 0) {
    p.method = (enum vms_vm_method) cfg->policy_method;
    p.method_from_metadata = 1;
  }
  if (cfg && cfg->policy_fallback >= 0) {
    p.fallback = (enum vms_vm_fallback) cfg->policy_fallback;
    p.fallback_from_metadata = 1;
  }
  return p;
}

void
vm_choice_clear (struct vm_choice *c)
{
  free (c->reason);
  free (c->fallback_reason);
  c->reason = c->fallback_reason = NULL;
}

int
vm_fs_type_freezable (const char *type)
{
  /* Types whose kernel driver implements freeze (FIFREEZE), the Windows
   * types VSS snapshots inside the guest, and read-only types that cannot
   * change under a capture. qemu-ga silently skips a filesystem that
   * cannot freeze (vfat, say), so anything else is treated as
   * unfreezable. */
  static const char *const ok[] = {
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs",
    "nilfs2", "gfs2", "ocfs2", "bcachefs", "NTFS", "ReFS",
    "iso9660", "squashfs", "erofs", "cramfs", "udf",
  };
  if (type == NULL)
    return 0;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (strcasecmp (type, ok[i]) == 0)
      return 1;
  return 0;
}

/* Append ", "-separated text to *acc. */
static int
add_problem (char **acc, const char *fmt, ...)
{
  va_list ap;
  char *s, *n;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1)
    return -1;
  if (*acc == NULL) {
    *acc = s;
    return 0;
  }
  n = vms_strdup_printf ("%s; %s", *acc, s);
  free (s);
  if (n == NULL)
    return -1;
  free (*acc);
  *acc = n;
  return 0;
}

/* "(the domain's metadata)" or "(the options)", for one half of the
 * policy. */
static const char *
from (int metadata)
{
  return metadata ? "the domain's vmshadow policy" : "the options";
}

int
vm_method_choose (const struct vm_facts *f, const struct vm_policy *p,
                  struct vm_choice *c)
{
  CLEANUP_FREE char *why = NULL;
  const char *name = f->cfg && f->cfg->name ? f->cfg->name : "?";
  const char *st = f->state_name ? f->state_name : "not running";
  int oom = 0;

  memset (c, 0, sizeof *c);
  if (f->state == VM_STATE_OFF) {
    c->method = VM_METHOD_OFFLINE;
    c->reason = vms_strdup_printf ("the VM is %s: its images are read as they are", st);
    goto done;
  }
  /* A method named outright needs nothing of R9. */
  switch (p->method) {
  case VMS_VM_METHOD_SAVED_STATE:
    c->method = VM_METHOD_SAVED_STATE;
    c->reason = vms_strdup_printf ("the saved-state method is asked for by %s",
                                   from (p->method_from_metadata));
    goto done;
  case VMS_VM_METHOD_CRASH_CONSISTENT:
    c->method = VM_METHOD_CRASH_CONSISTENT;
    c->reason = vms_strdup_printf ("the crash-consistent method is asked for by %s",
                                   from (p->method_from_metadata));
    goto done;
  case VMS_VM_METHOD_AUTO:
  case VMS_VM_METHOD_ONLINE:
    break;
  }

  if (f->state != VM_STATE_RUNNING)
    oom |= add_problem (&why, "the VM is %s, not running", st);
  else if (!f->agent_ok)
    oom |= add_problem (&why, "the guest agent does not answer (%s)",
                        f->agent_error ? f->agent_error : "no reason given");
  else if (!f->fsinfo_ok)
    oom |= add_problem (&why, "the guest agent cannot list the guest "
                        "filesystems (%s)",
                        f->fsinfo_error ? f->fsinfo_error : "no reason given");
  else {
    for (size_t i = 0; i < f->nr_fs; i++) {
      const struct vm_guest_fs *fs = &f->fs[i];
      int inc = 0;
      const char *exc = NULL;

      if (!vm_fs_type_freezable (fs->type))
        oom |= add_problem (&why, "guest filesystem %s (%s) cannot be frozen",
                            fs->mountpoint ? fs->mountpoint : "?",
                            fs->type ? fs->type : "unknown type");
      for (size_t j = 0; f->cfg && j < fs->nr_disks; j++) {
        const struct vm_disk *d = vm_config_disk (f->cfg, fs->disks[j]);
        if (d == NULL)
          continue;
        if (d->included)
          inc = 1;
        else
          exc = d->target;
      }
      if (inc && exc)
        oom |= add_problem (&why, "guest volume %s spans disk %s, which is "
                            "excluded from the backup",
                            fs->mountpoint ? fs->mountpoint : "?", exc);
    }
  }
  if (f->state == VM_STATE_RUNNING && !f->scratch_same_fs)
    oom |= add_problem (&why, "%s", f->scratch_error ? f->scratch_error
                        : "the scratch space is not on the filesystem of the "
                        "VM's disk images");
  if (oom) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }

  if (why == NULL) {
    c->method = VM_METHOD_ONLINE;
    c->reason = strdup ("the guest agent answers, every guest filesystem can "
                        "be frozen, and the scratch space is on the "
                        "filesystem of the VM's disk images");
    goto done;
  }
  if (p->method == VMS_VM_METHOD_ONLINE) {
    c->reason = vms_strdup_printf ("vm \"%s\" cannot be backed up online (asked for "
                                   "by %s): %s; use --method=auto", name,
                                   from (p->method_from_metadata), why);
    vms_set_error (EINVAL, "%s", c->reason ? c->reason : "out of memory");
    return -1;
  }
  /* auto: the fallback of the policy (R8: a running VM is never paused
   * unless its policy says so). */
  switch (p->fallback) {
  case VMS_VM_FALLBACK_FAIL:
    c->reason = vms_strdup_printf ("vm \"%s\" cannot be backed up online and its "
                                   "fallback is \"fail\" (set by %s): %s", name,
                                   from (p->fallback_from_metadata), why);
    vms_set_error (EINVAL, "%s", c->reason ? c->reason : "out of memory");
    return -1;
  case VMS_VM_FALLBACK_SAVED_STATE:
    c->method = VM_METHOD_SAVED_STATE;
    break;
  case VMS_VM_FALLBACK_CRASH_CONSISTENT:
    c->method = VM_METHOD_CRASH_CONSISTENT;
    break;
  }
  c->reason = vms_strdup_printf ("not online: %s; the fallback set by %s is %s", why,
                                 from (p->fallback_from_metadata),
                                 vm_method_name (c->method));
  c->fallback_reason = why;
  why = NULL;
 done:
  if (c->reason == NULL) {
    vm_choice_clear (c);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* ---- XML the writer sends ---- */

/* Append s to the growing buffer, XML-escaped when esc. */
struct buf { char *p; size_t len, cap; int oom; };

static void
buf_add (struct buf *b, const char *s, int esc)
{
  for (; *s && !b->oom; s++) {
    const char *rep = NULL;
    char one[2] = { *s, 0 };
    if (esc)
      switch (*s) {
      case '&': rep = "&amp;"; break;
      case '<': rep = "&lt;"; break;
      case '>': rep = "&gt;"; break;
      case '\'': rep = "&apos;"; break;
      case '"': rep = "&quot;"; break;
      default: break;
      }
    if (rep == NULL)
      rep = one;
    size_t n = strlen (rep);
    if (b->len + n + 1 > b->cap) {
      size_t cap = b->cap ? b->cap * 2 : 512;
      while (cap < b->len + n + 1)
        cap *= 2;
      char *p = realloc (b->p, cap);
      if (p == NULL) {
        b->oom = 1;
        return;
      }
      b->p = p;
      b->cap = cap;
    }
    memcpy (b->p + b->len, rep, n);
    b->len += n;
    b->p[b->len] = '\0';
  }
}

static char *
buf_end (struct buf *b)
{
  if (b->oom || b->p == NULL) {
    free (b->p);
    vms_set_error (ENOMEM, "out of memory making XML");
    return NULL;
  }
  return b->p;
}

/* The virtual size of the qcow2 image at path, from its header (the magic
 * "QFI\xfb", version 2 or 3, the size a big-endian 64-bit number at byte
 * 24), as QEMU keeps it current also while the image is open. 0 and
 * *size, or -1: not such an image here, ask libvirt. A wrong size could
 * only make the job's begin fail (QEMU wants the scratch node as large as
 * the disk), never a backup wrong. */
int
vm_qcow2_virtual_size (const char *path, uint64_t *size)
{
  unsigned char h[32];
  uint64_t v = 0;
  uint32_t version = 0;
  char proc[64];
  struct stat st, st2;
  ssize_t n = -1;
  int fd, pfd;

  /* As root, on a path from the domain's XML: the file is looked at
   * before it is opened (O_PATH opens nothing: no FIFO waits, no device's
   * open runs, such as a watchdog's), a symlink is not followed, and only a
   * regular file is read. Anything else asks libvirt. */
  pfd = open (path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pfd == -1)
    return -1;
  if (fstat (pfd, &st) == -1 || !S_ISREG (st.st_mode)) {
    close (pfd);
    return -1;
  }
  snprintf (proc, sizeof proc, "/proc/self/fd/%d", pfd);
  fd = open (proc, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  close (pfd);
  if (fd == -1)
    return -1;
  if (fstat (fd, &st2) == 0 && st2.st_dev == st.st_dev &&
      st2.st_ino == st.st_ino)
    n = pread (fd, h, sizeof h, 0);
  close (fd);
  if (n != (ssize_t) sizeof h || memcmp (h, "QFI\xfb", 4) != 0)
    return -1;
  for (int i = 4; i < 8; i++)
    version = version << 8 | h[i];
  for (int i = 24; i < 32; i++)
    v = v << 8 | h[i];
  /* Beyond 2^61 bytes is not an image QEMU makes: ask libvirt. */
  if ((version != 2 && version != 3) || v == 0 || v % 512 != 0 ||
      v > (UINT64_C (1) << 61))
    return -1;
  *size = v;
  return 0;
}

char *
vm_backup_xml (const char *socket, const char *parent,
               const struct vm_job_disk *disks, size_t n)
{
  struct buf b = { 0 };

  buf_add (&b, "<domainbackup mode='pull'>\n", 0);
  if (parent) {
    buf_add (&b, "  <incremental>", 0);
    buf_add (&b, parent, 1);
    buf_add (&b, "</incremental>\n", 0);
  }
  buf_add (&b, "  <server transport='unix' socket='", 0);
  buf_add (&b, socket, 1);
  buf_add (&b, "'/>\n  <disks>\n", 0);
  for (size_t i = 0; i < n; i++) {
    const struct vm_job_disk *d = &disks[i];
    buf_add (&b, "    <disk name='", 0);
    buf_add (&b, d->target, 1);
    if (!d->backup) {
      buf_add (&b, "' backup='no'/>\n", 0);
      continue;
    }
    buf_add (&b, "' backup='yes' type='file' exportname='", 0);
    buf_add (&b, d->target, 1);
    if (parent && d->incremental) {
      buf_add (&b, "' backupmode='incremental' exportbitmap='backup-", 0);
      buf_add (&b, d->target, 1);
    }
    else if (parent)
      buf_add (&b, "' backupmode='full", 0);
    buf_add (&b, "'>\n      <scratch file='", 0);
    buf_add (&b, d->scratch ? d->scratch : "", 1);
    buf_add (&b, "'/>\n    </disk>\n", 0);
  }
  buf_add (&b, "  </disks>\n</domainbackup>\n", 0);
  return buf_end (&b);
}

char *
vm_checkpoint_xml (const char *name, const char *description,
                   const struct vm_job_disk *disks, size_t n)
{
  struct buf b = { 0 };

  buf_add (&b, "<domaincheckpoint>\n  <name>", 0);
  buf_add (&b, name, 1);
  buf_add (&b, "</name>\n", 0);
  if (description) {
    buf_add (&b, "  <description>", 0);
    buf_add (&b, description, 1);
    buf_add (&b, "</description>\n", 0);
  }
  buf_add (&b, "  <disks>\n", 0);
  for (size_t i = 0; i < n; i++) {
    buf_add (&b, "    <disk name='", 0);
    buf_add (&b, disks[i].target, 1);
    buf_add (&b, disks[i].bitmap ? "' checkpoint='bitmap'/>\n"
             : "' checkpoint='no'/>\n", 0);
  }
  buf_add (&b, "  </disks>\n</domaincheckpoint>\n", 0);
  return buf_end (&b);
}

char *
vm_checkpoint_redefine_xml (const char *name, long long creation_time,
                            const struct vm_job_disk *disks, size_t n)
{
  struct buf b = { 0 };
  char t[32];

  snprintf (t, sizeof t, "%lld", creation_time);
  buf_add (&b, "<domaincheckpoint>\n  <name>", 0);
  buf_add (&b, name, 1);
  buf_add (&b, "</name>\n  <description>redefined by vmshadow from its "
           "repository's catalogue</description>\n  <creationTime>", 0);
  buf_add (&b, t, 0);
  buf_add (&b, "</creationTime>\n  <disks>\n", 0);
  for (size_t i = 0; i < n; i++) {
    buf_add (&b, "    <disk name='", 0);
    buf_add (&b, disks[i].target, 1);
    if (disks[i].bitmap) {
      buf_add (&b, "' checkpoint='bitmap' bitmap='", 0);
      buf_add (&b, name, 1);
      buf_add (&b, "'/>\n", 0);
    }
    else
      buf_add (&b, "' checkpoint='no'/>\n", 0);
  }
  buf_add (&b, "  </disks>\n</domaincheckpoint>\n", 0);
  return buf_end (&b);
}

int
vm_checkpoint_bitmaps (const char *xml, size_t len, string_vector *targets)
{
  xmlDoc *doc = xml_read (xml, len, "checkpoint XML");
  xmlNode *root, *disks;
  int r = -1;

  if (doc == NULL)
    return -1;
  root = xmlDocGetRootElement (doc);
  if (root == NULL || !is_elem (root, "domaincheckpoint")) {
    vms_set_error (EINVAL, "checkpoint XML: the root element is not "
                   "<domaincheckpoint>");
    goto out;
  }
  disks = xml_child (root, "disks");
  for (xmlNode *c = disks ? disks->children : NULL; c; c = c->next) {
    if (!is_elem (c, "disk") || !attr_is (c, "checkpoint", "bitmap"))
      continue;
    char *t = xml_attr (c, "name");
    if (t == NULL)
      continue;
    if (string_vector_append (targets, t) == -1) {
      free (t);
      goto out;
    }
  }
  r = 0;
 out:
  xmlFreeDoc (doc);
  return r;
}

char *
vm_inconsistent_disk (const char *message)
{
  const char *p = message ? strstr (message, "for disk '") : NULL;
  const char *e;

  if (p == NULL)
    return NULL;
  p += strlen ("for disk '");
  e = strchr (p, '\'');
  if (e == NULL || e == p)
    return NULL;
  return strndup (p, (size_t) (e - p));
}

/* ---- a copy of a domain (issue 20: restore --name) ---- */

struct rw_ctx {
  const struct vm_rewrite *rw;
  string_vector *notes;
  int oom;
};

static void
rw_note (struct rw_ctx *x, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
rw_note (struct rw_ctx *x, const char *fmt, ...)
{
  va_list ap;
  char *s;

  if (x->notes == NULL)
    return;
  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    s = NULL;
  va_end (ap);
  if (s == NULL || string_vector_append (x->notes, s) == -1) {
    free (s);
    x->oom = 1;
  }
}

/* The copy's path for a path of the original: from the map, else the old
 * UUID or name in it replaced; NULL (no error) when it names neither and
 * prefix is 0; with prefix, "DIR/NEW-BASE". Sets x->oom on ENOMEM. */
static char *
rw_path (struct rw_ctx *x, const char *path, int prefix)
{
  const struct vm_rewrite *rw = x->rw;
  char *r = NULL;

  for (size_t i = 0; i < rw->nr_paths; i++)
    if (strcmp (rw->from[i], path) == 0 || strcmp (rw->to[i], path) == 0) {
      r = strdup (rw->to[i]);
      goto out;
    }
  if (rw->old_uuid && rw->uuid && *rw->old_uuid && strstr (path, rw->old_uuid))
    r = vms_str_replace (path, rw->old_uuid, rw->uuid);
  else if (rw->old_name && *rw->old_name &&
           strstr (strrchr (path, '/') ? strrchr (path, '/') + 1 : path,
                   rw->old_name)) {
    /* Only in the file name: a short VM name may be part of a directory's. */
    const char *b = strrchr (path, '/');
    CLEANUP_FREE char *nb = vms_str_replace (b ? b + 1 : path, rw->old_name, rw->name);
    r = nb == NULL ? NULL : b ? vms_strdup_printf ("%.*s/%s", (int) (b - path), path, nb)
      : strdup (nb);
  }
  else if (prefix) {
    const char *b = strrchr (path, '/');
    r = b ? vms_strdup_printf ("%.*s/%s-%s", (int) (b - path), path, rw->name, b + 1)
      : vms_strdup_printf ("%s-%s", rw->name, path);
  }
  else
    return NULL;
 out:
  if (r == NULL)
    x->oom = 1;
  return r;
}

static void
rw_set_attr_path (struct rw_ctx *x, xmlNode *n, const char *name, int prefix,
                  const char *what)
{
  CLEANUP_FREE char *old = xml_attr (n, name);
  CLEANUP_FREE char *nw = NULL;

  if (old == NULL || (nw = rw_path (x, old, prefix)) == NULL)
    return;
  if (strcmp (old, nw) != 0) {
    xmlSetProp (n, (const xmlChar *) name, (const xmlChar *) nw);
    rw_note (x, "%s: %s (was %s)", what, nw, old);
  }
}

static void
rw_set_text_path (struct rw_ctx *x, xmlNode *n, const char *what, int drop)
{
  CLEANUP_FREE char *old = text (n);
  CLEANUP_FREE char *nw = NULL;

  if (old == NULL)
    return;
  if ((nw = rw_path (x, old, 0)) == NULL) {
    if (drop && !x->oom) {
      /* Neither in the backup nor named after the VM: libvirt makes the
       * copy its own (e.g. NVRAM from the template, <name>_VARS.fd). */
      xmlNodeSetContent (n, (const xmlChar *) "");
      rw_note (x, "%s: libvirt chooses the copy's own (was %s)", what, old);
    }
    return;
  }
  if (strcmp (old, nw) != 0) {
    xmlNodeSetContent (n, (const xmlChar *) nw);
    rw_note (x, "%s: %s (was %s)", what, nw, old);
  }
}

/* 1 if the subtree of n names old (text or any attribute). */
static int
rw_mentions (const xmlNode *n, const char *old)
{
  if (old == NULL || *old == '\0')
    return 0;
  for (const xmlNode *c = n; c; c = c->next) {
    if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
      if (c->content && strstr ((const char *) c->content, old))
        return 1;
    }
    else if (c->type == XML_ELEMENT_NODE) {
      for (const xmlAttr *a = c->properties; a; a = a->next)
        if (a->children && a->children->content &&
            strstr ((const char *) a->children->content, old))
          return 1;
      if (rw_mentions (c->children, old))
        return 1;
    }
  }
  return 0;
}

static void
rw_set_child_text (xmlNode *parent, const char *name, const char *value)
{
  xmlNode *c = xml_child (parent, name);
  if (c == NULL)
    c = xmlNewChild (parent, NULL, (const xmlChar *) name, NULL);
  if (c)
    xmlNodeSetContent (c, (const xmlChar *) value);
}

static int
rw_random_mac (char out[18])
{
  unsigned char b[3];

  if (getrandom (b, sizeof b, 0) != (ssize_t) sizeof b)
    return -1;
  /* 52:54:00 is QEMU's (and libvirt's) prefix, locally administered. */
  snprintf (out, 18, "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
  return 0;
}

/* A disk of the original that is not in the backup (R13: a block device, a
 * network disk, a LUN) is the original's: the copy must not open it too.
 * Removable media stay (read-only images). */
static int
rw_disk (struct rw_ctx *x, xmlNode *n)
{
  CLEANUP_FREE char *device = xml_attr (n, "device");
  CLEANUP_FREE char *type = xml_attr (n, "type");
  xmlNode *src = xml_child (n, "source");
  CLEANUP_FREE char *tdev = xml_attr (xml_child (n, "target"), "dev");
  CLEANUP_FREE char *file = NULL;
  CLEANUP_FREE char *nw = NULL;

  if (device && (strcmp (device, "cdrom") == 0 || strcmp (device, "floppy") == 0))
    return 0;
  if (src == NULL)
    return 0;
  if ((type == NULL || strcmp (type, "file") == 0) &&
      (file = xml_attr (src, "file")) != NULL) {
    for (size_t i = 0; i < x->rw->nr_paths; i++)
      if (strcmp (x->rw->from[i], file) == 0 || strcmp (x->rw->to[i], file) == 0) {
        nw = strdup (x->rw->to[i]);
        break;
      }
    if (nw) {
      xmlSetProp (src, (const xmlChar *) "file", (const xmlChar *) nw);
      /* The restored image stands alone: no backing chain. */
      for (xmlNode *b; (b = xml_child (n, "backingStore")) != NULL;) {
        xmlUnlinkNode (b);
        xmlFreeNode (b);
      }
      return 0;
    }
  }
  if (type && strcmp (type, "volume") == 0)
    rw_note (x, "disk %s left out of the copy: a pool volume is the "
             "original's, and a copy of one is not made", tdev ? tdev : "?");
  else
    rw_note (x, "disk %s left out of the copy: it is not in the backup and "
             "belongs to the original (%s)", tdev ? tdev : "?",
             file ? file : type ? type : "?");
  return 1;                     /* drop it */
}

/* Character devices: a file log (serial/console type='file', <log file>)
 * and a unix socket are per VM: two VMs cannot hold one (virtlogd, bind). */
static void
rw_chardev (struct rw_ctx *x, xmlNode *n)
{
  CLEANUP_FREE char *type = xml_attr (n, "type");
  xmlNode *src = xml_child (n, "source"), *log = xml_child (n, "log");
  int channel = is_elem (n, "channel");
  const char *what = (const char *) n->name;

  if (log)
    rw_set_attr_path (x, log, "file", 1, "log file");
  if (type == NULL || src == NULL)
    return;
  if (strcmp (type, "file") == 0)
    rw_set_attr_path (x, src, "path", 1, what);
  else if (strcmp (type, "unix") == 0) {
    CLEANUP_FREE char *path = xml_attr (src, "path");
    CLEANUP_FREE char *nw = path ? rw_path (x, path, !channel) : NULL;
    if (path == NULL || x->oom)
      return;
    if (nw == NULL) {
      /* libvirt makes a channel's socket path per VM when none is given. */
      xmlUnsetProp (src, (const xmlChar *) "path");
      rw_note (x, "%s socket: libvirt chooses the copy's own (was %s)", what,
               path);
    }
    else if (strcmp (nw, path) != 0) {
      xmlSetProp (src, (const xmlChar *) "path", (const xmlChar *) nw);
      rw_note (x, "%s socket: %s (was %s)", what, nw, path);
    }
  }
}

char *
vm_config_rewrite (const char *xml, size_t len, const struct vm_rewrite *rw,
                   string_vector *notes)
{
  struct rw_ctx x = { .rw = rw, .notes = notes };
  xmlDoc *doc;
  xmlNode *root, *os, *devs, *md;
  char *s = NULL;
  struct vm_config cfg;

  /* Only what the VM writer accepts as a domain is copied. */
  if (vm_config_parse (xml, len, &cfg) == -1)
    return NULL;
  vm_config_clear (&cfg);
  if ((doc = xml_read (xml, len, "domain XML")) == NULL)
    return NULL;
  root = xmlDocGetRootElement (doc);
  if (rw->name)
    rw_set_child_text (root, "name", rw->name);
  if (rw->uuid)
    rw_set_child_text (root, "uuid", rw->uuid);
  /* Metadata of other tools that names the original would confuse them. */
  if ((md = xml_child (root, "metadata")) != NULL)
    for (xmlNode *c = md->children, *next; c; c = next) {
      next = c->next;
      if (c->type == XML_ELEMENT_NODE &&
          (rw_mentions (c, rw->old_uuid) || rw_mentions (c, rw->old_name))) {
        rw_note (&x, "metadata <%s> dropped: it names the original",
                 (const char *) c->name);
        xmlUnlinkNode (c);
        xmlFreeNode (c);
      }
    }
  if ((os = xml_child (root, "os")) != NULL)
    for (xmlNode *c = os->children; c; c = c->next) {
      if (is_elem (c, "nvram")) {
        xmlNode *src = xml_child (c, "source");
        if (src)
          rw_set_attr_path (&x, src, "file", 1, "NVRAM");
        else
          rw_set_text_path (&x, c, "NVRAM", 1);
      }
      else if (is_elem (c, "loader") && !attr_is (c, "readonly", "yes"))
        rw_set_text_path (&x, c, "loader", 0);   /* shared unless per VM */
    }
  devs = xml_child (root, "devices");
  for (xmlNode *c = devs ? devs->children : NULL, *next; c; c = next) {
    next = c->next;
    if (is_elem (c, "disk")) {
      if (rw_disk (&x, c) == 1) {
        xmlUnlinkNode (c);
        xmlFreeNode (c);
      }
    }
    else if (is_elem (c, "interface") && rw->new_macs) {
      xmlNode *mac = xml_child (c, "mac");
      CLEANUP_FREE char *old = xml_attr (mac, "address");
      char nw[18];
      if (rw_random_mac (nw) == -1) {
        vms_set_error (errno, "cannot make a MAC address: getrandom: %s",
                       strerror (errno));
        goto out;
      }
      if (mac == NULL)
        mac = xmlNewChild (c, NULL, (const xmlChar *) "mac", NULL);
      if (mac == NULL) {
        x.oom = 1;
        break;
      }
      xmlSetProp (mac, (const xmlChar *) "address", (const xmlChar *) nw);
      rw_note (&x, "interface %s: new MAC address (was %s)", nw,
               old ? old : "none");
      /* A fixed host device name (vnetN, macvtapN) is the original's. */
      xmlNode *t = xml_child (c, "target");
      if (t) {
        xmlUnlinkNode (t);
        xmlFreeNode (t);
      }
    }
    else if (is_elem (c, "serial") || is_elem (c, "console") ||
             is_elem (c, "parallel") || is_elem (c, "channel"))
      rw_chardev (&x, c);
  }
  if (x.oom) {
    vms_set_error (ENOMEM, "out of memory rewriting a domain XML");
    goto out;
  }
  s = xml_doc_text (doc);
 out:
  xmlFreeDoc (doc);
  return s;
}

/* ---- tags (issue 19) ---- */

int
vms_vm_tag_valid (const char *tag)
{
  size_t n = strlen (tag);

  if (n == 0 || n > VMS_VM_TAG_MAX || tag[0] == '.' || tag[0] == '-')
    return 0;
  for (const char *p = tag; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '+' ||
          *p == '-'))
      return 0;
  return 1;
}

/* The element libvirt returns is the VM owner's text: read strictly, and
 * said without echoing it (a tag is named only once it is known valid). */
int
vms_vm_tags_parse (const char *xml, size_t len, char ***tags)
{
  xmlDoc *doc;
  const xmlNode *root;
  char **list = NULL, *words = NULL, *save = NULL;
  xmlChar *content;
  size_t n = 0;
  int r = -1;

  *tags = NULL;
  if ((doc = xml_read (xml, len, "its vmshadow tags (metadata)")) == NULL)
    return -1;
  root = xmlDocGetRootElement (doc);
  if (root == NULL || root->type != XML_ELEMENT_NODE ||
      strcmp ((const char *) root->name, "tags") != 0) {
    vms_set_error (EINVAL, "its vmshadow tags (metadata, namespace %s) are "
                   "not one element <tags>", VMS_VM_TAGS_NS);
    goto out;
  }
  if (root->properties) {
    vms_set_error (EINVAL, "its vmshadow tags (metadata) have an attribute; "
                   "<tags> takes only text (tags separated by blanks)");
    goto out;
  }
  for (const xmlNode *c = root->children; c; c = c->next)
    if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE &&
        c->type != XML_COMMENT_NODE) {
      vms_set_error (EINVAL, "its vmshadow tags (metadata) have an element "
                     "inside <tags>; it takes only text (tags separated by "
                     "blanks)");
      goto out;
    }
  content = xmlNodeGetContent (root);
  words = content ? strdup ((const char *) content) : strdup ("");
  xmlFree (content);
  if (words == NULL || (list = calloc (1, sizeof *list)) == NULL)
    goto oom;
  for (char *w = strtok_r (words, " \t\r\n,", &save); w;
       w = strtok_r (NULL, " \t\r\n,", &save)) {
    if (!vms_vm_tag_valid (w)) {
      vms_set_error (EINVAL, "its vmshadow tags (metadata) have a word that "
                     "is not a tag (1 to %d of A-Z a-z 0-9 . _ + -, not "
                     "starting with . or -)", VMS_VM_TAG_MAX);
      goto out;
    }
    char **l = realloc (list, (n + 2) * sizeof *l);
    if (l == NULL)
      goto oom;
    list = l;
    if ((list[n] = strdup (w)) == NULL)
      goto oom;
    list[++n] = NULL;
  }
  *tags = list;
  list = NULL;
  r = 0;
  goto out;
 oom:
  vms_set_error (ENOMEM, "out of memory");
 out:
  for (size_t i = 0; list && list[i]; i++)
    free (list[i]);
  free (list);
  free (words);
  xmlFreeDoc (doc);
  return r;
}

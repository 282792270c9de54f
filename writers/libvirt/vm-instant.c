/* The libvirt side of instant recovery and boot verification (issue 16;
 * R25, R27; docs/instant-recovery.md).
 *
 * A disk that runs from a backup is a qcow2 overlay whose backing is the
 * backup's disk served read-only over NBD (nbdkit with
 * nbdkit-vmshadow-plugin) on a Unix socket: guest writes go to the
 * overlay, reads of what it has not written go to the repository.
 *
 * The mover is libvirt's block copy (virDomainBlockCopy, QEMU's
 * blockdev-mirror underneath) of the whole chain into the final image,
 * then a pivot (virDomainBlockJobAbort with PIVOT) once the mirror is in
 * step: libvirt keeps its live and persistent definitions right, the job
 * belongs to libvirtd and QEMU (it goes on if vmshadow is killed, and a
 * resume finds it by the disk), and every guest write made meanwhile is
 * mirrored, so none is lost. A boot check runs a transient domain (gone
 * when destroyed) with a new name and UUID, no interface and nothing of
 * the original's (logs, sockets, TPM, host devices).
 *
 * Each call opens its own connection and closes it before returning.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "interrupt.h"
#include "log.h"
#include "str.h"
#include "vm-internal.h"
#include "vm-xml.h"

#define INSTANT_POLL_MS 200

static void
instant_silent_error (void *opaque, virErrorPtr err)
{
  /* Errors are read with virGetLastErrorMessage where they happen. */
}

static virConnectPtr
instant_connect (const char *uri)
{
  const char *u = uri ? uri : VMS_VM_DEFAULT_URI;
  virConnectPtr conn;

  virSetErrorFunc (NULL, instant_silent_error);
  if ((conn = virConnectOpen (u)) == NULL)
    vms_set_error (ECONNREFUSED, "cannot connect to libvirt at %s: %s; is "
                   "libvirtd running?", u, vm_virt_error ());
  return conn;
}

static void
instant_sleep_ms (long ms)
{
  struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

static int64_t
instant_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- QEMU's identity ---- */

int
vms_libvirt_qemu_ids (const char *uri, unsigned *uid, unsigned *gid)
{
  virConnectPtr conn = instant_connect (uri);
  CLEANUP_FREE char *caps = NULL;
  const char *p;
  int found = 0;

  if (conn == NULL)
    return -1;
  caps = virConnectGetCapabilities (conn);
  virConnectClose (conn);
  if (caps == NULL) {
    vms_set_error (EIO, "libvirt gives no capabilities: %s", vm_virt_error ());
    return -1;
  }
  /* <secmodel><model>dac</model>…<baselabel type='qemu'>+64055:+994</baselabel> */
  *uid = *gid = 0;
  for (p = caps; (p = strstr (p, "<baselabel type=")) != NULL; p++) {
    const char *v = strchr (p, '>');
    if (v && sscanf (v + 1, "+%u:+%u", uid, gid) == 2) {
      found = 1;
      break;
    }
  }
  if (!found)
    *uid = *gid = 0;            /* no DAC label: QEMU runs as root */
  return 0;
}

/* ---- the disk of a running VM ---- */

/* The target (vda, …) of the disk whose top image is path in the live
 * XML of dom, or NULL (malloc'd). */
static char *
instant_disk_dev (virDomainPtr dom, const char *path)
{
  CLEANUP_FREE char *xml = virDomainGetXMLDesc (dom, 0);
  xmlDoc *doc;
  xmlNode *devs;
  char *dev = NULL;

  if (xml == NULL ||
      (doc = xmlReadMemory (xml, (int) strlen (xml), NULL, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOWARNING |
                            XML_PARSE_NOERROR)) == NULL)
    return NULL;
  devs = xml_child (xmlDocGetRootElement (doc), "devices");
  for (xmlNode *n = devs ? devs->children : NULL; n && !dev; n = n->next) {
    if (n->type != XML_ELEMENT_NODE || xmlStrcmp (n->name, BAD_CAST "disk") != 0)
      continue;
    CLEANUP_FREE char *file = xml_attr (xml_child (n, "source"), "file");
    if (file && strcmp (file, path) == 0)
      dev = xml_attr (xml_child (n, "target"), "dev");
  }
  xmlFreeDoc (doc);
  return dev;
}

void
vms_vm_instant_disk_xml (void *disk_node, const char *overlay,
                         const char *socket)
{
  xmlNode *n = disk_node, *src = xml_child (n, "source");
  xmlNode *drv, *bs, *s, *h, *f;

  if (src == NULL)
    src = xmlNewChild (n, NULL, BAD_CAST "source", NULL);
  xmlSetProp (n, BAD_CAST "type", BAD_CAST "file");
  xmlUnsetProp (src, BAD_CAST "dev");
  xmlSetProp (src, BAD_CAST "file", BAD_CAST overlay);
  if ((drv = xml_child (n, "driver")) == NULL) {
    drv = xmlNewChild (n, NULL, BAD_CAST "driver", NULL);
    xmlSetProp (drv, BAD_CAST "name", BAD_CAST "qemu");
  }
  xmlSetProp (drv, BAD_CAST "type", BAD_CAST "qcow2");
  xml_drop_children (n, "backingStore");
  /* <backingStore type='network'><format type='raw'/>
   *   <source protocol='nbd'><host transport='unix' socket='S'/></source> */
  bs = xmlNewChild (n, NULL, BAD_CAST "backingStore", NULL);
  xmlSetProp (bs, BAD_CAST "type", BAD_CAST "network");
  f = xmlNewChild (bs, NULL, BAD_CAST "format", NULL);
  xmlSetProp (f, BAD_CAST "type", BAD_CAST "raw");
  s = xmlNewChild (bs, NULL, BAD_CAST "source", NULL);
  xmlSetProp (s, BAD_CAST "protocol", BAD_CAST "nbd");
  h = xmlNewChild (s, NULL, BAD_CAST "host", NULL);
  xmlSetProp (h, BAD_CAST "transport", BAD_CAST "unix");
  xmlSetProp (h, BAD_CAST "socket", BAD_CAST socket);
  /* The backing store ends the chain. */
  xmlNewChild (bs, NULL, BAD_CAST "backingStore", NULL);
}

/* ---- the mover ---- */

/* Move one disk: start the copy (unless one runs: a resume), follow it,
 * pivot. 0 when the VM runs from d->final. */
static int
instant_move_disk (virDomainPtr dom, const struct vms_vm_instant_disk *d,
                   size_t i, uint64_t bandwidth, vms_vm_progress_fn progress,
                   void *opaque)
{
  CLEANUP_FREE char *dev = instant_disk_dev (dom, d->overlay);
  CLEANUP_FREE char *done = instant_disk_dev (dom, d->final);
  CLEANUP_FREE char *dest = NULL;
  virDomainBlockJobInfo info;
  virDomainBlockInfo bi;
  struct stat st;
  int r, seen = 0;

  if (dev == NULL && done)
    return 0;                   /* pivoted by an earlier run */
  if (dev == NULL) {
    vms_set_error (ENOENT, "the VM has no disk on %s (nor on %s): it is not "
                   "the instantly recovered VM any more", d->overlay, d->final);
    return -1;
  }
  r = virDomainGetBlockJobInfo (dom, dev, &info, 0);
  if (r == -1) {
    vms_set_error (EIO, "cannot ask libvirt about the jobs of disk %s: %s",
                   dev, vm_virt_error ());
    return -1;
  }
  if (r == 1 && info.type != VIR_DOMAIN_BLOCK_JOB_TYPE_COPY) {
    vms_set_error (EBUSY, "disk %s has another block job (type %d): wait for "
                   "it, then resume", dev, info.type);
    return -1;
  }
  if (r == 1 &&
      virDomainBlockJobSetSpeed (dom, dev, bandwidth,
                                 VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES) == -1)
    vms_debug ("instant: cannot set the speed of the copy of %s: %s", dev,
               vm_virt_error ());
  if (r == 0) {
    /* REUSE_EXT: the final image is ours, made here (its size the disk's). */
    if (virDomainGetBlockInfo (dom, dev, &bi, 0) == -1) {
      vms_set_error (EIO, "cannot read the size of disk %s: %s", dev,
                     vm_virt_error ());
      return -1;
    }
    if (lstat (d->final, &st) == -1 &&
        vm_create_image (d->final, d->format, bi.capacity) == -1)
      return -1;
    dest = vms_strdup_printf ("<disk type='file'><source file='%s'/>"
                              "<driver type='%s'/></disk>", d->final, d->format);
    if (dest == NULL || strchr (d->final, '\'') || strchr (d->final, '&') ||
        strchr (d->final, '<')) {
      vms_set_error (EINVAL, "cannot move disk %s to %s: the path has a "
                     "character the XML would need escaped", dev, d->final);
      return -1;
    }
    virTypedParameter p[1];
    int np = 0;
    if (bandwidth) {
      memset (p, 0, sizeof p);
      snprintf (p[0].field, sizeof p[0].field, "%s", VIR_DOMAIN_BLOCK_COPY_BANDWIDTH);
      p[0].type = VIR_TYPED_PARAM_ULLONG;
      p[0].value.ul = bandwidth;
      np = 1;
    }
    /* TRANSIENT_JOB: libvirt 9 copies a persistent domain's disk only so
     * (the job is not kept across a save or migration of the domain; it
     * still runs in QEMU when we die, and a resume finds it). */
    if (virDomainBlockCopy (dom, dev, dest, np ? p : NULL, np,
                            VIR_DOMAIN_BLOCK_COPY_REUSE_EXT |
                            VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB) == -1) {
      vms_set_error (EIO, "libvirt did not start the copy of disk %s to %s: %s",
                     dev, d->final, vm_virt_error ());
      return -1;
    }
    vms_debug ("instant: copying %s (%s) to %s", dev, d->overlay, d->final);
  }
  for (;;) {
    r = virDomainGetBlockJobInfo (dom, dev, &info, 0);
    if (r == -1) {
      vms_set_error (EIO, "cannot follow the copy of disk %s: %s", dev,
                     vm_virt_error ());
      return -1;
    }
    if (r == 0) {
      CLEANUP_FREE char *now = instant_disk_dev (dom, d->final);
      if (now)
        return 0;               /* pivoted (another run got there first) */
      vms_set_error (EIO, "the copy of disk %s to %s ended before it was "
                     "complete (a chunk of the backup that cannot be read? "
                     "see the export's log); the VM still runs from the "
                     "backup: resume to try again, or roll back", dev,
                     d->final);
      return -1;
    }
    seen = 1;
    if (progress)
      progress (opaque, i, info.cur, info.end);
    if (info.end > 0 && info.cur == info.end) {
      /* In step: pivot (may still say "not ready" once; then poll on). */
      if (virDomainBlockJobAbort (dom, dev, VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) == 0)
        break;
      vms_debug ("instant: pivot of %s not yet: %s", dev, vm_virt_error ());
    }
    instant_sleep_ms (INSTANT_POLL_MS);
  }
  (void) seen;
  CLEANUP_FREE char *now = instant_disk_dev (dom, d->final);
  if (now == NULL) {
    vms_set_error (EIO, "libvirt pivoted disk %s but the VM does not run "
                   "from %s", dev, d->final);
    return -1;
  }
  return 0;
}

static virDomainPtr
instant_lookup (virConnectPtr conn, const char *uuid)
{
  virDomainPtr dom = virDomainLookupByUUIDString (conn, uuid);
  if (dom == NULL)
    vms_set_error (ENOENT, "no VM with UUID %s on this host", uuid);
  return dom;
}

int
vms_vm_instant_move (const char *uri, const char *uuid,
                     const struct vms_vm_instant_disk *d, size_t n,
                     uint64_t bandwidth, const char *final_xml,
                     vms_vm_progress_fn progress, void *opaque)
{
  virConnectPtr conn = instant_connect (uri);
  virDomainPtr dom = NULL, def = NULL;
  int rc = -1;

  if (conn == NULL)
    return -1;
  if ((dom = instant_lookup (conn, uuid)) == NULL)
    goto out;
  if (!virDomainIsActive (dom)) {
    vms_set_error (EINVAL, "the instantly recovered VM (%s) is not running: "
                   "its disks cannot move while it is off; start it (it "
                   "runs from the backup) and resume, or roll back", uuid);
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    if (instant_move_disk (dom, &d[i], i, bandwidth, progress, opaque) == -1)
      goto out;
  /* Every disk is final: the persistent definition is the restore's own
   * (the same the plain restore defines: R18–R21). */
  if ((def = virDomainDefineXML (conn, final_xml)) == NULL) {
    vms_set_error (EIO, "the disks moved, but libvirt refused the final "
                   "definition: %s", vm_virt_error ());
    goto out;
  }
  rc = 0;
 out:
  if (def)
    virDomainFree (def);
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return rc;
}

/* 1 if the domain's XML (live or inactive) names one of the paths. */
static int
instant_is_ours (virDomainPtr dom, const struct vms_vm_instant_disk *d, size_t n)
{
  unsigned flags[] = { 0, VIR_DOMAIN_XML_INACTIVE };
  for (size_t k = 0; k < 2; k++) {
    CLEANUP_FREE char *xml = virDomainGetXMLDesc (dom, flags[k]);
    for (size_t i = 0; xml && i < n; i++)
      if (strstr (xml, d[i].overlay))
        return 1;
  }
  return 0;
}

int
vms_vm_instant_remove (const char *uri, const char *uuid,
                       const struct vms_vm_instant_disk *d, size_t n)
{
  virConnectPtr conn = instant_connect (uri);
  virDomainPtr dom;
  int rc = -1;

  if (conn == NULL)
    return -1;
  dom = virDomainLookupByUUIDString (conn, uuid);
  if (dom == NULL) {
    virConnectClose (conn);
    return 0;                   /* never defined, or removed already */
  }
  if (!instant_is_ours (dom, d, n)) {
    vms_set_error (EEXIST, "the VM with UUID %s does not run from this "
                   "instant restore's overlays (it was finished, or is "
                   "another VM): it is left as it is", uuid);
    goto out;
  }
  for (size_t i = 0; i < n && virDomainIsActive (dom) == 1; i++) {
    CLEANUP_FREE char *dev = instant_disk_dev (dom, d[i].overlay);
    virDomainBlockJobInfo info;
    if (dev && virDomainGetBlockJobInfo (dom, dev, &info, 0) == 1)
      virDomainBlockJobAbort (dom, dev, 0);
  }
  if (virDomainIsActive (dom) == 1 && virDomainDestroy (dom) == -1) {
    vms_set_error (EIO, "cannot turn off VM %s: %s", uuid, vm_virt_error ());
    goto out;
  }
  if (virDomainIsPersistent (dom) == 1 &&
      virDomainUndefineFlags (dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                              VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                              VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                              VIR_DOMAIN_UNDEFINE_NVRAM) == -1) {
    vms_set_error (EIO, "cannot undefine VM %s: %s", uuid, vm_virt_error ());
    goto out;
  }
  rc = 0;
 out:
  virDomainFree (dom);
  virConnectClose (conn);
  return rc;
}

int
vms_vm_instant_running (const char *uri, const char *uuid)
{
  virConnectPtr conn = instant_connect (uri);
  virDomainPtr dom;
  int r = -1;

  if (conn == NULL)
    return -1;
  if ((dom = virDomainLookupByUUIDString (conn, uuid)) != NULL) {
    r = virDomainIsActive (dom) == 1;
    virDomainFree (dom);
  }
  else
    r = 0;
  virConnectClose (conn);
  return r;
}

int
vms_vm_instant_await_agent (const char *uri, const char *uuid, int64_t timeout_ms)
{
  virConnectPtr conn = instant_connect (uri);
  virDomainPtr dom = NULL;
  CLEANUP_FREE char *xml = NULL;
  int64_t deadline = instant_now_ms () + timeout_ms;
  int r = -1;

  if (conn == NULL)
    return -1;
  if ((dom = instant_lookup (conn, uuid)) == NULL)
    goto out;
  if ((xml = virDomainGetXMLDesc (dom, 0)) == NULL) {
    vms_set_error (EIO, "cannot read the definition of VM %s: %s", uuid,
                   vm_virt_error ());
    goto out;
  }
  r = 0;
  if (strstr (xml, "org.qemu.guest_agent.0") == NULL)
    goto out;                   /* no agent to wait for */
  for (;;) {
    /* Refused at once while the guest's agent has not opened its port. */
    char *reply = virDomainQemuAgentCommand (dom, "{\"execute\":\"guest-ping\"}", 1, 0);
    if (reply) {
      free (reply);
      r = 1;
      break;
    }
    if (virDomainIsActive (dom) != 1 || instant_now_ms () >= deadline)
      break;
    instant_sleep_ms (100);
  }
  vms_debug ("instant: guest agent %s", r ? "answered" : "did not answer in time");
 out:
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return r;
}

int
vms_vm_instant_existing (const char *uri, const char *uuid, char **xml,
                         int *running)
{
  virConnectPtr conn = instant_connect (uri);
  virDomainPtr dom;
  int r = -1;

  *xml = NULL;
  *running = 0;
  if (conn == NULL)
    return -1;
  if ((dom = virDomainLookupByUUIDString (conn, uuid)) == NULL) {
    virConnectClose (conn);
    return 0;
  }
  *running = virDomainIsActive (dom) == 1;
  if (virDomainIsPersistent (dom) != 1)
    r = 1;                      /* transient: nothing to define again */
  else if ((*xml = virDomainGetXMLDesc (dom, VIR_DOMAIN_XML_INACTIVE |
                                        VIR_DOMAIN_XML_SECURE)) == NULL)
    vms_set_error (EIO, "cannot read the definition of VM %s: %s", uuid,
                   vm_virt_error ());
  else
    r = 1;
  virDomainFree (dom);
  virConnectClose (conn);
  return r;
}

int
vms_vm_instant_put_back (const char *uri, const char *xml, int start)
{
  virConnectPtr conn = instant_connect (uri);
  virDomainPtr dom;
  int rc = -1;

  if (conn == NULL)
    return -1;
  if ((dom = virDomainDefineXML (conn, xml)) == NULL)
    vms_set_error (EIO, "libvirt refused the replaced VM's definition: %s",
                   vm_virt_error ());
  else if (start && virDomainIsActive (dom) != 1 && virDomainCreate (dom) == -1)
    vms_set_error (EIO, "the replaced VM is defined again but does not "
                   "start: %s", vm_virt_error ());
  else
    rc = 0;
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return rc;
}

/* ---- boot verification (R27) ---- */

/* The throw-away's XML: the stored one with a new name and UUID, every disk of the map on its overlay, every other
 * disk (not in the backup: the original's) dropped, no interface (never
 * the original's MAC on its network), nothing of the original's: serial
 * and console files, channel sockets, TPM, host devices, shared
 * filesystems, NVRAM, metadata. */
static char *
boot_xml (const char *xml, const char *name, const char *uuid,
          const struct vms_vm_instant_disk *d, size_t n)
{
  static const char *const drop[] = { "interface", "serial", "console", "tpm",
                                       "hostdev", "filesystem", "redirdev",
                                       "smartcard", "graphics", NULL };
  xmlDoc *doc;
  xmlNode *root, *devs, *next, *os;
  char *s;

  doc = xml_read_domain (xml, strlen (xml), "its stored domain XML", &root);
  if (doc == NULL)
    return NULL;
  xml_drop_children (root, "uuid");
  xmlNewTextChild (root, NULL, BAD_CAST "uuid", BAD_CAST uuid);
  xml_drop_children (root, "metadata");
  xml_drop_children (root, "seclabel");
  xml_drop_children (root, "title");
  if ((next = xml_child (root, "name")) != NULL)
    xmlNodeSetContent (next, BAD_CAST name);
  if ((os = xml_child (root, "os")) != NULL)
    xml_drop_children (os, "nvram");
  devs = xml_child (root, "devices");
  for (xmlNode *c = devs ? devs->children : NULL; c; c = next) {
    next = c->next;
    if (c->type != XML_ELEMENT_NODE)
      continue;
    int gone = 0;
    for (size_t k = 0; drop[k]; k++)
      gone |= xmlStrcmp (c->name, BAD_CAST drop[k]) == 0;
    if (xmlStrcmp (c->name, BAD_CAST "disk") == 0) {
      CLEANUP_FREE char *dev = xml_attr (c, "device");
      CLEANUP_FREE char *file = xml_attr (xml_child (c, "source"), "file");
      const struct vms_vm_instant_disk *m = NULL;
      for (size_t i = 0; file && i < n; i++)
        if (strcmp (d[i].path, file) == 0)
          m = &d[i];
      if (m)
        vms_vm_instant_disk_xml (c, m->overlay, m->socket);
      else if (dev == NULL || strcmp (dev, "cdrom") != 0 ||
               xml_child (c, "source") != NULL)
        gone = 1;               /* not in the backup: the original's */
    }
    if (xmlStrcmp (c->name, BAD_CAST "channel") == 0) {
      /* libvirt makes the agent's socket for the new name. */
      xml_drop_children (c, "source");
      CLEANUP_FREE char *type = xml_attr (c, "type");
      if (type == NULL || strcmp (type, "unix") != 0)
        gone = 1;
    }
    if (gone) {
      xmlUnlinkNode (c);
      xmlFreeNode (c);
    }
  }
  s = xml_doc_text (doc);
  xmlFreeDoc (doc);
  return s;
}

/* One agent command; its reply (malloc'd) or NULL with why in the error. */
static char *
boot_agent (virDomainPtr dom, const char *cmd, int timeout_s)
{
  char *r = virDomainQemuAgentCommand (dom, cmd, timeout_s, 0);
  if (r == NULL)
    vms_set_error (EIO, "%s", vm_virt_error ());
  return r;
}

/* A JSON-ish integer field "name":N of a reply (the agent's replies are
 * small and flat where we read them). -1 if absent. */
static long long
boot_json_int (const char *reply, const char *name)
{
  char key[64];
  const char *p;
  snprintf (key, sizeof key, "\"%s\":", name);
  if ((p = strstr (reply, key)) == NULL)
    return -1;
  p += strlen (key);
  while (*p == ' ')
    p++;
  return strtoll (p, NULL, 10);
}

static int
boot_json_true (const char *reply, const char *name)
{
  char key[64];
  const char *p;
  snprintf (key, sizeof key, "\"%s\":", name);
  if ((p = strstr (reply, key)) == NULL)
    return 0;
  p += strlen (key);
  while (*p == ' ')
    p++;
  return strncmp (p, "true", 4) == 0;
}

/* The probe: "sh -c CMD" through guest-exec; its exit status. */
static int
boot_probe (virDomainPtr dom, const char *probe, int64_t deadline,
            struct vms_vm_boot_result *res)
{
  CLEANUP_FREE char *esc = NULL, *cmd = NULL, *reply = NULL;
  size_t n = 0;
  long long pid;

  /* The command as a JSON string. */
  if ((esc = malloc (strlen (probe) * 6 + 1)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (const unsigned char *p = (const unsigned char *) probe; *p; p++) {
    if (*p == '"' || *p == '\\') {
      esc[n++] = '\\';
      esc[n++] = (char) *p;
    }
    else if (*p < 0x20)
      n += (size_t) sprintf (esc + n, "\\u%04x", *p);
    else
      esc[n++] = (char) *p;
  }
  esc[n] = '\0';
  cmd = vms_strdup_printf ("{\"execute\":\"guest-exec\",\"arguments\":{\"path\":"
                           "\"/bin/sh\",\"arg\":[\"-c\",\"%s\"],"
                           "\"capture-output\":true}}", esc);
  if (cmd == NULL || (reply = boot_agent (dom, cmd, 10)) == NULL) {
    vms_set_error (vms_get_errno (), "the probe could not be started in the "
                   "guest (guest-exec): %s", vms_get_error ());
    return -1;
  }
  if ((pid = boot_json_int (reply, "pid")) < 0) {
    vms_set_error (EPROTO, "guest-exec gave no pid");
    return -1;
  }
  for (;;) {
    CLEANUP_FREE char *q = vms_strdup_printf ("{\"execute\":\"guest-exec-status\","
                                              "\"arguments\":{\"pid\":%lld}}", pid);
    CLEANUP_FREE char *st = q ? boot_agent (dom, q, 10) : NULL;
    if (st == NULL) {
      vms_set_error (EIO, "the probe's status could not be read: %s",
                     vms_get_error ());
      return -1;
    }
    if (boot_json_true (st, "exited")) {
      long long code = boot_json_int (st, "exitcode");
      long long sig = boot_json_int (st, "signal");
      res->probe_ran = 1;
      res->probe_status = code >= 0 ? (int) code : sig >= 0 ? 128 + (int) sig : 255;
      return 0;
    }
    if (instant_now_ms () >= deadline) {
      vms_set_error (ETIMEDOUT, "the probe did not end in time");
      return -1;
    }
    if (vms_interrupt_check () == -1)
      return -1;
    instant_sleep_ms (100);
  }
}

int
vms_vm_boot_check (const struct vms_vm_boot_options *o,
                   struct vms_vm_boot_result *res)
{
  virConnectPtr conn = instant_connect (o->uri);
  virDomainPtr dom = NULL;
  CLEANUP_FREE char *xml = NULL;
  int64_t t0, deadline;
  int rc = -1;

  memset (res, 0, sizeof *res);
  res->probe_status = -1;
  if (conn == NULL)
    return -1;
  if (strstr (o->xml, "org.qemu.guest_agent.0") == NULL) {
    vms_set_error (ENOTSUP, "the VM has no guest agent channel "
                   "(org.qemu.guest_agent.0) in its stored XML: a boot "
                   "cannot be checked without one");
    goto out;
  }
  if ((xml = boot_xml (o->xml, o->name, o->uuid, o->disks, o->nr_disks)) == NULL)
    goto out;
  t0 = instant_now_ms ();
  deadline = t0 + (int64_t) (o->timeout_s > 0 ? o->timeout_s : 300) * 1000;
  /* Transient: gone when destroyed, nothing of it stays defined. */
  if ((dom = virDomainCreateXML (conn, xml, 0)) == NULL) {
    vms_set_error (EIO, "the throw-away copy did not start: %s",
                   vm_virt_error ());
    goto out;
  }
  for (;;) {
    CLEANUP_FREE char *r = boot_agent (dom, "{\"execute\":\"guest-ping\"}", 2);
    if (r)
      break;
    if (virDomainIsActive (dom) != 1) {
      vms_set_error (EIO, "the throw-away copy stopped before its guest "
                     "agent answered");
      goto out;
    }
    if (instant_now_ms () >= deadline) {
      vms_set_error (ETIMEDOUT, "the guest agent did not answer within %d s "
                     "(last: %s)", o->timeout_s > 0 ? o->timeout_s : 300,
                     vms_get_error ());
      goto out;
    }
    if (vms_interrupt_check () == -1)
      goto out;
    instant_sleep_ms (300);
  }
  res->agent_ms = instant_now_ms () - t0;
  if (o->probe && boot_probe (dom, o->probe, deadline, res) == -1)
    goto out;
  rc = 0;
 out:
  if (dom) {
    if (virDomainDestroy (dom) == -1 && rc == 0) {
      vms_set_error (EIO, "the throw-away copy could not be turned off: %s",
                     vm_virt_error ());
      rc = -1;
    }
    virDomainFree (dom);
  }
  virConnectClose (conn);
  return rc;
}

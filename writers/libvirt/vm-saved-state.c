/* The saved-state method (R8): for a running VM whose guest cannot take
 * part online (R9), and for every paused VM.
 *
 * In PrepareForSnapshot, in vm_online_capture's thread for the VM (so all
 * VMs of the set are captured in parallel):
 *
 *   virDomainSuspend (a running VM only) → an external memory snapshot
 *   without metadata and with every disk snapshot='no': QEMU writes the
 *   memory and device state to <dir>/memory.state, in libvirt's save-image
 *   format (virDomainRestore / virsh restore take it), and the domain stays
 *   alive and paused → a pull-mode backup job with a new checkpoint (its
 *   point in time is the pause: nothing runs in between).
 *
 * PostSnapshot resumes what we paused (a paused VM stays paused) and
 * stores the downtime, pause to resume, as "downtime_ms".
 *
 * Why this way: virDomainSave ends the domain (and the backup job with it;
 * a restore is a new QEMU, seconds under TCG); the backup job must begin
 * after the memory is saved, because libvirt holds one async job per
 * domain (a snapshot while the backup job runs waits 30 s and fails); and
 * QMP "migrate" by hand would taint the domain and not write libvirt's
 * format. The cost: while QEMU saves state it inactivates the images, so
 * dirty bitmaps are not loaded when the job begins — a saved-state capture
 * reads every disk in full (its new checkpoint works for later online
 * backups; verified in the lab).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "log.h"
#include "vm-internal.h"

#define SAVED_STATE_FILE "memory.state"
#define SAVED_STATE_ATTR_DOWNTIME_MS VMS_ATTR_DOWNTIME_MS

struct saved_state {
  char *path;                   /* <dir>/memory.state */
  int paused_by_us;             /* we (may have) paused it: resume it */
  int resumed;
  int file_made;
  int64_t t0_us;                /* pause */
  int64_t downtime_ms;          /* -1 until resumed */
};

static struct saved_state *
ss_get (struct vm_entry *vm)
{
  struct saved_state *ss = vm->saved_state;

  if (ss)
    return ss;
  ss = calloc (1, sizeof *ss);
  if (ss == NULL)
    return NULL;
  if (asprintf (&ss->path, "%s/" SAVED_STATE_FILE, vm->dir) == -1) {
    free (ss);
    return NULL;
  }
  ss->downtime_ms = -1;
  vm->saved_state = ss;
  return ss;
}

static void
ss_reset (struct saved_state *ss)
{
  ss->paused_by_us = ss->resumed = ss->file_made = 0;
  ss->t0_us = 0;
  ss->downtime_ms = -1;
}

static char *
xstrdup_printf (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

static char *
xstrdup_printf (const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    s = NULL;
  va_end (ap);
  return s;
}

int
saved_state_pending (struct vm_entry *vm)
{
  struct saved_state *ss = vm->saved_state;
  return ss && ss->paused_by_us && !ss->resumed;
}

void
saved_state_free (struct vm_entry *vm)
{
  struct saved_state *ss = vm->saved_state;

  if (ss == NULL)
    return;
  free (ss->path);
  free (ss);
  vm->saved_state = NULL;
}

int
saved_state_identify (struct vm_writer *w, struct vm_entry *vm,
                      vms_component *c)
{
  struct saved_state *ss = ss_get (vm);

  if (ss == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return vms_component_add_file (c, ss->path, VMS_FILE_PLAIN, NULL,
                                 VMS_QEMU_PROVIDER_NAME);
}

int
saved_state_prepare (struct vm_writer *w, vms_call *call, struct vm_entry *vm,
                     char **why)
{
  struct saved_state *ss = ss_get (vm);
  int st, reason;

  *why = NULL;
  if (ss == NULL) {
    *why = strdup ("out of memory");
    return -1;
  }
  ss_reset (ss);
  if (virDomainGetState (vm->dom, &st, &reason, 0) == -1) {
    *why = xstrdup_printf ("cannot read its state: %s", vm_virt_error ());
    return -1;
  }
  if (st != VIR_DOMAIN_RUNNING && st != VIR_DOMAIN_PAUSED) {
    *why = xstrdup_printf ("it was %s at Identify but is no longer running "
                           "or paused (state %d); retry the backup",
                           vm->state_before == VM_STATE_PAUSED ? "paused"
                           : "running", st);
    return -1;
  }
  /* libvirt writes the state file itself; a leftover of a killed run
   * would be in its way. */
  if (unlink (ss->path) == -1 && errno != ENOENT) {
    *why = xstrdup_printf ("cannot remove the old state file %s: %s",
                           ss->path, strerror (errno));
    return -1;
  }
  return 0;
}

/* Append s to buf XML-escaped for an attribute in single quotes. */
static char *
xml_attr (const char *s)
{
  size_t n = 0;
  char *out, *p;

  for (const char *q = s; *q; q++)
    n += *q == '&' ? 5 : *q == '<' || *q == '>' ? 4 : *q == '\'' ? 6 : 1;
  if ((out = malloc (n + 1)) == NULL)
    return NULL;
  for (p = out; *s; s++) {
    const char *r = *s == '&' ? "&amp;" : *s == '<' ? "&lt;"
      : *s == '>' ? "&gt;" : *s == '\'' ? "&apos;" : NULL;
    if (r) {
      memcpy (p, r, strlen (r));
      p += strlen (r);
    }
    else
      *p++ = *s;
  }
  *p = '\0';
  return out;
}

/* The snapshot XML: memory external to path, every disk of the live XML
 * snapshot='no' (a disk left out would get an external overlay). */
static char *
snapshot_xml (struct vm_entry *vm, const char *path)
{
  CLEANUP_FREE char *live = virDomainGetXMLDesc (vm->dom, 0);
  CLEANUP_FREE char *epath = xml_attr (path);
  xmlDocPtr doc = NULL;
  xmlXPathContextPtr ctx = NULL;
  xmlXPathObjectPtr obj = NULL;
  char *xml = NULL;

  if (live == NULL) {
    vms_set_error (EIO, "cannot read its live XML: %s", vm_virt_error ());
    return NULL;
  }
  if (epath == NULL)
    goto oom;
  doc = xmlReadMemory (live, (int) strlen (live), "domain.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR |
                       XML_PARSE_NOWARNING);
  if (doc == NULL || (ctx = xmlXPathNewContext (doc)) == NULL ||
      (obj = xmlXPathEvalExpression
       ((const xmlChar *) "/domain/devices/disk/target/@dev", ctx)) == NULL) {
    vms_set_error (EIO, "cannot parse its live XML");
    goto out;
  }
  xml = xstrdup_printf ("<domainsnapshot>\n"
                        "  <name>vmshadow-saved-state</name>\n"
                        "  <description>vmshadow backup: memory and device "
                        "state (R8)</description>\n"
                        "  <memory snapshot='external' file='%s'/>\n"
                        "  <disks>\n", epath);
  for (int i = 0; xml && obj->nodesetval &&
         i < obj->nodesetval->nodeNr; i++) {
    xmlChar *dev = xmlNodeGetContent (obj->nodesetval->nodeTab[i]);
    CLEANUP_FREE char *edev = dev ? xml_attr ((const char *) dev) : NULL;
    char *n = edev ? xstrdup_printf ("%s    <disk name='%s' snapshot='no'/>\n",
                                     xml, edev) : NULL;
    xmlFree (dev);
    free (xml);
    xml = n;
  }
  if (xml) {
    char *n = xstrdup_printf ("%s  </disks>\n</domainsnapshot>\n", xml);
    free (xml);
    xml = n;
  }
  if (xml == NULL)
    goto oom;
  goto out;
 oom:
  vms_set_error (ENOMEM, "out of memory");
 out:
  if (obj) xmlXPathFreeObject (obj);
  if (ctx) xmlXPathFreeContext (ctx);
  if (doc) xmlFreeDoc (doc);
  return xml;
}

int
saved_state_stop (struct vm_writer *w, struct vm_entry *vm)
{
  struct saved_state *ss = vm->saved_state;
  CLEANUP_FREE char *xml = NULL;
  virDomainSnapshotPtr snap;
  int st, reason;
  int64_t t1;

  assert (ss != NULL);
  /* Slow bits first, while the VM still runs. */
  if ((xml = snapshot_xml (vm, ss->path)) == NULL)
    return -1;
  if (vm_guard_file (w, vm, ss->path) == -1)
    return -1;
  if (virDomainGetState (vm->dom, &st, &reason, 0) == -1) {
    vms_set_error (EIO, "cannot read its state: %s", vm_virt_error ());
    return -1;
  }
  if (st == VIR_DOMAIN_RUNNING) {
    if (vm_guard_pausing (w, vm) == -1)
      return -1;
    ss->paused_by_us = 1;       /* before the call: a half-done pause is
                                   undone too */
    ss->t0_us = vms_now_us ();
    if (virDomainSuspend (vm->dom) == -1) {
      vms_set_error (EIO, "it could not be paused: %s", vm_virt_error ());
      return -1;
    }
  }
  else if (st != VIR_DOMAIN_PAUSED) {
    vms_set_error (EIO, "it is no longer running or paused (state %d)", st);
    return -1;
  }

  vms_debug ("vm writer: %s: snapshot XML:\n%s", vm->name, xml);
  ss->file_made = 1;            /* maybe partly: remove it on abort */
  snap = virDomainSnapshotCreateXML (vm->dom, xml,
                                     VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA);
  if (snap == NULL) {
    vms_set_error (EIO, "its memory state could not be saved to %s: %s",
                   ss->path, vm_virt_error ());
    return -1;
  }
  virDomainSnapshotFree (snap);
  t1 = vms_now_us ();
  if (qemu_exports_publish (w->exports, vm->uuid, ss->path, ss->path) == -1)
    return -1;
  vms_debug ("vm writer: %s: state saved to %s, %" PRId64 " ms after the "
             "pause", vm->name, ss->path,
             ss->paused_by_us ? (t1 - ss->t0_us) / 1000 : 0);
  return 0;
}

/* Resume what we paused. 0, or -1 with the error set. */
static int
resume (struct vm_entry *vm, struct saved_state *ss)
{
  int st, reason;

  if (!ss->paused_by_us || ss->resumed)
    return 0;
  if (virDomainGetState (vm->dom, &st, &reason, 0) == -1) {
    vms_set_error (EIO, "cannot read its state: %s", vm_virt_error ());
    return -1;
  }
  if (st == VIR_DOMAIN_PAUSED && virDomainResume (vm->dom) == -1) {
    vms_set_error (EIO, "it could not be resumed (it is still paused; run "
                   "virsh resume %s): %s", vm->name, vm_virt_error ());
    return -1;
  }
  ss->downtime_ms = (vms_now_us () - ss->t0_us + 999) / 1000;
  ss->resumed = 1;
  vm_guard_resumed (vm);
  vms_debug ("vm writer: %s: resumed after %" PRId64 " ms", vm->name,
             ss->downtime_ms);
  return 0;
}

int
saved_state_post_snapshot (struct vm_writer *w, vms_call *call,
                           struct vm_entry *vm, char **why)
{
  struct saved_state *ss = vm->saved_state;
  vms_component *c;

  *why = NULL;
  if (ss == NULL || !vm->job_started)
    return 0;                   /* not captured in this session */
  if (resume (vm, ss) == -1) {
    *why = strdup (vms_get_error ());
    return -1;
  }
  c = vms_call_component (call, vm->uuid);
  if (c && ss->paused_by_us &&
      vms_component_set_int (c, SAVED_STATE_ATTR_DOWNTIME_MS,
                             ss->downtime_ms) == -1) {
    *why = strdup (vms_get_error ());
    return -1;
  }
  return 0;
}

int
saved_state_abort (struct vm_writer *w, struct vm_entry *vm, char **why)
{
  struct saved_state *ss = vm->saved_state;

  *why = NULL;
  if (ss == NULL)
    return 0;
  if (resume (vm, ss) == -1) {
    *why = strdup (vms_get_error ());
    return -1;
  }
  if (ss->file_made && unlink (ss->path) == -1 && errno != ENOENT)
    vms_debug ("vm writer: cannot remove %s: %s", ss->path, strerror (errno));
  ss->file_made = 0;
  return 0;
}

void
saved_state_end (struct vm_writer *w, struct vm_entry *vm)
{
  struct saved_state *ss = vm->saved_state;

  if (ss == NULL)
    return;
  /* Read into the repository by now (or the backup was abandoned): the
   * state file is as big as the guest's RAM, do not keep it. */
  if (unlink (ss->path) == -1 && errno != ENOENT)
    vms_debug ("vm writer: cannot remove %s: %s", ss->path, strerror (errno));
  if (!saved_state_pending (vm))
    ss_reset (ss);
}

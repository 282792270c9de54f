/* What the requester asks of libvirt outside a backup session (issue 20):
 * the VMs of the host, so that `vmshadow backup --each` can back up each
 * one as its own consistency set; whether another tool's job (a backup, a
 * migration, a save, a block copy) runs on a VM, waited for before a
 * session starts; and (prune) deleting the checkpoints no backup needs.
 * Each call opens its own connection and closes it before returning. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "log.h"
#include "str.h"
#include "vm-internal.h"

static void
host_silent_error (void *opaque, virErrorPtr err)
{
  /* Errors are read with virGetLastErrorMessage where they happen. */
}

static virConnectPtr
host_connect (const char *uri, int read_only)
{
  const char *u = uri ? uri : VMS_VM_DEFAULT_URI;
  virConnectPtr conn = read_only ? virConnectOpenReadOnly (u) : virConnectOpen (u);

  if (conn == NULL) {
    vms_set_error (ECONNREFUSED, "cannot connect to libvirt at %s: %s; is "
                   "libvirtd running (and is this the right URI, "
                   "-c/--connect)?", u, vm_virt_error ());
    return NULL;
  }
  virConnSetErrorFunc (conn, NULL, host_silent_error);
  return conn;
}

static int
cmp_names (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Every domain at URI (read-only connection, left open in *CONN for the
   caller to close), or -1 with the error set. */
static int
host_list_domains (const char *uri, virConnectPtr *conn, virDomainPtr **doms)
{
  int nd;

  *doms = NULL;
  if ((*conn = host_connect (uri, 1)) == NULL)
    return -1;
  if ((nd = virConnectListAllDomains (*conn, doms, 0)) < 0) {
    vms_set_error (EIO, "cannot list the domains at %s: %s",
                   uri ? uri : VMS_VM_DEFAULT_URI, vm_virt_error ());
    virConnectClose (*conn);
    *conn = NULL;
    return -1;
  }
  return nd;
}

int
vms_libvirt_list_vms (const char *uri, char ***names, size_t *n)
{
  virConnectPtr conn;
  virDomainPtr *doms = NULL;
  char **v = NULL;
  int nd;

  *names = NULL;
  *n = 0;
  if ((nd = host_list_domains (uri, &conn, &doms)) < 0)
    return -1;
  v = calloc ((size_t) nd + 1, sizeof *v);
  for (int i = 0; i < nd; i++) {
    if (v && (v[i] = strdup (virDomainGetName (doms[i]))) == NULL) {
      for (int j = 0; j < i; j++)
        free (v[j]);
      free (v);
      v = NULL;
    }
    virDomainFree (doms[i]);
  }
  free (doms);
  virConnectClose (conn);
  if (v == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  qsort (v, (size_t) nd, sizeof *v, cmp_names);
  *names = v;
  *n = (size_t) nd;
  return 0;
}

/* ---- other tools' jobs (issue 20) ---- */

static const char *
job_operation_name (int op)
{
  switch (op) {
  case VIR_DOMAIN_JOB_OPERATION_START: return "a start";
  case VIR_DOMAIN_JOB_OPERATION_SAVE: return "a save";
  case VIR_DOMAIN_JOB_OPERATION_RESTORE: return "a restore";
  case VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN: return "an incoming migration";
  case VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT: return "a migration";
  case VIR_DOMAIN_JOB_OPERATION_SNAPSHOT: return "a snapshot";
  case VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_REVERT: return "a snapshot revert";
  case VIR_DOMAIN_JOB_OPERATION_DUMP: return "a memory dump";
  case VIR_DOMAIN_JOB_OPERATION_BACKUP: return "a backup";
  default: return "an unnamed";
  }
}

static const char *
block_job_name (int type)
{
  switch (type) {
  case VIR_DOMAIN_BLOCK_JOB_TYPE_PULL: return "block pull";
  case VIR_DOMAIN_BLOCK_JOB_TYPE_COPY: return "block copy";
  case VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT: return "block commit";
  case VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT: return "active block commit";
  case VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP: return "backup block";
  default: return "block";
  }
}

int
vm_domain_jobs (virDomainPtr dom, char **why)
{
  int type = VIR_DOMAIN_JOB_NONE, nparams = 0, op = 0, active;
  virTypedParameterPtr params = NULL;
  CLEANUP_FREE char *xml = NULL;
  struct vm_config cfg = { 0 };

  *why = NULL;
  active = virDomainIsActive (dom);
  if (active == 0)
    return 0;                   /* no QEMU: no job */
  if (active == -1 ||
      virDomainGetJobStats (dom, &type, &params, &nparams, 0) == -1) {
    if (virGetLastErrorCode () == VIR_ERR_NO_SUPPORT)
      return 0;                 /* a driver without jobs (not QEMU's) */
    vms_set_error (EIO, "cannot read its jobs: %s", vm_virt_error ());
    return -1;
  }
  if (type != VIR_DOMAIN_JOB_NONE) {
    virTypedParamsGetInt (params, nparams, VIR_DOMAIN_JOB_OPERATION, &op);
    virTypedParamsFree (params, nparams);
    if (asprintf (why, "%s job runs on it (libvirt domain job; see virsh "
                  "domjobinfo)", job_operation_name (op)) == -1)
      *why = NULL;
    return 1;
  }
  virTypedParamsFree (params, nparams);
  /* Block jobs (a block copy, commit or pull) are no domain job. */
  xml = virDomainGetXMLDesc (dom, 0);
  if (xml == NULL || vm_config_parse (xml, strlen (xml), &cfg) == -1) {
    vms_set_error (EIO, "cannot read its configuration: %s",
                   xml ? vms_get_error () : vm_virt_error ());
    return -1;
  }
  for (size_t i = 0; i < cfg.nr_disks; i++) {
    virDomainBlockJobInfo info;
    if (cfg.disks[i].target == NULL ||
        virDomainGetBlockJobInfo (dom, cfg.disks[i].target, &info, 0) != 1)
      continue;
    if (asprintf (why, "a %s job runs on its disk %s (see virsh blockjob)",
                  block_job_name (info.type), cfg.disks[i].target) == -1)
      *why = NULL;
    vm_config_clear (&cfg);
    return 1;
  }
  vm_config_clear (&cfg);
  return 0;
}

/* The VMs at conn to check: names (NULL: every domain). */
static int
host_domains (virConnectPtr conn, const char *const *names,
              virDomainPtr **out, size_t *n)
{
  virDomainPtr *doms = NULL;
  size_t k = 0;

  if (names == NULL) {
    int nd = virConnectListAllDomains (conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (nd < 0) {
      vms_set_error (EIO, "cannot list the domains: %s", vm_virt_error ());
      return -1;
    }
    *out = doms;
    *n = (size_t) nd;
    return 0;
  }
  while (names[k])
    k++;
  if ((doms = calloc (k + 1, sizeof *doms)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  *n = 0;
  for (size_t i = 0; i < k; i++) {
    virDomainPtr d = virDomainLookupByName (conn, names[i]);
    if (d == NULL)
      d = virDomainLookupByUUIDString (conn, names[i]);
    if (d)                      /* a VM that is not there fails at Identify */
      doms[(*n)++] = d;
  }
  *out = doms;
  return 0;
}

int
vms_libvirt_wait_jobs (const char *uri, const char *const *vms, int64_t wait_ms)
{
  virConnectPtr conn = host_connect (uri, 1);
  virDomainPtr *doms = NULL;
  size_t n = 0;
  int64_t deadline = vms_now_ms () + wait_ms;
  int r = -1, said = 0;

  if (conn == NULL)
    return -1;
  if (host_domains (conn, vms, &doms, &n) == -1)
    goto out;
  for (;;) {
    size_t i;
    char *why = NULL;
    const char *name = NULL;
    for (i = 0; i < n; i++) {
      int busy = vm_domain_jobs (doms[i], &why);
      name = virDomainGetName (doms[i]);
      if (busy == -1) {
        vms_set_error (vms_get_errno (), "vm \"%s\": %s", name, vms_get_error ());
        goto out;
      }
      if (busy)
        break;
    }
    if (i == n) {
      r = 0;
      goto out;
    }
    if (vms_now_ms () >= deadline) {
      if (wait_ms > 0)
        vms_set_error (EBUSY, "vm \"%s\": %s; waited %" PRId64 " s for it to "
                       "end, giving up; no guest was frozen or paused", name,
                       why ? why : "another job runs on it", wait_ms / 1000);
      else
        vms_set_error (EBUSY, "vm \"%s\": %s; no guest was frozen or paused: "
                       "retry when it has ended, or use --wait", name,
                       why ? why : "another job runs on it");
      free (why);
      goto out;
    }
    if (!said++)
      vms_warn ("vm \"%s\": %s; waiting for it to end (up to %" PRId64 " s)",
                name, why ? why : "another job runs on it", wait_ms / 1000);
    free (why);
    struct timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
    nanosleep (&ts, NULL);
  }
 out:
  for (size_t i = 0; i < n; i++)
    virDomainFree (doms[i]);
  free (doms);
  virConnectClose (conn);
  return r;
}

/* ---- checkpoints no backup needs (prune; issue 20) ---- */

struct host_cp {
  virDomainCheckpointPtr cp;
  const char *name;             /* borrowed from cp */
  long long created;
  int depth;                    /* its ancestors in libvirt's tree */
  string_vector disks;          /* targets it holds a bitmap for */
  int keep;
  const char *why;              /* why it is kept */
};

static long long
cp_created (const char *xml)
{
  const char *p = xml ? strstr (xml, "<creationTime>") : NULL;
  return p ? strtoll (p + strlen ("<creationTime>"), NULL, 10) : 0;
}

/* How many checkpoints come before each of list[0..nl) in libvirt's tree
 * (each new one is the child of the one before, another tool's included,
 * so every checkpoint of the domain is asked): one parent lookup each,
 * then the walks in memory. NULL when out of memory. */
static int *
cp_depths (virDomainCheckpointPtr *list, int nl)
{
  int *depth = calloc ((size_t) nl + 1, sizeof *depth);
  int *parent = calloc ((size_t) nl + 1, sizeof *parent);

  if (depth == NULL || parent == NULL) {
    free (depth);
    free (parent);
    return NULL;
  }
  for (int i = 0; i < nl; i++) {
    virDomainCheckpointPtr p = virDomainCheckpointGetParent (list[i], 0);
    parent[i] = -1;
    for (int j = 0; p != NULL && j < nl && parent[i] < 0; j++)
      if (strcmp (virDomainCheckpointGetName (p),
                  virDomainCheckpointGetName (list[j])) == 0)
        parent[i] = j;
    if (p != NULL)
      virDomainCheckpointFree (p);
  }
  virResetLastError ();         /* "no parent" ends a chain, no error */
  /* At most nl steps: a loop in the tree cannot hang the walk. */
  for (int i = 0; i < nl; i++)
    for (int j = parent[i]; j >= 0 && depth[i] < nl; j = parent[j])
      depth[i]++;
  free (parent);
  return depth;
}

/* Older first: by creation time, which libvirt keeps in whole seconds, and
 * within one second by the tree (two backups in a second were ordered by
 * the random part of their names, so an older checkpoint was sometimes
 * kept as a disk's newest and the newest judged by the backups alone). */
static int
cp_older (const void *a, const void *b)
{
  const struct host_cp *x = a, *y = b;
  if (x->created != y->created)
    return x->created < y->created ? -1 : 1;
  if (x->depth != y->depth)
    return x->depth < y->depth ? -1 : 1;
  return strcmp (x->name, y->name);
}

static void
say (vms_vm_report_fn report, void *opaque, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
static void
say (vms_vm_report_fn report, void *opaque, const char *fmt, ...)
{
  va_list ap;
  char *line = NULL;

  va_start (ap, fmt);
  if (vasprintf (&line, fmt, ap) == -1)
    line = NULL;
  va_end (ap);
  if (line && report)
    report (opaque, line);
  free (line);
}

int
vms_libvirt_prune_checkpoints (const char *uri, const char *uuid,
                               const char *const *needed, int dry_run,
                               vms_vm_report_fn report, void *opaque)
{
  virConnectPtr conn = host_connect (uri, dry_run);
  virDomainPtr dom = NULL;
  virDomainCheckpointPtr *list = NULL;
  struct host_cp *cps = NULL;
  CLEANUP_FREE int *depths = NULL;
  size_t n = 0;
  int nl, deleted = 0, r = -1;
  const char *name;

  if (conn == NULL)
    return -1;
  dom = virDomainLookupByUUIDString (conn, uuid);
  if (dom == NULL) {
    say (report, opaque, "vm %s: not defined at %s, no checkpoint to delete",
         uuid, uri ? uri : VMS_VM_DEFAULT_URI);
    r = 0;
    goto out;
  }
  name = virDomainGetName (dom);
  nl = virDomainListAllCheckpoints (dom, &list, 0);
  if (nl < 0 && virGetLastErrorCode () == VIR_ERR_NO_SUPPORT) {
    r = 0;                      /* a driver without checkpoints (not QEMU's) */
    goto out;
  }
  if (nl < 0) {
    vms_set_error (EIO, "vm \"%s\": cannot list its checkpoints: %s", name,
                   vm_virt_error ());
    goto out;
  }
  if ((cps = calloc ((size_t) nl + 1, sizeof *cps)) == NULL
      || (depths = cp_depths (list, nl)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  /* Only vmshadow's own (VMS_VM_CHECKPOINT_PREFIX): never another tool's. */
  for (int i = 0; i < nl; i++) {
    const char *cn = virDomainCheckpointGetName (list[i]);
    if (strncmp (cn, VMS_VM_CHECKPOINT_PREFIX, strlen (VMS_VM_CHECKPOINT_PREFIX)) != 0) {
      virDomainCheckpointFree (list[i]);
      continue;
    }
    CLEANUP_FREE char *xml = virDomainCheckpointGetXMLDesc (list[i], 0);
    struct host_cp *c = &cps[n++];
    c->cp = list[i];
    c->name = cn;
    c->created = cp_created (xml);
    c->depth = depths[i];
    if (xml == NULL || vm_checkpoint_bitmaps (xml, strlen (xml), &c->disks) == -1) {
      vms_set_error (EIO, "vm \"%s\": cannot read checkpoint %s: %s", name, cn,
                     xml ? vms_get_error () : vm_virt_error ());
      goto out;
    }
  }
  qsort (cps, n, sizeof *cps, cp_older);
  /* Kept: what a remaining backup needs as the parent of the next one, and
   * per disk the newest checkpoint with a bitmap on it. */
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; needed && needed[k]; k++)
      if (strcmp (cps[i].name, needed[k]) == 0) {
        cps[i].keep = 1;
        cps[i].why = "the parent of the next backup";
      }
  for (size_t i = 0; i < n; i++)
    for (size_t d = 0; d < cps[i].disks.len && !cps[i].keep; d++) {
      int newer = 0;
      for (size_t j = i + 1; j < n && !newer; j++)
        for (size_t e = 0; e < cps[j].disks.len && !newer; e++)
          newer = strcmp (cps[j].disks.ptr[e], cps[i].disks.ptr[d]) == 0;
      if (!newer) {
        cps[i].keep = 1;
        cps[i].why = "the newest of its disk";
      }
    }
  /* Oldest first: a deleted checkpoint's changes merge into its parent,
   * so the ones kept stay valid bases. */
  for (size_t i = 0; i < n; i++) {
    if (cps[i].keep) {
      say (report, opaque, "keep checkpoint %s of vm \"%s\" (%s)", cps[i].name,
           name, cps[i].why);
      continue;
    }
    if (!dry_run && virDomainCheckpointDelete (cps[i].cp, 0) == -1) {
      vms_set_error (EIO, "vm \"%s\": cannot delete checkpoint %s: %s", name,
                     cps[i].name, vm_virt_error ());
      goto out;
    }
    say (report, opaque, "%s checkpoint %s of vm \"%s\" and its bitmaps (no "
         "backup needs it)", dry_run ? "would delete" : "delete", cps[i].name, name);
    deleted++;
  }
  r = deleted;
 out:
  for (size_t i = 0; i < n; i++) {
    virDomainCheckpointFree (cps[i].cp);
    string_vector_free_all (&cps[i].disks);
  }
  free (cps);
  free (list);
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return r;
}

/* ---- tags (issue 19) ---- */

void
vms_host_vms_free (struct vms_host_vm *vms, size_t n)
{
  for (size_t i = 0; vms && i < n; i++) {
    free (vms[i].name);
    for (char **t = vms[i].tags; t && *t; t++)
      free (*t);
    free (vms[i].tags);
    free (vms[i].tags_error);
  }
  free (vms);
}

/* The tags of dom into vm (tags_error when they cannot be had); -1 only
 * when out of memory. */
static int
host_vm_tags (virDomainPtr dom, struct vms_host_vm *vm)
{
  char *xml = virDomainGetMetadata (dom, VIR_DOMAIN_METADATA_ELEMENT,
                                    VMS_VM_TAGS_NS, VIR_DOMAIN_AFFECT_CURRENT);

  if (xml == NULL) {
    if (virGetLastErrorCode () == VIR_ERR_NO_DOMAIN_METADATA)
      vm->tags = calloc (1, sizeof *vm->tags);
    else
      vm->tags_error = vms_strdup_printf ("its vmshadow tags cannot be read: %s",
                                          vm_virt_error ());
    return vm->tags || vm->tags_error ? 0 : -1;
  }
  if (vms_vm_tags_parse (xml, strlen (xml), &vm->tags) == -1) {
    free (xml);
    if (vms_get_errno () == ENOMEM)
      return -1;
    vm->tags_error = strdup (vms_get_error ());
    return vm->tags_error ? 0 : -1;
  }
  free (xml);
  return 0;
}

static int
cmp_host_vms (const void *a, const void *b)
{
  return strcmp (((const struct vms_host_vm *) a)->name,
                 ((const struct vms_host_vm *) b)->name);
}

int
vms_libvirt_list_vms_tags (const char *uri, struct vms_host_vm **vms, size_t *n)
{
  virConnectPtr conn;
  virDomainPtr *doms = NULL;
  struct vms_host_vm *v;
  int nd, oom = 0;

  *vms = NULL;
  *n = 0;
  if ((nd = host_list_domains (uri, &conn, &doms)) < 0)
    return -1;
  v = calloc ((size_t) nd + 1, sizeof *v);
  oom = v == NULL;
  for (int i = 0; i < nd; i++) {
    if (!oom && ((v[i].name = strdup (virDomainGetName (doms[i]))) == NULL ||
                 host_vm_tags (doms[i], &v[i]) == -1))
      oom = 1;
    virDomainFree (doms[i]);
  }
  free (doms);
  virConnectClose (conn);
  if (oom) {
    vms_host_vms_free (v, (size_t) nd);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  qsort (v, (size_t) nd, sizeof *v, cmp_host_vms);
  *vms = v;
  *n = (size_t) nd;
  return 0;
}

/* What the requester asks of libvirt outside a backup session (issue 20):
 * the VMs of the host, so that `vmshadow backup --each` can back up each
 * one as its own consistency set. Each call opens its own connection and
 * closes it before returning. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vmshadow/error.h"

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

int
vms_libvirt_list_vms (const char *uri, char ***names, size_t *n)
{
  virConnectPtr conn = host_connect (uri, 1);
  virDomainPtr *doms = NULL;
  char **v = NULL;
  int nd;

  *names = NULL;
  *n = 0;
  if (conn == NULL)
    return -1;
  nd = virConnectListAllDomains (conn, &doms, 0);
  if (nd < 0) {
    vms_set_error (EIO, "cannot list the domains at %s: %s",
                   uri ? uri : VMS_VM_DEFAULT_URI, vm_virt_error ());
    virConnectClose (conn);
    return -1;
  }
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

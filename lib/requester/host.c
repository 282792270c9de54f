/* The host's writers and providers (R1), and what the files of the
 * requester share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

#include "exec-writer.h"
#include "file-provider.h"
#include "requester-internal.h"
#include "vm-writer.h"
#include "vmshadow/error.h"

/* The sockets qemu:///system is served on: the monolithic libvirtd's, or
 * the modular QEMU daemon's (virtqemud; issue 20). When one is there (or a
 * URI is given), probe_vms adds the VM writer. */
static const char *const libvirt_sockets[] = {
  "/run/libvirt/libvirt-sock",
  "/run/libvirt/virtqemud-sock",
};

static int
libvirt_present (void)
{
  for (size_t i = 0; i < sizeof libvirt_sockets / sizeof *libvirt_sockets; i++)
    if (access (libvirt_sockets[i], F_OK) == 0)
      return 1;
  return 0;
}

const char *
vms_default_writers_dir (void)
{
  return VMS_EXEC_WRITERS_DIR;
}

char *
req_strdup (const char *s, int *oom)
{
  char *r = s ? strdup (s) : NULL;
  if (s && r == NULL)
    *oom = 1;
  return r;
}

int
vms_requester_check_dir (const char *dir, char *why, size_t len)
{
  CLEANUP_FREE char *prefix = strdup (dir);
  CLEANUP_FREE char *last = strdup (dir[0] == '/' ? "/" : ".");
  size_t n = strlen (dir), start = 0;
  int missing = 0;
  struct stat st;

  if (prefix == NULL || last == NULL) {
    snprintf (why, len, "out of memory");
    return -1;
  }
  if (n == 0) {
    snprintf (why, len, "an empty path is no directory");
    return -1;
  }
  /* Each part in turn: dir[start..i) is the part, dir[0..i) the path up to
   * and including it. */
  for (size_t i = 0; i <= n; i++) {
    if (i < n && dir[i] != '/')
      continue;
    size_t plen = i - start;
    int dotdot = plen == 2 && dir[start] == '.' && dir[start + 1] == '.';
    int skip = plen == 0 || (plen == 1 && dir[start] == '.');
    start = i + 1;
    if (skip)
      continue;
    memcpy (prefix, dir, i);
    prefix[i] = '\0';
    if (missing) {
      if (dotdot) {
        snprintf (why, len, "'..' comes after a directory that does not exist "
                  "yet, in %s", prefix);
        return -1;
      }
      continue;
    }
    if (stat (prefix, &st) == -1) {
      if (errno != ENOENT) {
        snprintf (why, len, "cannot look at %s: %s", prefix, strerror (errno));
        return -1;
      }
      /* It and what follows would be made in last. */
      if (access (last, W_OK | X_OK) == -1) {
        snprintf (why, len, "it does not exist and cannot be created in %s (%s)",
                  last, strerror (errno));
        return -1;
      }
      missing = 1;
      continue;
    }
    if (!S_ISDIR (st.st_mode)) {
      snprintf (why, len, "%s is not a directory", prefix);
      return -1;
    }
    free (last);
    if ((last = strdup (prefix)) == NULL) {
      snprintf (why, len, "out of memory");
      return -1;
    }
  }
  if (!missing && access (dir, W_OK | X_OK) == -1) {
    snprintf (why, len, "the directory is not writable (%s)", strerror (errno));
    return -1;
  }
  return 0;
}

int
vms_requester_sweep (void)
{
  int scratch = vms_file_provider_sweep (NULL), nbd = vms_nbd_sweep ();
  if (scratch == -1 || nbd == -1)
    return -1;
  return scratch + nbd;
}

vms_coordinator *
vms_requester_host (const struct vms_host_options *o)
{
  vms_coordinator *coord = vms_coordinator_new ();
  int vms = o->all_vms || (o->vms && o->vms[0]) ||
    (o->probe_vms && (o->libvirt_uri || libvirt_present ()));

  if (coord == NULL)
    return NULL;
  /* Writers first, then providers in the order they are asked (R1). */
  if (vms_exec_writers_load (coord, o->writers_dir) == -1 ||
      vms_file_provider_add (coord, NULL) == -1)
    goto fail;
  if (vms) {
    int method = vms_vm_method_from_name (o->method ? o->method : "auto");
    int fallback = vms_vm_fallback_from_name (o->fallback ? o->fallback
                                              : "crash-consistent");
    if (method == -1) {
      vms_set_error (EINVAL, "unknown capture method \"%s\" (auto, online, "
                     "crash-consistent or saved-state)", o->method);
      goto fail;
    }
    if (fallback == -1) {
      vms_set_error (EINVAL, "unknown fallback \"%s\" (crash-consistent, "
                     "saved-state or fail)", o->fallback);
      goto fail;
    }
    const struct vms_vm_options vm = {
      .uri = o->libvirt_uri,
      .vms = o->all_vms ? NULL : o->vms,
      .method = method,
      .full = o->full,
      .fallback = fallback,
    };
    if (vms_libvirt_add (coord, &vm) == -1)
      goto fail;
  }
  return coord;
 fail:
  vms_coordinator_free (coord);
  return NULL;
}

void
req_progress_start (struct req_progress *rp, const char *writer_id,
                    const char *component, const char *path)
{
  rp->p = (struct vms_progress) {
    .writer_id = writer_id, .component = component, .path = path,
  };
}

void
req_progress_bytes (void *opaque, uint64_t done, uint64_t total)
{
  struct req_progress *rp = opaque;
  rp->p.done = done;
  rp->p.total = total;
  if (rp->fn)
    rp->fn (rp->opaque, &rp->p);
}

void
req_progress_end (struct req_progress *rp)
{
  rp->p.end = 1;
  if (rp->fn)
    rp->fn (rp->opaque, &rp->p);
}

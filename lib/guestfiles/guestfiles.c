/* The view of a backed-up VM's filesystems (issue 16, R26): its disks
 * served from the repository, the libguestfs appliance over them, every
 * filesystem found mounted read-only inside the appliance under a
 * directory named after its device (guestfiles.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <guestfs.h>

#include "cleanup.h"
#include "log.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#include "guestfiles-internal.h"

DEFINE_CLEANUP (vms_repo, vms_repo_close);
DEFINE_CLEANUP (vms_manifest, vms_manifest_free);

/* Where scripts/guestfs-appliance.sh puts a fixed appliance (a kernel,
 * an initrd and a root image made by supermin) when the host has no
 * kernel libguestfs can use; $VMSHADOW_APPLIANCE overrides it, and
 * $LIBGUESTFS_PATH, when set, wins over both (libguestfs's own). */
#define GUESTFILES_APPLIANCE_DIR "/var/cache/vmshadow/appliance"

void
guestfiles_free_strings (char **l)
{
  if (l == NULL)
    return;
  for (char **p = l; *p; p++)
    free (*p);
  free (l);
}

struct read_errors {
  vms_guest_files *gf;
  const char *target;
};

static void
read_error_line (void *opaque, const char *line)
{
  struct read_errors *re = opaque;
  const char *e = strstr (line, "error: ");
  char *joined;

  if (e == NULL)
    return;
  e += strlen ("error: ");
  /* The appliance retries a failed read: each range once. */
  if (re->gf->read_errors && strstr (re->gf->read_errors, e))
    return;
  if (asprintf (&joined, "%s%sdisk %s: %s", re->gf->read_errors ? re->gf->read_errors : "",
                re->gf->read_errors ? "; " : "", re->target, e) == -1)
    return;
  free (re->gf->read_errors);
  re->gf->read_errors = joined;
}

const char *
guestfiles_read_errors (vms_guest_files *gf)
{
  for (size_t i = 0; i < gf->nr_disks; i++)
    if (gf->disks[i].export) {
      struct read_errors re = { gf, gf->disks[i].target };
      vms_repo_export_messages (gf->disks[i].export, read_error_line, &re);
    }
  /* (bounded: a guest that reads a damaged range again and again) */
  if (gf->read_errors && strlen (gf->read_errors) > 2000)
    strcpy (gf->read_errors + 1990, " [...]");
  return gf->read_errors;
}

/* The error of a failed libguestfs call, with why the appliance met an
 * I/O error when an export could not serve a range: the backup is
 * damaged there (issue 16). */
int
guestfiles_fail (vms_guest_files *gf, const char *what)
{
  const char *err = guestfs_last_error (gf->g);
  int e = guestfs_last_errno (gf->g);
  const char *why = guestfiles_read_errors (gf);
  vms_set_error (e ? e : EIO, "%s: %s%s%s%s", what, err ? err : "failed",
                 why ? " (the backup could not be read there: " : "",
                 why ? why : "", why ? ")" : "");
  return -1;
}

/* The fixed appliance to use, if one was built for this libguestfs: its
 * directory holds README.fixed (libguestfs's mark) and
 * libguestfs-version, the version it was built for ("1.48.6"); one built
 * for another version is not used (its daemon would not match). */
static const char *
guestfiles_appliance (char *buf, size_t len)
{
  const char *dir = getenv ("VMSHADOW_APPLIANCE");
  struct guestfs_version *v;
  char path[4096], have[64] = "", want[64];
  FILE *fp;

  if (dir == NULL || *dir == '\0')
    dir = GUESTFILES_APPLIANCE_DIR;
  snprintf (path, sizeof path, "%s/README.fixed", dir);
  if (access (path, R_OK) == -1)
    return NULL;
  snprintf (path, sizeof path, "%s/libguestfs-version", dir);
  if ((fp = fopen (path, "re")) != NULL) {
    if (fgets (have, sizeof have, fp) == NULL)
      have[0] = '\0';
    have[strcspn (have, "\n")] = '\0';
    fclose (fp);
  }
  {
    guestfs_h *tmp = guestfs_create_flags (GUESTFS_CREATE_NO_ENVIRONMENT);
    v = tmp ? guestfs_version (tmp) : NULL;
    snprintf (want, sizeof want, "%" PRIi64 ".%" PRIi64 ".%" PRIi64,
              v ? v->major : 0, v ? v->minor : 0, v ? v->release : 0);
    guestfs_free_version (v);
    if (tmp)
      guestfs_close (tmp);
  }
  if (strcmp (have, want) != 0) {
    vms_warn ("not using the appliance in %s: built for libguestfs %s, this is "
              "%s; rebuild it with guestfs-appliance.sh", dir,
              *have ? have : "(unknown)", want);
    return NULL;
  }
  snprintf (buf, len, "%s", dir);
  return buf;
}

/* The filesystem's directory name, from its appliance device: a disk's
 * target with the partition number ("vda1"), the target alone for a
 * filesystem on a whole disk ("vdb"), VG-LV for a logical volume (the
 * /dev/mapper name: '-' inside either doubled), else what follows /dev/
 * ("md127"). Guest-controlled parts must be plain names. NULL with the
 * error set when the name cannot be made. */
static char *
guestfiles_fs_name (vms_guest_files *gf, const char *dev)
{
  char *name = NULL;
  int r;

  if ((r = guestfs_is_lv (gf->g, dev)) > 0) {
    CLEANUP_FREE char *canon = guestfs_lvm_canonical_lv_name (gf->g, dev);
    const char *vg, *slash;
    char *o;
    if (canon == NULL || strncmp (canon, "/dev/", 5) != 0 ||
        (slash = strchr ((vg = canon + 5), '/')) == NULL) {
      vms_set_error (EINVAL, "logical volume %s has no VG/LV name", dev);
      return NULL;
    }
    if ((name = o = malloc (2 * strlen (vg) + 2)) == NULL) {
      vms_set_error (errno, "out of memory");
      return NULL;
    }
    for (const char *c = vg; *c; c++) {
      *o++ = c == slash ? '-' : *c;
      if (*c == '-')
        *o++ = '-';
    }
    *o = '\0';
  }
  else if (guestfs_is_whole_device (gf->g, dev) > 0) {
    int i = guestfs_device_index (gf->g, dev);
    if (i >= 0 && (size_t) i < gf->nr_disks)
      name = strdup (gf->disks[i].target);
  }
  else {
    CLEANUP_FREE char *parent = guestfs_part_to_dev (gf->g, dev);
    int i = parent ? guestfs_device_index (gf->g, parent) : -1;
    int part = parent ? guestfs_part_to_partnum (gf->g, dev) : -1;
    if (i >= 0 && (size_t) i < gf->nr_disks && part > 0) {
      if (asprintf (&name, "%s%d", gf->disks[i].target, part) == -1)
        name = NULL;
    }
    else if (strncmp (dev, "/dev/", 5) == 0 && strchr (dev + 5, '/') == NULL)
      name = strdup (dev + 5);
  }
  if (name == NULL) {
    vms_set_error (EINVAL, "no name for the filesystem on %s", dev);
    return NULL;
  }
  /* LVM names are [A-Za-z0-9+_.-]; so are targets and md names. */
  if (*name == '\0' || *name == '.' || strlen (name) > 128 ||
      strspn (name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
              "0123456789+_.-") != strlen (name)) {
    vms_set_error (EINVAL, "the filesystem on %s has a name that is not a "
                   "plain name: %s", dev, name);
    free (name);
    return NULL;
  }
  return name;
}

/* Mount one filesystem read-only at /NAME inside the appliance. The
 * drives are read-only (libguestfs puts a throw-away overlay over them),
 * so a journal can be replayed without anything reaching the repository.
 * XFS: nouuid, since clones share UUIDs. */
static int
guestfiles_mount_one (vms_guest_files *gf, struct vms_guest_fs *fs)
{
  char mp[256];
  struct guestfs_statvfs *sv;

  snprintf (mp, sizeof mp, "/%s", fs->name);
  if (guestfs_mkmountpoint (gf->g, mp) == -1)
    return -1;
  if (strcmp (fs->type, "unknown") == 0) {
    /* Its type could not be read (an export's read error): the types the
     * appliance's mount could not guess either, each tried by name; the
     * kernel checks its own superblock. */
    static const char *const types[] = { "xfs", "ext4", "btrfs", NULL };
    for (size_t i = 0; types[i]; i++)
      if (guestfs_mount_vfs (gf->g, strcmp (types[i], "xfs") == 0 ? "ro,nouuid" : "ro",
                             types[i], fs->device, mp) == 0) {
        char *t = strdup (types[i]);
        if (t) {
          free ((char *) fs->type);
          fs->type = t;
        }
        goto mounted;
      }
  }
  if (guestfs_mount_options (gf->g, strcmp (fs->type, "xfs") == 0 ? "ro,nouuid" : "ro",
                             fs->device, mp) == -1) {
    const char *err = guestfs_last_error (gf->g);
    fs->error = strdup (err ? err : "cannot be mounted");
    guestfs_rmmountpoint (gf->g, mp);
    return -1;
  }
 mounted:
  if ((sv = guestfs_statvfs (gf->g, mp)) != NULL) {
    if (sv->blocks >= sv->bfree && sv->frsize > 0)
      fs->used = (uint64_t) (sv->blocks - sv->bfree) * (uint64_t) sv->frsize;
    guestfs_free_statvfs (sv);
  }
  return 0;
}

static int
guestfiles_find_filesystems (vms_guest_files *gf)
{
  CLEANUP_FREE_STRINGS char **l = guestfs_list_filesystems (gf->g);
  size_t n = 0, mounted = 0;

  if (l == NULL)
    return guestfiles_fail (gf, "listing the filesystems");
  while (l[n])
    n++;
  if ((gf->fs = calloc (n / 2 + 1, sizeof *gf->fs)) == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  for (size_t i = 0; i + 1 < n; i += 2) {
    const char *dev = l[i], *type = l[i + 1];
    struct vms_guest_fs *fs = &gf->fs[gf->nr_fs];
    char *name, *label;
    int64_t size;
    int dup = 0;

    /* A device whose type the appliance could not read while an export
     * failed to serve a range: libblkid stops at the first read error
     * (it probes other signatures deep into a device, e.g. ZFS labels at
     * 256 KiB), so a filesystem with one damaged chunk far from its
     * superblock is listed as "unknown". It is tried all the same (a
     * mount that guesses the type), so that only what lies in the damaged
     * range fails, with an I/O error (issue 16). */
    int unknown = strcmp (type, "unknown") == 0 || *type == '\0';
    if (unknown && strncmp (dev, "/dev/", 5) == 0 && guestfiles_read_errors (gf))
      type = "unknown";
    else if (unknown)
      continue;
    /* Not filesystems one can read files from. */
    if (strncmp (dev, "/dev/", 5) != 0 || strcmp (type, "swap") == 0 ||
        strcmp (type, "crypto_LUKS") == 0)
      continue;
    if ((name = guestfiles_fs_name (gf, dev)) == NULL) {
      vms_warn ("%s", vms_get_error ());
      continue;
    }
    for (size_t j = 0; j < gf->nr_fs; j++)
      dup |= strcmp (gf->fs[j].name, name) == 0;
    if (dup) {
      vms_warn ("two filesystems are named %s; %s left out", name, dev);
      free (name);
      continue;
    }
    fs->name = name;
    fs->device = strdup (dev);
    fs->type = strdup (type);
    label = guestfs_vfs_label (gf->g, dev);
    fs->label = label ? label : strdup ("");
    size = guestfs_blockdev_getsize64 (gf->g, dev);
    fs->size = size > 0 ? (uint64_t) size : 0;
    gf->nr_fs++;
    if (fs->device == NULL || fs->type == NULL || fs->label == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    if (guestfiles_mount_one (gf, fs) == 0)
      mounted++;
    else if (unknown) {
      /* Not a filesystem after all (a data partition, a PV): gone. */
      gf->nr_fs--;
      free ((char *) fs->name); free ((char *) fs->device);
      free ((char *) fs->type); free ((char *) fs->label);
      free ((char *) fs->error);
      memset (fs, 0, sizeof *fs);
    }
  }
  if (mounted == 0) {
    char disks[512] = "";
    for (size_t i = 0; i < gf->nr_disks; i++)
      snprintf (disks + strlen (disks), sizeof disks - strlen (disks), "%s%s",
                i ? ", " : "", gf->disks[i].target);
    if (gf->nr_fs == 0)
      vms_set_error (ENOENT, "no filesystem found on the disks of VM \"%s\" in "
                     "backup %s (%s): nothing to read files from", gf->vm,
                     gf->backup_id, disks);
    else
      vms_set_error (EIO, "no filesystem on the disks of VM \"%s\" in backup %s "
                     "could be mounted (%s on %s: %s)", gf->vm, gf->backup_id,
                     gf->fs[0].type, gf->fs[0].name, gf->fs[0].error);
    return -1;
  }
  return 0;
}

/* The backup's disks of the VM, copied out of the manifest. */
static int
guestfiles_load_disks (const struct vms_guest_files_options *o,
                       struct guestfiles_disk **out, size_t *nr)
{
  CLEANUP (vms_repo_close) vms_repo *repo = NULL;
  CLEANUP (vms_manifest_free) vms_manifest *m = NULL;
  CLEANUP_FREE struct vms_vm_disk *d = NULL;
  struct guestfiles_disk *disks;
  int n;

  *out = NULL;
  *nr = 0;
  if (o->repo_dir == NULL || o->backup_id == NULL || o->vm == NULL) {
    vms_set_error (EINVAL, "name a repository, a backup and a VM");
    return -1;
  }
  if ((repo = vms_repo_open (o->repo_dir, 0)) == NULL ||
      (m = vms_manifest_open (repo, o->backup_id)) == NULL ||
      (n = vms_manifest_vm_disks (m, o->vm, &d)) < 0)
    return -1;
  if ((disks = calloc ((size_t) n, sizeof *disks)) == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  for (int i = 0; i < n; i++)
    if ((disks[i].target = strdup (d[i].target)) == NULL) {
      guestfiles_free_disks (disks, (size_t) i);
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  *out = disks;
  *nr = (size_t) n;
  return 0;
}

void
guestfiles_free_disks (struct guestfiles_disk *disks, size_t n)
{
  if (disks == NULL)
    return;
  for (size_t i = 0; i < n; i++) {
    vms_repo_export_close (disks[i].export);
    free (disks[i].target);
  }
  free (disks);
}

int
vms_guest_files_check (const struct vms_guest_files_options *o)
{
  struct guestfiles_disk *disks;
  size_t n;

  if (guestfiles_load_disks (o, &disks, &n) == -1)
    return -1;
  guestfiles_free_disks (disks, n);
  return 0;
}

vms_guest_files *
vms_guest_files_open (const struct vms_guest_files_options *o)
{
  vms_guest_files *gf;
  char appliance[4096];

  if ((gf = calloc (1, sizeof *gf)) == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  if (guestfiles_load_disks (o, &gf->disks, &gf->nr_disks) == -1 ||
      (gf->vm = strdup (o->vm)) == NULL ||
      (gf->backup_id = strdup (o->backup_id)) == NULL)
    goto fail;

  /* Each disk as a read-only NBD export of the repository. */
  for (size_t i = 0; i < gf->nr_disks; i++) {
    struct vms_repo_export_options eo = {
      .repo_dir = o->repo_dir,
      .backup_id = o->backup_id,
      .select = { .vm = o->vm, .disk = gf->disks[i].target },
    };
    if ((gf->disks[i].export = vms_repo_export_open (&eo)) == NULL)
      goto fail;
  }

  if ((gf->g = guestfs_create ()) == NULL) {
    vms_set_error (errno ? errno : ENOMEM, "cannot create a libguestfs handle");
    goto fail;
  }
  guestfs_set_error_handler (gf->g, NULL, NULL);
  /* direct: QEMU runs as we do and reaches the exports' private sockets
   * (the libvirt backend would run it as another user). */
  if (guestfs_set_backend (gf->g, "direct") == -1 ||
      (getenv ("LIBGUESTFS_PATH") == NULL &&
       guestfiles_appliance (appliance, sizeof appliance) &&
       guestfs_set_path (gf->g, appliance) == -1)) {
    guestfiles_fail (gf, "setting up libguestfs");
    goto fail;
  }
  for (size_t i = 0; i < gf->nr_disks; i++) {
    CLEANUP_FREE char *server = NULL;
    const char *servers[2] = { NULL, NULL };
    if (asprintf (&server, "unix:%s",
                  vms_repo_export_socket (gf->disks[i].export)) == -1) {
      vms_set_error (ENOMEM, "out of memory");
      goto fail;
    }
    servers[0] = server;
    if (guestfs_add_drive_opts (gf->g, "",
                                GUESTFS_ADD_DRIVE_OPTS_READONLY, 1,
                                GUESTFS_ADD_DRIVE_OPTS_FORMAT, "raw",
                                GUESTFS_ADD_DRIVE_OPTS_PROTOCOL, "nbd",
                                GUESTFS_ADD_DRIVE_OPTS_SERVER, servers,
                                -1) == -1) {
      char what[300];
      snprintf (what, sizeof what, "adding disk %s", gf->disks[i].target);
      guestfiles_fail (gf, what);
      goto fail;
    }
  }
  vms_debug ("launching the libguestfs appliance for %zu disk(s)", gf->nr_disks);
  if (guestfs_launch (gf->g) == -1) {
    guestfiles_fail (gf, "the libguestfs appliance did not start (a host "
                     "without a kernel in /boot needs one built by "
                     "guestfs-appliance.sh; where KVM does not work, "
                     "LIBGUESTFS_BACKEND_SETTINGS=force_tcg; see "
                     "docs/file-restore.md)");
    goto fail;
  }
  if (guestfiles_find_filesystems (gf) == -1)
    goto fail;
  return gf;

fail:
  {
    /* Keep the first error over what closing may say. */
    char *err = strdup (vms_get_error () ? vms_get_error () : "failed");
    int e = vms_get_errno ();
    vms_guest_files_close (gf);
    vms_set_error (e ? e : EIO, "%s", err ? err : "failed");
    free (err);
  }
  return NULL;
}

void
vms_guest_files_close (vms_guest_files *gf)
{
  if (gf == NULL)
    return;
  if (gf->g) {
    guestfs_shutdown (gf->g);
    guestfs_close (gf->g);
  }
  for (size_t i = 0; i < gf->nr_fs; i++) {
    free ((char *) gf->fs[i].name);
    free ((char *) gf->fs[i].device);
    free ((char *) gf->fs[i].type);
    free ((char *) gf->fs[i].label);
    free ((char *) gf->fs[i].error);
  }
  free (gf->fs);
  free (gf->read_errors);
  guestfiles_free_disks (gf->disks, gf->nr_disks);
  free (gf->vm);
  free (gf->backup_id);
  free (gf);
}

size_t
vms_guest_files_fs_count (const vms_guest_files *gf)
{
  return gf->nr_fs;
}

const struct vms_guest_fs *
vms_guest_files_fs (const vms_guest_files *gf, size_t i)
{
  return i < gf->nr_fs ? &gf->fs[i] : NULL;
}

int
vms_guest_path_check (const char *path)
{
  size_t len = strlen (path);
  const char *c = path;

  if (path[0] != '/') {
    vms_set_error (EINVAL, "%s: a path in the guest starts with '/' and a "
                   "filesystem's name (/vda1/etc/hosts)", path);
    return -1;
  }
  if (len > 4095) {
    vms_set_error (ENAMETOOLONG, "a path in the guest has at most 4095 bytes");
    return -1;
  }
  for (const char *p = path; *p; p++)
    if ((unsigned char) *p < 0x20 || *p == 0x7f) {
      vms_set_error (EINVAL, "%s: a control character in a path; get the "
                     "directory holding the file instead", path);
      return -1;
    }
  while (*c) {
    size_t n;
    c += strspn (c, "/");
    n = strcspn (c, "/");
    if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) {
      vms_set_error (EINVAL, "%s: no '.' or '..' in a path in the guest", path);
      return -1;
    }
    c += n;
  }
  return 0;
}

const struct vms_guest_fs *
guestfiles_path_fs (vms_guest_files *gf, const char *path)
{
  const char *first = path + strspn (path, "/");
  size_t n = strcspn (first, "/");
  char names[1024] = "";

  for (size_t i = 0; i < gf->nr_fs; i++) {
    if (gf->fs[i].error)
      continue;
    if (strlen (gf->fs[i].name) == n && strncmp (gf->fs[i].name, first, n) == 0)
      return &gf->fs[i];
    snprintf (names + strlen (names), sizeof names - strlen (names), "%s/%s",
              *names ? ", " : "", gf->fs[i].name);
  }
  const char *why = guestfiles_read_errors (gf);
  vms_set_error (why ? EIO : ENOENT, "%s: VM \"%s\" has no filesystem \"%.*s\" "
                 "(its filesystems: %s)%s%s", path, gf->vm, (int) n, first, names,
                 why ? "; the backup could not be read whole, which may hide "
                 "one: " : "", why ? why : "");
  return NULL;
}

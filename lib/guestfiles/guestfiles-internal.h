/* lib/guestfiles internals shared by its files. */
#ifndef VMS_GUESTFILES_INTERNAL_H
#define VMS_GUESTFILES_INTERNAL_H

#include <stddef.h>

#include <guestfs.h>

#include "guestfiles.h"
#include "vmshadow/datapath.h"

struct guestfiles_disk {
  char *target;                 /* "vda" */
  vms_repo_export *export;      /* its NBD export, while open */
};

struct vms_guest_files {
  guestfs_h *g;
  char *vm, *backup_id;
  struct guestfiles_disk *disks; /* in the order added: sda, sdb, … */
  size_t nr_disks;
  struct vms_guest_fs *fs;
  size_t nr_fs;
  /* What the exports could not serve (their log's error lines: a damaged
   * or missing chunk, with its range), "; "-joined: the why of an I/O
   * error inside the appliance. */
  char *read_errors;
};
/* The exports' read errors so far (gf->read_errors), NULL if none. */
extern const char *guestfiles_read_errors (vms_guest_files *gf);

/* A NULL-terminated list of strings as libguestfs returns them. */
extern void guestfiles_free_strings (char **l);
#define CLEANUP_FREE_STRINGS __attribute__ ((cleanup (guestfiles_cleanup_strings)))
static inline void
guestfiles_cleanup_strings (char ***l)
{
  guestfiles_free_strings (*l);
}
extern void guestfiles_free_disks (struct guestfiles_disk *disks, size_t n);

/* Set our error from libguestfs's last one: "what: its message". -1. */
extern int guestfiles_fail (vms_guest_files *gf, const char *what);

/* The mounted filesystem a valid path is in, or NULL with the error set
 * (naming the filesystems there are). */
extern const struct vms_guest_fs *guestfiles_path_fs (vms_guest_files *gf,
                                                      const char *path);

#endif /* VMS_GUESTFILES_INTERNAL_H */

/* The restore plan of the VM writer (issue 20, "safe restore"): what a
 * restore changes on the host, decided before anything changes.
 *
 * vm-restore-plan.c holds the pure part: from the backup's documents and
 * the options, which VMs and files (vm_restore_new); from those and a
 * snapshot of the host (the domains libvirt knows now, which files exist),
 * every change: which VMs are turned off and undefined, which files are
 * written where, what is kept aside, the clone's new name, UUID and file
 * names, and every reason to refuse (vm_restore_plan). No libvirt call:
 * the unit tests (test-vm-restore-plan.c) drive it with made-up hosts.
 * vm-restore.c gathers the host from libvirt and executes the plan.
 */
#ifndef VMS_VM_RESTORE_PLAN_H
#define VMS_VM_RESTORE_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "vmshadow/document.h"

#include "vector.h"
#include "vm-writer.h"

/* The role of a file of a VM in the backup. */
enum { RS_DISK, RS_CONFIG, RS_LIVE_CONFIG, RS_STATE, RS_OTHER };

struct rs_file {
  char *path;                   /* as backed up */
  char *target;                 /* where the requester writes it */
  char *first_target;           /* … before the plan moved it (keep) */
  char *disk_target;            /* "vda" (disks), or NULL */
  enum vms_file_kind kind;
  int role;                     /* RS_* */
  /* Set by vm_restore_plan: */
  int exists;                   /* something is at target now */
  char *aside;                  /* --existing rename: moved here first */

  /* Issue 11: a disk that is no file. */
  int device;                   /* RS_DEV_FILE, RS_DEV_BLOCK, RS_DEV_NETWORK */
  char *format;                 /* as backed up ("raw", "qcow2"), or NULL */
  uint64_t size;                /* its bytes in the backup; 0: not known */
  char *thin_pool;              /* an LV that was thin at backup: its pool */
  /* What is there now, looked at (vm-restore.c) before vm_restore_plan,
   * for a device written in place: dev_probed set; dev_size its bytes,
   * or -1 when it does not exist; dev_error why it cannot be used (a
   * gone block device without one is an LV that can be made again). */
  int dev_probed;
  int64_t dev_size;
  char *dev_error;
  /* Set by vm_restore_plan: written into the device itself (into); an RBD
   * image or a logical volume made again first, of size bytes (recreate). */
  int into, recreate;
};
enum { RS_DEV_FILE, RS_DEV_BLOCK, RS_DEV_NETWORK };

/* One change of the plan, in the order it happens. */
struct rs_change {
  char *action;                 /* "turn-off", "undefine", "write", … */
  char *object;                 /* what it acts on: a VM, a path */
  char *detail;                 /* more, or NULL */
};
DEFINE_VECTOR_TYPE (change_vector, struct rs_change);

struct rs_vm {
  char *uuid;                   /* as backed up */
  char *name;                   /* as backed up */
  char *define_name;            /* as defined now */
  char *define_uuid;            /* as defined now: uuid, or the clone's */
  int clone;                    /* --name: a new VM beside the original */
  char *method, *state_before;
  struct rs_file *files;
  size_t nr_files;
  char *dir;                    /* <state_dir>/<define_uuid>/restore */

  /* The stored domain XML, when the requester handed it over
   * (vms_vm_restore_set_config); then a copy's XML is made by the plan
   * (copy_xml), and its new MACs and paths are changes of the plan. */
  char *config_xml;
  char *copy_xml;

  /* Instant recovery (issue 16): the disks run from these overlays
   * (vms_vm_restore_set_instant; strings owned), and the final definition
   * goes to inst_final_xml; inst_live while the overlay XML is made. */
  struct vms_vm_instant_disk *inst;
  size_t nr_inst;
  char *inst_final_xml;
  int inst_live;

  /* Set by vm_restore_plan: the VM of this UUID libvirt knows now. */
  int present, active, persistent;
  change_vector changes;

  /* Its Pacemaker VirtualDomain resource (issue 18, R22; vm-restore.c):
   * disabled at PreRestore (target-role Stopped, its previous nvpair and
   * value kept to put back), its config file rewritten and the resource
   * enabled at PostRestore. Never for a copy. */
  char *cl_id, *cl_config;
  char *cl_role_nvpair, *cl_role_value;
  int cl_role_unchanged, cl_disabled;

  /* The outcome. */
  int defined, resumed;
  const char *state;
  char *error;
  string_vector notes, disconnected;
};

struct vms_vm_restore {
  struct vm_writer *w;
};

enum rs_existing { RS_EXISTING_REFUSE, RS_EXISTING_RENAME, RS_EXISTING_KEEP };

struct vm_restore {
  struct vms_vm_restore handle; /* what the requester holds */
  char *to;
  char *new_name;
  int start, replace;
  int write_devices;            /* issue 11: block/network disks in place */
  enum rs_existing existing;
  string_vector map_old, map_new;
  char *state_dir;
  char *stamp;                  /* suffix of kept-aside files */
  struct rs_vm *vms;
  size_t nr_vms;
  int planned;                  /* vm_restore_plan succeeded */
};

/* The plan from the documents and the options (no host yet): the VMs
 * selected, their files and targets, the clone's identity. NULL with the
 * error set (a VM asked for is not in the backup, --name with several VMs,
 * two files on one path, a bad option). */
extern struct vm_restore *
vm_restore_new (const struct vms_vm_restore_options *o,
                const vms_document *bcd, const vms_document *md);
extern void vm_restore_free (struct vm_restore *r);

/* A domain libvirt knows now. */
struct vm_host_domain {
  const char *name, *uuid;
  int active, persistent;
  const char *const *paths;     /* its disk images and NVRAM */
  size_t nr_paths;
};
struct vm_host {
  const struct vm_host_domain *doms;
  size_t nr_doms;
  /* 1 if something (a file, a link, anything) is at path. */
  int (*exists) (void *opaque, const char *path);
  void *opaque;
};

/* Decide every change against the host (may be called again: it starts
 * afresh). Returns 0, or -1 with the error set to every reason to refuse,
 * joined by "; " (the restore must then change nothing). */
extern int vm_restore_plan (struct vm_restore *r, const struct vm_host *host);

/* The clone's name for a file (disks: NEW-<target>.<ext> in the original
 * directory or --to; others: the old name or UUID in the path replaced).
 * Exposed for the tests. Caller frees; NULL on ENOMEM. */
extern char *vm_restore_clone_path (const struct vm_restore *r,
                                    const struct rs_vm *vm,
                                    const struct rs_file *f);

/* The domain XML of a copy (--name) of vm: vm_config_rewrite with the
 * plan's files, name and UUID; what changed appended to notes (may be
 * NULL). Caller frees; NULL with the error set. */
extern char *vm_restore_copy_xml (const struct rs_vm *vm, const char *xml,
                                  string_vector *notes);

/* A random UUID (version 4) in out. Returns 0 or -1 with the error set. */
extern int vm_random_uuid (char out[37]);

#endif /* VMS_VM_RESTORE_PLAN_H */

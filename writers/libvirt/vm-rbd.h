/* RBD snapshots and rbd diff for a stopped VM's RBD disks (issue 11, R7,
 * R12; docs/vm-writer.md "RBD disks of stopped VMs").
 *
 * At each backup of a stopped VM, every raw RBD disk gets a snapshot named
 * after the backup (VMS_VM_CHECKPOINT_PREFIX + session id), taken before
 * anything is read, and the disk is read from that snapshot. When the
 * image holds an earlier snapshot of ours, librbd's diff since it names
 * what changed (rbd_diff_iterate2: whole objects by the object map when
 * the image has fast-diff and object-map and neither is flagged invalid,
 * else the exact diff), and only that is read; the requester samples the
 * rest against the earlier backup before trusting it
 * (docs/changed-block-tracking.md). Only snapshots with our prefix are
 * ever removed.
 *
 * librbd and librados, no rbd CLI. Connection as QEMU's rbd driver makes
 * it from the same domain XML: the monitors of <host>, the <config file>
 * (else Ceph's default search), the <auth username> and the libvirt
 * secret's key (raw bytes, as libvirt keeps it; base64-encoded here).
 */
#ifndef VMS_VM_RBD_H
#define VMS_VM_RBD_H

#include <stddef.h>
#include <stdint.h>

#include "vm-config.h"

struct vm_rbd_extent {
  uint64_t offset, length;
};

/* What vm_rbd_snapshot found and did for one disk. */
struct vm_rbd_diff {
  char *base;                   /* the snapshot diffed from; NULL: read in full */
  char *how;                    /* "fast-diff, whole objects of 4 MiB" / "exact diff" */
  char *full_reason;            /* base NULL: why the disk is read in full */
  size_t nr_extents;            /* base set: what changed since it, sorted */
  struct vm_rbd_extent *extents;
  uint64_t size;                /* the image's size at the new snapshot */
};
extern void vm_rbd_diff_clear (struct vm_rbd_diff *r);

/* Whether vmshadow can snapshot and diff this disk: a raw RBD disk that
 * names no snapshot itself. 0 with *why (static text) when not. */
extern int vm_rbd_disk_eligible (const struct vm_disk *d, const char **why);

/* The disk as an RBD disk of its snapshot snap (the same vm_disk with
 * "@snap" on its source name), for vm_disk_qemu_json. Caller frees the
 * name with free (out->source_name); the rest is borrowed from d. */
extern int vm_rbd_disk_at_snapshot (const struct vm_disk *d, const char *snap,
                                    struct vm_disk *out);

/* Take snapshot snap of the disk's image (key_file: the libvirt secret's
 * value, or NULL), then: if the image holds a snapshot of ours other than
 * snap — prefer (the name the last backup recorded) when it is there,
 * else the newest by snapshot id — the extents changed between it and
 * snap. An image with no earlier snapshot of ours gets r->full_reason.
 * Returns 0, or -1 with the error set (the snapshot is then not left
 * behind, unless its removal failed too: the message says so). */
extern int vm_rbd_snapshot (const struct vm_disk *d, const char *key_file,
                            const char *snap, const char *prefer,
                            struct vm_rbd_diff *r);

/* Remove from the disk's image its snapshots with our prefix: with keep,
 * every one but keep (after a backup: they are no base any more); else
 * only the one named only (an aborted backup's). Others' snapshots are
 * never touched. Returns 0, or -1 with the error set naming what was left. */
extern int vm_rbd_remove_snapshots (const struct vm_disk *d, const char *key_file,
                                    const char *keep, const char *only);

/* Whether the disk's Ceph cluster can be reached and its pool (and
 * namespace) opened, as vm_rbd_snapshot would: 0, or -1 with the error set
 * ("cannot open the Ceph pool \"P\": No such file or directory" when the
 * pool is gone). A restore asks this of an RBD image that is gone before
 * it plans to make it again (issue 11: no VM half-restored). */
extern int vm_rbd_pool_check (const struct vm_disk *d, const char *key_file);
/* Write extents as text lines "OFFSET LENGTH\n" (decimal) to path, mode
 * 0600, for the requester (struct vms_access .changed_extents with
 * VMS_ACCESS_CHANGED_LIST). Returns 0 or -1 with the error set. */
extern int vm_rbd_write_extents (const char *path, const struct vm_rbd_diff *r);

/* Merge sorted, possibly touching or overlapping extents in place (pure,
 * unit-tested). Returns the new count. */
extern size_t vm_rbd_merge_extents (struct vm_rbd_extent *e, size_t n);

#endif

/* vmshadow — the VM writer (the Hyper-V VSS writer analog, R7–R13) and its
 * companion, the qemu provider, for the VMs of a libvirt/KVM host
 * (docs/vm-writer.md).
 *
 * The requester adds both with one call; they share state in-process (the
 * provider hands out the NBD exports of the backup jobs the writer began):
 *
 *   struct vms_vm_options o = { .uri = NULL, .vms = NULL,
 *                               .method = VMS_VM_METHOD_AUTO };
 *   if (vms_libvirt_add (coord, &o) == -1) die (vms_get_error ());
 *
 * Each domain is one component named by its UUID; the attributes below
 * (VMS_VM_ATTR_*) tell the requester how each VM was captured and how to
 * read its disks.
 */
#ifndef VMSHADOW_VM_WRITER_H
#define VMSHADOW_VM_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "vmshadow/coordinator.h"

#ifdef __cplusplus
extern "C" {
#endif

/* R7: fixed identity. */
#define VMS_VM_WRITER_NAME "libvirt-vm"
#define VMS_VM_WRITER_ID   "d9857ac8-3081-4425-b43f-8530ac9a82d6"
#define VMS_QEMU_PROVIDER_NAME "qemu"
#define VMS_QEMU_PROVIDER_ID   "8519a26e-a287-44dd-9433-301e6a445218"

#define VMS_VM_DEFAULT_URI       "qemu:///system"
#define VMS_VM_DEFAULT_STATE_DIR "/var/lib/vmshadow/vm"
#define VMS_VM_DEFAULT_RUN_DIR   "/run/vmshadow"
/* Every checkpoint vmshadow makes is named "vmshadow-<session-id>"; it
 * never touches a checkpoint without this prefix. */
#define VMS_VM_CHECKPOINT_PREFIX "vmshadow-"

enum vms_vm_method {
  VMS_VM_METHOD_AUTO,           /* online where R9 allows, else the fallback */
  VMS_VM_METHOD_ONLINE,         /* online, or fail Identify naming the VM */
  VMS_VM_METHOD_SAVED_STATE,    /* saved state for every running/paused VM */
  VMS_VM_METHOD_CRASH_CONSISTENT, /* the backup job with no guest freeze and
                                   no pause, for every running/paused VM */
};

/* What auto does with a running or paused VM that R9 keeps from an online
 * backup (issue 20). The default (0) never pauses a VM. */
enum vms_vm_fallback {
  VMS_VM_FALLBACK_CRASH_CONSISTENT,
  VMS_VM_FALLBACK_SAVED_STATE,
  VMS_VM_FALLBACK_FAIL,         /* Identify fails naming the VM and why */
};

/* Guest processing (issue 17; docs/guest-writers.md): whether the guest
 * side (guest/vmshadow-guest, run through the agent) and its guest writers
 * take part in an online capture. */
enum vms_vm_guest {
  VMS_VM_GUEST_OFF,             /* no: the agent's fsfreeze alone (its hooks
                                   may still veto) */
  VMS_VM_GUEST_TRIED,           /* yes where it answers; a veto or no answer
                                   captures the VM crash-consistent instead,
                                   saying so */
  VMS_VM_GUEST_REQUIRED,        /* yes; a veto or no answer fails the set */
};
/* "off", "tried", "required"; -1 for an unknown name. */
extern const char *vms_vm_guest_name (enum vms_vm_guest g);
extern int vms_vm_guest_from_name (const char *name);
/* The guest side's program in the guest. */
#define VMS_VM_GUEST_PROGRAM "/usr/sbin/vmshadow-guest"

/* "auto", "online", "saved-state", "crash-consistent"; -1 for an unknown
 * name. */
extern const char *vms_vm_method_name (enum vms_vm_method m);
extern int vms_vm_method_from_name (const char *name);
/* "crash-consistent", "saved-state", "fail"; -1 for an unknown name. */
extern const char *vms_vm_fallback_name (enum vms_vm_fallback f);
extern int vms_vm_fallback_from_name (const char *name);

/* The per-VM policy in a domain's <metadata> (docs/vm-writer.md): it wins
 * over the options for that VM. */
#define VMS_VM_POLICY_NS "https://vmshadow.org/xmlns/1"

struct vms_vm_options {
  /* libvirt URI; NULL means VMS_VM_DEFAULT_URI. */
  const char *uri;
  /* NULL-terminated names or UUIDs of the VMs to back up; NULL means every
   * domain of the connection. A name that matches no domain makes Identify
   * fail naming it. */
  const char *const *vms;
  enum vms_vm_method method;
  /* Non-zero: ignore previous checkpoints (every disk read in full). */
  int full;
  /* Where per-VM files go: <state_dir>/<uuid>/domain.xml, domain-live.xml,
   * firmware copies and the backup jobs' scratch files (directories 0700).
   * NULL means $VMSHADOW_VM_STATE_DIR if set and non-empty, else
   * VMS_VM_DEFAULT_STATE_DIR. R9: for online backup it must be on the same
   * filesystem as the VM's disk images. */
  const char *state_dir;
  /* Where the NBD Unix sockets go (<run_dir>/<short-id>/<n>.sock, kept
   * short: ≤ 107 bytes). NULL means VMS_VM_DEFAULT_RUN_DIR. */
  const char *run_dir;
  /* What auto falls back to (for VMs whose metadata names none). */
  enum vms_vm_fallback fallback;
  /* Issue 17: a consistency group. The capture threads meet at two
   * barriers: every VM held (guest frozen, or paused) before the first
   * backup job begins, every job begun before the first guest thaws; one
   * failure fails the group (every guest thawed, no job left). */
  int group;
  /* Issue 17: guest processing for VMs whose metadata names none. */
  enum vms_vm_guest guest;
};

/* Add the VM writer and the qemu provider to coord. The options are copied.
 * Nothing connects to libvirt yet: Identify does, and fails naming the URI
 * when libvirtd does not answer. Returns 0, or -1 with the error set. */
extern int vms_libvirt_add (vms_coordinator *coord,
                            const struct vms_vm_options *opts);

/* ---- Outside a session (the requester's own steps; issue 20) ---- */

/* The names of every domain at uri (NULL: VMS_VM_DEFAULT_URI), in name
 * order, NULL-terminated in *names (malloc'd, each name too), their number
 * in *n. For `backup --each --all`: one consistency set per VM. 0, or -1
 * with the error set (libvirt not reachable). */
extern int vms_libvirt_list_vms (const char *uri, char ***names, size_t *n);

/* Tags an administrator gives a VM for configured jobs (issue 19, docs/
 * configuration.md): one element <tags> in the domain's <metadata>, in
 * namespace VMS_VM_TAGS_NS (its own, so that setting tags never replaces
 * the <vmshadow:policy/> of VMS_VM_POLICY_NS: libvirt keeps one element
 * per namespace), its text the tags separated by blanks or commas:
 *   virsh metadata VM --uri https://vmshadow.org/xmlns/tags/1 \
 *     --key vmshadow-tags --set '<tags>nightly db</tags>' --config --live */
#define VMS_VM_TAGS_NS "https://vmshadow.org/xmlns/tags/1"
#define VMS_VM_TAG_MAX 64

/* Whether tag is a tag: 1 to VMS_VM_TAG_MAX of A-Z a-z 0-9 . _ + - (and
 * not starting with '.' or '-'). */
extern int vms_vm_tag_valid (const char *tag);

/* The tags of xml (the element libvirt gives for VMS_VM_TAGS_NS): exactly
 * one element named tags, no attributes of its own, no child elements,
 * each word a valid tag. *tags NULL-terminated (malloc'd, each too; an
 * empty element gives an empty list). 0, or -1 with the error set saying
 * what is wrong (EINVAL; never echoing raw bytes). */
extern int vms_vm_tags_parse (const char *xml, size_t len, char ***tags);

/* A VM of the host and its tags. */
struct vms_host_vm {
  char *name;
  char **tags;                  /* NULL-terminated; empty when it has none */
  char *tags_error;             /* why its tags cannot be read (tags empty
                                   then), or NULL */
};

/* As vms_libvirt_list_vms, with each VM's tags (read from its current
 * definition: the live one of a running VM). A VM whose tags are
 * malformed or cannot be read has tags_error set; it is no error of the
 * list. 0, or -1 with the error set. */
extern int vms_libvirt_list_vms_tags (const char *uri, struct vms_host_vm **vms,
                                      size_t *n);
extern void vms_host_vms_free (struct vms_host_vm *vms, size_t n);

/* Wait until no VM of vms (NULL-terminated names or UUIDs; NULL: every
 * running VM at uri) has a job of another tool: a libvirt domain job (a
 * backup, a migration, a save, a dump, a snapshot) or a block job on one
 * of its disks (copy, commit, pull). Polls once a second for up to wait_ms
 * (0: only look). 0 when none is left; -1 with the error naming the VM and
 * the job (EBUSY), or why libvirt could not be asked. Touches no VM. A VM
 * that is not there is skipped (Identify names it). */
extern int vms_libvirt_wait_jobs (const char *uri, const char *const *vms,
                                  int64_t wait_ms);

/* Issue 17: push the guest side into the running VM (name or UUID)
 * through its agent: the local static program (guest/vmshadow-guest) to
 * VMS_VM_GUEST_PROGRAM (written aside, then moved into place), the guest
 * writers directory /etc/vmshadow/guest-writers.d, and a link making it
 * qemu-ga's fsfreeze hook in /etc/qemu/fsfreeze-hook.d (the agent must run
 * with -F). Then runs "vmshadow-guest version": *answer (malloc'd) is what
 * it printed. 0, or -1 with the error set. */
extern int vms_libvirt_guest_install (const char *uri, const char *vm,
                                      const char *program, char **answer);

/* One decision, as a line of text (borrowed for the call). */
typedef void (*vms_vm_report_fn) (void *opaque, const char *line);

/* After a prune: delete the vmshadow checkpoints (VMS_VM_CHECKPOINT_PREFIX;
 * never another tool's) of the VM with this UUID that no remaining backup
 * needs, and so their qcow2 bitmaps. Kept: every name in needed
 * (NULL-terminated: the checkpoints the repository's catalogue names as
 * where a disk's next incremental starts), and per disk the newest
 * checkpoint with a bitmap on it. Oldest first, so a deleted checkpoint's
 * changes merge into a kept parent. With dry_run nothing is deleted. Each
 * decision goes to report. Returns how many were (or would be) deleted; a
 * VM not defined at uri has none (0); -1 with the error set, ECONNREFUSED
 * when libvirt cannot be reached. */
extern int vms_libvirt_prune_checkpoints (const char *uri, const char *uuid,
                                          const char *const *needed, int dry_run,
                                          vms_vm_report_fn report, void *opaque);

/* ---- Component attributes the writer sets (the requester relies on
 * them; all strings unless said otherwise) ---- */

/* Set at Identify (copied into the backup components document): */
#define VMS_VM_ATTR_VM_NAME       "vm_name"
#define VMS_VM_ATTR_STATE_BEFORE  "state_before"   /* running|paused|shut-off|… */
#define VMS_VM_ATTR_METHOD        VMS_ATTR_METHOD  /* online|saved-state|offline */
#define VMS_VM_ATTR_METHOD_REASON "method_reason"  /* why (R9), in words */
/* The policy that chose the method, and where each half came from: */
#define VMS_VM_ATTR_POLICY        "policy"         /* "method=auto fallback=crash-consistent" */
#define VMS_VM_ATTR_POLICY_SOURCE "policy_source"  /* "options", "metadata", "options and metadata" */
/* Running VMs: what the guest agent said ("answers" or why not). */
#define VMS_VM_ATTR_AGENT         "agent"
/* Issue 18 (R22): the VM is a Pacemaker VirtualDomain resource (set at
 * Identify only then): its id, and the node running it ("" stopped);
 * VMS_ATTR_CLUSTER says it in words. */
#define VMS_VM_ATTR_CLUSTER_RESOURCE "cluster_resource"
#define VMS_VM_ATTR_CLUSTER_NODE     "cluster_node"
/* When auto fell back from online: the R9 conditions that failed. */
#define VMS_VM_ATTR_FALLBACK_REASON "fallback_reason"
/* The most host space the capture can need (int, bytes): every included
 * disk's virtual size in scratch files (copy-before-write copies at most
 * each block once), plus the memory size for a saved state; 0 for a
 * stopped VM. And the directory it goes in. */
#define VMS_VM_ATTR_SCRATCH_BYTES "scratch_bytes"
#define VMS_VM_ATTR_SCRATCH_DIR   "scratch_dir"
/* Issue 17, online VMs with guest processing: the policy ("required",
 * "tried", "off"), what the guest side said at Identify ("answers" or why
 * not), and its guest writers' metadata (a JSON array text: writer file,
 * name, id, component names; R5). */
#define VMS_VM_ATTR_GUEST_POLICY  "guest_policy"
#define VMS_VM_ATTR_GUEST_SIDE    "guest_side"
#define VMS_VM_ATTR_GUEST_WRITERS "guest_writers"
/* Set in PrepareForSnapshot: every guest writer's result per event (a JSON
 * array text) and VMS_ATTR_GUEST_PROCESSING (writer.h), the summary. */
#define VMS_VM_ATTR_GUEST_RESULTS "guest_writer_results"
/* Set in PrepareForSnapshot, in the backup components document: */
#define VMS_VM_ATTR_FREEZE_WINDOW_MS VMS_ATTR_FREEZE_WINDOW_MS /* int; online only */
#define VMS_VM_ATTR_CHECKPOINT    "checkpoint"     /* new checkpoint (online) */
#define VMS_VM_ATTR_PARENT_CHECKPOINT "parent_checkpoint" /* incremental only */
#define VMS_VM_ATTR_PARENT_REDEFINED "parent_redefined" /* set when libvirt had
  forgotten the parent checkpoint (the cluster undefined the domain) and it
  was redefined from the repository's catalogue (issue 18) */
#define VMS_VM_ATTR_BACKUP_TYPE   "backup_type"    /* full|incremental */
#define VMS_VM_ATTR_INCREMENTAL_REASON "incremental_reason" /* why full */
/* Per disk, the key being prefix + the disk's image path (as in the file
 * list): "dirty_context:/var/lib/…/vda.qcow2". */
#define VMS_VM_ATTR_DIRTY_CONTEXT_PREFIX "dirty_context:" /* NBD meta context
  of the changed blocks, e.g. "qemu:dirty-bitmap:backup-vda"; present only
  for disks read incrementally: read only the extents it marks dirty */
#define VMS_VM_ATTR_DISK_TARGET_PREFIX "disk_target:" /* "vda"; set at Identify */
#define VMS_VM_ATTR_THIN_POOL_PREFIX "thin_pool:" /* a disk that is a thin LV:
  its pool, set at Identify, so that a restore making the LV again makes it
  thin (issue 11) */
#define VMS_VM_ATTR_DISK_FULL_REASON_PREFIX VMS_ATTR_FILE_FULL_REASON_PREFIX /* why this disk
  of an incremental backup is read in full (bitmap missing or broken) */


/* ---- Restore (issue 6, R14–R21; docs/restore.md) ----
 *
 * The requester adds the VM writer in restore mode with the documents of
 * the backup (R5), writes every file of each VM to where
 * vms_vm_restore_target says, sets each component's file restore status,
 * and reads the outcome per VM after PostRestore:
 *
 *   r = vms_libvirt_add_for_restore (coord, &ro, bcd, md, nr_md);
 *   s = vms_restore_session_new (coord, bcd, md, nr_md);
 *   vms_session_pre_restore (s);               // VMs off and undefined
 *   … vms_extract (…, vms_vm_restore_target (r, uuid, path), …) …
 *   vms_session_set_restore_status (s, VMS_VM_WRITER_ID, uuid, st);
 *   vms_session_post_restore (s);              // defined, linked, started
 *   vms_vm_restore_result (r, i, &res);
 */
struct vms_vm_restore_options {
  const char *uri;              /* NULL: VMS_VM_DEFAULT_URI */
  /* NULL-terminated names (as backed up) or UUIDs of the backup's VMs to
   * restore; NULL: every VM of the backup. */
  const char *const *vms;
  /* Disks (R19/R20) go into this absolute directory, with a symbolic link
   * at each original path; NULL: back to their original paths. */
  const char *to;
  /* Make a copy of the VM (only one may be restored) under this name: a
   * new UUID, new MAC addresses, new disk files (NEW-<target>.<ext> in the
   * original directories or in to); the original is not touched. */
  const char *new_name;
  /* A VM of the same UUID that exists is replaced (turned off, undefined,
   * its files written over) only with replace; else the restore refuses. */
  int replace;
  /* Issue 11: a disk that is a host block device or a network disk (RBD,
   * iSCSI, NBD) is written back into that device in place only with
   * write_devices (an RBD image that is gone is made again); else the
   * restore refuses, naming it. With to it becomes a file instead. */
  int write_devices;
  /* With to or new_name, a file at a target: "refuse" (NULL), "rename"
   * (kept aside as PATH.vmshadow-<stamp>) or "keep" (left as it is; the
   * restored file goes beside it under a new name). Never overwritten. */
  const char *existing;
  /* The suffix of kept-aside files; NULL: the time in seconds. */
  const char *stamp;
  /* Start the VMs that come back stopped (online and offline backups);
   * saved-state backups resume anyway. */
  int start;
  /* NULL-terminated "OLD=NEW": interfaces on the libvirt network or bridge
   * OLD are connected to NEW (a libvirt network or a bridge) instead. */
  const char *const *network_map;
  /* As in vms_vm_options: where the configuration files are put back
   * (<state_dir>/<uuid>/restore/). NULL: $VMSHADOW_VM_STATE_DIR or
   * VMS_VM_DEFAULT_STATE_DIR. */
  const char *state_dir;
};

typedef struct vms_vm_restore vms_vm_restore;

/* Add the VM writer in restore mode. Checks what needs no libvirt: that
 * the backup holds VMs, that each VM asked for is in it, --name with one
 * VM, that no two files would land on the same path. Returns a handle
 * owned by coord (valid until vms_coordinator_free), or NULL with the
 * error set. */
extern vms_vm_restore *
vms_libvirt_add_for_restore (vms_coordinator *coord,
                             const struct vms_vm_restore_options *opts,
                             const vms_document *components,
                             const vms_document *const *metadata,
                             size_t nr_metadata);

/* Look at the host (libvirt, the files at the targets) and decide every
 * change (vm-restore-plan.h); nothing changes. Returns 0, or -1 with the
 * error set to every reason the restore refuses (a VM that exists without
 * --replace, a name taken, a file of another VM, a file at a target). The
 * changes are in each VM's result. PreRestore plans again, then executes
 * the plan. */
extern int vms_vm_restore_plan (const vms_vm_restore *r);

/* The stored domain XML of VM i (0 ≤ i < vms_vm_restore_count): its path
 * in the backup (borrowed; NULL if none). The requester reads that file
 * from the repository and hands it over before vms_vm_restore_plan; a
 * copy's (--name) new MACs and paths are then in the plan, and the copy is
 * defined with exactly those. Without it the copy's XML is made at
 * PostRestore from the restored file. Returns 0 or -1 (error set). */
extern const char *vms_vm_restore_config_path (const vms_vm_restore *r,
                                               size_t i);
extern int vms_vm_restore_set_config (const vms_vm_restore *r, size_t i,
                                      const char *xml, size_t len);

/* The size in the backup of file path of VM uuid (the requester hands
 * it over before vms_vm_restore_plan: a device smaller than its disk is
 * refused before anything changes). 0, or -1 (no such file). */
extern int vms_vm_restore_set_size (const vms_vm_restore *r, const char *uuid,
                                    const char *path, uint64_t size);
/* Issue 11: whether file path of VM uuid is written into a device that
 * exists rather than as a file: 0 with *graph (QEMU's writable block
 * graph for vms_extract_into, malloc'd) and *secret_file (malloc'd or
 * NULL; the caller removes it), 0 with *graph NULL for a file, -1 with the
 * error set. An RBD image that is gone is made again here, after
 * PreRestore. */
extern int vms_vm_restore_into (const vms_vm_restore *r, const char *uuid,
                                const char *path, char **graph,
                                char **secret_file);

/* 1 if the VM with this UUID is being restored. */
extern int vms_vm_restore_selected (const vms_vm_restore *r, const char *uuid);
/* Where the requester writes file path of VM uuid; NULL when that VM is
 * not restored or has no such file. Borrowed. */
extern const char *vms_vm_restore_target (const vms_vm_restore *r,
                                          const char *uuid, const char *path);

/* The outcome of one VM, after PostRestore. Strings borrowed from r. */
struct vms_vm_restore_result {
  const char *uuid;
  const char *name;             /* the name it is defined under */
  int defined;                  /* 1: registered with libvirt (R18) */
  const char *state;            /* "running", "paused", "shut-off", or
                                   "not defined" */
  int resumed;                  /* 1: resumed from its saved state */
  const char *error;            /* why it failed, or NULL */
  size_t nr_notes;              /* links made, interfaces connected, … */
  const char *const *notes;
  size_t nr_disconnected;       /* R21: interfaces left disconnected */
  const char *const *disconnected;  /* "MAC: why" */
  size_t nr_changes;            /* the plan: every change, in order
                                   (vms_vm_restore_change) */
};
extern size_t vms_vm_restore_count (const vms_vm_restore *r);
/* Change k of VM i's plan (e.g. "turn-off", "vm \"web\" (uuid)").
 * Strings borrowed from r. */
struct vms_vm_restore_change {
  const char *action;           /* turn-off undefine untouched write overwrite
                                   keep-aside keep link no-link define resume
                                   start */
  const char *object;
  const char *detail;           /* or NULL */
};
extern int vms_vm_restore_change (const vms_vm_restore *r, size_t i, size_t k,
                                  struct vms_vm_restore_change *c);
extern int vms_vm_restore_result (const vms_vm_restore *r, size_t i,
                                  struct vms_vm_restore_result *res);

/* ---- Instant recovery and boot checks (issue 16, R25, R27; vm-instant.c,
 * docs/instant-recovery.md) ---- */

/* QEMU's uid and gid as libvirt's DAC driver runs it (from the host's
 * capabilities); 0:0 when QEMU runs as root. Returns 0 or -1 (error set). */
extern int vms_libvirt_qemu_ids (const char *uri, unsigned *uid, unsigned *gid);

/* One disk that runs from a backup: a qcow2 overlay on the backup's disk
 * served over NBD on a Unix socket. */
struct vms_vm_instant_disk {
  const char *path;             /* as backed up (its file in the backup) */
  const char *overlay;          /* the qcow2 overlay the VM runs from */
  const char *socket;           /* the NBD export of the backup's disk */
  const char *final;            /* where its data goes (the restore target) */
  const char *format;           /* of final: "raw" or "qcow2" */
};

/* In a restore: VM uuid (as backed up) runs from these overlays. Its
 * PostRestore then writes the definition it would have defined (final
 * disks, R18–R21) to final_xml_path, defines the VM on the overlays and
 * starts it (resumes a saved state on them). Before PreRestore. */
extern int vms_vm_restore_set_instant (const vms_vm_restore *r, const char *uuid,
                                       const struct vms_vm_instant_disk *d,
                                       size_t n, const char *final_xml_path);
/* The name and UUID VM uuid (as backed up) is defined under (after
 * vms_vm_restore_plan; a copy's are new). Borrowed. */
extern const char *vms_vm_restore_define_name (const vms_vm_restore *r,
                                               const char *uuid);
extern const char *vms_vm_restore_define_uuid (const vms_vm_restore *r,
                                               const char *uuid);

/* A libxml2 <disk> element (xmlNode *) made to run from overlay, backed by
 * the NBD export on socket. */
extern void vms_vm_instant_disk_xml (void *disk_node, const char *overlay,
                                     const char *socket);

typedef void (*vms_vm_progress_fn) (void *opaque, size_t disk, uint64_t done,
                                    uint64_t total);
/* Move every disk of the running VM uuid from its overlay to its final
 * image (made here, in its format, unless there: a resume) with libvirt's
 * block copy, at most bandwidth bytes/s (0: no limit), and pivot; a copy
 * job already running (a killed run's) is followed (at bandwidth now), a disk already on its
 * final image skipped. Then the persistent definition becomes final_xml.
 * Returns 0, or -1 with the error set: the VM still runs, from the
 * overlays of the disks not moved yet. */
extern int vms_vm_instant_move (const char *uri, const char *uuid,
                                const struct vms_vm_instant_disk *d, size_t n,
                                uint64_t bandwidth, const char *final_xml,
                                vms_vm_progress_fn progress, void *opaque);
/* Roll back: the VM uuid, if it still runs from these overlays (else it is
 * left alone and this fails with EEXIST), has its copy jobs cancelled, is
 * turned off and undefined. 0 when no such VM exists. */
extern int vms_vm_instant_remove (const char *uri, const char *uuid,
                                  const struct vms_vm_instant_disk *d, size_t n);
/* 1 if the VM uuid runs, 0 if not (or not defined), -1 on error. */
extern int vms_vm_instant_running (const char *uri, const char *uuid);
/* Before the move (issue 16): until the guest agent of the running VM
 * uuid answers a guest-ping, at most timeout_ms. 1 when it answered; 0
 * when the VM has no agent channel, stopped, or did not answer in time
 * (the move then starts all the same); -1 on error (libvirt). */
extern int vms_vm_instant_await_agent (const char *uri, const char *uuid,
                                       int64_t timeout_ms);
/* restore --instant --replace (R15): the VM uuid that is about to be
 * replaced, for a rollback to put it back: 1 with *xml (its persistent
 * definition with secure parts, malloc'd; NULL when it is transient) and
 * *running, 0 when there is none, -1 on error. */
extern int vms_vm_instant_existing (const char *uri, const char *uuid,
                                    char **xml, int *running);
/* Define xml again (a rolled-back replace) and start it if start. */
extern int vms_vm_instant_put_back (const char *uri, const char *xml, int start);

/* Boot a throw-away copy of a backed-up VM (R27): its stored XML with a
 * new name, libvirt's new UUID, its disks on overlays over exports, no
 * interface and nothing of the original's; a transient domain, destroyed
 * before this returns. */
struct vms_vm_boot_options {
  const char *uri;
  const char *xml;              /* the stored domain XML */
  const char *name;             /* the copy's name */
  const char *uuid;             /* the copy's UUID */
  const struct vms_vm_instant_disk *disks;  /* path -> overlay, socket */
  size_t nr_disks;
  int timeout_s;                /* for the agent and the probe; 0: 300 */
  const char *probe;            /* "sh -c" command in the guest, or NULL */
};
struct vms_vm_boot_result {
  int64_t agent_ms;             /* start to the agent's first answer */
  int probe_ran;
  int probe_status;             /* its exit status (128+N: signal N) */
};
/* 0 when the guest agent answered (and the probe ran: its status is in
 * res, checked by the caller); -1 with the error set (why the boot did not
 * check out). The domain is gone either way. */
extern int vms_vm_boot_check (const struct vms_vm_boot_options *o,
                              struct vms_vm_boot_result *res);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_VM_WRITER_H */

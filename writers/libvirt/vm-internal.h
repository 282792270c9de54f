/* The VM writer's state, shared by its files (vm-writer.c: identity and
 * events; vm-online.c: the online method; vm-saved-state.c: the saved-state
 * method; vm-guard.c: the guard that undoes a capture if vmshadow dies).
 *
 * Threads: the coordinator calls the writer's callbacks on one thread, one
 * event at a time; the online method runs one helper thread per VM inside
 * PrepareForSnapshot and joins them before returning. The provider only
 * touches the exports registry (qemu-provider.h), which has its own lock.
 */
#ifndef VMS_VM_INTERNAL_H
#define VMS_VM_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include <libvirt/libvirt.h>

#include "vmshadow/writer.h"

#include "fs-util.h"
#include "qemu-provider.h"
#include "vector.h"
#include "vm-cluster.h"
#include "vm-config.h"
#include "vm-writer.h"

/* One VM as Identify saw it, and what this session did to it. */
struct vm_entry {
  virDomainPtr dom;
  char *uuid, *name;
  struct vm_config cfg;
  enum vm_run_state state_before;
  enum vm_method method;
  char *dir;                    /* <state_dir>/<uuid> */
  char *xml_path;               /* <dir>/domain.xml (inactive) */
  char *live_xml_path;          /* <dir>/domain-live.xml, or NULL */
  string_vector tpm_files;      /* swtpm state files found at Identify */
  /* Its Pacemaker VirtualDomain resource (vm-cluster.h, issue 18), or NULL
   * ids: found at Identify. */
  char *cl_id, *cl_node;
  int cl_monitor_scripts, cl_in_maintenance;

  /* This session (reset at BackupShutdown). */
  int selected;
  int frozen;                   /* the guest may be frozen: thaw it */
  int job_started;              /* a backup job runs: end it */
  int job_end_asked;            /* its end was asked for (gather-status) */
  int checkpoint_created;       /* the new checkpoint exists */
  int offline_checked;
  char *checkpoint;             /* "vmshadow-<session-id>" */
  char *previous;               /* the requester's VMS_ATTR_PREVIOUS_CHECKPOINT */
  char *parent;                 /* previous checkpoint, when incremental */
  int parent_redefined;         /* … redefined from the catalogue (issue 18) */
  char *incremental_reason;     /* why full, when not incremental */
  char *socket_dir;             /* <session run dir>/<n> (QEMU's group) */
  char *socket;                 /* NBD Unix socket of the job, in it */
  char *scratch_dir;
  int64_t freeze_ms;
  /* The interval the guest was surely frozen (CLOCK_REALTIME, µs): from
   * the return of the freeze to the call of the thaw; 0 when not. */
  int64_t frozen_from_us, frozen_until_us;
  string_vector full_disks;     /* targets read in full in an incremental */
  string_vector full_reasons;   /* … and why (same order) */
  string_vector secret_files;   /* stopped VM's disk secrets (issue 11),
                                   and its lists of changed extents:
                                   removed at BackupShutdown */
  /* Issue 11: the RBD snapshot this session took of the stopped VM's RBD
   * disks (vm-rbd.h), the disks' targets and their key files ("" for
   * none). At BackupComplete our older snapshots go; at Abort this one. */
  char *rbd_snap;
  string_vector rbd_targets, rbd_keys;
  char *error;                  /* why this VM failed, for the report */
  void *saved_state;            /* the saved-state method's own data */
  void *guard;                  /* the guard's own data */
  /* The cluster (R22), this session: maintenance=true set by us (its
   * previous value in cl_maint_prev), our pin constraint placed. */
  int cl_maint_on, cl_pinned;
  struct vm_cluster_meta_prev cl_maint_prev;

  /* Guest processing (vm-guest.c, issue 17). */
  enum vms_vm_guest guest_policy;
  int guest_active;             /* the guest side answered at Identify */
  int guest_prepared;           /* prepare-backup ran: abort or
                                   backup-complete is due */
  char *guest_note;             /* fell back: why (VMS_ATTR_GUEST_PROCESSING) */
  int guest_hung;               /* a call got no answer in time: no more
                                   calls to it in this session */
  void *guest_results;          /* json_object array: each writer's results */
};

struct vm_writer {
  /* Options (copied). */
  char *uri;
  string_vector wanted;          /* names or UUIDs asked for; empty: all */
  enum vms_vm_method method;
  enum vms_vm_fallback fallback;
  int full;
  int group;                     /* issue 17: one instant (vm-online.c) */
  enum vms_vm_guest guest;       /* issue 17: guest processing (vm-guest.c) */
  char *state_dir;
  char *run_dir;

  virConnectPtr conn;
  struct qemu_exports *exports;
  size_t nr_vms;
  struct vm_entry **vms;

  /* This session. */
  char *session_id;
  char *session_run_dir;        /* <run_dir>/<short-id> */
  int completed;                /* BackupComplete went through */
  void *guard;                  /* the guard process (vm-guard.c), or NULL */
  struct vm_cluster cluster;    /* Pacemaker's view at Identify (issue 18) */

  /* Restore mode (vm-restore.c), or NULL in a backup writer. */
  struct vm_restore *restore;
};

/* The last libvirt error of this thread, in words (never NULL). */
extern const char *vm_virt_error (void);
/* The value of the libvirt secret a network disk's <auth> names, written
 * to <dir>/secret-<target> (0600) for a qemu-nbd or qemu-img of ours: an
 * iSCSI password, a Ceph key's bytes (issue 11). The path (malloc'd; the
 * caller removes the file) or NULL with the error set. */
extern char *vm_secret_file (virConnectPtr conn, const char *dir,
                             const struct vm_disk *d);
/* mkdir -p with mode for the directories it makes. */

/* Make dir (its parent exists) for files QEMU opens or creates itself (the
 * backup job's scratch files, its NBD socket; issue 20): owned by root,
 * group the VM's QEMU group (its DAC label), with mode (0750: enter; 0770:
 * also create). Fails, saying which and what to do, when a directory above
 * does not let QEMU through. */
extern int vm_qemu_dir (const struct vm_entry *vm, const char *dir,
                        mode_t mode);

/* Whether another tool's job runs on dom (vm-host.c): 1 with *why (malloc'd,
 * may be NULL on ENOMEM) naming it, 0 when none, -1 with the error set. A
 * domain job (backup, migration, save, …) or a block job on any disk. */
extern int vm_domain_jobs (virDomainPtr dom, char **why);

/* Copy a small file (firmware state) to dst, mode 0600. */
extern int vm_copy_file (const char *src, const char *dst);

/* Make an empty image of format and virtual size at path (qemu-img create;
 * an existing file is overwritten), mode 0600. */
extern int vm_create_image (const char *path, const char *format,
                            uint64_t size);

/* ---- the online method (vm-online.c) ---- */

/* For every selected online VM, in parallel: freeze the guest, begin the
 * pull-mode backup job with a new checkpoint, thaw (R10). Sets the
 * component attributes and publishes the exports of each VM. Returns 0, or
 * -1 after vms_call_fail naming the VM(s) that failed. */
extern int vm_online_capture (struct vm_writer *w, vms_call *call,
                              struct vm_entry **vms, size_t n);
/* End the VM's backup job (the checkpoint stays). Safe to repeat; returns
 * -1 with vm->error set when the job would not end. */
extern int vm_online_end_job (struct vm_writer *w, struct vm_entry *vm);
/* Ask for the end of the VM's backup job without waiting for it (its
 * export has been read whole): vm_online_end_job then only waits. Returns
 * -1 with vm->error set when libvirt refused. */
extern int vm_online_end_job_begin (struct vm_writer *w, struct vm_entry *vm);
/* Delete the checkpoint this session made (never another). */
extern int vm_online_delete_checkpoint (struct vm_writer *w,
                                        struct vm_entry *vm);
/* Thaw the guest if it may still be frozen. */
extern int vm_online_thaw (struct vm_entry *vm);

/* ---- guest processing (vm-guest.c, issue 17) ----
 * vmshadow-guest in the guest, run through the agent's guest-exec. */
/* Identify of an online VM: its policy (metadata, else the options); with
 * guest processing, the guest writers' metadata into c (R5). 0 (also when
 * off), -1 the guest side does not answer (*why), -2 document error. */
extern int vm_guest_identify (struct vm_writer *w, struct vm_entry *vm,
                              vms_component *c, char **why);
/* "tried" after no answer: the VM is captured crash-consistent, saying so. */
extern int vm_guest_fell_back_at_identify (struct vm_entry *vm,
                                           vms_component *c, const char *why);
/* Before the freeze: prepare-backup (the hook's freeze budget set). -1
 * with *why: a veto (the writer, kind and reason) or no answer. */
extern int vm_guest_prepare (struct vm_entry *vm, int64_t freeze_budget_ms,
                             char **why);
/* After the thaw: the hook's freeze/thaw results; the freeze veto in words
 * (malloc'd) or NULL. */
extern char *vm_guest_read_status (struct vm_entry *vm);
extern void vm_guest_fell_back (struct vm_entry *vm, const char *why);
/* After the commit: backup-complete; -1 with *why when a writer failed. */
extern int vm_guest_complete (struct vm_entry *vm, char **why);
/* On failure: abort (once, if prepare-backup ran). */
extern void vm_guest_abort (struct vm_entry *vm);
/* Set the results and summary attributes. */
extern int vm_guest_record (struct vm_entry *vm, vms_component *c);
extern void vm_guest_reset (struct vm_entry *vm);

/* ---- the saved-state method (vm-saved-state.c) ----
 * R8: the VM is paused, its memory and device state go to a file (a libvirt
 * external memory snapshot, in the save-image format virDomainRestore
 * takes), its disks are captured by a pull-mode backup job begun while it
 * is paused (in vm_online_capture's thread, with the online VMs), and
 * PostSnapshot returns it to its previous state. Functions returning int
 * return 0, or -1 with *why (malloc'd) or the error set. */

/* Identify: name the state file <dir>/memory.state as a component file. */
extern int saved_state_identify (struct vm_writer *w, struct vm_entry *vm,
                                 vms_component *c);
/* PrepareForSnapshot, before the capture threads: check the VM is running
 * or paused, remove an old state file. The caller then hands the VM to
 * vm_online_capture. */
extern int saved_state_prepare (struct vm_writer *w, vms_call *call,
                                struct vm_entry *vm, char **why);
/* In the capture thread, instead of the guest freeze: pause the VM if it
 * runs, write its state file and publish it. The VM stays paused (and its
 * images inactive in QEMU until it runs again). Sets the error. */
extern int saved_state_stop (struct vm_writer *w, struct vm_entry *vm);
/* PostSnapshot: return the VM to state_before; record downtime_ms. */
extern int saved_state_post_snapshot (struct vm_writer *w, vms_call *call,
                                      struct vm_entry *vm, char **why);
/* Abort (maybe twice) and BackupShutdown of an uncommitted backup: resume
 * what we paused, remove the state file (jobs and checkpoints are ended by
 * the online code). */
extern int saved_state_abort (struct vm_writer *w, struct vm_entry *vm,
                              char **why);
/* Free the method's data of an entry (entry_free). */
extern void saved_state_free (struct vm_entry *vm);
/* 1 while the VM is paused by us (not yet returned to its state). */
extern int saved_state_pending (struct vm_entry *vm);
/* BackupShutdown: remove the state file (it is in the repository now) and
 * forget the session. */
extern void saved_state_end (struct vm_writer *w, struct vm_entry *vm);

/* ---- the guard (vm-guard.c, vmshadow-guard.c) ----
 * Guarantees thaw, resume and job end even if vmshadow dies (issue 5).
 * Each hook tells the guard process what is about to happen (before it
 * happens), or that it was undone. Those returning int fail (error set)
 * when the guard cannot be started or reached: the step must not be taken
 * unguarded. */
/* Before the freeze or pause: the job (socket, new checkpoint) that may
 * begin, and for online VMs that the guest may be frozen. */
/* Start the guard ahead, without waiting for its libvirt connection (the
 * first hook that needs it waits): it connects while the capture is
 * prepared (issue 15). A failure is left to that hook to report. */
extern void vm_guard_prestart (struct vm_writer *w);
extern int vm_guard_arm (struct vm_writer *w, struct vm_entry *vm);
extern void vm_guard_job_started (struct vm_writer *w, struct vm_entry *vm);
/* The guest was thawed. */
extern void vm_guard_thawed (struct vm_entry *vm);
/* Before virDomainSuspend of a running VM / after its resume. */
extern int vm_guard_pausing (struct vm_writer *w, struct vm_entry *vm);
extern void vm_guard_resumed (struct vm_entry *vm);
/* A file of this session to remove if vmshadow dies (the state file). */
extern int vm_guard_file (struct vm_writer *w, struct vm_entry *vm,
                          const char *path);
/* Nothing of this VM needs undoing any more. */
extern void vm_guard_disarm (struct vm_writer *w, struct vm_entry *vm);
/* Before our maintenance=true on the VM's resource (prev: what to put
 * back) / after it was put back; before our pin constraint / after its
 * removal (issue 18). */
extern int vm_guard_cluster_maint (struct vm_writer *w, struct vm_entry *vm);
extern void vm_guard_cluster_unmaint (struct vm_entry *vm);
extern int vm_guard_cluster_pin (struct vm_writer *w, struct vm_entry *vm);
extern void vm_guard_cluster_unpin (struct vm_entry *vm);
/* Close the pipe (vm_close); the guard leaves, undoing what is armed. */
extern void vm_guard_close (struct vm_writer *w);

/* ---- cluster resources around a backup (vm-writer.c, issue 18, R22) ----
 * PrepareBackup: pin each selected VM's running resource to this node,
 * and put into maintenance those whose method the cluster could mistake
 * for a failure (saved state, offline, a freeze under monitor scripts).
 * Both are told to the guard first. Returns 0, or -1 with the error set. */
extern int vm_cluster_backup_begin (struct vm_writer *w, struct vm_entry *vm);
/* Lift our maintenance (the VM is back in its state) / also our pin.
 * Return 0, or -1 with the error set (what is left stays with the guard). */
extern int vm_cluster_backup_unmaint (struct vm_writer *w, struct vm_entry *vm);
extern int vm_cluster_backup_end (struct vm_writer *w, struct vm_entry *vm);

/* ---- restore (vm-restore.c, issue 6) ---- */

/* The writer (backup or restore mode) added to coord; restore may be NULL
 * and is owned by the writer from this call on, also on failure. */
extern struct vm_writer *vm_writer_add (vms_coordinator *coord,
                                        const struct vms_vm_options *opts,
                                        struct vm_restore *restore);
/* Connect to libvirt (Identify of a restore session does only this). */
extern int vm_connect (struct vm_writer *w, vms_call *call);
extern int vm_restore_pre (void *data, vms_call *call);
extern int vm_restore_post (void *data, vms_call *call);
extern void vm_restore_free (struct vm_restore *r);

#endif /* VMS_VM_INTERNAL_H */

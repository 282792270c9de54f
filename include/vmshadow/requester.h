/* vmshadow — the requester (R1): a backup or restore session run end to
 * end, for the vmshadow command and for any program linking the library.
 *
 *   backup:  writers and providers in (a coordinator, or the host's own:
 *            vms_requester_host), a stored backup and a report out.
 *   restore: a stored backup and a selection in, a report out.
 *
 * Each run returns a report that owns all its strings; the caller prints
 * it (its fields) or serialises it (vms_*_report_json), then frees it.
 *
 *   struct vms_backup_request rq = { .all_vms = 1 };
 *   struct vms_backup_report *r = vms_requester_backup (repo, &rq);
 *   if (r == NULL) die (vms_get_error ());
 *   printf ("%s\n", vms_outcome_name (r->outcome));
 *   vms_backup_report_free (r);
 */
#ifndef VMSHADOW_REQUESTER_H
#define VMSHADOW_REQUESTER_H

#include <stddef.h>
#include <stdint.h>

#include "vmshadow/api.h"
#include "vmshadow/coordinator.h"
#include "vmshadow/repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Progress of one file being read into the repository (backup) or written
 * out (restore). Called from the calling thread; the strings are borrowed
 * for the call. end is 1 on the last call for a file. */
struct vms_progress {
  const char *writer_id;
  const char *component;
  const char *path;             /* backup: the file; restore: its target */
  uint64_t done, total;         /* bytes */
  int end;
};
typedef void (*vms_requester_progress_fn) (void *opaque,
                                           const struct vms_progress *p);

/* How a run ended (issue 20's exit codes map onto these). */
enum vms_outcome {
  VMS_OUTCOME_SUCCESS,
  VMS_OUTCOME_WARNINGS,         /* stored, but something needs a look (a
                                   writer failed after the commit, disks
                                   were left out: R13; restore: interfaces
                                   left disconnected: R21) */
  VMS_OUTCOME_PARTIAL,          /* some consistency sets failed, others not
                                   (restore: some components failed) */
  VMS_OUTCOME_FAILURE,          /* nothing stored / nothing restored well */
};
/* "success", "warnings", "partial", "failure". */
extern VMS_API const char *vms_outcome_name (enum vms_outcome o);

/* ---- The host's writers and providers ---- */

/* Which writers of this host take part. */
struct vms_host_options {
  /* Exec writers (writers/exec): NULL means $VMSHADOW_WRITERS_DIR if set
   * and non-empty, else vms_default_writers_dir (). */
  const char *writers_dir;
  /* The VMs (the VM writer and its provider), over this libvirt URI (NULL:
   * qemu:///system). They take part when all_vms is set or vms names some
   * (NULL-terminated names or UUIDs); with probe_vms, whenever a URI was
   * given or a socket of libvirtd or virtqemud is there (as `vmshadow
   * writers` does). */
  const char *libvirt_uri;
  int all_vms;
  const char *const *vms;
  int probe_vms;
  /* Leave the host's exec writers out (a job's exec-writers = no, issue
   * 19): only the VMs take part. */
  int no_exec_writers;
  /* How long to wait (milliseconds) for what another tool holds before
   * giving up: vms_requester_backup waits for the repository's writer lock,
   * and for other tools' libvirt jobs on the VMs (another backup, a
   * migration, a save, a block job) before each set's session starts, so
   * before any guest is frozen or paused (the VM writer checks again
   * itself). 0: fail at once, naming what is in the way. */
  int64_t wait_ms;
  /* How running VMs are captured: "auto" (NULL), "online",
   * "crash-consistent", "saved-state" — for the VMs whose domain metadata
   * names no method (docs/vm-writer.md, Methods and policy). */
  const char *method;
  /* Read every disk in full (no incremental). */
  int full;
  /* The repository whose checkpoint catalogue incrementals start from; NULL
   * means every disk is read in full. Borrowed: must outlive the
   * coordinator. */
  vms_repo *catalogue;
  /* What "auto" does with a running or paused VM that cannot be backed up
   * online (R9): "crash-consistent" (NULL: the default, no VM is paused),
   * "saved-state" or "fail" — for the VMs whose metadata names none. */
  const char *fallback;
  /* Issue 17: the VMs of the set are one consistency group: every guest
   * frozen (every VM held) before the first backup job begins, every job
   * begun before the first guest thaws; one failure fails them all. */
  int group;
  /* Issue 17: guest processing of online VMs whose metadata names none:
   * "off" (NULL), "tried" or "required" (docs/guest-writers.md). */
  const char *guest_processing;
};

/* The directory exec writers are loaded from by default. */
extern VMS_API const char *vms_default_writers_dir (void);

/* A coordinator with the host's writers, then its providers (R1): every
 * exec writer, the file provider, and when asked for the VM writer with
 * the qemu provider. NULL with the error set. */
extern VMS_API vms_coordinator *vms_requester_host (const struct vms_host_options *o);

/* Checked before anything changes: can dir be written in, or be made as
 * mkdir -p would? Every part of it that exists is a directory, the
 * directory it is (or would be made in) is writable, and no ".." comes
 * after a part that does not exist yet (mkdir -p would make that part,
 * climb out of it and leave it behind when a later part fails). 0 if so;
 * else -1 and why (a phrase, with the path) in why. */
extern VMS_API int vms_requester_check_dir (const char *dir, char *why, size_t len);

/* Remove what killed runs left outside the repository: the file
 * provider's scratch copies and the NBD directories whose vmshadow process
 * is gone (docs/security.md). Returns how many were removed, or -1 with the
 * error set (what could be removed was). */
extern VMS_API int vms_requester_sweep (void);

/* Issue 17 (docs/guest-writers.md): install the guest side into the
 * running VM vm (name or UUID) at libvirt uri (NULL: qemu:///system)
 * through its guest agent: program (NULL: $VMSHADOW_GUEST_BINARY if set
 * and non-empty, else the installed static vmshadow-guest) becomes the
 * guest's /usr/sbin/vmshadow-guest and qemu-ga's fsfreeze hook, with an
 * empty /etc/vmshadow/guest-writers.d. *answer (malloc'd): what
 * "vmshadow-guest version" printed there. 0, or -1 with the error set. */
extern VMS_API int vms_requester_guest_install (const char *uri, const char *vm,
                                                const char *program, char **answer);

/* ---- Backup ---- */

struct vms_backup_request {
  /* With no open repository given: the repository's directory (NULL:
   * $VMSHADOW_REPO or VMS_REPO_DEFAULT_DIR), made once the writers are
   * loaded and vms_requester_check_dir accepts it. */
  const char *repo_dir;
  /* The writers and providers; NULL means vms_requester_host (&host).
   * A coordinator given stays the caller's. */
  vms_coordinator *coord;
  struct vms_host_options host;
  vms_requester_progress_fn progress;   /* may be NULL */
  void *progress_opaque;
  /* One consistency set per VM (issue 20): each VM (host.vms, or every VM
   * of the host with host.all_vms) is its own session, all or nothing for
   * itself (R12) and its own stored backup, so one VM failing does not
   * sink the others. The host's exec writers form a set of their own,
   * first. The sets run one after the other; the report has one set each.
   * Needs coord NULL. */
  int each;
  /* The share of the chunks a dirty bitmap calls unchanged that every
   * incremental re-reads to check it (issue 21; vms_source.cbt_sample):
   * 0 means $VMSHADOW_CBT_SAMPLE if set, else the data path's default;
   * below 0: none. */
  double cbt_sample;
  /* The configured job this run is (issue 19), or NULL: recorded in each
   * stored backup's manifest attrs as "job", for list and status. */
  const char *job;
};

/* One writer at the end of a set (R4). */
struct vms_writer_report {
  char *name, *id;
  char *state;                  /* "stable", "failed-at-freeze", … */
  enum vms_writer_state writer_state;
  enum vms_failure failure;
  char *message;                /* NULL when none */
};

struct vms_excluded_report {
  char *path, *reason;          /* R13: left out, and why */
};

/* A disk whose dirty bitmap was wrong (issue 21): of the chunks it called
 * unchanged, differed of the sampled ones were not; the disk was read in
 * full in the same session. */
struct vms_cbt_report {
  char *path;
  uint64_t sampled, differed;
};

/* How one disk was read (issue 11): how is "dirty bitmap since CP",
 * "rbd diff since SNAP (fast-diff, whole objects of 4096 KiB)" or "full
 * read"; why says why a disk was read in full (NULL otherwise); sampled:
 * the chunks the tracking called unchanged that were read all the same to
 * check it (docs/changed-block-tracking.md). */
struct vms_read_report {
  char *path, *how, *why;
  uint64_t size, bytes_read, sampled;
};

/* One component of a backup: how it was captured and what was read. */
struct vms_component_report {
  char *writer_id, *writer, *component, *caption;
  /* What the writer says of the capture (generic component attributes,
   * VMS_ATTR_* of document.h): NULL / -1 when the writer says nothing. */
  char *method;
  int64_t freeze_window_ms, downtime_ms;
  /* Issue 17: surely frozen from/until (µs since the epoch; -1: not
   * frozen), and whether it was in the set's consistency group. */
  int64_t frozen_from_us, frozen_until_us;
  int grouped;
  /* Issue 17: how the applications inside took part (guest writers), in
   * words; NULL: not asked. */
  char *guest_processing;
  size_t nr_excluded;
  struct vms_excluded_report *excluded;
  size_t files;
  uint64_t size, bytes_read, bytes_stored;
  int64_t elapsed_ms;
  /* Disks whose changed-block tracking was wrong (makes the outcome
   * VMS_OUTCOME_WARNINGS). */
  size_t nr_cbt_wrong;
  struct vms_cbt_report *cbt_wrong;
  /* Each disk of it: how it was read and why (issue 11). */
  size_t nr_reads;
  struct vms_read_report *reads;
  /* It started from a previous checkpoint (VMS_ATTR_PREVIOUS_CHECKPOINT):
   * an incremental backup, else a full one (issue 19). */
  int incremental;
};

/* One consistency set: one backup session, one stored backup (or none). */
enum vms_set_state {
  VMS_SET_COMPLETE,             /* stored, BackupComplete done everywhere */
  VMS_SET_STORED_WITH_ERRORS,   /* stored; a writer failed at BackupComplete */
  VMS_SET_FAILED,               /* nothing stored (R12) */
};
struct vms_backup_set {
  /* In a run with one set per VM (each): the VM (as asked: name or UUID),
   * or NULL for the set of the host's exec writers. NULL otherwise. */
  char *vm;
  char *backup_id;              /* the session's ID (stored when not FAILED) */
  enum vms_set_state state;
  /* Why the set failed (or, STORED_WITH_ERRORS, what failed after the
   * commit). culprit NULL: no writer or provider was to blame. */
  struct {
    int failed;
    char *culprit;
    int is_provider;
    enum vms_event phase;
    enum vms_failure kind;
    char *message;
  } failure;
  size_t nr_writers;
  struct vms_writer_report *writers;
  size_t nr_components;
  struct vms_component_report *components;
  uint64_t bytes_read, bytes_stored;
  int64_t elapsed_ms;
};

struct vms_backup_report {
  /* SUCCESS: every set complete, nothing left out; WARNINGS: every set
   * stored, but a disk was left out (R13) or a writer failed after the
   * commit; PARTIAL: some sets failed, others were stored; FAILURE: nothing
   * was stored. */
  enum vms_outcome outcome;
  int each;                     /* one set per VM (the request's each) */
  size_t nr_sets;               /* 1, or with each one per VM (+ exec writers) */
  struct vms_backup_set *sets;
  int64_t elapsed_ms;
};

/* Run one backup session into repo (open with VMS_REPO_WRITE; NULL: open
 * or make rq->repo_dir, after the writers are loaded): Identify →
 * PrepareForBackup → the snapshot set → every file read into repo (an
 * incremental where the writer offers one, a full read where its bitmap is
 * missing) → writer status → commit (R12) → BackupComplete. Returns the
 * report, also for a failed set; NULL (error set) only when no session
 * could start (no writers, nothing to back up, out of memory). */
extern VMS_API struct vms_backup_report *
vms_requester_backup (vms_repo *repo, const struct vms_backup_request *rq);
extern VMS_API void vms_backup_report_free (struct vms_backup_report *r);
/* The report as JSON text (malloc'd): for one set (not each), the set's
 * fields at the top ({"backup_id", "state", "components", …}); with each,
 * {"sets": [...], "succeeded": [VM...], "failed": [VM...]}, a set's "vm"
 * naming its VM ("host_applications": true for the exec writers' set).
 * Always "outcome". NULL on ENOMEM. */
extern VMS_API char *vms_backup_report_json (const struct vms_backup_report *r);
/* "complete", "stored-with-errors", "failed". */
extern VMS_API const char *vms_set_state_name (enum vms_set_state s);

/* Issue 17: the frozen intervals of a set's components. nr: how many
 * components have one; grouped: how many of those were captured in a
 * consistency group; from/until: the latest freeze and the earliest thaw
 * (µs since the epoch). The intervals share a common instant when nr > 0
 * and from < until: common frozen interval [from, until]. */
struct vms_frozen_summary {
  size_t nr, grouped;
  int64_t from_us, until_us;
};
extern VMS_API void vms_backup_set_frozen (const struct vms_backup_set *set,
                                           struct vms_frozen_summary *s);

/* ---- Plan: what a backup would do (backup --dry-run, issue 20) ---- */

struct vms_plan_file {
  char *path;
  char *kind;                   /* "disk", "plain" (vms_file_kind_name) */
  char *format;                 /* "qcow2", "raw", or NULL */
};

/* One component as its writer's Identify describes it. The VM fields are
 * NULL (scratch_bytes -1) for components of other writers. */
struct vms_plan_component {
  char *writer_id, *writer, *component, *caption;
  char *vm_name, *state;        /* "running", "paused", "shut-off", … */
  char *method, *method_reason;
  char *policy;                 /* "method=auto fallback=crash-consistent" */
  char *policy_source;          /* "options", "metadata", "options and metadata" */
  char *agent;                  /* "answers", "does not answer: …", "not asked: …" */
  char *fallback_reason;        /* auto did not go online: why (R9) */
  size_t nr_files;
  struct vms_plan_file *files;
  size_t nr_excluded;
  struct vms_excluded_report *excluded;     /* R13, with the reasons */
  int64_t scratch_bytes;        /* most host space the capture can take */
  char *scratch_dir;            /* where it goes (NULL: none needed) */
};

struct vms_backup_plan {
  size_t nr_components;
  struct vms_plan_component *components;
  /* Writers whose Identify failed (a malformed policy, libvirtd down…):
   * "writer: message". The plan is then not what a backup would do. */
  size_t nr_errors;
  char **errors;
  int64_t scratch_bytes;        /* the sum over the components */
};

/* What vms_requester_backup (NULL, rq) would do, changing nothing: the
 * writers are loaded and asked to Identify (the VM writer reads each
 * domain, asks running guests' agents and applies the policy) — no
 * session, no checkpoint, no scratch file, no repository opened. NULL
 * (error set) when the writers cannot be loaded or none takes part. */
extern VMS_API struct vms_backup_plan *
vms_requester_plan (const struct vms_backup_request *rq);
extern VMS_API void vms_backup_plan_free (struct vms_backup_plan *p);
/* {"dry_run": true, "components": [...], "scratch_bytes": N, "errors": [...]}
 * (malloc'd). NULL on ENOMEM. */
extern VMS_API char *vms_backup_plan_json (const struct vms_backup_plan *p);

/* ---- After a prune ---- */

/* Delete the vmshadow checkpoints (and so their qcow2 bitmaps) of every VM
 * with a backup in repo that no remaining backup needs (issue 20): kept
 * are, per VM, the checkpoints the repository's catalogue names as where a
 * disk's next incremental starts, and per disk the newest vmshadow
 * checkpoint with a bitmap on it; never a checkpoint without the vmshadow-
 * prefix. Over libvirt_uri (NULL: qemu:///system). With dry_run only
 * says. Each decision goes to report. Returns how many were (or would be)
 * deleted; -1 with the error set (ECONNREFUSED: libvirt not reachable; a
 * repository without VM backups never asks libvirt). */
extern VMS_API int vms_requester_prune_checkpoints (vms_repo *repo,
                                                    const char *libvirt_uri,
                                                    int dry_run,
                                                    vms_repo_report_fn report,
                                                    void *opaque);

/* ---- Restore ---- */

struct vms_restore_request {
  const char *backup_id;
  const char *libvirt_uri;      /* NULL: qemu:///system */
  /* What is restored. vms: NULL-terminated VM names (as backed up) or
   * UUIDs. components: NULL-terminated "WRITER[:COMPONENT]", WRITER a
   * writer ID or name as recorded in the backup, no COMPONENT meaning all
   * of that writer's. Both NULL: every component of the backup. */
  const char *const *vms;
  const char *const *components;
  /* Where the exec writers are loaded from (as in vms_host_options). */
  const char *writers_dir;
  /* The writers taking part; NULL: the host's (the exec writers, and the
   * VM writer for VMs). A coordinator given stays the caller's, and its
   * writers restore their components through the generic path (files
   * back to their paths or restore targets; no VM writer). */
  vms_coordinator *coord;
  /* Disks go into this directory (relative to the working directory if
   * not absolute), with links at the original paths; other writers' files
   * go to DIR/<the path they would go to>. NULL: back in place (or where
   * the writer's document says: VMS_ATTR_RESTORE_TARGET_PREFIX). */
  const char *to;
  /* Make a copy of the (one) VM under this name: new UUID, MAC addresses
   * and disk files; the original is not touched. */
  const char *new_name;
  int replace;                  /* replace a VM of the same UUID that exists
                                   (without it such a restore refuses) */
  /* Issue 11: disks that are host block devices or network disks are
   * written back into them in place (else such a restore refuses, unless
   * to makes them files). */
  int write_devices;
  /* With to or new_name, a file at a target: "refuse" (NULL), "rename"
   * (kept aside) or "keep" (the restored file goes beside it). */
  const char *existing;
  int dry_run;                  /* decide and report every change; change
                                   nothing */
  int start;                    /* start VMs that come back stopped */
  const char *const *network_map;   /* NULL-terminated "OLD=NEW" */
  vms_requester_progress_fn progress;
  void *progress_opaque;
  /* Instant recovery (issue 16, R25; docs/instant-recovery.md): the (one)
   * VM is defined and started at once on qcow2 overlays over the backup's
   * disks (served by nbdkit), then its disks move to their targets while
   * it runs (libvirt block copy + pivot), at most instant_bandwidth
   * bytes/s (0: no limit). VMs only; not with replace. */
  int instant;
  uint64_t instant_bandwidth;
};

enum vms_file_outcome {
  VMS_FILE_WRITTEN,
  VMS_FILE_FAILED,
  VMS_FILE_NOT_WRITTEN,         /* not tried (an earlier file failed) */
};
struct vms_restored_file {
  char *path, *target, *format;
  uint64_t size;
  enum vms_file_outcome outcome;
  char *error;
};

/* One change a restore makes (or, dry run, would make), in order. */
struct vms_restore_change {
  char *action;                 /* "turn-off", "undefine", "write", … */
  char *object;                 /* a VM or a path */
  char *detail;                 /* or NULL */
};

/* One component of the backup restored (a VM: component = its UUID). */
struct vms_restored_component {
  char *writer_id, *component;
  char *kind;                   /* "vm" or "component" */
  char *name;                   /* the name it has after the restore */
  int ok;
  int defined;                  /* registered again (R18) */
  char *state;                  /* "running", "shut-off", "not defined", … */
  int resumed;                  /* resumed from its saved state */
  char *error;                  /* why it failed, or NULL */
  size_t nr_files;
  struct vms_restored_file *files;
  size_t nr_notes;
  char **notes;
  size_t nr_disconnected;       /* R21: interfaces left disconnected */
  char **disconnected;
  size_t nr_changes;            /* the plan */
  struct vms_restore_change *changes;
  char *writer;                 /* the writer's name */
  /* The file restore status given to the writer at PostRestore (R6). */
  enum vms_restore_status status;
};

struct vms_restore_report {
  enum vms_outcome outcome;
  int dry_run;                  /* nothing was changed: changes are a plan */
  char *backup_id;
  /* Set when the session itself failed (PostRestore). */
  char *error;
  size_t nr_components;
  struct vms_restored_component *components;
  int64_t elapsed_ms;
  /* Instant recovery: the VM ran after running_ms (from the start), its
   * guest agent answered after agent_ms (from the start; 0: no agent, or
   * none within the wait), its disks moved in move_ms; moved is 0 when the
   * move failed (error says why: the VM still runs from the backup;
   * resume or roll back). */
  int instant, moved;
  int64_t running_ms, agent_ms, move_ms;
};

/* Boot checks (issue 16, R27; `vmshadow verify --boot`): each VM asked
 * for (vms: names or UUIDs as backed up, NULL-terminated; NULL: every VM
 * of the backup) has its files' chunks re-hashed, then boots as a
 * throw-away copy (overlays over the backup's disks, a new name and UUID,
 * no network interface, a transient domain) until its guest agent
 * answers, and runs probe (sh -c, in the guest; NULL: none), which must
 * exit 0, within timeout_s (0: 300 s). Everything made is removed. The
 * result is recorded beside the backup (its note "boot-check") for show
 * and list. */
struct vms_boot_check_request {
  const char *repo_dir;
  const char *backup_id;
  const char *const *vms;
  const char *probe;
  int timeout_s;
  const char *libvirt_uri;
};
struct vms_boot_checked_vm {
  char *uuid, *name;            /* as backed up */
  int ok;
  int64_t agent_ms;             /* start of the copy to its agent's answer */
  char *probe;
  int probe_ran, probe_status;
  char *error;                  /* why it failed, or NULL */
};
struct vms_boot_check_report {
  char *backup_id;
  int64_t checked;              /* Unix seconds */
  int ok;                       /* every VM checked out */
  size_t nr_vms;
  struct vms_boot_checked_vm *vms;
  int recorded;                 /* 0: record_error says why not */
  char *record_error;
  int interrupted;              /* the signal that stopped the check before
                                 * its end (its copy removed, nothing
                                 * recorded), or 0 */
};
/* NULL with the error set when nothing was booted (no such backup, a VM
 * asked for is not in it, the backup holds no VM). */
extern VMS_API struct vms_boot_check_report *
vms_requester_boot_check (const struct vms_boot_check_request *rq);
extern VMS_API void vms_boot_check_report_free (struct vms_boot_check_report *rep);
/* The report as one line of JSON, the form recorded beside the backup
 * (its note "boot-check"): {"format":"vmshadow-boot-check","version":1,
 * "checked","ok","vms":[{"uuid","name","ok","agent_ms","probe",
 * "probe_status","error"}]}; caller frees; NULL only when out of memory. */
extern VMS_API char *vms_boot_check_report_json (const struct vms_boot_check_report *rep);
/* The backup's last boot check as recorded beside it (recorded = 1).
 * NULL with errno ENOENT when it was never checked, EINVAL when the note
 * is malformed: it comes from the repository and is checked member by
 * member like any of its data. */
extern VMS_API struct vms_boot_check_report *
vms_requester_boot_check_read (vms_repo *repo, const char *backup_id);

/* Where pending instant restores keep their state ($VMSHADOW_INSTANT_DIR
 * overrides it). */
#define VMS_INSTANT_DEFAULT_DIR "/var/lib/vmshadow/instant"

/* Finish (move the disks of; rollback 0) or undo (rollback 1: the VM
 * turned off and undefined if it still runs from the backup, every
 * overlay, export and partly moved disk removed, files kept aside put
 * back) the pending instant restores of the VM named which (name or UUID;
 * NULL: all of them). *done gets the names of those finished or undone
 * (NULL-terminated, caller frees each and the array). 0, or -1 with the
 * error set (ENOENT: none pending). */
extern VMS_API int vms_requester_instant_finish (const char *which, int rollback,
                                                 uint64_t bandwidth,
                                                 vms_requester_progress_fn progress,
                                                 void *opaque, char ***done,
                                                 size_t *nr_done);

/* Restore from repo (read-only is enough): the same session for every
 * writer (R14–R21). Everything that can be checked is checked first, and
 * every change is planned (each component's changes); when any check
 * fails, or the plan refuses, or PreRestore is vetoed, nothing was changed
 * and this returns NULL with the error set (it says so). With dry_run, the
 * report of the plan, and nothing changed. A component's files are
 * written one by one (under a temporary name, renamed into place, never
 * through a symbolic link); the first that fails stops that component,
 * whose status is then FAILED (some written) or NONE; PostRestore gets
 * every component's status. A component is ok when its status is ALL and
 * its writer did not fail at PostRestore (the VM writer: and the VM was
 * defined again).
 * Otherwise the report, whatever became of each component. */
extern VMS_API struct vms_restore_report *
vms_requester_restore (vms_repo *repo, const struct vms_restore_request *rq);
extern VMS_API void vms_restore_report_free (struct vms_restore_report *r);
extern VMS_API char *vms_restore_report_json (const struct vms_restore_report *r);
/* "written", "failed", "not written". */
extern VMS_API const char *vms_file_outcome_name (enum vms_file_outcome o);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_REQUESTER_H */

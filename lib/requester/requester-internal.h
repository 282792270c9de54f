/* What the files of lib/requester share (not installed). */
#ifndef VMS_REQUESTER_INTERNAL_H
#define VMS_REQUESTER_INTERNAL_H

#include "vmshadow/datapath.h"
#include "vmshadow/requester.h"

/* strdup that keeps NULL as NULL and remembers a failure in *oom. */
extern char *req_strdup (const char *s, int *oom);

/* vms_requester_host, in parts: with REQ_HOST_EXEC the exec writers, with
 * REQ_HOST_VMS the VM writer (for only_vms when not NULL, else as o
 * says); the file provider always. */
enum { REQ_HOST_EXEC = 1, REQ_HOST_VMS = 2 };
extern vms_coordinator *req_host (const struct vms_host_options *o,
                                  unsigned what, const char *const *only_vms);

/* Adapts the data path's byte progress to the requester's callback for
 * one file at a time. */
struct req_progress {
  vms_requester_progress_fn fn;
  void *opaque;
  struct vms_progress p;
};
extern void req_progress_start (struct req_progress *rp, const char *writer_id,
                                const char *component, const char *path);
/* A vms_progress_fn; opaque is the struct req_progress. */
extern void req_progress_bytes (void *opaque, uint64_t done, uint64_t total);
extern void req_progress_end (struct req_progress *rp);

/* Frees n restored components and the array. */
extern void req_restored_components_free (struct vms_restored_component *v,
                                          size_t n);

/* ---- Instant recovery (instant.c, issue 16; docs/instant-recovery.md) ---- */

/* One disk that runs from a backup (as vms_vm_instant_disk). */
struct req_instant_disk {
  const char *path, *overlay, *socket, *final, *format;
};

/* An instant restore in the making or pending, as persisted in its
 * directory (<root>/<uuid>/state.json). */
struct req_instant;

/* Start one: its directory for the VM defined as name/uuid (refused if
 * one exists: resume or roll back that one first). NULL, error set. */
extern struct req_instant *req_instant_new (const char *repo_dir,
                                            const char *backup_id,
                                            const char *uri, const char *name,
                                            const char *uuid);
/* A disk of backed-up VM vm (its file path, size, format): export, overlay
 * (saved in the state). final: the restore's target. */
extern int req_instant_add_disk (struct req_instant *in, const char *vm,
                                 const char *path, uint64_t size,
                                 const char *format, const char *final);
/* The disks, for the VM writer (valid while in lives). */
extern const struct req_instant_disk *req_instant_disks (const struct req_instant *in,
                                                         size_t *n);
extern const char *req_instant_final_xml (const struct req_instant *in);
extern const char *req_instant_name (const struct req_instant *in);
extern const char *req_instant_uuid (const struct req_instant *in);
/* The VM runs (from the backup): from now on it can be resumed; a boot
 * check's copy (boot_check 1) can only be rolled back. */
extern int req_instant_ran (struct req_instant *in, int boot_check);
/* The VM runs: move its disks and finish (nothing of the instant restore
 * left), or -1 with the error set and the state kept (resume/rollback). */
extern int req_instant_move (struct req_instant *in, uint64_t bandwidth,
                             struct req_progress *rp, int64_t *move_ms);
/* --replace (R15): keep what a rollback needs to put back the VM of this
 * UUID that PreRestore is about to turn off and undefine: its definition
 * (<dir>/replaced.xml) and whether it ran. Nothing when there is none. */
extern int req_instant_keep_replaced (struct req_instant *in);
/* A file (not a disk: the domain XML, NVRAM) about to be written at
 * target: a file there is renamed aside and put back by a rollback
 * (removed once the move is done); else target is removed by a rollback. */
extern int req_instant_keep_file (struct req_instant *in, const char *target);
/* Undo everything of it (the VM too if it runs from the overlays; a
 * replaced VM defined again, and started if it ran). */
extern int req_instant_rollback (struct req_instant *in);
extern void req_instant_free (struct req_instant *in);

/* The host side of the mover (host.c over writers/libvirt). */
typedef void (*req_instant_progress_fn) (void *opaque, size_t disk,
                                         uint64_t done, uint64_t total);
extern int req_host_instant_move (const char *uri, const char *uuid,
                                  const struct req_instant_disk *d, size_t n,
                                  uint64_t bandwidth, const char *final_xml,
                                  req_instant_progress_fn fn, void *opaque);
extern int req_host_instant_remove (const char *uri, const char *uuid,
                                    const struct req_instant_disk *d, size_t n);
extern int req_host_instant_running (const char *uri, const char *uuid);
extern int req_host_instant_await_agent (const char *uri, const char *uuid,
                                         int64_t timeout_ms);
extern int req_host_instant_existing (const char *uri, const char *uuid,
                                      char **xml, int *running);
extern int req_host_instant_put_back (const char *uri, const char *xml, int start);
extern int req_host_qemu_ids (const char *uri, unsigned *uid, unsigned *gid);

/* ---- Restore hooks ----
 * A writer whose restore needs more than its files put back where its
 * document says (the VM writer: VMs turned off, undefined, defined again,
 * networks) brings a hook. The generic restore session (restore.c) asks
 * the hook, for that writer's components, which are restored, where each
 * file goes, and what became of each; everything else — checks, PreRestore,
 * writing, status, PostRestore, the report — is the same for every writer.
 * The host's hooks are in host.c (req_host_restore_hooks). */
struct req_restore_hook {
  const char *writer_id;
  /* Add the writer to coord in restore mode, before the session starts.
   * components: NULL-terminated names/UUIDs asked for (--vm, --component),
   * NULL for every component of the writer in the backup; to: absolute
   * --to or NULL. Returns the hook's handle (owned by coord), or NULL with
   * the error set (nothing changed). */
  void *(*add) (vms_coordinator *coord, const struct vms_restore_request *rq,
                const char *const *components, const char *to,
                const vms_document *bcd, const vms_document *const *md,
                size_t nr_md);
  /* Before the plan: read what the plan needs from the backup (the VM
   * writer: each VM's stored domain XML, so a copy's new MACs and paths
   * are planned). 0, or -1 with the error set. May be NULL. */
  int (*prepare) (void *h, vms_repo *repo, const vms_manifest *m);
  /* Look at the host and decide every change (issue 20); nothing
   * changes. 0, or -1 with the error set (the restore refuses). May be
   * NULL. */
  int (*plan) (void *h);
  int (*selected) (void *h, const char *component);
  /* Where file path of a component is written; NULL: nowhere (fails). */
  const char *(*target) (void *h, const char *component, const char *path);
  /* Issue 11: a file written into a device that exists (a block device,
   * an RBD image, an iSCSI LUN) rather than as a file at its target: 0
   * with *graph (malloc'd, QEMU's block graph for vms_extract_into) and
   * *secret_file (malloc'd or NULL; the caller removes it after the
   * write), 0 with *graph NULL for an ordinary file, -1 with the error set
   * (the file fails). May be NULL (every file is a file). Called after
   * PreRestore. */
  int (*into) (void *h, const char *component, const char *path,
               char **graph, char **secret_file);
  /* After PostRestore: the components restored, in the writer's order
   * (component names), and what became of each (fills what the writer
   * knows: kind, name, ok, defined, state, resumed, error, notes,
   * disconnected, changes (the plan); *oom set on allocation failure). */
  size_t (*count) (void *h);
  const char *(*component) (void *h, size_t i);
  void (*result) (void *h, size_t i, struct vms_restored_component *c,
                  int *oom);
  /* Instant recovery (issue 16; NULL: the writer cannot). The name and
   * UUID a component (a VM) is defined under, after plan; then, before
   * PreRestore, that it runs from these overlays (its PostRestore defines
   * and starts it on them, and writes its final definition to
   * final_xml). */
  const char *(*define_name) (void *h, const char *component);
  const char *(*define_uuid) (void *h, const char *component);
  int (*set_instant) (void *h, const char *component,
                      const struct req_instant_disk *d, size_t n,
                      const char *final_xml);
};
/* NULL-terminated. */
extern const struct req_restore_hook *const req_host_restore_hooks[];

#endif /* VMS_REQUESTER_INTERNAL_H */

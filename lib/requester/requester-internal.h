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
  /* After PostRestore: the components restored, in the writer's order
   * (component names), and what became of each (fills what the writer
   * knows: kind, name, ok, defined, state, resumed, error, notes,
   * disconnected, changes (the plan); *oom set on allocation failure). */
  size_t (*count) (void *h);
  const char *(*component) (void *h, size_t i);
  void (*result) (void *h, size_t i, struct vms_restored_component *c,
                  int *oom);
};
/* NULL-terminated. */
extern const struct req_restore_hook *const req_host_restore_hooks[];

#endif /* VMS_REQUESTER_INTERNAL_H */

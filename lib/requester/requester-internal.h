/* What the files of lib/requester share (not installed). */
#ifndef VMS_REQUESTER_INTERNAL_H
#define VMS_REQUESTER_INTERNAL_H

#include "vmshadow/datapath.h"
#include "vmshadow/requester.h"

/* strdup that keeps NULL as NULL and remembers a failure in *oom. */
extern char *req_strdup (const char *s, int *oom);

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

/* The catalogue of the VMs' last checkpoints, read from the repository. */
struct req_previous;
extern struct req_previous *req_previous_new (void);
/* Fill it from repo (made before, for the coordinator; loaded once the
 * repository is open). */
extern void req_previous_load (struct req_previous *prev, vms_repo *repo);
extern void req_previous_free (struct req_previous *prev);
/* For vms_vm_options.previous_checkpoint. */
extern const char *req_previous_checkpoint (void *opaque, const char *uuid);
/* The index of the same file in the component's previous backup, or NULL. */
extern vms_index *req_previous_index (vms_repo *repo,
                                      const struct req_previous *prev,
                                      const char *component, const char *path);

/* vms_requester_host, with the catalogue the VM writer asks (may be NULL). */
extern vms_coordinator *req_host_coordinator (const struct vms_host_options *o,
                                              struct req_previous *prev);

#endif /* VMS_REQUESTER_INTERNAL_H */

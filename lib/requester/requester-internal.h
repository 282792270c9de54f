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

#endif /* VMS_REQUESTER_INTERNAL_H */

/* A thread with a queue of jobs: each writer and each provider gets one, so
 * that its callbacks run one at a time and in order, while different
 * writers run in parallel and the coordinator can stop waiting for one that
 * overruns its budget without being stuck behind it. */
#ifndef VMS_WORKER_H
#define VMS_WORKER_H

#include <stdint.h>

struct job {
  void (*run) (struct job *job);     /* on the worker thread */
  void (*free) (struct job *job);    /* frees the job */
  struct job *next;
  int done;                          /* under the worker's lock */
  int abandoned;                     /* the waiter gave up: worker frees it */
};

struct worker;

extern struct worker *worker_new (const char *name);
/* Ask the thread to end after its queue, and drop our reference. A thread
 * still running a job that overran keeps the worker alive until it ends. */
extern void worker_release (struct worker *w);

extern void worker_post (struct worker *w, struct job *job);
/* Wait for the job until deadline_ms (vms_now_ms clock; INT64_MAX for no
 * limit). Returns 0 when done (the caller frees the job), -1 on time-out
 * (the job is abandoned: it still runs in its turn, then the worker frees
 * it; everything it points to must be reference-counted). */
extern int worker_wait (struct worker *w, struct job *job, int64_t deadline_ms);
/* 1 while the worker has queued or running work. */
extern int worker_busy (struct worker *w);

#endif /* VMS_WORKER_H */

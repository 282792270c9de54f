/* Worker threads with job queues (worker.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "worker.h"
#include "vmshadow/error.h"

struct worker {
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* signalled on post, done and stop */
  struct job *head, *tail;
  struct job *running;
  int stopping;
  int refs;                     /* the owner's and the thread's */
  pthread_t thread;
  char name[64];
};

static void
worker_unref_locked (struct worker *w)
{
  if (--w->refs == 0) {
    pthread_mutex_unlock (&w->lock);
    pthread_mutex_destroy (&w->lock);
    pthread_cond_destroy (&w->cond);
    free (w);
    return;
  }
  pthread_mutex_unlock (&w->lock);
}

static void *
worker_main (void *arg)
{
  struct worker *w = arg;

  pthread_mutex_lock (&w->lock);
  for (;;) {
    while (w->head == NULL && !w->stopping)
      pthread_cond_wait (&w->cond, &w->lock);
    if (w->head == NULL)
      break;
    struct job *job = w->head;
    w->head = job->next;
    if (w->head == NULL) w->tail = NULL;
    w->running = job;
    pthread_mutex_unlock (&w->lock);

    vms_clear_error ();
    job->run (job);

    pthread_mutex_lock (&w->lock);
    w->running = NULL;
    job->done = 1;
    if (job->abandoned) {
      vms_debug ("%s: a job finished after its waiter gave up", w->name);
      job->free (job);
    }
    pthread_cond_broadcast (&w->cond);
  }
  worker_unref_locked (w);
  return NULL;
}

struct worker *
worker_new (const char *name)
{
  struct worker *w = calloc (1, sizeof *w);
  pthread_condattr_t attr;
  int r;

  if (w == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  snprintf (w->name, sizeof w->name, "%s", name);
  pthread_mutex_init (&w->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&w->cond, &attr);
  pthread_condattr_destroy (&attr);
  w->refs = 2;
  r = pthread_create (&w->thread, NULL, worker_main, w);
  if (r != 0) {
    vms_set_error (r, "cannot start a thread for %s: %s", name, strerror (r));
    pthread_mutex_destroy (&w->lock);
    pthread_cond_destroy (&w->cond);
    free (w);
    return NULL;
  }
  pthread_detach (w->thread);
  return w;
}

void
worker_release (struct worker *w)
{
  if (w == NULL)
    return;
  pthread_mutex_lock (&w->lock);
  w->stopping = 1;
  pthread_cond_broadcast (&w->cond);
  worker_unref_locked (w);
}

void
worker_post (struct worker *w, struct job *job)
{
  job->next = NULL;
  job->done = job->abandoned = 0;
  pthread_mutex_lock (&w->lock);
  if (w->tail) w->tail->next = job; else w->head = job;
  w->tail = job;
  pthread_cond_broadcast (&w->cond);
  pthread_mutex_unlock (&w->lock);
}

int
worker_wait (struct worker *w, struct job *job, int64_t deadline_ms)
{
  struct timespec ts = {
    .tv_sec = deadline_ms / 1000, .tv_nsec = (deadline_ms % 1000) * 1000000
  };
  int timed_out = 0;

  pthread_mutex_lock (&w->lock);
  while (!job->done) {
    if (deadline_ms == INT64_MAX)
      pthread_cond_wait (&w->cond, &w->lock);
    else if (pthread_cond_timedwait (&w->cond, &w->lock, &ts) == ETIMEDOUT
             && !job->done) {
      timed_out = 1;
      break;
    }
  }
  /* Queued or running, the job still runs when the worker gets to it (an
   * Abort queued behind a hung Freeze must still reach the writer); the
   * worker frees it then. */
  if (timed_out)
    job->abandoned = 1;
  pthread_mutex_unlock (&w->lock);
  return timed_out ? -1 : 0;
}

int
worker_busy (struct worker *w)
{
  pthread_mutex_lock (&w->lock);
  int busy = w->head != NULL || w->running != NULL;
  pthread_mutex_unlock (&w->lock);
  return busy;
}

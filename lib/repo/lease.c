/* Leases of format version 2 (docs/repository-format.md "Version 2",
 * "Concurrency", rule 1; issue 12): every process that writes to a
 * version 2 repository (backup, prune, gc) holds a session lease
 * sessions/<32 hex>, and gc also gc/lease. A lease is a small object that a
 * thread re-puts every ttl/6 seconds; it is valid while its store mtime is
 * younger than ttl by the store's clock. Its holder stops trusting it (and
 * commits nothing, lease_ok) once ttl*5/6 seconds have passed since the
 * start of its last successful put, measured on its own monotonic clock —
 * before any other process could see it expired. A killed holder's lease
 * lapses after ttl.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "repo-internal.h"
#include "storage.h"
#include "vmshadow/error.h"

struct repo_lease {
  vms_repo *repo;
  char name[STORAGE_NAME_MAX + 1];
  char id[33];
  int64_t created;              /* store mtime of the first put */
  unsigned ttl;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  int running, stopping;
  struct timespec last_ok;      /* CLOCK_MONOTONIC, start of the last good put */
  int broken;                   /* once, for good */
};

unsigned
lease_ttl_default (void)
{
  const char *s = getenv (LEASE_SECONDS_ENV);
  if (s && *s) {
    char *end;
    unsigned long v = strtoul (s, &end, 10);
    if (*end == '\0' && v >= LEASE_TTL_MIN && v <= LEASE_TTL_MAX)
      return (unsigned) v;
  }
  return LEASE_TTL_DEFAULT;
}

static double
mono_since (const struct timespec *t)
{
  struct timespec now;
  clock_gettime (CLOCK_MONOTONIC, &now);
  return (double) (now.tv_sec - t->tv_sec) +
    (double) (now.tv_nsec - t->tv_nsec) / 1e9;
}

static int
lease_text (struct repo_lease *l, char *buf, size_t size)
{
  char host[256] = "";
  if (gethostname (host, sizeof host - 1) == -1)
    host[0] = '\0';
  /* The host name is only shown: keep it to the name alphabet. */
  for (char *p = host; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
      *p = '_';
  return snprintf (buf, size, "{\"format\": \"vmshadow-lease\", \"version\": 1,"
                   " \"host\": \"%s\", \"pid\": %d, \"created\": %" PRId64
                   ", \"ttl\": %u}\n", host, (int) getpid (), l->created,
                   l->ttl);
}

/* One put of the lease; 0 or -1 (errno). */
static int
lease_put (struct repo_lease *l, unsigned flags)
{
  char text[512];
  struct timespec start;
  int n = lease_text (l, text, sizeof text);
  clock_gettime (CLOCK_MONOTONIC, &start);
  if (storage_put (l->repo->store, l->name, text, (size_t) n, flags) == -1)
    return -1;
  pthread_mutex_lock (&l->mu);
  /* A gap longer than the holder may trust breaks the lease for good: gc
   * may have seen it expired meanwhile. */
  if (mono_since (&l->last_ok) > (double) l->ttl * 5 / 6)
    l->broken = 1;
  l->last_ok = start;
  pthread_mutex_unlock (&l->mu);
  return 0;
}

static void *
renew_thread (void *arg)
{
  struct repo_lease *l = arg;
  unsigned every = l->ttl / 6 ? l->ttl / 6 : 1;

  pthread_mutex_lock (&l->mu);
  while (!l->stopping) {
    struct timespec until;
    clock_gettime (CLOCK_REALTIME, &until);
    until.tv_sec += every;
    pthread_cond_timedwait (&l->cv, &l->mu, &until);
    if (l->stopping)
      break;
    pthread_mutex_unlock (&l->mu);
    /* A failed renewal is retried at the next turn; lease_ok says when
     * it has failed too long. */
    (void) lease_put (l, 0);
    pthread_mutex_lock (&l->mu);
  }
  pthread_mutex_unlock (&l->mu);
  return NULL;
}

static int
random_hex32 (char out[33])
{
  uint8_t b[16];
  if (getrandom (b, sizeof b, 0) != (ssize_t) sizeof b)
    return -1;
  for (size_t i = 0; i < 16; i++)
    snprintf (out + 2 * i, 3, "%02x", b[i]);
  return 0;
}

struct repo_lease *
lease_take (vms_repo *repo, const char *name)
{
  struct repo_lease *l = calloc (1, sizeof *l);
  struct storage_stat st;
  int exclusive = name != NULL;

  if (l == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  l->repo = repo;
  l->ttl = lease_ttl_default ();
  pthread_mutex_init (&l->mu, NULL);
  pthread_cond_init (&l->cv, NULL);
  clock_gettime (CLOCK_MONOTONIC, &l->last_ok);
  if (random_hex32 (l->id) == -1) {
    vms_set_error (errno, "cannot get random bytes for a lease: %s",
                   strerror (errno));
    goto fail;
  }
  if (name)
    snprintf (l->name, sizeof l->name, "%s", name);
  else
    snprintf (l->name, sizeof l->name, "sessions/%s", l->id);
  if (lease_put (l, exclusive ? STORAGE_PUT_EXCLUSIVE : 0) == -1) {
    if (errno == EEXIST)
      vms_set_error (EBUSY, "repository %s: %s is held", repo->path, l->name);
    else
      vms_set_error (errno, "repository %s: cannot write the lease %s: %s",
                     repo->path, l->name, repo_errstr (errno));
    goto fail;
  }
  /* Its creation time, by the store's clock, goes into every renewal:
   * gc compares it with the times of objects this session may have
   * written (prune.c, orphaned backup objects). */
  if (storage_stat (repo->store, l->name, &st) == 0) {
    l->created = st.mtime;
    (void) lease_put (l, 0);
  }
  if (pthread_create (&l->thread, NULL, renew_thread, l) != 0) {
    vms_set_error (EAGAIN, "cannot start the lease renewal thread");
    storage_delete (repo->store, l->name);
    goto fail;
  }
  l->running = 1;
  return l;
 fail:
  pthread_mutex_destroy (&l->mu);
  pthread_cond_destroy (&l->cv);
  free (l);
  return NULL;
}

const char *
lease_id (const struct repo_lease *l)
{
  return l->id;
}

int
lease_ok (struct repo_lease *l)
{
  pthread_mutex_lock (&l->mu);
  int ok = !l->broken && mono_since (&l->last_ok) <= (double) l->ttl * 5 / 6;
  if (!ok)
    l->broken = 1;
  pthread_mutex_unlock (&l->mu);
  if (!ok)
    vms_set_error (ETIMEDOUT, "repository %s: the lease %s could not be "
                   "renewed for %u s (of its %u s): this process may no "
                   "longer be seen as running, so it commits nothing",
                   l->repo->path, l->name, l->ttl * 5 / 6, l->ttl);
  return ok ? 0 : -1;
}

void
lease_release (struct repo_lease *l)
{
  if (l == NULL)
    return;
  if (l->running) {
    pthread_mutex_lock (&l->mu);
    l->stopping = 1;
    pthread_cond_signal (&l->cv);
    pthread_mutex_unlock (&l->mu);
    pthread_join (l->thread, NULL);
  }
  /* Gone: the session has ended (gc waits for nothing more from it). */
  (void) storage_delete (l->repo->store, l->name);
  pthread_mutex_destroy (&l->mu);
  pthread_cond_destroy (&l->cv);
  free (l);
}

int
lease_read (vms_repo *repo, const char *name, int64_t now,
            struct lease_info *info)
{
  CLEANUP_FREE char *text = NULL;
  size_t len;
  struct storage_stat st;
  json_object *root, *v;

  memset (info, 0, sizeof *info);
  if (storage_stat (repo->store, name, &st) == -1)
    return -1;
  info->mtime = st.mtime;
  info->ttl = LEASE_TTL_MAX;    /* unreadable: trusted for the longest */
  if (storage_get_all (repo->store, name, 4096, (void **) &text, &len) == -1)
    return errno == ENOENT ? -1 : 0;
  root = json_tokener_parse (text);
  if (root && json_object_is_type (root, json_type_object)) {
    if (json_object_object_get_ex (root, "ttl", &v) &&
        json_object_is_type (v, json_type_int)) {
      int64_t t = json_object_get_int64 (v);
      if (t >= LEASE_TTL_MIN && t <= LEASE_TTL_MAX)
        info->ttl = (unsigned) t;
    }
    if (json_object_object_get_ex (root, "created", &v) &&
        json_object_is_type (v, json_type_int))
      info->created = json_object_get_int64 (v);
    if (json_object_object_get_ex (root, "pid", &v) &&
        json_object_is_type (v, json_type_int))
      info->pid = (int) json_object_get_int64 (v);
    if (json_object_object_get_ex (root, "host", &v) &&
        json_object_is_type (v, json_type_string))
      snprintf (info->host, sizeof info->host, "%s", json_object_get_string (v));
  }
  json_object_put (root);
  /* created 0 (not known yet): as old as anything. */
  if (info->created <= 0 || info->created > st.mtime)
    info->created = info->created <= 0 ? INT64_MIN : st.mtime;
  info->expired = now - st.mtime >= (int64_t) info->ttl;
  return 0;
}

/* vms_copy_to_repo: read a disk (over NBD) or a plain file into the
 * repository, as a pipeline.
 *
 * The calling thread is the reader: it asks the source which ranges hold
 * data (NBD block status with base:allocation, and for an incremental the
 * dirty-bitmap context; SEEK_DATA/SEEK_HOLE for a file), decides per chunk
 * (VMS_CHUNK_SIZE) whether to reuse the parent's entry, store zero, or read
 * it, and reads into a fixed pool of chunk buffers (over NBD with several
 * requests in flight). Worker threads hash, compress and store full
 * buffers through vms_repo_chunk_put and set the index entry. An
 * incremental also reads a random sample of the chunks the bitmap calls
 * unchanged and compares them with the parent afterwards (issue 21): one
 * that differs means the bitmap cannot be trusted, and the whole source is
 * read again. The pool
 * size bounds memory whatever the disk size; the first error from any
 * thread stops all.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libnbd.h>

#include "bulk-mem.h"
#include "cleanup.h"
#include "first-error.h"
#include "log.h"
#include "vector.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

#include "datapath-internal.h"

/* Reads go out as NBD requests of at most 256 KiB (VMSHADOW_NBD_REQUEST_KIB;
 * never more than a chunk, so one 128 KiB request per chunk now), with
 * about COPY_INFLIGHT_BYTES of them in flight (VMSHADOW_NBD_INFLIGHT
 * chunks): measured on a 2 GiB qcow2 through qemu-nbd, 4 MiB requests took
 * twice as long as 256 KiB ones (qemu-nbd faults in a fresh bounce buffer
 * per request). QEMU's NBD server (qemu-nbd and a backup job's export
 * alike) works on at most 16 requests of a client at once, so 32 keep it
 * busy with as many queued; 128 (16 MiB) bought nothing but buffers to
 * fault in (issue 15: docs/performance.md, session 8). */
#define COPY_REQUEST_KIB 256
#define COPY_INFLIGHT_BYTES (UINT64_C (4) << 20)

/* Block status is asked for windows of this many bytes (a whole number of
 * chunks). */
#define COPY_WINDOW_BYTES (UINT64_C (1) << 30)
#define COPY_WINDOW_CHUNKS (COPY_WINDOW_BYTES / VMS_CHUNK_SIZE)
_Static_assert (COPY_WINDOW_BYTES % VMS_CHUNK_SIZE == 0,
                "a block status window is a whole number of chunks");
#define COPY_MAX_RANGES 64
#define COPY_PROGRESS_MS 250
#define NBD_STATE_DIRTY 1       /* qemu:dirty-bitmap:* flag */

/* [offset, offset + length) with the flags of one block status context. */
struct copy_extent {
  uint64_t offset, length;
  uint32_t flags;
};
DEFINE_VECTOR_TYPE (copy_extent_vector, struct copy_extent);

struct copy_range {
  uint64_t offset;              /* absolute */
  uint64_t length;
};

/* The chunk numbers sampled to check the dirty bitmap (issue 21). */
DEFINE_VECTOR_TYPE (cbt_samples, uint64_t);

/* One chunk buffer of the pool. */
struct copy_slot {
  struct copy_pipeline *p;
  uint64_t chunk;
  size_t len;
  unsigned pending;             /* NBD reads not yet completed */
  int failed;                   /* a read into it failed */
  char *buf;
};

struct copy_pipeline {
  vms_repo *repo;
  vms_index *idx;
  const char *what;             /* the source, for messages */

  pthread_mutex_t lock;
  /* Two conditions, so that a change wakes only the thread that waits for
   * it: a filled slot one worker, a freed slot the reader (with one for
   * both, every chunk woke every thread: issue 15). Failure and the end of
   * input wake all. */
  pthread_cond_t ready_cond;    /* a slot was filled: for the workers */
  pthread_cond_t free_cond;     /* a slot was freed: for the reader */
  struct copy_slot *slots;
  size_t nr_slots;
  char *pool;                   /* the slots' buffers */
  size_t *free_slots, nr_free;  /* stack */
  size_t *ready, ready_head, nr_ready;  /* ring of filled slots */
  int end_of_input;
  struct vms_first_error error;

  pthread_t *threads;
  size_t nr_threads;

  /* Under lock. */
  struct vms_copy_stats stats;
  uint64_t done;                /* bytes of the source dealt with */

  /* Reader only. */
  unsigned inflight;            /* chunks with NBD reads outstanding */
  int64_t last_progress;
  vms_progress_fn progress;
  void *opaque;
};

/* Record the first error of the pipeline (any thread). Later ones are
 * consequences and dropped. */
static void __attribute__ ((format (printf, 3, 4)))
copy_fail (struct copy_pipeline *p, int errnum, const char *fmt, ...)
{
  va_list ap;

  pthread_mutex_lock (&p->lock);
  va_start (ap, fmt);
  vms_first_error_record (&p->error, errnum, fmt, ap);
  va_end (ap);
  pthread_cond_broadcast (&p->ready_cond);
  pthread_cond_broadcast (&p->free_cond);
  pthread_mutex_unlock (&p->lock);
}

static int
copy_failed (struct copy_pipeline *p)
{
  int f;
  pthread_mutex_lock (&p->lock);
  f = p->error.failed;
  pthread_mutex_unlock (&p->lock);
  return f;
}

static void
copy_report_progress (struct copy_pipeline *p, int force)
{
  int64_t now;
  uint64_t done;

  if (p->progress == NULL)
    return;
  now = vms_now_ms ();
  if (!force && now - p->last_progress < COPY_PROGRESS_MS)
    return;
  p->last_progress = now;
  pthread_mutex_lock (&p->lock);
  done = p->done;
  pthread_mutex_unlock (&p->lock);
  p->progress (p->opaque, done, p->stats.size);
}

/* Set an index entry decided by the reader (zero or from the parent). */
static int
copy_set_entry (struct copy_pipeline *p, uint64_t chunk,
                const struct vms_digest *d, int reused)
{
  int r;

  pthread_mutex_lock (&p->lock);
  r = vms_index_set (p->idx, chunk, d);
  if (r == 0) {
    /* The reader decides only zero chunks and chunks of the parent. */
    assert (reused || vms_digest_is_zero (d));
    if (vms_digest_is_zero (d))
      p->stats.chunks_zero++;
    else
      p->stats.chunks_reused++;
    p->done += vms_index_chunk_len (p->idx, chunk);
  }
  pthread_mutex_unlock (&p->lock);
  if (r == -1)
    copy_fail (p, vms_get_errno (), "%s", vms_get_error ());
  return r;
}

static void *
copy_worker (void *arg)
{
  struct copy_pipeline *p = arg;

  /* Named, so that a profile tells the workers from the reader (issue 15). */
  pthread_setname_np (pthread_self (), "vms-copy");
  pthread_mutex_lock (&p->lock);
  for (;;) {
    struct copy_slot *s;
    struct vms_digest d;
    uint64_t stored = 0;
    int r;

    while (!p->error.failed && p->nr_ready == 0 && !p->end_of_input)
      pthread_cond_wait (&p->ready_cond, &p->lock);
    if (p->error.failed || p->nr_ready == 0)
      break;
    s = &p->slots[p->ready[p->ready_head]];
    p->ready_head = (p->ready_head + 1) % p->nr_slots;
    p->nr_ready--;
    pthread_mutex_unlock (&p->lock);

    r = vms_repo_chunk_put (p->repo, s->buf, s->len, &d, &stored);
    if (r == -1)
      copy_fail (p, vms_get_errno (), "storing the chunk at offset %" PRIu64
                 " of %s: %s", s->chunk * (uint64_t) VMS_CHUNK_SIZE, p->what,
                 vms_get_error ());

    pthread_mutex_lock (&p->lock);
    if (r == 0) {
      if (vms_index_set (p->idx, s->chunk, &d) == -1) {
        pthread_mutex_unlock (&p->lock);
        copy_fail (p, vms_get_errno (), "%s", vms_get_error ());
        pthread_mutex_lock (&p->lock);
      }
      else {
        if (vms_digest_is_zero (&d))
          p->stats.chunks_zero++;
        else if (stored > 0)
          p->stats.chunks_new++;
        else
          p->stats.chunks_reused++;
        p->stats.bytes_stored += stored;
        p->done += s->len;
      }
    }
    p->free_slots[p->nr_free++] = (size_t) (s - p->slots);
    pthread_cond_signal (&p->free_cond);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

/* Hand a filled slot to the workers. */
static void
copy_slot_ready (struct copy_slot *s)
{
  struct copy_pipeline *p = s->p;

  pthread_mutex_lock (&p->lock);
  p->ready[(p->ready_head + p->nr_ready) % p->nr_slots] = (size_t) (s - p->slots);
  p->nr_ready++;
  pthread_cond_signal (&p->ready_cond);
  pthread_mutex_unlock (&p->lock);
}

/* A free slot, or NULL: when wait is set, block until one is free or the
 * pipeline failed. */
static struct copy_slot *
copy_take_slot (struct copy_pipeline *p, int wait)
{
  struct copy_slot *s = NULL;

  for (;;) {
    pthread_mutex_lock (&p->lock);
    if (!p->error.failed && p->nr_free == 0 && wait) {
      struct timespec ts;
      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_nsec += COPY_PROGRESS_MS * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait (&p->free_cond, &p->lock, &ts);
    }
    if (!p->error.failed && p->nr_free > 0)
      s = &p->slots[p->free_slots[--p->nr_free]];
    pthread_mutex_unlock (&p->lock);
    if (s || !wait || copy_failed (p))
      return s;
    copy_report_progress (p, 0);
  }
}

static void
copy_return_slot (struct copy_slot *s)
{
  struct copy_pipeline *p = s->p;

  pthread_mutex_lock (&p->lock);
  p->free_slots[p->nr_free++] = (size_t) (s - p->slots);
  pthread_cond_signal (&p->free_cond);
  pthread_mutex_unlock (&p->lock);
}

static int
copy_pipeline_init (struct copy_pipeline *p, vms_repo *repo, vms_index *idx,
                    const char *what, unsigned workers, unsigned extra_slots)
{
  memset (p, 0, sizeof *p);
  p->repo = repo;
  p->idx = idx;
  p->what = what;
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->ready_cond, NULL);
  pthread_cond_init (&p->free_cond, NULL);
  p->nr_slots = 2 * (size_t) workers + 2 + extra_slots;
  p->slots = calloc (p->nr_slots, sizeof *p->slots);
  p->free_slots = calloc (p->nr_slots, sizeof *p->free_slots);
  p->ready = calloc (p->nr_slots, sizeof *p->ready);
  p->threads = calloc (workers, sizeof *p->threads);
  if (!p->slots || !p->free_slots || !p->ready || !p->threads) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  /* One bulk buffer for all (bulk-mem.h: huge pages, issue 15). */
  p->pool = vms_bulk_alloc (p->nr_slots * (size_t) VMS_CHUNK_SIZE);
  if (p->pool == NULL) {
    vms_set_error (ENOMEM, "out of memory for %zu chunk buffers", p->nr_slots);
    return -1;
  }
  for (size_t i = 0; i < p->nr_slots; i++) {
    p->slots[i].p = p;
    p->slots[i].buf = p->pool + i * (size_t) VMS_CHUNK_SIZE;
    p->free_slots[p->nr_free++] = i;
  }
  for (unsigned i = 0; i < workers; i++) {
    int r = pthread_create (&p->threads[i], NULL, copy_worker, p);
    if (r != 0) {
      vms_set_error (r, "cannot start a copy thread: %s", strerror (r));
      return -1;
    }
    p->nr_threads++;
  }
  return 0;
}

/* Stop the workers (after they drained the queue, unless failed), free
 * everything. Returns 0, or -1 with the pipeline's error set. */
static int
copy_pipeline_finish (struct copy_pipeline *p)
{
  int r = 0;

  pthread_mutex_lock (&p->lock);
  p->end_of_input = 1;
  pthread_cond_broadcast (&p->ready_cond);
  pthread_mutex_unlock (&p->lock);
  for (size_t i = 0; i < p->nr_threads; i++)
    pthread_join (p->threads[i], NULL);
  r = vms_first_error_raise (&p->error);
  free (p->pool);
  free (p->slots);
  free (p->free_slots);
  free (p->ready);
  free (p->threads);
  pthread_cond_destroy (&p->ready_cond);
  pthread_cond_destroy (&p->free_cond);
  pthread_mutex_destroy (&p->lock);
  return r;
}

/* Whether chunk c can be taken from the parent index unchanged (when it is
 * not dirty): the parent has it, with the same length. */
static int
copy_parent_has (const vms_index *parent, const vms_index *idx, uint64_t c)
{
  return parent && c < vms_index_chunk_count (parent)
    && vms_index_chunk_len (parent, c) == vms_index_chunk_len (idx, c);
}

/* The data ranges of [start, end) according to sorted extents whose flags
 * say "reads as zero" by zero_mask; extents are clamped to the chunk.
 * Ranges beyond COPY_MAX_RANGES collapse into one span. */
static size_t
copy_data_ranges (const copy_extent_vector *ext, size_t *cursor,
                  uint64_t start, uint64_t end, uint32_t zero_mask,
                  struct copy_range *ranges)
{
  size_t n = 0;
  size_t i = *cursor;

  /* Skip extents wholly before this chunk; keep the cursor on the first
   * one that may reach into the next. */
  while (i < ext->len && ext->ptr[i].offset + ext->ptr[i].length <= start)
    i++;
  *cursor = i;
  for (; i < ext->len && ext->ptr[i].offset < end; i++) {
    const struct copy_extent *e = &ext->ptr[i];
    uint64_t a = e->offset > start ? e->offset : start;
    uint64_t b = e->offset + e->length < end ? e->offset + e->length : end;

    if (a >= b || (e->flags & zero_mask))
      continue;
    if (n > 0 && ranges[n - 1].offset + ranges[n - 1].length == a)
      ranges[n - 1].length += b - a;
    else if (n == COPY_MAX_RANGES) {
      ranges[0].length = b - ranges[0].offset;
      n = 1;
    }
    else {
      ranges[n].offset = a;
      ranges[n].length = b - a;
      n++;
    }
  }
  return n;
}

/* Whether any extent of ext overlapping [start, end) has flag set. */
static int
copy_any_flag (const copy_extent_vector *ext, size_t *cursor,
               uint64_t start, uint64_t end, uint32_t flag)
{
  size_t i = *cursor;

  while (i < ext->len && ext->ptr[i].offset + ext->ptr[i].length <= start)
    i++;
  *cursor = i;
  for (; i < ext->len && ext->ptr[i].offset < end; i++)
    if (ext->ptr[i].flags & flag)
      return 1;
  return 0;
}

/* Zero the parts of a chunk buffer that no range covers. */
static void
copy_zero_gaps (char *buf, uint64_t start, size_t len,
                const struct copy_range *r, size_t n)
{
  uint64_t pos = start;

  for (size_t i = 0; i < n; i++) {
    if (r[i].offset > pos)
      memset (buf + (pos - start), 0, r[i].offset - pos);
    pos = r[i].offset + r[i].length;
  }
  if (pos < start + len)
    memset (buf + (pos - start), 0, start + len - pos);
}

/* ---- reading over NBD ---- */

struct copy_nbd {
  struct copy_pipeline *p;
  struct nbd_handle *h;
  const char *uri;
  const char *dirty_context;
  /* Issue 11: the changed extents as a list (src->changed), or NULL. */
  const struct vms_extent *changed;
  size_t nr_changed;
  int have_alloc;
  uint64_t request_size;        /* largest NBD read request */
  /* Block status of the current window, per context. */
  copy_extent_vector alloc, dirty;
  /* Chunks the bitmap calls unchanged that are read anyway (issue 21). */
  double sample;                /* probability per such chunk; 0: none */
  int sample_adaptive;          /* the default: sample is set per window */
  double sample_floor;          /* adaptive: VMS_CBT_SAMPLE_MIN per disk */
  uint64_t rng;                 /* xorshift64 state */
  cbt_samples *samples;
  int bs_error;
};

/* End of what extents cover, or start when empty. */
static uint64_t
copy_extents_end (const copy_extent_vector *v, uint64_t start)
{
  return v->len ? v->ptr[v->len - 1].offset + v->ptr[v->len - 1].length : start;
}

static int
copy_nbd_extent_cb (void *user_data, const char *metacontext, uint64_t offset,
                    uint32_t *entries, size_t nr_entries, int *error)
{
  struct copy_nbd *c = user_data;
  copy_extent_vector *v;
  uint64_t pos = offset;

  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0)
    v = &c->alloc;
  else if (c->dirty_context && strcmp (metacontext, c->dirty_context) == 0)
    v = &c->dirty;
  else
    return 0;
  for (size_t i = 0; i + 1 < nr_entries; i += 2) {
    struct copy_extent e = { .offset = pos, .length = entries[i],
                             .flags = entries[i + 1] };
    uint64_t covered = copy_extents_end (v, 0);

    if (__builtin_add_overflow (pos, e.length, &pos)) {
      c->bs_error = EOVERFLOW;
      return -1;
    }
    /* A later request of the window may repeat what an earlier one said
     * (the two contexts end at different places): keep extents sorted and
     * disjoint. */
    if (covered > e.offset) {
      if (covered >= pos)
        continue;
      e.length = pos - covered;
      e.offset = covered;
    }
    if (e.length == 0)
      continue;
    if (copy_extent_vector_append (v, e) == -1) {
      c->bs_error = ENOMEM;
      return -1;
    }
  }
  return 0;
}

/* Fill c->alloc and c->dirty for [start, end). */
static int
copy_nbd_block_status (struct copy_nbd *c, uint64_t start, uint64_t end)
{
  uint64_t pos = start;

  c->alloc.len = c->dirty.len = 0;
  if (!c->have_alloc) {
    struct copy_extent all = { .offset = start, .length = end - start, .flags = 0 };
    if (copy_extent_vector_append (&c->alloc, all) == -1)
      return -1;
    if (!c->dirty_context)
      return 0;
  }
  while (pos < end) {
    uint64_t next = end;

    c->bs_error = 0;
    if (nbd_block_status (c->h, end - pos, pos,
                          (nbd_extent_callback) { .callback = copy_nbd_extent_cb,
                                                  .user_data = c }, 0) == -1) {
      vms_set_error (c->bs_error ? c->bs_error : nbd_get_errno (),
                     "asking %s for block status at offset %" PRIu64 ": %s",
                     c->uri, pos, c->bs_error ? strerror (c->bs_error) : nbd_get_error ());
      return -1;
    }
    if (c->have_alloc && copy_extents_end (&c->alloc, pos) < next)
      next = copy_extents_end (&c->alloc, pos);
    if (c->dirty_context && copy_extents_end (&c->dirty, pos) < next)
      next = copy_extents_end (&c->dirty, pos);
    if (next <= pos) {
      vms_set_error (EPROTO, "asking %s for block status at offset %" PRIu64
                     ": the server returned no extents", c->uri, pos);
      return -1;
    }
    pos = next;
  }
  return 0;
}

/* Issue 11: c->dirty for [start, end) from the list of changed extents
 * (sorted, disjoint; validated by the caller), as a dirty bitmap would
 * say it. */
static int
copy_changed_window (struct copy_nbd *c, uint64_t start, uint64_t end)
{
  c->dirty.len = 0;
  for (size_t i = 0; i < c->nr_changed; i++) {
    const struct vms_extent *x = &c->changed[i];
    uint64_t a = x->offset > start ? x->offset : start;
    uint64_t b = x->offset + x->length < end ? x->offset + x->length : end;
    struct copy_extent e = { .offset = a, .length = b - a,
                             .flags = NBD_STATE_DIRTY };

    if (x->offset >= end)
      break;
    if (a < b && copy_extent_vector_append (&c->dirty, e) == -1) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  }
  return 0;
}

struct copy_read {
  struct copy_slot *slot;
  struct copy_nbd *c;
  uint64_t offset;
};

/* Drop one reference to a slot being read; the last one hands it on. */
static void
copy_slot_put (struct copy_slot *s)
{
  assert (s->pending > 0);
  if (--s->pending == 0) {
    s->p->inflight--;
    if (s->failed)
      copy_return_slot (s);
    else
      copy_slot_ready (s);
  }
}

static int
copy_nbd_read_done (void *user_data, int *error)
{
  struct copy_read *r = user_data;
  struct copy_slot *s = r->slot;

  if (*error) {
    s->failed = 1;
    copy_fail (s->p, *error, "reading %s at offset %" PRIu64 ": %s",
               r->c->uri, r->offset, strerror (*error));
  }
  copy_slot_put (s);
  return 1;
}

static void
copy_nbd_read_free (void *user_data)
{
  free (user_data);
}

/* Run the NBD state machine until fewer than max chunks are in flight. */
static int
copy_nbd_drain (struct copy_nbd *c, unsigned max)
{
  while (c->p->inflight > max) {
    if (nbd_poll (c->h, -1) == -1) {
      copy_fail (c->p, nbd_get_errno (), "reading %s: %s", c->uri, nbd_get_error ());
      return -1;
    }
  }
  return 0;
}

/* Issue one read of [offset, offset + length) into slot s (whose chunk
 * starts at start). On failure the slot is marked failed. */
static int
copy_nbd_issue (struct copy_nbd *c, struct copy_slot *s, uint64_t start,
                uint64_t offset, uint64_t length)
{
  struct copy_pipeline *p = c->p;
  struct copy_read *r = malloc (sizeof *r);

  if (r == NULL) {
    copy_fail (p, ENOMEM, "out of memory");
    s->failed = 1;
    return -1;
  }
  r->slot = s;
  r->c = c;
  r->offset = offset;
  s->pending++;
  /* On failure the completion callback is not called, the free one is. */
  if (nbd_aio_pread (c->h, s->buf + (offset - start), length, offset,
                     (nbd_completion_callback) { .callback = copy_nbd_read_done,
                                                 .user_data = r,
                                                 .free = copy_nbd_read_free },
                     0) == -1) {
    s->pending--;
    s->failed = 1;
    copy_fail (p, nbd_get_errno (), "reading %s at offset %" PRIu64 ": %s",
               c->uri, offset, nbd_get_error ());
    return -1;
  }
  p->stats.bytes_read += length;
  return 0;
}

static int
copy_nbd_read_chunk (struct copy_nbd *c, uint64_t chunk, size_t len,
                     const struct copy_range *ranges, size_t n)
{
  struct copy_pipeline *p = c->p;
  struct copy_slot *s;
  uint64_t start = chunk * (uint64_t) VMS_CHUNK_SIZE;

  /* Wait for a buffer: while reads are in flight, by completing them. */
  while ((s = copy_take_slot (p, p->inflight == 0)) == NULL) {
    if (copy_failed (p))
      return -1;
    if (nbd_poll (c->h, -1) == -1) {
      copy_fail (p, nbd_get_errno (), "reading %s: %s", c->uri, nbd_get_error ());
      return -1;
    }
  }
  s->chunk = chunk;
  s->len = len;
  s->failed = 0;
  /* One reference held while issuing, so that the slot cannot complete
   * before every read is issued. */
  s->pending = 1;
  copy_zero_gaps (s->buf, start, len, ranges, n);
  p->inflight++;
  for (size_t i = 0; i < n && !s->failed; i++)
    for (uint64_t o = 0; o < ranges[i].length && !s->failed; o += c->request_size) {
      uint64_t piece = ranges[i].length - o;
      if (piece > c->request_size)
        piece = c->request_size;
      copy_nbd_issue (c, s, start, ranges[i].offset + o, piece);
    }
  copy_slot_put (s);
  return s->failed ? -1 : 0;
}

/* Whether to read this unchanged chunk anyway. */
static int
cbt_sample_this (struct copy_nbd *c)
{
  if (c->sample <= 0)
    return 0;
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return (double) (c->rng >> 11) * 0x1.0p-53 < c->sample;
}

/* The default sample costs at most this share of the chunks an
 * incremental reads anyway (beyond the minimum), so that it stays within
 * 5% of the incremental's time (docs/changed-block-tracking.md). */
#define CBT_SAMPLE_SHARE (1.0 / 25)

/* Set c->sample for the window [w, wend) whose block status is in c: a
 * fixed fraction when the caller asked for one; by default
 * VMS_CBT_SAMPLE_DEFAULT of the unchanged chunks, but no more than
 * CBT_SAMPLE_SHARE of the chunks the window reads, and never less than
 * the share that gives VMS_CBT_SAMPLE_MIN per disk. */
static void
cbt_window_probability (struct copy_nbd *c, const vms_index *idx,
                        uint64_t w, uint64_t wend)
{
  uint64_t dirty = 0, clean;
  size_t cur = 0;
  double p;

  if (!c->sample_adaptive)
    return;
  for (uint64_t ch = w; ch < wend; ch++) {
    uint64_t cs = ch * (uint64_t) VMS_CHUNK_SIZE;
    dirty += copy_any_flag (&c->dirty, &cur, cs, cs + vms_index_chunk_len (idx, ch),
                            NBD_STATE_DIRTY);
  }
  clean = wend - w - dirty;
  p = clean ? CBT_SAMPLE_SHARE * (double) dirty / (double) clean : 0;
  if (p > VMS_CBT_SAMPLE_DEFAULT)
    p = VMS_CBT_SAMPLE_DEFAULT;
  if (p < c->sample_floor)
    p = c->sample_floor;
  c->sample = p > 1 ? 1 : p;
}

static int
copy_from_nbd (struct copy_pipeline *p, const struct vms_source *src,
               struct nbd_handle *h, unsigned max_inflight,
               cbt_samples *samples)
{
  struct copy_nbd c = { .p = p, .h = h, .uri = src->nbd_uri,
                        .dirty_context = src->dirty_context,
                        .changed = src->changed, .nr_changed = src->nr_changed,
                        .alloc = empty_vector, .dirty = empty_vector,
                        .samples = samples };
  unsigned max_kib = VMS_CHUNK_SIZE / 1024;
  unsigned request_kib = datapath_env_uint ("VMSHADOW_NBD_REQUEST_KIB",
                                            COPY_REQUEST_KIB < max_kib
                                            ? COPY_REQUEST_KIB : max_kib,
                                            4, max_kib);
  uint64_t nr_chunks = vms_index_chunk_count (p->idx);
  struct copy_range ranges[COPY_MAX_RANGES];
  const int incr = src->dirty_context != NULL || src->changed != NULL;
  int r = -1;

  c.request_size = (uint64_t) request_kib * 1024;
  if (incr && src->cbt_sample >= 0 && nr_chunks > 0) {
    c.sample = src->cbt_sample > 1 ? 1 : src->cbt_sample;
    c.sample_adaptive = src->cbt_sample == 0;
    c.sample_floor = (double) VMS_CBT_SAMPLE_MIN / (double) nr_chunks;
    /* Unpredictable, so that over many backups every chunk gets checked. */
    if (getrandom (&c.rng, sizeof c.rng, 0) != sizeof c.rng || c.rng == 0)
      c.rng = (uint64_t) vms_now_ms () | 1;
  }
  c.have_alloc = nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  if (!c.have_alloc)
    vms_debug ("%s has no base:allocation: reading every chunk", src->nbd_uri);

  for (uint64_t w = 0; w < nr_chunks && !copy_failed (p); w += COPY_WINDOW_CHUNKS) {
    uint64_t wend = w + COPY_WINDOW_CHUNKS < nr_chunks ? w + COPY_WINDOW_CHUNKS : nr_chunks;
    uint64_t start = w * (uint64_t) VMS_CHUNK_SIZE;
    uint64_t end = wend == nr_chunks ? p->stats.size : wend * (uint64_t) VMS_CHUNK_SIZE;
    size_t acur = 0, dcur = 0;

    if (copy_nbd_block_status (&c, start, end) == -1 ||
        (c.changed && copy_changed_window (&c, start, end) == -1)) {
      copy_fail (p, vms_get_errno (), "%s", vms_get_error ());
      break;
    }
    cbt_window_probability (&c, p->idx, w, wend);
    for (uint64_t ch = w; ch < wend; ch++) {
      uint64_t cs = ch * (uint64_t) VMS_CHUNK_SIZE;
      size_t len = vms_index_chunk_len (p->idx, ch);
      size_t n;

      if (copy_failed (p))
        break;
      if (incr && copy_parent_has (src->parent, p->idx, ch)
          && !copy_any_flag (&c.dirty, &dcur, cs, cs + len, NBD_STATE_DIRTY)) {
        if (!cbt_sample_this (&c)) {
          if (copy_set_entry (p, ch, vms_index_get (src->parent, ch), 1) == -1)
            break;
          continue;
        }
        /* Sampled: read like a dirty chunk, compared with the parent once
         * every chunk is in (cbt_differed). */
        if (cbt_samples_append (c.samples, ch) == -1) {
          copy_fail (p, ENOMEM, "out of memory");
          break;
        }
      }
      n = copy_data_ranges (&c.alloc, &acur, cs, cs + len, LIBNBD_STATE_ZERO, ranges);
      if (n == 0) {
        static const struct vms_digest zero;
        if (copy_set_entry (p, ch, &zero, 0) == -1)
          break;
        continue;
      }
      if (copy_nbd_read_chunk (&c, ch, len, ranges, n) == -1)
        break;
      if (copy_nbd_drain (&c, max_inflight - 1) == -1)
        break;
      copy_report_progress (p, 0);
    }
  }
  /* Whatever happened, no read may still target a buffer. */
  if (copy_nbd_drain (&c, 0) == 0 && !copy_failed (p))
    r = 0;
  copy_extent_vector_reset (&c.alloc);
  copy_extent_vector_reset (&c.dirty);
  return r;
}

/* ---- reading a plain file ---- */

/* Data ranges of [start, end) of fd by SEEK_DATA/SEEK_HOLE; the whole
 * range when the file system cannot say. Returns -1 on error. */
static ssize_t
copy_file_ranges (int fd, const char *path, uint64_t start, uint64_t end,
                  struct copy_range *ranges)
{
  size_t n = 0;
  off_t pos = (off_t) start;

  while ((uint64_t) pos < end) {
    off_t data = lseek (fd, pos, SEEK_DATA), hole;
    if (data == -1) {
      if (errno == ENXIO)
        break;                  /* a hole up to the end of the file */
      if (errno == EINVAL || errno == ENOTSUP) {
        ranges[0].offset = start;
        ranges[0].length = end - start;
        return 1;
      }
      vms_set_error (errno, "looking for data in %s at offset %" PRIu64 ": %s",
                     path, (uint64_t) pos, strerror (errno));
      return -1;
    }
    if ((uint64_t) data >= end)
      break;
    hole = lseek (fd, data, SEEK_HOLE);
    if (hole == -1) {
      vms_set_error (errno, "looking for holes in %s at offset %" PRIu64 ": %s",
                     path, (uint64_t) data, strerror (errno));
      return -1;
    }
    if ((uint64_t) hole > end)
      hole = (off_t) end;
    if (n == COPY_MAX_RANGES) {
      ranges[0].length = (uint64_t) hole - ranges[0].offset;
      n = 1;
    }
    else {
      ranges[n].offset = (uint64_t) data;
      ranges[n].length = (uint64_t) (hole - data);
      n++;
    }
    pos = hole;
  }
  return (ssize_t) n;
}

static int
copy_from_file (struct copy_pipeline *p, const char *path, int fd)
{
  uint64_t nr_chunks = vms_index_chunk_count (p->idx);
  struct copy_range ranges[COPY_MAX_RANGES];

  for (uint64_t ch = 0; ch < nr_chunks && !copy_failed (p); ch++) {
    uint64_t cs = ch * (uint64_t) VMS_CHUNK_SIZE;
    size_t len = vms_index_chunk_len (p->idx, ch);
    ssize_t n = copy_file_ranges (fd, path, cs, cs + len, ranges);
    struct copy_slot *s;

    if (n == -1) {
      copy_fail (p, vms_get_errno (), "%s", vms_get_error ());
      return -1;
    }
    if (n == 0) {
      static const struct vms_digest zero;
      if (copy_set_entry (p, ch, &zero, 0) == -1)
        return -1;
      continue;
    }
    s = copy_take_slot (p, 1);
    if (s == NULL)
      return -1;
    s->chunk = ch;
    s->len = len;
    copy_zero_gaps (s->buf, cs, len, ranges, (size_t) n);
    for (ssize_t i = 0; i < n; i++) {
      uint64_t done = 0;
      while (done < ranges[i].length) {
        ssize_t got = pread (fd, s->buf + (ranges[i].offset - cs) + done,
                             ranges[i].length - done,
                             (off_t) (ranges[i].offset + done));
        if (got == -1 && errno == EINTR)
          continue;
        if (got <= 0) {
          int e = got == 0 ? EIO : errno;
          copy_fail (p, e, "reading %s at offset %" PRIu64 ": %s", path,
                     ranges[i].offset + done,
                     got == 0 ? "unexpected end of file (did it shrink while "
                     "being read?)" : strerror (e));
          copy_return_slot (s);
          return -1;
        }
        done += (uint64_t) got;
      }
      p->stats.bytes_read += ranges[i].length;
    }
    copy_slot_ready (s);
    copy_report_progress (p, 0);
  }
  return copy_failed (p) ? -1 : 0;
}

/* ---- the entry point ---- */

static int
copy_open_nbd (const struct vms_source *src, struct nbd_handle **hp, uint64_t *size)
{
  CLEANUP (nbd_close) struct nbd_handle *h = nbd_create ();
  int64_t sz;

  *hp = NULL;
  if (h == NULL) {
    vms_set_error (nbd_get_errno (), "cannot create an NBD handle: %s",
                   nbd_get_error ());
    return -1;
  }
  /* libnbd zeroes every read buffer first unless told not to: 2 GiB of
   * memset for a disk with 2 GiB of data (issue 15's profile). A buffer is
   * used only after its reads succeeded (copy_nbd_read_done marks a
   * failed one, which goes back to the pool unread), so nothing
   * uninitialized is
   * ever hashed or stored (a read is all or nothing: libnbd's nbd_pread(3)). */
  if (nbd_set_pread_initialize (h, false) == -1
      || nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1
      || (src->dirty_context
          && nbd_add_meta_context (h, src->dirty_context) == -1)
      || nbd_connect_uri (h, src->nbd_uri) == -1) {
    vms_set_error (nbd_get_errno (), "cannot connect to %s: %s", src->nbd_uri,
                   nbd_get_error ());
    return -1;
  }
  if (src->dirty_context && nbd_can_meta_context (h, src->dirty_context) != 1) {
    vms_set_error (ENOENT, "%s does not offer the dirty bitmap context \"%s\"; "
                   "the bitmap is missing: read this disk in full",
                   src->nbd_uri, src->dirty_context);
    return -1;
  }
  sz = nbd_get_size (h);
  if (sz < 0) {
    vms_set_error (nbd_get_errno (), "cannot get the size of %s: %s",
                   src->nbd_uri, nbd_get_error ());
    return -1;
  }
  *hp = h;
  h = NULL;
  *size = (uint64_t) sz;
  return 0;
}

/* One read of src into the repository (vms_copy_to_repo); the chunks
 * sampled to check the bitmap go to samples. */
static vms_index *
copy_once (vms_repo *repo, const struct vms_source *src,
           struct vms_copy_stats *stats, vms_progress_fn progress,
           void *opaque, cbt_samples *samples)
{
  struct copy_pipeline p;
  CLEANUP (nbd_close) struct nbd_handle *h = NULL;
  CLEANUP_CLOSE int fd = -1;
  uint64_t size = 0;
  CLEANUP (vms_index_free) vms_index *idx = NULL;
  int64_t t0 = vms_now_ms ();
  unsigned workers, inflight;
  int r;

  if (repo == NULL || src == NULL || (!src->path == !src->nbd_uri)) {
    vms_set_error (EINVAL, "vms_copy_to_repo: give exactly one of path and nbd_uri");
    return NULL;
  }
  if (src->path && (src->dirty_context || src->changed)) {
    vms_set_error (EINVAL, "cannot read %s incrementally: a dirty bitmap "
                   "needs an NBD source", src->path);
    return NULL;
  }
  if ((src->dirty_context || src->changed) && src->parent == NULL) {
    vms_set_error (EINVAL, "cannot read %s incrementally: no parent index "
                   "to take unchanged chunks from", src->nbd_uri);
    return NULL;
  }

  if (src->path) {
    struct stat st;
    fd = open (src->path, O_RDONLY | O_CLOEXEC);
    if (fd == -1 || fstat (fd, &st) == -1) {
      vms_set_error (errno, "cannot open %s: %s", src->path, strerror (errno));
      return NULL;
    }
    if (S_ISREG (st.st_mode))
      size = (uint64_t) st.st_size;
    else {
      off_t end = lseek (fd, 0, SEEK_END);
      if (end < 0) {
        vms_set_error (errno, "cannot get the size of %s: %s", src->path,
                       strerror (errno));
        return NULL;
      }
      size = (uint64_t) end;
    }
  }
  else if (copy_open_nbd (src, &h, &size) == -1)
    return NULL;

  idx = vms_index_new (size);
  if (idx == NULL)
    return NULL;
  workers = datapath_workers (1);
  inflight = h ? datapath_env_uint ("VMSHADOW_NBD_INFLIGHT",
                                    COPY_INFLIGHT_BYTES / VMS_CHUNK_SIZE < 4 ? 4
                                    : (unsigned) (COPY_INFLIGHT_BYTES / VMS_CHUNK_SIZE),
                                    1, 256) : 0;
  if (copy_pipeline_init (&p, repo, idx, src->path ? src->path : src->nbd_uri,
                          workers, inflight) == -1) {
    copy_fail (&p, vms_get_errno (), "%s", vms_get_error ());
    copy_pipeline_finish (&p);
    return NULL;
  }
  p.stats.size = size;
  p.progress = progress;
  p.opaque = opaque;

  if (h)
    r = copy_from_nbd (&p, src, h, inflight, samples);
  else
    r = copy_from_file (&p, src->path, fd);
  /* The handle goes first: no read may land in a freed buffer. */
  if (h) {
    if (r == 0)
      nbd_shutdown (h, 0);
    nbd_close (h);
    h = NULL;
  }
  if (copy_pipeline_finish (&p) == -1)
    r = -1;
  if (r == -1)
    return NULL;
  p.stats.elapsed_ms = vms_now_ms () - t0;
  assert (p.done == size);
  if (progress)
    progress (opaque, size, size);
  if (stats)
    *stats = p.stats;
  vms_debug ("copied %s: %" PRIu64 " bytes, %" PRIu64 " read, %" PRIu64
             " stored, %" PRIu64 " new / %" PRIu64 " reused / %" PRIu64
             " zero chunks in %" PRId64 " ms",
             src->path ? src->path : src->nbd_uri, size, p.stats.bytes_read,
             p.stats.bytes_stored, p.stats.chunks_new, p.stats.chunks_reused,
             p.stats.chunks_zero, p.stats.elapsed_ms);
  vms_index *ret = idx;
  idx = NULL;
  return ret;
}

/* How many sampled chunks differ from the parent. */
static uint64_t
cbt_differed (const vms_index *idx, const vms_index *parent,
              const cbt_samples *samples)
{
  uint64_t n = 0;

  for (size_t i = 0; i < samples->len; i++) {
    uint64_t c = samples->ptr[i];
    n += memcmp (vms_index_get (idx, c), vms_index_get (parent, c),
                 sizeof (struct vms_digest)) != 0;
  }
  return n;
}

vms_index *
vms_copy_to_repo (vms_repo *repo, const struct vms_source *src,
                  struct vms_copy_stats *stats, vms_progress_fn progress,
                  void *opaque)
{
  cbt_samples samples = empty_vector;
  struct vms_copy_stats st, full;
  struct vms_source whole;
  vms_index *idx;

  idx = copy_once (repo, src, &st, progress, opaque, &samples);
  if (idx && samples.len > 0) {
    st.cbt_sampled = samples.len;
    st.cbt_differed = cbt_differed (idx, src->parent, &samples);
  }
  cbt_samples_reset (&samples);
  if (idx && st.cbt_differed > 0) {
    /* The bitmap called changed chunks unchanged: nothing it says can be
     * trusted. The source is still the same point in time, so read it
     * again in full. */
    vms_debug ("changed-block tracking was wrong for %s: %" PRIu64 " of %"
               PRIu64 " sampled chunks differed; reading it in full",
               src->nbd_uri, st.cbt_differed, st.cbt_sampled);
    vms_index_free (idx);
    whole = *src;
    whole.dirty_context = NULL;
    whole.changed = NULL;
    whole.nr_changed = 0;
    whole.parent = NULL;
    idx = copy_once (repo, &whole, &full, progress, opaque, NULL);
    if (idx) {
      full.bytes_read += st.bytes_read;
      full.bytes_stored += st.bytes_stored;
      full.elapsed_ms += st.elapsed_ms;
      full.cbt_sampled = st.cbt_sampled;
      full.cbt_differed = st.cbt_differed;
      full.full_reread = 1;
      st = full;
    }
  }
  if (idx && stats)
    *stats = st;
  return idx;
}

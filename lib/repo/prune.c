/* Maintenance that deletes: prune (which backups a keep policy removes, in
 * the manner of restic's and borg's --keep-* rules) and gc (mark and sweep
 * of chunks no committed backup references, and of leftovers of
 * interrupted backups). In version 1 both need the writer lock, so no
 * backup runs meanwhile; in version 2 they run beside backups (issue 12,
 * docs/repository-format.md "Concurrency"; pack.c's two-phase gc). gc refuses to sweep when any backup cannot be read: it could
 * not know which chunks that backup needs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "fs-util.h"
#include "repo-internal.h"
#include "storage.h"
#include "vector.h"
#include "vmshadow/error.h"

/* ---- selection ---- */

static int
newest_first (const void *a, const void *b)
{
  const struct prune_item *x = *(const struct prune_item *const *) a;
  const struct prune_item *y = *(const struct prune_item *const *) b;
  if (x->time != y->time)
    return x->time > y->time ? -1 : 1;
  if (x->nsec != y->nsec)
    return x->nsec > y->nsec ? -1 : 1;
  return strcmp (y->id, x->id);
}

/* The day, ISO week or month of t in local time, as one number. */
static int64_t
bucket (int64_t t, unsigned rule)
{
  time_t tt = (time_t) t;
  struct tm tm;
  char buf[16];

  if (localtime_r (&tt, &tm) == NULL)
    return t;
  switch (rule) {
  case PRUNE_DAILY:
    return (int64_t) tm.tm_year * 1000 + tm.tm_yday;
  case PRUNE_WEEKLY:
    strftime (buf, sizeof buf, "%G%V", &tm);
    return strtoll (buf, NULL, 10);
  default:
    return (int64_t) tm.tm_year * 12 + tm.tm_mon;
  }
}

/* The rules over one group, newest first; reasons are added to. */
static void
select_group (struct prune_item **order, size_t n,
              const struct vms_prune_policy *policy)
{
  const struct { unsigned rule, keep; } rules[] = {
    { PRUNE_DAILY, policy->keep_daily },
    { PRUNE_WEEKLY, policy->keep_weekly },
    { PRUNE_MONTHLY, policy->keep_monthly },
  };

  qsort (order, n, sizeof *order, newest_first);
  for (size_t i = 0; i < n && i < policy->keep_last; i++)
    order[i]->reasons |= PRUNE_LAST;
  for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
    unsigned kept = 0;
    int64_t last = 0;
    /* Newest first: the first backup of each bucket is its newest. */
    for (size_t i = 0; i < n && kept < rules[r].keep; i++) {
      int64_t b = bucket (order[i]->time, rules[r].rule);
      if (kept == 0 || b != last) {
        order[i]->reasons |= rules[r].rule;
        last = b;
        kept++;
      }
    }
  }
}

static int
holds (const struct prune_item *it, const char *key)
{
  if (key == NULL)
    return it->nr_keys == 0;
  for (size_t k = 0; k < it->nr_keys; k++)
    if (strcmp (it->keys[k], key) == 0)
      return 1;
  return 0;
}

/* 1 if key first appears in item i (so that each group runs once). */
static int
first_holder (const struct prune_item *items, size_t i, const char *key)
{
  for (size_t j = 0; j < i; j++)
    if (holds (&items[j], key))
      return 0;
  return 1;
}

int
prune_select (struct prune_item *items, size_t n,
              const struct vms_prune_policy *policy)
{
  struct prune_item **order = calloc (n ? n : 1, sizeof *order);

  if (order == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    items[i].reasons = 0;
  /* One group per component (and one of the backups that hold none). */
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < (items[i].nr_keys ? items[i].nr_keys : 1); k++) {
      const char *key = items[i].nr_keys ? items[i].keys[k] : NULL;
      size_t m = 0;
      if (!first_holder (items, i, key))
        continue;
      for (size_t j = i; j < n; j++)
        if (holds (&items[j], key))
          order[m++] = &items[j];
      select_group (order, m, policy);
    }
  free (order);
  return 0;
}

const char *
prune_reasons_text (unsigned reasons, char *buf, size_t len)
{
  static const char *const names[] = { "last", "daily", "weekly", "monthly" };
  size_t off = 0;

  buf[0] = '\0';
  for (unsigned i = 0; i < 4; i++)
    if (reasons & (1u << i))
      off += (size_t) snprintf (buf + off, off < len ? len - off : 0, "%s%s",
                                off ? ", " : "", names[i]);
  return buf;
}

/* ---- prune ---- */

void
repo_say (vms_repo_report_fn report, void *opaque, const char *fmt, ...)
{
  char line[1024];
  va_list ap;

  if (report == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  report (opaque, line);
}

/* v2: 1 if backup id's manifest is under a retention that lasts (by the
 * store's clock), with its date and size; 0 if not or it cannot be told
 * (then the delete itself says why). */
static int
backup_retained (vms_repo *repo, const char *id, int64_t *until,
                 uint64_t *size)
{
  char name[STORAGE_NAME_MAX + 32], dir[STORAGE_NAME_MAX + 1];
  struct storage_stat st;

  if (repo_backup_dir (repo, id, dir, sizeof dir) == -1)
    return 0;
  snprintf (name, sizeof name, "%s/manifest", dir);
  if (storage_stat (repo->store, name, &st) == -1 || st.retain_until == 0)
    return 0;
  if (st.now == 0 && storage_now (repo->store, &st.now) == -1)
    return 0;
  *until = st.retain_until;
  *size = st.size;
  return st.retain_until > st.now;
}

/* v2: the manifest goes first (the backup is gone at once), then the
 * backup's other objects. */
static int
remove_backup_v2 (vms_repo *repo, const char *id)
{
  char name[STORAGE_NAME_MAX + 32], dir[STORAGE_NAME_MAX + 1];
  string_vector o = empty_vector;
  int r = 0;

  if (repo_backup_dir (repo, id, dir, sizeof dir) == -1) {
    vms_set_error (errno, "repository %s: cannot remove backup %s: %s",
                   repo->path, id, repo_errstr (errno));
    return -1;
  }
  snprintf (name, sizeof name, "%s/manifest", dir);
  if (storage_delete (repo->store, name) == -1) {
    vms_set_error (errno, "repository %s: cannot remove backup %s: %s",
                   repo->path, id, repo_errstr (errno));
    return -1;
  }
  snprintf (name, sizeof name, "%s/", dir);
  if (storage_list (repo->store, name, storage_collect_names, &o) != 0)
    r = -1;
  for (size_t i = 0; r == 0 && i < o.len; i++)
    if (storage_delete (repo->store, o.ptr[i]) == -1)
      r = -1;
  string_vector_free_all (&o);    /* free keeps errno */
  if (r == -1)
    vms_set_error (errno, "repository %s: backup %s is removed, but some of "
                   "its objects are left (gc removes them): %s", repo->path,
                   id, repo_errstr (errno));
  return 0;
}

/* v1: rename backups/<id> away (the backup is gone at once, atomically),
 * then delete the files. */
static int
remove_backup (vms_repo *repo, const char *id)
{
  char to[MAX_BACKUP_ID_LEN + 64];

  if (repo->version >= 2)
    return remove_backup_v2 (repo, id);

  /* Relative to the fds of backups/ and tmp/, and only the name renamed:
   * a backups/<id> that is a link is moved, never followed. */
  snprintf (to, sizeof to, "%d.%u.prune-%s", (int) getpid (),
            repo->txn_counter++, id);
  if (renameat (repo->backups_fd, id, repo->tmp_fd, to) == -1 ||
      fsync (repo->backups_fd) == -1) {
    vms_set_error (errno, "repository %s: cannot remove backup %s: %s",
                   repo->path, id, repo_errstr (errno));
    return -1;
  }
  if (vms_rmtree_at (repo->tmp_fd, to) == -1)
    vms_set_error (errno, "repository %s: backup %s is removed, but its files "
                   "in tmp/%s are left (gc removes them): %s", repo->path, id, to,
                   repo_errstr (errno));
  return 0;
}

/* The components a backup holds, from its manifest's files, as
 * "<writer-id>/<component>" (malloc'd into item->keys). */
static int
item_keys (vms_repo *repo, struct prune_item *it)
{
  vms_manifest *m = manifest_load (repo, it->id);
  char **keys;
  size_t nk = 0;

  if (m == NULL)
    return -1;
  keys = calloc (vms_manifest_file_count (m) + 1, sizeof *keys);
  if (keys == NULL)
    goto oom;
  for (size_t f = 0; f < vms_manifest_file_count (m); f++) {
    struct vms_stored_file sf;
    uint64_t size;
    char *k;
    int dup = 0;

    if (vms_manifest_file (m, f, &sf, &size) == -1)
      continue;
    if (asprintf (&k, "%s/%s", sf.writer_id ? sf.writer_id : "",
                  sf.component ? sf.component : "") == -1)
      goto oom;
    for (size_t j = 0; j < nk && !dup; j++)
      dup = strcmp (keys[j], k) == 0;
    if (dup)
      free (k);
    else
      keys[nk++] = k;
  }
  vms_manifest_free (m);
  it->keys = (const char *const *) keys;
  it->nr_keys = nk;
  return 0;
 oom:
  for (size_t j = 0; keys && j < nk; j++)
    free (keys[j]);
  free (keys);
  vms_manifest_free (m);
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

static void
items_free (struct prune_item *items, size_t n)
{
  for (size_t i = 0; items && i < n; i++) {
    for (size_t k = 0; k < items[i].nr_keys; k++)
      free ((char *) items[i].keys[k]);
    free ((void *) items[i].keys);
  }
  free (items);
}

/* 1 if backup id was made by job (its manifest's attrs "job"), 0 if not,
 * -1 when its manifest cannot be read. */
static int
made_by_job (vms_repo *repo, const char *id, const char *job)
{
  CLEANUP (vms_manifest_free) vms_manifest *m = manifest_load (repo, id);
  if (m == NULL)
    return -1;
  const char *made_by = vms_manifest_job (m);
  return made_by && strcmp (made_by, job) == 0;
}

int
vms_repo_prune (vms_repo *repo, const struct vms_prune_policy *policy,
                int dry_run, vms_repo_report_fn report, void *opaque)
{
  struct repo_backup *b;
  size_t nr;
  struct prune_item *items;
  int removed = 0;

  if (repo_need_write (repo, "prune") == -1 ||
      (!dry_run && repo_need_delete (repo, "prune") == -1))
    return -1;
  repo->kept_objects = repo->kept_bytes = 0;
  repo->kept_until = 0;
  if (policy->keep_last == 0 && policy->keep_daily == 0 &&
      policy->keep_weekly == 0 && policy->keep_monthly == 0) {
    vms_set_error (EINVAL, "prune needs at least one keep rule (--keep-last, "
                   "--keep-daily, --keep-weekly, --keep-monthly); refusing to "
                   "remove every backup");
    return -1;
  }
  if (repo_list_backups (repo, &b, &nr) == -1)
    return -1;
  items = calloc (nr ? nr : 1, sizeof *items);
  CLEANUP_FREE char *other = calloc (nr ? nr : 1, 1);   /* another job's */
  if (items == NULL || other == NULL) {
    free (items);
    repo_backups_free (b, nr);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  /* Backups whose manifest cannot be read have no time: never removed.
   * Nor are backups dated more than a day ahead (a clock set wrong, or a
   * manifest made to look newest): counted, they would push real backups
   * out of --keep-last (issue 9, item 9). */
  int64_t horizon = (int64_t) time (NULL) + 86400;
  size_t n = 0;
  for (size_t i = 0; i < nr; i++) {
    if (b[i].error || b[i].time > horizon)
      continue;
    if (policy->job) {
      int mine = made_by_job (repo, b[i].id, policy->job);
      if (mine == 0) {
        other[i] = 1;
        continue;
      }
      if (mine == -1) {
        b[i].error = strdup (vms_get_error ());
        if (b[i].error == NULL)
          goto fail;
        continue;
      }
    }
    items[n] = (struct prune_item) { .id = b[i].id, .time = b[i].time,
                                     .nsec = b[i].nsec };
    if (item_keys (repo, &items[n]) == -1) {
      /* Unreadable now: kept, like one that could not be listed. */
      b[i].error = strdup (vms_get_error ());
      if (b[i].error == NULL)
        goto fail;
      continue;
    }
    n++;
  }
  if (prune_select (items, n, policy) == -1)
    goto fail;

  for (size_t i = 0, j = 0; i < nr; i++) {
    char reasons[64];
    if (b[i].error) {
      repo_say (report, opaque, "keep %s (unreadable: %s)", b[i].id, b[i].error);
      continue;
    }
    if (b[i].time > horizon) {
      repo_say (report, opaque, "keep %s (dated in the future, %" PRId64 " s after "
           "now: not counted by any rule)", b[i].id, b[i].time - horizon + 86400);
      continue;
    }
    if (other[i]) {
      repo_say (report, opaque, "keep %s (not job %s's)", b[i].id, policy->job);
      continue;
    }
    struct prune_item *it = &items[j++];
    if (it->reasons) {
      repo_say (report, opaque, "keep %s (%s)", it->id,
           prune_reasons_text (it->reasons, reasons, sizeof reasons));
      continue;
    }
    /* Object Lock (issue 14, R29): a backup still retained is kept, and
     * said so with its date; its delete is never tried. */
    int64_t until = 0;
    uint64_t msize = 0;
    if (repo->version >= 2 && backup_retained (repo, it->id, &until, &msize)) {
      char date[32];
      time_t t = (time_t) until;
      struct tm tm;
      gmtime_r (&t, &tm);
      strftime (date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
      repo_say (report, opaque, "keep %s (locked until %s: Object Lock %s; "
                "the policy would remove it)", it->id, date,
                repo->retention_days ? repo->retention_mode : "on the object");
      repo_note_kept (repo, msize, until);
      continue;
    }
    repo_say (report, opaque, "remove %s", it->id);
    if (!dry_run && remove_backup (repo, it->id) == -1)
      goto fail;
    removed++;
  }
  items_free (items, n);
  repo_backups_free (b, nr);
  return removed;
 fail:
  items_free (items, n);
  repo_backups_free (b, nr);
  return -1;
}

/* ---- gc ---- */

/* v2: 1 if backup id's manifest is still there (or cannot be told). */
static int
backup_still_there (vms_repo *repo, const char *id)
{
  char dir[STORAGE_NAME_MAX + 1], name[STORAGE_NAME_MAX + 16];
  struct storage_stat st;

  if (repo_backup_dir (repo, id, dir, sizeof dir) == -1)
    return 1;
  snprintf (name, sizeof name, "%s/manifest", dir);
  return storage_stat (repo->store, name, &st) == 0 || errno != ENOENT;
}

static int
mark (vms_repo *repo, struct digest_set *live)
{
  struct repo_backup *b;
  size_t nr;

  if (repo_list_backups (repo, &b, &nr) == -1)
    return -1;
  for (size_t i = 0; i < nr; i++) {
    CLEANUP (vms_manifest_free) vms_manifest *m = manifest_load (repo, b[i].id);
    /* Version 2: a prune running beside this gc may remove a backup
     * between the listing and here (issue 12, rule 6): its manifest goes
     * first, so a backup whose manifest is gone is pruned, not unreadable,
     * whatever error its read gave (a missing index is reported as
     * EBADMSG by the reader, which cannot tell a prune from damage). */
    if (m == NULL && repo->version >= 2 && !backup_still_there (repo, b[i].id))
      continue;
    if (m == NULL)
      goto unreadable;
    for (size_t f = 0; f < vms_manifest_file_count (m); f++) {
      CLEANUP (vms_index_free) vms_index *idx =
        vms_manifest_load_index (repo, m, f);
      if (idx == NULL && repo->version >= 2 && !backup_still_there (repo, b[i].id))
        break;
      if (idx == NULL)
        goto unreadable;
      for (uint64_t c = 0; c < vms_index_chunk_count (idx); c++) {
        const struct vms_digest *d = vms_index_get (idx, c);
        int added;
        if (!vms_digest_is_zero (d) && digest_set_add (live, d, &added) == NULL) {
          repo_backups_free (b, nr);
          return -1;
        }
      }
    }
  }
  repo_backups_free (b, nr);
  return 0;

 unreadable:
  vms_set_error (vms_get_errno (), "gc stopped before removing anything: %s; "
                 "run vmshadow verify, and repair or remove that backup first",
                 vms_get_error ());
  repo_backups_free (b, nr);
  return -1;
}

/* A leftover of another process (which cannot be writing: we hold the
 * lock), or one of ours older than the grace period. */
static int
is_stale (const char *name, const struct stat *st, int64_t grace, time_t now)
{
  pid_t pid = repo_temp_pid (name);
  if (pid != 0 && pid != getpid ())
    return 1;
  /* grace 0 means now: a file's mtime (the kernel's coarse clock) can be
   * a second ahead of time(), which must not keep it. */
  return grace <= 0 || (int64_t) now - (int64_t) st->st_mtime >= grace;
}

static int
sweep_dir (vms_repo *repo, const char *sub, const struct digest_set *live,
           int64_t grace, time_t now, uint64_t *removed, uint64_t *freed)
{
  int fd = vms_open_beneath (repo->chunks_fd, sub, O_RDONLY | O_DIRECTORY, 0);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *e;
  int r = 0;

  if (d == NULL) {
    if (fd >= 0) close (fd);
    return 0;                   /* not a directory: not ours */
  }
  while ((e = readdir (d)) != NULL) {
    struct stat st;
    struct vms_digest dg;
    /* Either form of a chunk, raw or zstd: both are kept while live. */
    int is_chunk = chunk_store_parse_name (e->d_name, &dg) != -1 &&
      strncmp (e->d_name, sub, 2) == 0;
    int is_tmp = strncmp (e->d_name, ".tmp-", 5) == 0;

    if (!is_chunk && !is_tmp)
      continue;
    if (is_chunk && digest_set_contains (live, &dg))
      continue;
    if (fstatat (dirfd (d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
        !S_ISREG (st.st_mode))
      continue;
    if (is_chunk ? grace > 0 && (int64_t) now - (int64_t) st.st_mtime < grace
        : !is_stale (e->d_name, &st, grace, now))
      continue;
    if (unlinkat (dirfd (d), e->d_name, 0) == -1) {
      if (errno == ENOENT)
        continue;
      vms_set_error (errno, "repository %s: cannot remove chunk %s: %s",
                     repo->path, e->d_name, repo_errstr (errno));
      r = -1;
      break;
    }
    if (is_chunk)
      (*removed)++;
    *freed += (uint64_t) st.st_size;
  }
  closedir (d);
  return r;
}

int
vms_repo_gc (vms_repo *repo, int64_t grace_seconds, uint64_t *chunks_removed,
             uint64_t *bytes_freed)
{
  struct digest_set live = { 0 };
  uint64_t removed = 0, freed = 0;
  time_t now = time (NULL);
  int r = -1;

  if (chunks_removed) *chunks_removed = 0;
  if (bytes_freed) *bytes_freed = 0;
  if (repo_need_write (repo, "collect garbage") == -1 ||
      repo_need_delete (repo, "gc") == -1)
    return -1;
  repo->kept_objects = repo->kept_bytes = 0;
  repo->kept_until = 0;

  int fd;
  DIR *d;
  struct dirent *e;
  if (repo->version >= 2) {
    /* Two phases beside running backups (issue 12): pack.c marks. */
    if (pack_gc (repo, mark, grace_seconds, &removed, &freed) == -1)
      goto out;
    goto leftovers;
  }
  if (mark (repo, &live) == -1)
    goto out;
  fd = openat (repo->chunks_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  d = fd >= 0 ? fdopendir (fd) : NULL;
  if (d == NULL) {
    vms_set_error (errno, "repository %s: cannot read chunks/: %s", repo->path,
                   repo_errstr (errno));
    if (fd >= 0) close (fd);
    goto out;
  }
  int sr = 0;
  while (sr == 0 && (e = readdir (d)) != NULL) {
    const char *n = e->d_name;
    if (strlen (n) == 2 && strchr ("0123456789abcdef", n[0]) &&
        strchr ("0123456789abcdef", n[1]))
      sr = sweep_dir (repo, n, &live, grace_seconds, now, &removed, &freed);
  }
  closedir (d);
  if (sr == -1)
    goto out;

  /* Leftovers of interrupted backups and prunes (and, in version 2, of
   * interrupted puts). */
 leftovers:
  /* tmp/ itself was opened without following a link (vms_repo_open), and
   * vms_rmtree_at follows none below it. */
  fd = openat (repo->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  d = fd >= 0 ? fdopendir (fd) : NULL;
  if (d == NULL && fd >= 0)
    close (fd);
  while (d && (e = readdir (d)) != NULL) {
    struct stat st;
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' ||
                                (e->d_name[1] == '.' && e->d_name[2] == '\0')))
      continue;
    if (fstatat (dirfd (d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
        !is_stale (e->d_name, &st, grace_seconds, now))
      continue;
    /* Version 2 has no writer lock: another process's temp file is a
     * leftover only when that process is gone (issue 12). */
    pid_t pid = repo_temp_pid (e->d_name);
    if (repo->version >= 2 && pid > 0 && pid != getpid () &&
        (kill (pid, 0) == 0 || errno != ESRCH))
      continue;
    if (vms_rmtree_at (dirfd (d), e->d_name) == -1) {
      vms_set_error (errno, "repository %s: cannot remove tmp/%s: %s",
                     repo->path, e->d_name, repo_errstr (errno));
      closedir (d);
      goto out;
    }
  }
  if (d)
    closedir (d);
  r = 0;

 out:
  digest_set_free (&live);
  if (chunks_removed) *chunks_removed = removed;
  if (bytes_freed) *bytes_freed = freed;
  return r;
}

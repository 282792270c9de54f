/* The configuration of scheduled runs (issue 19): INI files read with
 * libinih (docs/configuration.md). inih does the syntax; this file checks
 * every section, key and value, and names FILE:LINE of each problem. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "fs-util.h"
#include "log.h"
#include "vm-writer.h"
#include "vmshadow/config.h"
#include "vmshadow/error.h"

/* Bits of struct vms_config_job.set: the keys a job's own section set. */
enum {
  K_VMS = 1 << 0, K_EXEC = 1 << 1, K_METHOD = 1 << 2, K_FALLBACK = 1 << 3,
  K_EACH = 1 << 4, K_REPO = 1 << 5, K_KEEP_LAST = 1 << 6,
  K_KEEP_DAILY = 1 << 7, K_KEEP_WEEKLY = 1 << 8, K_KEEP_MONTHLY = 1 << 9,
  K_MAX_AGE = 1 << 10, K_GROUP = 1 << 11, K_EXCLUDE = 1 << 12,
  K_SCHEDULE = 1 << 13, K_VERIFY_SCHEDULE = 1 << 14, K_PRUNE_SCHEDULE = 1 << 15,
  K_VERIFY_DEEP = 1 << 16,
  K_GUEST = 1 << 17, K_VERIFY_AFTER = 1 << 18, K_SYNC_TO = 1 << 19,
};

static const struct { const char *name; unsigned bit; } job_keys[] = {
  { "vms", K_VMS }, { "exec-writers", K_EXEC }, { "method", K_METHOD },
  { "fallback", K_FALLBACK }, { "each", K_EACH }, { "repository", K_REPO },
  { "keep-last", K_KEEP_LAST }, { "keep-daily", K_KEEP_DAILY },
  { "keep-weekly", K_KEEP_WEEKLY }, { "keep-monthly", K_KEEP_MONTHLY },
  { "max-age", K_MAX_AGE }, { "group", K_GROUP }, { "exclude", K_EXCLUDE },
  { "schedule", K_SCHEDULE }, { "verify-schedule", K_VERIFY_SCHEDULE },
  { "prune-schedule", K_PRUNE_SCHEDULE }, { "verify-deep", K_VERIFY_DEEP },
  { "guest-processing", K_GUEST }, { "verify-after", K_VERIFY_AFTER },
  { "sync-to", K_SYNC_TO },
};
#define NR_JOB_KEYS (sizeof job_keys / sizeof job_keys[0])

/* The state of reading one file. */
struct reading {
  struct vms_config *c;
  struct vms_config_job *defaults;      /* the [defaults] section's keys */
  const char *file;
  FILE *fp;
  int line;                     /* of the line inih has just been given */
  int new_section;              /* a "[...]" line was read since the last key */
  int section_line;             /* the line of the last "[...]" */
  char *section;                /* the section the last key was in */
  enum { S_NONE, S_REPO, S_JOB, S_DEFAULTS, S_NOTIFY, S_BAD } kind;
  size_t index;                 /* of the repository or job */
  int oom;
};

static int
add_error (struct vms_config *c, const char *file, int line, const char *fmt, ...)
{
  char msg[1024], *text;
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if ((line > 0 ? asprintf (&text, "%s:%d: %s", file, line, msg)
       : asprintf (&text, "%s: %s", file, msg)) == -1)
    return -1;
  char **e = realloc (c->errors, (c->nr_errors + 1) * sizeof *e);
  if (e == NULL) {
    free (text);
    return -1;
  }
  c->errors = e;
  c->errors[c->nr_errors++] = text;
  return 0;
}

int
vms_config_parse_duration (const char *s, int64_t *out)
{
  char *end;
  int64_t unit = 1;

  if (s[0] < '0' || s[0] > '9')
    return -1;
  errno = 0;
  long long v = strtoll (s, &end, 10);
  if (errno || v <= 0)
    return -1;
  if (strcmp (end, "") == 0 || strcmp (end, "s") == 0) unit = 1;
  else if (strcmp (end, "m") == 0) unit = 60;
  else if (strcmp (end, "h") == 0) unit = 3600;
  else if (strcmp (end, "d") == 0) unit = 86400;
  else if (strcmp (end, "w") == 0) unit = 7 * 86400;
  else
    return -1;
  if (v > INT64_MAX / unit)
    return -1;
  *out = v * unit;
  return 0;
}

static int
parse_bool (const char *v, int *out)
{
  if (strcmp (v, "yes") == 0 || strcmp (v, "true") == 0 || strcmp (v, "1") == 0)
    *out = 1;
  else if (strcmp (v, "no") == 0 || strcmp (v, "false") == 0 || strcmp (v, "0") == 0)
    *out = 0;
  else
    return -1;
  return 0;
}

static int
parse_count (const char *v, unsigned *out)
{
  char *end;
  if (v[0] < '0' || v[0] > '9')
    return -1;
  errno = 0;
  unsigned long n = strtoul (v, &end, 10);
  if (errno || *end || n > UINT_MAX)
    return -1;
  *out = (unsigned) n;
  return 0;
}

/* A VM's name, UUID or glob (fnmatch(3): * ? [...]) as a job may give
 * one: no separators, no controls, brackets that close. */
static int
bad_vm_pattern (const char *n)
{
  if (*n == '\0' || strlen (n) > 255)
    return 1;
  for (const unsigned char *p = (const unsigned char *) n; *p; p++)
    if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == ',' || *p == '\\')
      return 1;
  const char *open = strchr (n, '[');
  return open && strchr (open, ']') == NULL;
}

/* "tag:NAME" in vms or exclude: the VMs whose libvirt metadata has the
 * tag NAME (VMS_VM_TAGS_NS; issue 19). */
#define TAGLEN (sizeof VMS_CONFIG_TAG_PREFIX - 1)
static int
is_tag (const char *s)
{
  return strncmp (s, VMS_CONFIG_TAG_PREFIX, TAGLEN) == 0;
}

static void
free_list (char **list)
{
  for (char **p = list; p && *p; p++)
    free (*p);
  free (list);
}

/* vms = "all" or names, UUIDs and globs; exclude = names, UUIDs and globs;
 * separated by blanks or commas (issue 19). */
static int
parse_vms (struct reading *rd, struct vms_config_job *j, const char *v,
           int exclude)
{
  char *copy = strdup (v), *save = NULL, **list = NULL;
  size_t n = 0;
  int bad = 0, all = 0;

  if (copy == NULL)
    return -1;
  for (char *w = strtok_r (copy, " \t,", &save); w; w = strtok_r (NULL, " \t,", &save)) {
    if (!exclude && strcmp (w, "all") == 0) {
      all = 1;
      continue;
    }
    if (is_tag (w) && !vms_vm_tag_valid (w + TAGLEN)) {
      add_error (rd->c, rd->file, rd->line, "%s: '%s' names no tag (tag:NAME, "
                 "NAME 1 to %d of A-Z a-z 0-9 . _ + -, not starting with . "
                 "or -)", exclude ? "exclude" : "vms", w, VMS_VM_TAG_MAX);
      bad = 1;
      continue;
    }
    if (bad_vm_pattern (w)) {
      add_error (rd->c, rd->file, rd->line, "%s: '%s' is not a VM name, UUID "
                 "or glob", exclude ? "exclude" : "vms", w);
      bad = 1;
      continue;
    }
    char **l = realloc (list, (n + 2) * sizeof *l);
    if (l == NULL || (l[n] = strdup (w)) == NULL) {
      free_list (l ? l : list);
      free (copy);
      return -1;
    }
    list = l;
    list[++n] = NULL;
  }
  free (copy);
  if (all && n > 0 && !bad)
    add_error (rd->c, rd->file, rd->line, "vms: 'all' and VM names together "
               "(leave some out with exclude = ...)");
  if (exclude) {
    free_list (j->exclude);
    j->exclude = list;
  }
  else {
    j->all_vms = all;
    free_list (j->vms);
    j->vms = list;
  }
  return 0;
}

/* Whether a job's entry is a glob rather than a name or UUID. */
static int
is_glob (const char *s)
{
  return strpbrk (s, "*?[") != NULL;
}

static int
has_tag (const char *const *tags, const char *tag)
{
  for (size_t i = 0; tags && tags[i]; i++)
    if (strcmp (tags[i], tag) == 0)
      return 1;
  return 0;
}

/* Whether an entry of patterns (names, UUIDs, globs, tag:NAME) takes the
 * VM name with tags. */
static int
matches_any (char *const *patterns, const char *name, const char *const *tags)
{
  for (size_t i = 0; patterns && patterns[i]; i++)
    if (is_tag (patterns[i]) ? has_tag (tags, patterns[i] + TAGLEN)
        : is_glob (patterns[i]) ? fnmatch (patterns[i], name, 0) == 0
        : strcmp (patterns[i], name) == 0)
      return 1;
  return 0;
}

static int
uses_tags (const struct vms_config_job *j)
{
  for (size_t i = 0; j->vms && j->vms[i]; i++)
    if (is_tag (j->vms[i]))
      return 1;
  for (size_t i = 0; j->exclude && j->exclude[i]; i++)
    if (is_tag (j->exclude[i]))
      return 1;
  return 0;
}

int
vms_config_job_needs_host_vms (const struct vms_config_job *j)
{
  if (j->exclude && j->exclude[0])
    return 1;
  for (size_t i = 0; j->vms && j->vms[i]; i++)
    if (is_glob (j->vms[i]) || is_tag (j->vms[i]))
      return 1;
  return 0;
}

int
vms_config_job_select_from (const struct vms_config_job *j,
                            const char *const *host_vms, char ***selected,
                            size_t *n)
{
  return vms_config_job_select_tagged (j, host_vms, NULL, selected, n);
}

int
vms_config_job_select_tagged (const struct vms_config_job *j,
                              const char *const *host_vms,
                              const char *const *const *host_tags,
                              char ***selected, size_t *n)
{
  size_t cap = 1;
  char **out;

  for (size_t i = 0; host_vms && host_vms[i]; i++)
    cap++;
  for (size_t i = 0; j->vms && j->vms[i]; i++)
    cap++;
  *selected = NULL;
  *n = 0;
  if ((out = calloc (cap, sizeof *out)) == NULL)
    goto oom;
  /* The host's VMs the job takes, in the host's order... */
  for (size_t i = 0; host_vms && host_vms[i]; i++)
    if ((j->all_vms || matches_any (j->vms, host_vms[i],
                                    host_tags ? host_tags[i] : NULL)) &&
        !matches_any (j->exclude, host_vms[i], host_tags ? host_tags[i] : NULL) &&
        (out[(*n)++] = strdup (host_vms[i])) == NULL)
      goto oom;
  /* ... then what it names that the host has not (a UUID, a VM that is
   * gone): the backup names it in its report. */
  for (size_t i = 0; j->vms && j->vms[i]; i++) {
    int listed = 0;
    if (is_glob (j->vms[i]) || is_tag (j->vms[i]) ||
        matches_any (j->exclude, j->vms[i], NULL))
      continue;
    for (size_t k = 0; host_vms && host_vms[k] && !listed; k++)
      listed = strcmp (host_vms[k], j->vms[i]) == 0;
    if (!listed && (out[(*n)++] = strdup (j->vms[i])) == NULL)
      goto oom;
  }
  *selected = out;
  return 0;
 oom:
  free_list (out);
  *n = 0;
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

int
vms_config_job_select (const struct vms_config_job *j, const char *uri,
                       char ***selected, size_t *n)
{
  struct vms_host_vm *vms = NULL;
  char **host = NULL;
  const char **names = NULL;
  const char *const **tags = NULL;
  size_t nr_host = 0;
  int r = -1, tagged = uses_tags (j);

  /* Tags are read only for a job that asks for them: a VM's malformed
   * tags are no business of the others. */
  if (tagged ? vms_libvirt_list_vms_tags (uri, &vms, &nr_host) == -1
      : vms_libvirt_list_vms (uri, &host, &nr_host) == -1)
    return -1;
  if (tagged) {
    names = calloc (nr_host + 1, sizeof *names);
    tags = calloc (nr_host + 1, sizeof *tags);
    if (names == NULL || tags == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto out;
    }
    for (size_t k = 0; k < nr_host; k++) {
      names[k] = vms[k].name;
      tags[k] = (const char *const *) vms[k].tags;
      /* Said, and the VM is neither taken nor left out by any tag: a VM
       * the job should have had shows in its result by its absence. */
      if (vms[k].tags_error)
        vms_warn ("job '%s': VM '%s': %s; no tag: entry selects or excludes it",
                  j->name, vms[k].name, vms[k].tags_error);
    }
  }
  const char *const *list = tagged ? names : (const char *const *) host;
  r = vms_config_job_select_tagged (j, list, tags, selected, n);
  /* A glob or tag that matches nothing is likely a mistake: said, not
   * fatal (the VMs may come back). */
  for (size_t i = 0; r == 0 && j->vms && j->vms[i]; i++) {
    int hit = 0;
    if (!is_glob (j->vms[i]) && !is_tag (j->vms[i]))
      continue;
    for (size_t k = 0; k < nr_host && !hit; k++)
      hit = is_tag (j->vms[i]) ? has_tag (tags[k], j->vms[i] + TAGLEN)
        : fnmatch (j->vms[i], list[k], 0) == 0;
    if (!hit)
      vms_warn ("job '%s': no VM of the host %s '%s'", j->name,
                is_tag (j->vms[i]) ? "has the tag" : "matches",
                is_tag (j->vms[i]) ? j->vms[i] + TAGLEN : j->vms[i]);
  }
 out:
  free (names);
  free (tags);
  free_list (host);
  vms_host_vms_free (vms, nr_host);
  return r;
}

static void
free_job (struct vms_config_job *j)
{
  free_list (j->vms);
  free_list (j->exclude);
  free (j->name); free (j->method); free (j->fallback); free (j->guest_processing);
  free (j->repository); free (j->file);
  free (j->schedule); free (j->verify_schedule); free (j->prune_schedule);
  free (j->sync_to);
}

/* One key of a [job] or [defaults] section. -1 only when out of memory. */
static int
job_key (struct reading *rd, struct vms_config_job *j, const char *k, const char *v)
{
  unsigned bit = 0;

  for (size_t i = 0; i < NR_JOB_KEYS; i++)
    if (strcmp (k, job_keys[i].name) == 0)
      bit = job_keys[i].bit;
  if (bit == 0)
    return add_error (rd->c, rd->file, rd->line, "unknown key '%s' (in a %s "
                      "section: vms, exclude, exec-writers, method, fallback, each, "
                      "repository, keep-last, keep-daily, keep-weekly, "
                      "keep-monthly, max-age, group, schedule, verify-schedule, "
                      "prune-schedule, verify-deep, guest-processing, "
                      "verify-after, sync-to)", k,
                      rd->kind == S_JOB ? "[job]" : "[defaults]");
  if (j->set & bit)
    return add_error (rd->c, rd->file, rd->line, "'%s' is set twice in this "
                      "section", k);
  if (*v == '\0')
    return add_error (rd->c, rd->file, rd->line, "'%s' needs a value", k);
  switch (bit) {
  case K_VMS: case K_EXCLUDE:
    if (parse_vms (rd, j, v, bit == K_EXCLUDE) == -1)
      return -1;
    break;
  case K_SCHEDULE: case K_VERIFY_SCHEDULE: case K_PRUNE_SCHEDULE: {
    char **slot = bit == K_SCHEDULE ? &j->schedule
      : bit == K_VERIFY_SCHEDULE ? &j->verify_schedule : &j->prune_schedule;
    if (!vms_config_calendar_valid (v))
      return add_error (rd->c, rd->file, rd->line, "%s must be a systemd "
                        "calendar expression (OnCalendar=, systemd.time(7): "
                        "such as daily, Mon..Fri 01:30 or *-*-* 00/6:00; "
                        "letters, digits, blanks and * : , . / ~ + - _), or "
                        "no", k);
    if (strcmp (v, "no") != 0 && (*slot = strdup (v)) == NULL)
      return -1;
    break;
  }
  case K_EXEC: case K_EACH: case K_GROUP: case K_VERIFY_DEEP:
    if (parse_bool (v, bit == K_EXEC ? &j->exec_writers
                    : bit == K_EACH ? &j->each
                    : bit == K_GROUP ? &j->group : &j->verify_deep) == -1)
      return add_error (rd->c, rd->file, rd->line, "%s must be yes or no, not "
                        "'%s'", k, v);
    break;
  case K_METHOD:
    if (strcmp (v, "auto") && strcmp (v, "online") &&
        strcmp (v, "crash-consistent") && strcmp (v, "saved-state"))
      return add_error (rd->c, rd->file, rd->line, "method must be auto, online, "
                        "crash-consistent or saved-state, not '%s'", v);
    if ((j->method = strdup (v)) == NULL)
      return -1;
    break;
  case K_FALLBACK:
    if (strcmp (v, "crash-consistent") && strcmp (v, "saved-state") &&
        strcmp (v, "fail"))
      return add_error (rd->c, rd->file, rd->line, "fallback must be "
                        "crash-consistent, saved-state or fail, not '%s'", v);
    if ((j->fallback = strdup (v)) == NULL)
      return -1;
    break;
  case K_VERIFY_AFTER:
    if (strcmp (v, "no") && strcmp (v, "yes") && strcmp (v, "deep"))
      return add_error (rd->c, rd->file, rd->line, "verify-after must be no, "
                        "yes or deep, not '%s'", v);
    j->verify_after = strcmp (v, "deep") == 0 ? 2 : strcmp (v, "yes") == 0;
    break;
  case K_SYNC_TO:
    if ((j->sync_to = strdup (v)) == NULL)
      return -1;
    break;
  case K_GUEST:
    if (strcmp (v, "required") && strcmp (v, "tried") && strcmp (v, "off"))
      return add_error (rd->c, rd->file, rd->line, "guest-processing must be "
                        "required, tried or off, not '%s'", v);
    if ((j->guest_processing = strdup (v)) == NULL)
      return -1;
    break;
  case K_REPO:
    if ((j->repository = strdup (v)) == NULL)
      return -1;
    break;
  case K_KEEP_LAST: case K_KEEP_DAILY: case K_KEEP_WEEKLY: case K_KEEP_MONTHLY: {
    unsigned *slot = bit == K_KEEP_LAST ? &j->keep.keep_last
      : bit == K_KEEP_DAILY ? &j->keep.keep_daily
      : bit == K_KEEP_WEEKLY ? &j->keep.keep_weekly : &j->keep.keep_monthly;
    if (parse_count (v, slot) == -1)
      return add_error (rd->c, rd->file, rd->line, "%s must be a whole number, "
                        "not '%s'", k, v);
    break;
  }
  case K_MAX_AGE:
    if (vms_config_parse_duration (v, &j->max_age_s) == -1)
      return add_error (rd->c, rd->file, rd->line, "max-age must be a duration "
                        "such as 26h, 90m, 3600s, 2d or 1w, not '%s'", v);
    break;
  }
  j->set |= bit;
  return 0;
}

/* A key of [notify]: where the notifiers are and how long each may take. */
static int
notify_key (struct reading *rd, const char *k, const char *v)
{
  struct vms_config *c = rd->c;

  if (strcmp (k, "dir") == 0) {
    if (c->notify_dir)
      return add_error (c, rd->file, rd->line, "'dir' of [notify] is set twice");
    if (v[0] != '/')
      return add_error (c, rd->file, rd->line, "dir must be absolute, not '%s'", v);
    return (c->notify_dir = strdup (v)) == NULL ? -1 : 0;
  }
  if (strcmp (k, "timeout") == 0) {
    if (c->notify_timeout_s)
      return add_error (c, rd->file, rd->line, "'timeout' of [notify] is set twice");
    if (vms_config_parse_duration (v, &c->notify_timeout_s) == -1 ||
        c->notify_timeout_s > 86400)
      return add_error (c, rd->file, rd->line, "timeout must be a duration "
                        "from 1s to 1d such as 30s or 5m, not '%s'", v);
    return 0;
  }
  return add_error (c, rd->file, rd->line, "unknown key '%s' (a [notify] "
                    "section has dir and timeout)", k);
}

/* A section starts: what it is, and a new record for it. */
static int
start_section (struct reading *rd, const char *section)
{
  struct vms_config *c = rd->c;
  const char *sp = strchr (section, ' ');
  size_t kwlen = sp ? (size_t) (sp - section) : strlen (section);
  const char *name = sp ? sp + 1 : NULL;

  free (rd->section);
  if ((rd->section = strdup (section)) == NULL)
    return -1;
  rd->kind = S_BAD;
  if (strcmp (section, "defaults") == 0) {
    rd->kind = S_DEFAULTS;
    return 0;
  }
  if (strcmp (section, "notify") == 0) {
    rd->kind = S_NOTIFY;
    return 0;
  }
  int repo = kwlen == 10 && strncmp (section, "repository", 10) == 0;
  int job = kwlen == 3 && strncmp (section, "job", 3) == 0;
  if (!repo && !job)
    return add_error (c, rd->file, rd->section_line, "unknown section [%s] "
                      "([repository NAME], [job NAME], [defaults] or [notify])", section);
  if (name == NULL || *name == '\0' || strpbrk (name, " \t/") ||
      strlen (name) > 64 || name[0] == '.')
    return add_error (c, rd->file, rd->section_line, "[%.*s] needs a name of at most "
                      "64 characters without blanks or '/'", (int) kwlen, section);
  if (repo) {
    const struct vms_config_repository *old = vms_config_repository (c, name);
    if (old)
      return add_error (c, rd->file, rd->section_line, "repository '%s' is already "
                        "defined at %s:%d", name, old->file, old->line);
    struct vms_config_repository *r = realloc (c->repos, (c->nr_repos + 1) * sizeof *r);
    if (r == NULL)
      return -1;
    c->repos = r;
    r = &c->repos[c->nr_repos];
    *r = (struct vms_config_repository) { .line = rd->section_line };
    if ((r->name = strdup (name)) == NULL || (r->file = strdup (rd->file)) == NULL) {
      free (r->name);
      return -1;
    }
    rd->index = c->nr_repos++;
    rd->kind = S_REPO;
    return 0;
  }
  const struct vms_config_job *old = vms_config_job (c, name);
  if (old)
    return add_error (c, rd->file, rd->section_line, "job '%s' is already defined at "
                      "%s:%d", name, old->file, old->line);
  struct vms_config_job *j = realloc (c->jobs, (c->nr_jobs + 1) * sizeof *j);
  if (j == NULL)
    return -1;
  c->jobs = j;
  j = &c->jobs[c->nr_jobs];
  *j = (struct vms_config_job) { .line = rd->section_line, .exec_writers = 1 };
  if ((j->name = strdup (name)) == NULL || (j->file = strdup (rd->file)) == NULL) {
    free (j->name);
    return -1;
  }
  rd->index = c->nr_jobs++;
  rd->kind = S_JOB;
  return 0;
}


/* A [repository] key. path names where the repository is: an absolute
 * directory, rados:POOL[/NAMESPACE] or s3://BUCKET[/PREFIX] (the backends
 * check the rest when they open it); the credentials are named by
 * reference, never written here. */
static int
repository_key (struct reading *rd, struct vms_config_repository *repo,
                const char *key, const char *value)
{
  static const char *const files[] = { "rados-conf", "rados-keyring", "s3-config" };
  char **slot = strcmp (key, "path") == 0 ? &repo->path
    : strcmp (key, "rados-conf") == 0 ? &repo->rados_conf
    : strcmp (key, "rados-id") == 0 ? &repo->rados_id
    : strcmp (key, "rados-keyring") == 0 ? &repo->rados_keyring
    : strcmp (key, "s3-config") == 0 ? &repo->s3_config : NULL;

  if (slot == NULL)
    return add_error (rd->c, rd->file, rd->line, "unknown key '%s' (a "
                      "[repository] section has path, rados-conf, rados-id, "
                      "rados-keyring and s3-config)", key);
  if (*slot)
    return add_error (rd->c, rd->file, rd->line, "'%s' is set twice in this section", key);
  if (slot == &repo->path && value[0] != '/' &&
      !(strncmp (value, "rados:", 6) == 0 && value[6]) &&
      !(strncmp (value, "s3://", 5) == 0 && value[5]))
    return add_error (rd->c, rd->file, rd->line, "path must be an absolute "
                      "directory, rados:POOL[/NAMESPACE] or s3://BUCKET[/PREFIX], "
                      "not '%s'", value);
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    if (strcmp (key, files[i]) == 0 && value[0] != '/')
      return add_error (rd->c, rd->file, rd->line, "%s must be an absolute "
                        "path, not '%s'", key, value);
  if (slot == &repo->rados_id && (value[0] == '\0' ||
                                  strspn (value, "abcdefghijklmnopqrstuvwxyz"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                                  != strlen (value)))
    return add_error (rd->c, rd->file, rd->line, "rados-id must be a Ceph "
                      "client id (letters, digits, '.', '_', '-'), not '%s'", value);
  return (*slot = strdup (value)) == NULL ? -1 : 0;
}
static int
handler (void *user, const char *section, const char *key, const char *value)
{
  struct reading *rd = user;
  int r = 0;

  if (rd->oom)
    return 0;
  /* A new section is a "[" line read since the last key (inih tells the
   * handler only of keys), or a key under another section's name. */
  if (rd->new_section || rd->section == NULL || strcmp (rd->section, section) != 0) {
    rd->new_section = 0;
    if (*section == '\0') {
      free (rd->section);
      rd->section = strdup ("");
      rd->kind = S_BAD;
      r = add_error (rd->c, rd->file, rd->line, "'%s' is outside any section", key);
      goto out;
    }
    if (start_section (rd, section) == -1) {
      rd->oom = 1;
      return 0;
    }
  }
  switch (rd->kind) {
  case S_BAD:
    break;                      /* said once, at the section */
  case S_DEFAULTS:
    r = job_key (rd, rd->defaults, key, value);
    break;
  case S_JOB:
    r = job_key (rd, &rd->c->jobs[rd->index], key, value);
    break;
  case S_REPO:
    r = repository_key (rd, &rd->c->repos[rd->index], key, value);
    break;
  case S_NOTIFY:
    r = notify_key (rd, key, value);
    break;
  case S_NONE:
    abort ();
  }
 out:
  if (r == -1)
    rd->oom = 1;
  return 1;                     /* our errors are ours: inih goes on */
}

/* inih's reader: one whole line each call, counted; a line longer than
 * inih takes is an error of its own (and given to inih as an empty one). */
static char *
reader (char *str, int num, void *stream)
{
  struct reading *rd = stream;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len = getline (&line, &cap, rd->fp);

  if (len == -1) {
    free (line);
    return NULL;
  }
  rd->line++;
  if (len >= num - 1 && !(len == num - 1 && line[len - 1] == '\n')) {
    if (add_error (rd->c, rd->file, rd->line, "line longer than %d characters",
                   num - 2) == -1)
      rd->oom = 1;
    strcpy (str, "\n");
  }
  else if (memchr (line, '\0', (size_t) len)) {
    if (add_error (rd->c, rd->file, rd->line, "a NUL byte in the line") == -1)
      rd->oom = 1;
    strcpy (str, "\n");
  }
  else
    memcpy (str, line, (size_t) len + 1);
  free (line);
  /* The first thing on the line is '[': a section header. */
  if (str[strspn (str, " \t")] == '[') {
    rd->new_section = 1;
    rd->section_line = rd->line;
  }
  return str;
}

static int
read_file (struct vms_config *c, struct vms_config_job *defaults, int dirfd,
           const char *name, const char *shown, int may_be_missing)
{
  struct reading rd = { .c = c, .defaults = defaults, .file = shown };
  int fd = openat (dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st;

  if (fd == -1) {
    if (errno == ENOENT && may_be_missing)
      return 0;
    return add_error (c, shown, 0, "cannot open: %s", strerror (errno));
  }
  if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode)) {
    close (fd);
    return add_error (c, shown, 0, "not a regular file");
  }
  if ((rd.fp = fdopen (fd, "r")) == NULL) {
    close (fd);
    return -1;
  }
  c->nr_files++;
  int r = ini_parse_stream (reader, &rd, handler, &rd);
  fclose (rd.fp);
  free (rd.section);
  if (rd.oom)
    return -1;
  /* inih returns the line of its first error (our handler never fails):
   * a line that is neither a section, a key = value, nor a comment. */
  if (r > 0) {
    char prefix[64];
    int n = snprintf (prefix, sizeof prefix, ":%d: ", r);
    int said = 0;
    size_t flen = strlen (shown);
    for (size_t i = 0; i < c->nr_errors && !said; i++)
      said = strncmp (c->errors[i], shown, flen) == 0 &&
        strncmp (c->errors[i] + flen, prefix, (size_t) n) == 0;
    if (!said)
      return add_error (c, shown, r, "not '[section]', 'key = value' or a "
                        "comment (only a file's first such line is named)");
  }
  else if (r == -1)
    return add_error (c, shown, 0, "cannot read: %s", strerror (errno));
  return 0;
}

static int
by_name (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Each job gets what [defaults] says for what it does not set; then the
 * whole is checked. */
static int
finish (struct vms_config *c, const struct vms_config_job *d)
{
  for (size_t i = 0; i < c->nr_jobs; i++) {
    struct vms_config_job *j = &c->jobs[i];
    if (!(j->set & K_VMS) && (d->set & K_VMS)) {
      j->all_vms = d->all_vms;
      if (d->vms) {
        size_t n = 0;
        while (d->vms[n]) n++;
        if ((j->vms = calloc (n + 1, sizeof *j->vms)) == NULL)
          return -1;
        for (size_t k = 0; k < n; k++)
          if ((j->vms[k] = strdup (d->vms[k])) == NULL)
            return -1;
      }
    }
    if (!(j->set & K_EXCLUDE) && d->exclude) {
      size_t n = 0;
      while (d->exclude[n]) n++;
      if ((j->exclude = calloc (n + 1, sizeof *j->exclude)) == NULL)
        return -1;
      for (size_t k = 0; k < n; k++)
        if ((j->exclude[k] = strdup (d->exclude[k])) == NULL)
          return -1;
    }
    if (!(j->set & K_EXEC) && (d->set & K_EXEC)) j->exec_writers = d->exec_writers;
    if (!(j->set & K_EACH) && (d->set & K_EACH)) j->each = d->each;
    if (!(j->set & K_GROUP) && (d->set & K_GROUP)) j->group = d->group;
    if (!(j->set & K_VERIFY_DEEP) && (d->set & K_VERIFY_DEEP))
      j->verify_deep = d->verify_deep;
    if (!(j->set & K_SCHEDULE) && d->schedule &&
        (j->schedule = strdup (d->schedule)) == NULL)
      return -1;
    if (!(j->set & K_VERIFY_SCHEDULE) && d->verify_schedule &&
        (j->verify_schedule = strdup (d->verify_schedule)) == NULL)
      return -1;
    if (!(j->set & K_PRUNE_SCHEDULE) && d->prune_schedule &&
        (j->prune_schedule = strdup (d->prune_schedule)) == NULL)
      return -1;
    if (!(j->set & K_VERIFY_AFTER) && (d->set & K_VERIFY_AFTER))
      j->verify_after = d->verify_after;
    if (!(j->set & K_SYNC_TO) && d->sync_to && (j->sync_to = strdup (d->sync_to)) == NULL)
      return -1;
    if (!(j->set & K_GUEST) && d->guest_processing &&
        (j->guest_processing = strdup (d->guest_processing)) == NULL)
      return -1;
    if (!(j->set & K_METHOD) && d->method && (j->method = strdup (d->method)) == NULL)
      return -1;
    if (!(j->set & K_FALLBACK) && d->fallback &&
        (j->fallback = strdup (d->fallback)) == NULL)
      return -1;
    if (!(j->set & K_REPO) && d->repository &&
        (j->repository = strdup (d->repository)) == NULL)
      return -1;
    if (!(j->set & K_KEEP_LAST)) j->keep.keep_last = d->keep.keep_last;
    if (!(j->set & K_KEEP_DAILY)) j->keep.keep_daily = d->keep.keep_daily;
    if (!(j->set & K_KEEP_WEEKLY)) j->keep.keep_weekly = d->keep.keep_weekly;
    if (!(j->set & K_KEEP_MONTHLY)) j->keep.keep_monthly = d->keep.keep_monthly;
    if (!(j->set & K_MAX_AGE)) j->max_age_s = d->max_age_s;
    if (j->max_age_s == 0)
      j->max_age_s = 26 * 3600;
    if (j->repository == NULL) {
      if (add_error (c, j->file, j->line, "job '%s' names no repository "
                     "(repository = NAME)", j->name) == -1)
        return -1;
    }
    else if (vms_config_repository (c, j->repository) == NULL) {
      if (add_error (c, j->file, j->line, "job '%s': repository '%s' is not "
                     "defined ([repository %s])", j->name, j->repository,
                     j->repository) == -1)
        return -1;
    }
    if (j->sync_to && vms_config_repository (c, j->sync_to) == NULL &&
        add_error (c, j->file, j->line, "job '%s': sync-to names repository "
                   "'%s', which is not defined", j->name, j->sync_to) == -1)
      return -1;
    if (j->sync_to && j->repository && strcmp (j->sync_to, j->repository) == 0 &&
        add_error (c, j->file, j->line, "job '%s': sync-to is the job's own "
                   "repository '%s'", j->name, j->sync_to) == -1)
      return -1;
    if (j->exclude && !j->all_vms && j->vms == NULL &&
        add_error (c, j->file, j->line, "job '%s': exclude without vms (all, "
                   "names or globs) leaves nothing out", j->name) == -1)
      return -1;
    if (j->each && !j->all_vms && j->vms == NULL &&
        add_error (c, j->file, j->line, "job '%s': each = yes needs vms (all "
                   "or names): it makes one backup per VM", j->name) == -1)
      return -1;
    /* Issue 17: a group is one instant of one set; each makes a set per VM. */
    if (j->each && j->group &&
        add_error (c, j->file, j->line, "job '%s': group = yes and each = yes "
                   "exclude each other (a group is one instant of one set; "
                   "each makes one set per VM)", j->name) == -1)
      return -1;
    if (j->prune_schedule && !j->keep.keep_last && !j->keep.keep_daily &&
        !j->keep.keep_weekly && !j->keep.keep_monthly &&
        add_error (c, j->file, j->line, "job '%s': prune-schedule without "
                   "keep-* rules prunes nothing", j->name) == -1)
      return -1;
    if (!j->all_vms && j->vms == NULL && !j->exec_writers &&
        add_error (c, j->file, j->line, "job '%s' backs up nothing (no vms "
                   "and exec-writers = no)", j->name) == -1)
      return -1;
  }
  for (size_t i = 0; i < c->nr_repos; i++) {
    const struct vms_config_repository *r = &c->repos[i];
    if (r->path == NULL) {
      if (add_error (c, r->file, r->line, "repository '%s' has no path", r->name) == -1)
        return -1;
      continue;
    }
    int rados = strncmp (r->path, "rados:", 6) == 0, s3 = strncmp (r->path, "s3://", 5) == 0;
    if (!rados && (r->rados_conf || r->rados_id || r->rados_keyring) &&
        add_error (c, r->file, r->line, "repository '%s': rados-conf, rados-id "
                   "and rados-keyring are for a rados: path", r->name) == -1)
      return -1;
    if (!s3 && r->s3_config &&
        add_error (c, r->file, r->line, "repository '%s': s3-config is for an "
                   "s3:// path", r->name) == -1)
      return -1;
  }
  return 0;
}

struct vms_config *
vms_config_load (const char *dir)
{
  struct vms_config *c = calloc (1, sizeof *c);
  struct vms_config_job defaults = { .exec_writers = 1 };
  const char *env = getenv ("VMSHADOW_CONFIG_DIR");
  char shown[PATH_MAX + 300];
  int dirfd = -1, ok = 0;

  if (c == NULL)
    return NULL;
  if (dir == NULL)
    dir = env && *env ? env : VMS_CONFIG_DEFAULT_DIR;
  if ((c->dir = strdup (dir)) == NULL)
    goto out;
  dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd == -1) {
    ok = add_error (c, dir, 0, "cannot open the configuration directory: %s",
                    strerror (errno)) == 0;
    goto out;
  }
  snprintf (shown, sizeof shown, "%s/vmshadow.conf", dir);
  if (read_file (c, &defaults, dirfd, "vmshadow.conf", shown, 1) == -1)
    goto out;
  int jfd = openat (dirfd, "jobs.d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (jfd == -1 && errno != ENOENT) {
    snprintf (shown, sizeof shown, "%s/jobs.d", dir);
    if (add_error (c, shown, 0, "cannot open: %s", strerror (errno)) == -1)
      goto out;
  }
  if (jfd >= 0) {
    DIR *d = fdopendir (jfd);
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    int bad = 0;
    if (d == NULL) {
      close (jfd);
      goto out;
    }
    while ((e = readdir (d)) != NULL) {
      size_t len = strlen (e->d_name);
      if (e->d_name[0] == '.' || len < 6 || strcmp (e->d_name + len - 5, ".conf") != 0)
        continue;
      char **l = realloc (names, (n + 1) * sizeof *l);
      if (l == NULL || (l[n] = strdup (e->d_name)) == NULL) {
        names = l ? l : names;
        bad = 1;
        break;
      }
      names = l;
      n++;
    }
    if (!bad && n)
      qsort (names, n, sizeof *names, by_name);
    for (size_t i = 0; !bad && i < n; i++) {
      snprintf (shown, sizeof shown, "%s/jobs.d/%s", dir, names[i]);
      bad = read_file (c, &defaults, jfd, names[i], shown, 0) == -1;
    }
    for (size_t i = 0; i < n; i++)
      free (names[i]);
    free (names);
    closedir (d);
    if (bad)
      goto out;
  }
  if (c->nr_files == 0 &&
      add_error (c, dir, 0, "no configuration: neither vmshadow.conf nor "
                 "jobs.d/*.conf") == -1)
    goto out;
  ok = finish (c, &defaults) == 0;
 out:
  free_job (&defaults);
  if (dirfd >= 0)
    close (dirfd);
  if (!ok) {
    vms_config_free (c);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return c;
}

void
vms_config_free (struct vms_config *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->nr_repos; i++) {
    free (c->repos[i].name); free (c->repos[i].path); free (c->repos[i].file);
    free (c->repos[i].rados_conf); free (c->repos[i].rados_id);
    free (c->repos[i].rados_keyring); free (c->repos[i].s3_config);
  }
  for (size_t i = 0; i < c->nr_jobs; i++)
    free_job (&c->jobs[i]);
  for (size_t i = 0; i < c->nr_errors; i++)
    free (c->errors[i]);
  free (c->repos); free (c->jobs); free (c->errors); free (c->dir);
  free (c->notify_dir);
  free (c);
}

const struct vms_config_job *
vms_config_job (const struct vms_config *c, const char *name)
{
  for (size_t i = 0; i < c->nr_jobs; i++)
    if (strcmp (c->jobs[i].name, name) == 0)
      return &c->jobs[i];
  return NULL;
}

const struct vms_config_repository *
vms_config_repository (const struct vms_config *c, const char *name)
{
  for (size_t i = 0; i < c->nr_repos; i++)
    if (strcmp (c->repos[i].name, name) == 0)
      return &c->repos[i];
  return NULL;
}

int
vms_config_repository_use (const struct vms_config_repository *r)
{
  const struct { const char *var, *value; } use[] = {
    { "VMSHADOW_RADOS_CONF", r->rados_conf }, { "VMSHADOW_RADOS_ID", r->rados_id },
    { "VMSHADOW_RADOS_KEYRING", r->rados_keyring }, { "VMSHADOW_S3_CONFIG", r->s3_config },
  };

  for (size_t i = 0; i < sizeof use / sizeof use[0]; i++)
    if (use[i].value && setenv (use[i].var, use[i].value, 1) == -1) {
      vms_set_error (errno, "cannot set %s: %s", use[i].var, strerror (errno));
      return -1;
    }
  return 0;
}

int
vms_config_calendar_valid (const char *v)
{
  size_t n = strlen (v);

  if (n == 0 || n > 128)
    return 0;
  for (const char *p = v; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || strchr (" *:,./~+-_", *p)))
      return 0;
  return 1;
}

int
vms_config_job_unit_name_ok (const char *name)
{
  if (name[0] == '.' || name[0] == '\0')
    return 0;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == ':' || *p == '_' || *p == '.' ||
          *p == '-'))
      return 0;
  return 1;
}

int
vms_config_job_lock (const struct vms_config_job *job)
{
  return vms_config_job_lock_kind (job, NULL);
}

int
vms_config_state_dir (int create, const char **name)
{
  const char *env = getenv ("VMSHADOW_STATE_DIR");
  *name = env && *env ? env : "/var/lib/vmshadow/state";
  if (create && vms_mkdir_p (*name, 0700) == -1)
    return -1;
  int fd = open (*name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1 && (create || errno != ENOENT))
    vms_set_error (errno, "cannot open %s: %s", *name, vms_fs_errstr (errno));
  return fd;
}

int
vms_config_job_note_put (const struct vms_config_job *job, const char *kind,
                         const char *text)
{
  const char *dir;
  char name[NAME_MAX + 1];
  int fd = vms_config_state_dir (1, &dir), r;

  if (fd == -1)
    return -1;
  if ((size_t) snprintf (name, sizeof name, "%s-%s.json", kind, job->name) >= sizeof name) {
    close (fd);
    vms_set_error (ENAMETOOLONG, "job '%s': name too long for its %s record", job->name, kind);
    return -1;
  }
  r = vms_write_file_atomic (fd, name, text, strlen (text), 0600);
  close (fd);
  return r;
}

char *
vms_config_job_note_get (const struct vms_config_job *job, const char *kind)
{
  enum { MAX_NOTE = 65536 };
  const char *dir;
  char name[NAME_MAX + 1], *text = NULL;
  int dfd = vms_config_state_dir (0, &dir), fd = -1;
  struct stat sb;

  if (dfd == -1)
    return NULL;
  if ((size_t) snprintf (name, sizeof name, "%s-%s.json", kind, job->name) >= sizeof name) {
    close (dfd);
    errno = ENOENT;
    return NULL;
  }
  fd = vms_open_beneath (dfd, name, O_RDONLY, 0);
  if (fd == -1) {
    int e = errno;
    if (e != ENOENT)
      vms_set_error (e, "cannot open %s/%s: %s", dir, name, vms_fs_errstr (e));
    close (dfd);
    errno = e;
    return NULL;
  }
  if (fstat (fd, &sb) == -1 || sb.st_size > MAX_NOTE ||
      (text = calloc (1, (size_t) sb.st_size + 1)) == NULL ||
      read (fd, text, (size_t) sb.st_size) != sb.st_size) {
    vms_set_error (EIO, "cannot read %s/%s (at most %d bytes)", dir, name, MAX_NOTE);
    free (text);
    text = NULL;
  }
  close (fd);
  close (dfd);
  return text;
}

int
vms_config_job_lock_kind (const struct vms_config_job *job, const char *kind)
{
  const char *env = getenv ("VMSHADOW_RUN_DIR");
  const char *dir = env && *env ? env : "/run/vmshadow";
  char path[PATH_MAX];

  /* 0755, as systemd's RuntimeDirectory= makes it: the VM writer keeps
   * its QEMU sockets below it, and QEMU (not root on a stock host) must
   * pass through. A 0700 one made here first failed every VM backup of a
   * job run by hand after a boot. The locks themselves are 0600. */
  if (mkdir (dir, 0755) == -1 && errno != EEXIST) {
    vms_set_error (errno, "cannot make %s: %s", dir, strerror (errno));
    return -1;
  }
  /* job-NAME.lock, KIND-NAME.lock: the prefix tells them apart whatever
   * the name (a job may have '.' in its name). */
  if ((size_t) snprintf (path, sizeof path, "%s/%s-%s.lock", dir,
                         kind ? kind : "job", job->name) >= sizeof path) {
    vms_set_error (ENAMETOOLONG, "%s: name too long", dir);
    return -1;
  }
  int fd = open (path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd == -1) {
    vms_set_error (errno, "cannot open %s: %s", path, strerror (errno));
    return -1;
  }
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    int e = errno;
    close (fd);
    if (e == EWOULDBLOCK)
      vms_set_error (e, "job '%s'%s%s is already running (another run holds %s)",
                     job->name, kind ? ": its " : "", kind ? kind : "", path);
    else
      vms_set_error (e, "cannot lock %s: %s", path, strerror (e));
    errno = e;
    return -1;
  }
  return fd;
}

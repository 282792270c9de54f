/* Notifications after a job (issue 19, docs/configuration.md): every
 * executable of the notify directory gets the job's result as JSON on its
 * stdin. A notifier is told, never asked: whatever it does, the job's
 * result stays what it was. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "log.h"
#include "subprocess.h"
#include "vmshadow/config.h"

static int
notify_by_name (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The names in dir to run, sorted; NULL (and *n 0) when there is none or
 * the directory cannot be read (said, unless it is the default one and
 * missing). */
static char **
notify_list (const char *dir, int is_default, size_t *n)
{
  DIR *d = opendir (dir);
  char **names = NULL;
  struct dirent *de;

  *n = 0;
  if (d == NULL) {
    if (errno == ENOENT && is_default)
      vms_debug ("no notifiers: %s does not exist", dir);
    else
      vms_warn ("notifications: cannot read %s: %s", dir, strerror (errno));
    return NULL;
  }
  while ((de = readdir (d)) != NULL) {
    if (vms_hook_name_ignored (de->d_name))
      continue;
    char **l = realloc (names, (*n + 1) * sizeof *l);
    if (l == NULL || (l[*n] = strdup (de->d_name)) == NULL) {
      vms_warn ("notifications: out of memory");
      names = l ? l : names;
      break;
    }
    names = l;
    (*n)++;
  }
  closedir (d);
  if (*n > 1)
    qsort (names, *n, sizeof *names, notify_by_name);
  return names;
}

/* Run one notifier; 0 when it ran and exited 0. */
static int
notify_one (const char *path, const char *result, const char *const *env,
            int64_t timeout_ms)
{
  struct stat st;

  /* The directory is the administrator's (/etc): a link in it to a
   * shipped example is how one enables it, so links are followed, but
   * what they lead to must be as trusted as the directory. */
  if (stat (path, &st) == -1) {
    vms_warn ("notifier %s: %s", path, strerror (errno));
    return -1;
  }
  if (!S_ISREG (st.st_mode) || (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
    vms_debug ("notifications: skipping %s: not an executable file", path);
    return 0;
  }
  if ((st.st_mode & S_IWOTH) || (st.st_uid != 0 && st.st_uid != geteuid ())) {
    vms_warn ("notifier %s not run: %s (chmod o-w, or chown root)", path,
              st.st_mode & S_IWOTH ? "anyone may write to it"
              : "another user owns it");
    return -1;
  }
  const char *argv[] = { path, NULL };
  struct vms_subprocess_options o = {
    .argv = argv, .env = env, .input = result, .input_len = strlen (result),
    .max_output = 4096, .max_errors = 4096, .timeout_ms = timeout_ms,
  };
  struct vms_subprocess_result r = { 0 };
  if (vms_subprocess_run (&o, &r) == -1) {
    vms_warn ("notifier %s could not be run", path);
    return -1;
  }
  int ok = vms_subprocess_succeeded (&r);
  if (!ok) {
    char how[128], tail[512];
    vms_subprocess_describe (&r, how, sizeof how);
    vms_subprocess_error_tail (&r, 3, tail, sizeof tail);
    vms_warn ("notifier %s %s%s%s (the job's result is unchanged)", path, how,
              *tail ? ": " : "", tail);
  }
  else
    vms_debug ("notifier %s done in %lld ms", path, (long long) r.elapsed_ms);
  vms_subprocess_result_reset (&r);
  return ok ? 0 : -1;
}

size_t
vms_config_notify (const struct vms_config *c, const char *job,
                   const char *outcome, int exit_code, const char *result)
{
  char dflt[PATH_MAX];
  const char *dir = c->notify_dir;
  size_t n, run, failed = 0;

  if (dir == NULL) {
    snprintf (dflt, sizeof dflt, "%s/notify.d", c->dir);
    dir = dflt;
  }
  char **names = notify_list (dir, c->notify_dir == NULL, &n);
  run = n;
  char *e_job = NULL, *e_outcome = NULL, *e_code = NULL;
  if (n && (asprintf (&e_job, "VMSHADOW_JOB=%s", job) == -1 ||
            asprintf (&e_outcome, "VMSHADOW_OUTCOME=%s", outcome) == -1 ||
            asprintf (&e_code, "VMSHADOW_EXIT_CODE=%d", exit_code) == -1)) {
    vms_warn ("notifications: out of memory");
    failed = n;
    run = 0;
  }
  const char *env[] = { e_job, e_outcome, e_code, NULL };
  int64_t timeout_ms = (c->notify_timeout_s ? c->notify_timeout_s : 60) * 1000;
  for (size_t i = 0; i < run; i++) {
    char path[PATH_MAX];
    if ((size_t) snprintf (path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path) {
      vms_warn ("notifier %s/%s: name too long", dir, names[i]);
      failed++;
      continue;
    }
    failed += notify_one (path, result, env, timeout_ms) != 0;
  }
  for (size_t i = 0; i < n; i++)
    free (names[i]);
  free (names);
  free (e_job); free (e_outcome); free (e_code);
  return failed;
}

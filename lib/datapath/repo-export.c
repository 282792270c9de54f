/* A disk of a backup as a read-only NBD export (issue 16): nbdkit with
 * nbdkit-vmshadow-plugin (plugins/nbdkit), on a Unix socket in a private
 * session directory, under the same guard as our qemu-nbd servers, so it
 * never outlives us. The selection is checked here first, so that a wrong
 * backup, VM or disk is said before any process starts. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

#include "datapath-internal.h"

struct vms_repo_export {
  struct nbd_server server;
  uint64_t size;
  off_t log_read;               /* bytes of the server's log passed on */
};

/* The plugin: $VMSHADOW_NBDKIT_PLUGIN (tests run the build tree's), else
 * where the build installs it. */
static const char *
repo_export_plugin (void)
{
  const char *p = getenv ("VMSHADOW_NBDKIT_PLUGIN");
  return p && *p ? p : VMS_NBDKIT_PLUGIN;
}

/* Check the selection; fills *size and a description for messages. */
static int
repo_export_check (const struct vms_repo_export_options *o, uint64_t *size,
                   char *what, size_t len, char **handoff)
{
  vms_repo *repo = vms_repo_open (o->repo_dir, 0);
  /* An encrypted repository: nbdkit gets the key unlocked here (R28). */
  if (repo && (*handoff = vms_repo_key_handoff (repo)) == NULL &&
      vms_repo_key_fingerprint (repo) != NULL) {
    vms_repo_close (repo);
    return -1;
  }
  vms_manifest *m = NULL;
  struct vms_stored_file f;
  int i = -1;

  if (repo && (m = vms_manifest_open (repo, o->backup_id)) != NULL &&
      (i = vms_manifest_select_file (m, &o->select)) >= 0 &&
      vms_manifest_file (m, (size_t) i, &f, size) == 0)
    snprintf (what, len, "%s of backup %s", f.path, o->backup_id);
  else
    i = -1;
  vms_manifest_free (m);
  vms_repo_close (repo);
  return i < 0 ? -1 : 0;
}

vms_repo_export *
vms_repo_export_open (const struct vms_repo_export_options *o)
{
  const char *plugin = repo_export_plugin ();
  char what[4200], cache_opt[40];
  CLEANUP_FREE char *repo_abs = NULL, *pidfile_opt = NULL;
  CLEANUP_FREE char *params[6] = { NULL };
  char *handoff = NULL;
  CLEANUP_FREE char **envp = NULL;
  const char *argv[20];
  size_t n = 0, np = 0;
  vms_repo_export *e;

  if (o->repo_dir == NULL || o->backup_id == NULL) {
    vms_set_error (EINVAL, "vms_repo_export_open: no repository or backup given");
    return NULL;
  }
  if (*plugin == '\0') {
    vms_set_error (ENOTSUP, "this vmshadow was built without nbdkit-plugin-dev: "
                   "it cannot serve backups");
    return NULL;
  }
  if ((e = calloc (1, sizeof *e)) == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  if (repo_export_check (o, &e->size, what, sizeof what, &handoff) == -1)
    goto wipe;
  if (handoff) {
    /* Our environment and the handoff: the server's alone, gone from its
     * environment once the plugin took it (key.c). */
    extern char **environ;
    size_t ne = 0;
    while (environ[ne])
      ne++;
    if ((envp = calloc (ne + 2, sizeof *envp)) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto wipe;
    }
    for (size_t i = 0, j = 0; i < ne; i++)
      if (strncmp (environ[i], "VMSHADOW_KEY_HANDOFF=", 21) != 0)
        envp[j++] = environ[i];
    for (size_t j = 0; ; j++)
      if (envp[j] == NULL) {
        envp[j] = handoff;
        break;
      }
  }
  /* nbdkit opens the repository itself, from another working directory. */
  if ((repo_abs = realpath (o->repo_dir, NULL)) == NULL) {
    vms_set_error (errno, "cannot resolve %s: %s", o->repo_dir, strerror (errno));
    free (e);
    return NULL;
  }
  if (nbd_server_prepare (&e->server, what) == -1) {
    free (e);
    return NULL;
  }
  snprintf (cache_opt, sizeof cache_opt, "cache=%" PRIu64,
            o->cache_bytes ? o->cache_bytes : (uint64_t) 64 << 20);
  if (asprintf (&pidfile_opt, "--pidfile=%s/pid", e->server.dir) == -1 ||
      asprintf (&params[np++], "repo=%s", repo_abs) == -1 ||
      asprintf (&params[np++], "backup=%s", o->backup_id) == -1 ||
      (o->select.vm && asprintf (&params[np++], "vm=%s", o->select.vm) == -1) ||
      (o->select.disk && asprintf (&params[np++], "disk=%s", o->select.disk) == -1) ||
      (o->select.component &&
       asprintf (&params[np++], "component=%s", o->select.component) == -1) ||
      (o->select.file && asprintf (&params[np++], "file=%s", o->select.file) == -1)) {
    vms_set_error (ENOMEM, "out of memory");
    nbd_server_stop (&e->server);
    free (e);
    return NULL;
  }
  argv[n++] = "nbdkit";
  argv[n++] = "--foreground";
  argv[n++] = "--readonly";
  argv[n++] = "--unix";
  argv[n++] = e->server.socket;
  argv[n++] = pidfile_opt;
  argv[n++] = plugin;
  for (size_t i = 0; i < np; i++)
    argv[n++] = params[i];
  argv[n++] = cache_opt;
  argv[n] = NULL;
  e->server.envp = envp;
  int r = nbd_server_run (&e->server, argv, "nbdkit");
  e->server.envp = NULL;
  if (handoff) {
    memset (handoff, 0, strlen (handoff));
    free (handoff);
  }
  if (r == -1) {
    free (e);
    return NULL;
  }
  return e;
 wipe:
  if (handoff) {
    memset (handoff, 0, strlen (handoff));
    free (handoff);
  }
  free (e);
  return NULL;
}

const char *
vms_repo_export_uri (const vms_repo_export *e)
{
  return e->server.uri;
}

uint64_t
vms_repo_export_size (const vms_repo_export *e)
{
  return e->size;
}

int
vms_repo_export_ended (vms_repo_export *e)
{
  return nbd_server_ended (&e->server);
}

void
vms_repo_export_messages (vms_repo_export *e, vms_repo_report_fn fn, void *opaque)
{
  char path[4096], buf[8192];
  CLEANUP_CLOSE int fd = -1;
  ssize_t n;

  if (e->server.dir == NULL)
    return;
  snprintf (path, sizeof path, "%s/log", e->server.dir);
  if ((fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
    return;
  /* Whole lines only: a partial last line waits for the next call. */
  while ((n = pread (fd, buf, sizeof buf - 1, e->log_read)) > 0) {
    char *end = memrchr (buf, '\n', (size_t) n);
    if (end == NULL) {
      if ((size_t) n < sizeof buf - 1)
        break;
      end = buf + n - 1;        /* a line longer than the buffer: cut */
    }
    *end = '\0';
    e->log_read += end - buf + 1;
    for (char *line = strtok (buf, "\n"); line; line = strtok (NULL, "\n"))
      if (*line)
        fn (opaque, line);
  }
}

void
vms_repo_export_close (vms_repo_export *e)
{
  if (e == NULL)
    return;
  if (nbd_server_stop (&e->server) == -1)
    vms_warn ("%s", vms_get_error ());
  free (e);
}

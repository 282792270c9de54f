/* vmshadow-guard — undoes a VM capture when vmshadow dies (issue 5).
 *
 * Started by the VM writer (vm-guard.c) before the first guest is frozen
 * or VM paused, in a session of its own (a terminal's ^C or a test
 * runner's kill of vmshadow's process group does not reach it), with:
 *
 *   stdin   the read end of a pipe whose write end only vmshadow holds
 *           (O_CLOEXEC: no other child inherits it), carrying one line per
 *           thing vmshadow is about to do, fields separated by tabs:
 *             freeze <uuid>            the guest may be frozen from now on
 *             thaw <uuid>              it was thawed
 *             pause <uuid>             vmshadow pauses this running VM
 *             resume <uuid>            it was resumed
 *             job <uuid> <socket> <checkpoint>
 *                                      a pull backup job serving <socket>
 *                                      may begin, with that new checkpoint
 *                                      ("-" for none)
 *             file <uuid> <path>       a saved-state file of this session
 *             scratch <uuid> <dir>     the directory of the job's scratch
 *                                      files, made by vmshadow (issue 15:
 *                                      libvirt no longer removes them)
 *             maint <uuid> <resource> <nvpair-id>|- =<value>|-
 *                                      vmshadow sets maintenance=true on
 *                                      this Pacemaker resource (issue 18):
 *                                      put back <value> into the nvpair,
 *                                      or ("-") delete vmshadow's own set
 *             unmaint <uuid>           it was put back
 *             pin <uuid> <resource>    vmshadow places its location
 *                                      constraint vmshadow-pin-<resource>
 *             unpin <uuid>             it was removed
 *             disarm <uuid>            nothing of this VM needs undoing
 *             exit                     vmshadow is done: leave at once
 *   stdout  "ready\n" once its own libvirt connection is open, then closed;
 *   argv    vmshadow-guard URI.
 *
 * At end of file without "exit" (vmshadow died, even of SIGKILL, or ended
 * with something still armed) it undoes what is still recorded, one thread
 * per VM, through its own connection: thaw the guest, resume the VM it
 * paused, abort the backup job if the domain's job serves our socket,
 * delete our checkpoint (its name is unique to the session), remove the
 * state file and, once no job of ours uses them, the scratch files — then once more a second later (a request vmshadow sent just
 * before it died may reach libvirtd after the first pass); then, the VM
 * back in its state, it puts the resource's maintenance attribute back
 * and removes the pin (vm-cluster.c), and exits.
 * It never touches a VM, job or checkpoint it was not told about.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vmshadow/error.h"

#include "vm-cluster.h"

#define GUARD_DEADLINE_MS 60000       /* give up on a VM after this long */
#define GUARD_JOB_END_WAIT_MS 10000
#define GUARD_SETTLE_MS 1000          /* between the two passes */

struct guard_vm {
  char *uuid;
  int frozen, paused;
  char *socket, *checkpoint, *file, *scratch;
  char *maint_rsc, *maint_nvpair, *maint_value;   /* maint armed: rsc set */
  char *pin_rsc;
  virConnectPtr conn;
  pthread_t thread;
  int started;
};

static struct guard_vm *vms;
static size_t nr_vms;
static const char *uri;

static void
say (const char *fmt, ...)
{
  va_list ap;
  fprintf (stderr, "vmshadow-guard[%ld]: ", (long) getpid ());
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

static const char *
virt_error (void)
{
  const char *m = virGetLastErrorMessage ();
  return m && *m ? m : "unknown libvirt error";
}

static void
silent_error (void *opaque, virErrorPtr err)
{
}

static long long
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms (long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep (&ts, NULL);
}

static char *
xstrdup (const char *s)
{
  char *p = strdup (s);
  if (p == NULL) {
    say ("out of memory");
    exit (EXIT_FAILURE);
  }
  return p;
}

static struct guard_vm *
vm_get (const char *uuid)
{
  struct guard_vm *p;

  for (size_t i = 0; i < nr_vms; i++)
    if (vms[i].uuid && strcmp (vms[i].uuid, uuid) == 0)
      return &vms[i];
  p = realloc (vms, (nr_vms + 1) * sizeof *vms);
  if (p == NULL) {
    say ("out of memory");
    exit (EXIT_FAILURE);
  }
  vms = p;
  memset (&vms[nr_vms], 0, sizeof vms[nr_vms]);
  vms[nr_vms].uuid = xstrdup (uuid);
  return &vms[nr_vms++];
}

static void
vm_forget (struct guard_vm *vm)
{
  free (vm->socket); free (vm->checkpoint); free (vm->file);
  free (vm->scratch);
  vm->socket = vm->checkpoint = vm->file = vm->scratch = NULL;
  vm->frozen = vm->paused = 0;
  free (vm->maint_rsc); free (vm->maint_nvpair); free (vm->maint_value);
  free (vm->pin_rsc);
  vm->maint_rsc = vm->maint_nvpair = vm->maint_value = vm->pin_rsc = NULL;
}

static int
vm_armed (const struct guard_vm *vm)
{
  return vm->frozen || vm->paused || vm->socket || vm->checkpoint ||
    vm->file || vm->scratch || vm->maint_rsc || vm->pin_rsc;
}

/* One line of the protocol. Returns 1 for "exit". */
static int
handle_line (char *line)
{
  char *f[5] = { NULL };
  size_t n = 0;
  char *save = NULL;
  struct guard_vm *vm;

  line[strcspn (line, "\n")] = '\0';
  for (char *t = strtok_r (line, "\t", &save); t && n < 5;
       t = strtok_r (NULL, "\t", &save))
    f[n++] = t;
  if (n == 0)
    return 0;
  if (strcmp (f[0], "exit") == 0)
    return 1;
  if (n < 2) {
    say ("ignoring a malformed message \"%s\"", f[0]);
    return 0;
  }
  vm = vm_get (f[1]);
  if (strcmp (f[0], "freeze") == 0)
    vm->frozen = 1;
  else if (strcmp (f[0], "thaw") == 0)
    vm->frozen = 0;
  else if (strcmp (f[0], "pause") == 0)
    vm->paused = 1;
  else if (strcmp (f[0], "resume") == 0)
    vm->paused = 0;
  else if (strcmp (f[0], "job") == 0 && n == 4) {
    free (vm->socket); free (vm->checkpoint);
    vm->socket = xstrdup (f[2]);
    vm->checkpoint = strcmp (f[3], "-") == 0 ? NULL : xstrdup (f[3]);
  }
  else if (strcmp (f[0], "file") == 0 && n == 3) {
    free (vm->file);
    vm->file = xstrdup (f[2]);
  }
  else if (strcmp (f[0], "scratch") == 0 && n == 3) {
    free (vm->scratch);
    vm->scratch = xstrdup (f[2]);
  }
  else if (strcmp (f[0], "maint") == 0 && n == 5) {
    free (vm->maint_rsc); free (vm->maint_nvpair); free (vm->maint_value);
    vm->maint_rsc = xstrdup (f[2]);
    vm->maint_nvpair = strcmp (f[3], "-") == 0 ? NULL : xstrdup (f[3]);
    vm->maint_value = f[4][0] == '=' ? xstrdup (f[4] + 1) : NULL;
  }
  else if (strcmp (f[0], "unmaint") == 0) {
    free (vm->maint_rsc); free (vm->maint_nvpair); free (vm->maint_value);
    vm->maint_rsc = vm->maint_nvpair = vm->maint_value = NULL;
  }
  else if (strcmp (f[0], "pin") == 0 && n == 3) {
    free (vm->pin_rsc);
    vm->pin_rsc = xstrdup (f[2]);
  }
  else if (strcmp (f[0], "unpin") == 0) {
    free (vm->pin_rsc);
    vm->pin_rsc = NULL;
  }
  else if (strcmp (f[0], "disarm") == 0)
    vm_forget (vm);
  else
    say ("ignoring a malformed message \"%s\"", f[0]);
  return 0;
}

/* Is the domain's active backup job the one serving our socket? */
static int
job_is_ours (virDomainPtr dom, const char *socket)
{
  char *xml = virDomainBackupGetXMLDesc (dom, 0);
  int r = xml != NULL && strstr (xml, socket) != NULL;
  free (xml);
  return r;
}

/* The job's scratch directory, made by vmshadow under its state
 * directory: the files in it removed (unlinkat never follows a link),
 * then the directory itself. */
static void
remove_scratch (struct guard_vm *vm)
{
  int dfd = open (vm->scratch, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *d;
  struct dirent *e;

  if (dfd == -1)
    return;
  if ((d = fdopendir (dfd)) == NULL) {
    close (dfd);
    return;
  }
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0)
      unlinkat (dfd, e->d_name, 0);
  closedir (d);
  if (rmdir (vm->scratch) == 0)
    say ("vm %s: removed the scratch files in %s", vm->uuid, vm->scratch);
}

static void
undo_once (struct guard_vm *vm, virDomainPtr dom, long long deadline,
           int first)
{
  int st, why;

  if (vm->frozen) {
    /* A freeze vmshadow began may still run (a slow guest hook): libvirt
     * queues the thaw behind it; retry until it goes through. */
    while (virDomainFSThaw (dom, NULL, 0, 0) < 0) {
      if (virDomainIsActive (dom) != 1 || now_ms () > deadline) {
        if (first)
          say ("vm %s: cannot thaw the guest: %s", vm->uuid, virt_error ());
        break;
      }
      sleep_ms (200);
    }
    if (first)
      say ("vm %s: guest thawed", vm->uuid);
  }
  if (vm->paused) {
    while (virDomainGetState (dom, &st, &why, 0) == 0 &&
           st == VIR_DOMAIN_PAUSED) {
      if (virDomainResume (dom) == 0) {
        say ("vm %s: resumed (vmshadow had paused it)", vm->uuid);
        break;
      }
      if (now_ms () > deadline) {
        say ("vm %s: cannot resume it: %s; run virsh resume", vm->uuid,
             virt_error ());
        break;
      }
      sleep_ms (200);
    }
  }
  if (vm->socket && virDomainIsActive (dom) == 1 &&
      job_is_ours (dom, vm->socket)) {
    long long end = now_ms () + GUARD_JOB_END_WAIT_MS;
    if (virDomainAbortJob (dom) == -1 && job_is_ours (dom, vm->socket))
      say ("vm %s: cannot end the backup job: %s", vm->uuid, virt_error ());
    while (job_is_ours (dom, vm->socket) && now_ms () < end)
      sleep_ms (100);
    say ("vm %s: backup job %s", vm->uuid, job_is_ours (dom, vm->socket)
         ? "did not end; run virsh domjobabort" : "ended");
  }
  if (vm->checkpoint) {
    virDomainCheckpointPtr cp =
      virDomainCheckpointLookupByName (dom, vm->checkpoint, 0);
    if (cp) {
      if (virDomainCheckpointDelete (cp, 0) == 0)
        say ("vm %s: checkpoint %s deleted (its backup was not committed)",
             vm->uuid, vm->checkpoint);
      else
        say ("vm %s: cannot delete checkpoint %s: %s", vm->uuid,
             vm->checkpoint, virt_error ());
      virDomainCheckpointFree (cp);
    }
  }
  if (vm->file && unlink (vm->file) == 0)
    say ("vm %s: removed %s", vm->uuid, vm->file);
  if (vm->scratch && (vm->socket == NULL || !job_is_ours (dom, vm->socket)))
    remove_scratch (vm);
  if (vm->socket && !job_is_ours (dom, vm->socket)) {
    /* The session's socket directory, once no job serves it. */
    char *dir = strdup (vm->socket), *slash = dir ? strrchr (dir, '/') : NULL;
    unlink (vm->socket);
    if (slash && slash != dir) {
      *slash = '\0';
      rmdir (dir);
    }
    free (dir);
  }
}

/* Issue 18 (R22): once the VM is back in its state, its cluster resource
 * leaves maintenance (exactly as it was before) and the pin goes. */
static void
undo_cluster (struct guard_vm *vm)
{
  if (vm->maint_rsc) {
    struct vm_cluster_meta_prev prev = { .nvpair_id = vm->maint_nvpair,
                                         .value = vm->maint_value };
    if (vm_cluster_meta_restore (vm->maint_rsc, "maintenance", &prev) == 0)
      say ("vm %s: resource %s: maintenance put back as it was", vm->uuid,
           vm->maint_rsc);
    else
      say ("vm %s: resource %s: cannot put maintenance back: %s; run "
           "crm_resource --resource %s --meta --get-parameter maintenance",
           vm->uuid, vm->maint_rsc, vms_get_error (), vm->maint_rsc);
  }
  if (vm->pin_rsc) {
    if (vm_cluster_unpin (vm->pin_rsc) == 0)
      say ("vm %s: resource %s: pin constraint removed", vm->uuid,
           vm->pin_rsc);
    else
      say ("vm %s: resource %s: cannot remove the constraint "
           VM_CLUSTER_PIN_PREFIX "%s: %s", vm->uuid, vm->pin_rsc,
           vm->pin_rsc, vms_get_error ());
  }
}

static void *
undo_thread (void *arg)
{
  struct guard_vm *vm = arg;
  long long deadline = now_ms () + GUARD_DEADLINE_MS;
  virDomainPtr dom;

  vm->conn = virConnectOpen (uri);
  if (vm->conn == NULL) {
    say ("vm %s: cannot connect to libvirt at %s: %s", vm->uuid, uri,
         virt_error ());
    undo_cluster (vm);
    return NULL;
  }
  dom = virDomainLookupByUUIDString (vm->conn, vm->uuid);
  if (dom == NULL) {
    say ("vm %s: no such domain any more", vm->uuid);
    if (vm->file)
      unlink (vm->file);
    if (vm->scratch)
      remove_scratch (vm);
    undo_cluster (vm);
    return NULL;
  }
  undo_once (vm, dom, deadline, 1);
  sleep_ms (GUARD_SETTLE_MS);
  undo_once (vm, dom, deadline, 0);
  virDomainFree (dom);
  undo_cluster (vm);
  return NULL;
}

int
main (int argc, char **argv)
{
  virConnectPtr conn;
  char *line = NULL;
  size_t cap = 0;
  int devnull;

  if (argc != 2) {
    fprintf (stderr, "usage: vmshadow-guard URI < messages\n"
             "(started by vmshadow; not meant to be run by hand)\n");
    return 2;
  }
  uri = argv[1];
  signal (SIGPIPE, SIG_IGN);
  signal (SIGHUP, SIG_IGN);
  signal (SIGINT, SIG_IGN);
  if (virInitialize () == -1)
    return 1;
  virSetErrorFunc (NULL, silent_error);

  /* A connection of our own, proved now: vmshadow waits for "ready". */
  conn = virConnectOpen (uri);
  if (conn == NULL) {
    say ("cannot connect to libvirt at %s: %s", uri, virt_error ());
    return 1;
  }
  if (write (STDOUT_FILENO, "ready\n", 6) != 6)
    return 1;
  devnull = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  if (devnull >= 0) {
    dup2 (devnull, STDOUT_FILENO);
    close (devnull);
  }

  for (;;) {
    ssize_t n = getline (&line, &cap, stdin);
    if (n == -1) {
      if (ferror (stdin) && errno == EINTR) {
        clearerr (stdin);
        continue;
      }
      break;                    /* vmshadow went away */
    }
    if (handle_line (line) == 1) {
      free (line);
      virConnectClose (conn);
      return 0;
    }
  }
  free (line);
  virConnectClose (conn);

  size_t armed = 0;
  for (size_t i = 0; i < nr_vms; i++)
    armed += vm_armed (&vms[i]);
  if (armed == 0)
    return 0;
  say ("vmshadow went away with %zu VM(s) still being captured; undoing",
       armed);
  /* One thread (and connection) per VM: a guest whose freeze hook hangs
   * must not delay the resume of another VM. */
  for (size_t i = 0; i < nr_vms; i++) {
    if (!vm_armed (&vms[i]))
      continue;
    if (pthread_create (&vms[i].thread, NULL, undo_thread, &vms[i]) == 0)
      vms[i].started = 1;
    else
      undo_thread (&vms[i]);
  }
  for (size_t i = 0; i < nr_vms; i++)
    if (vms[i].started)
      pthread_join (vms[i].thread, NULL);
  for (size_t i = 0; i < nr_vms; i++) {
    if (vms[i].conn)
      virConnectClose (vms[i].conn);
    vm_forget (&vms[i]);
    free (vms[i].uuid);
  }
  free (vms);
  say ("done");
  return 0;
}

/* Component tests of the file provider, driven through the real
 * coordinator by a writer test double (test-double-writer.h).
 *
 * Usage: test-file-provider <test-name>. Each test runs in a child process;
 * the parent then undoes whatever the child set up (mounts, the loop
 * device it attached, temporary directories), also when the child failed
 * or crashed. Exit status: 0 pass, 77 skip (the reason is printed), 1 fail.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fiemap.h>
#include <linux/fs.h>           /* FS_IOC_FIEMAP */
#include <linux/magic.h>        /* TMPFS_MAGIC */

#include "vmshadow/coordinator.h"
#include "vmshadow/error.h"

#include "file-provider.h"
#include "session-dir.h"
#include "test-double-writer.h"

#define MiB (1024 * 1024)

/* What the child set up, for the parent to undo (shared memory). */
struct fixture {
  char work[PATH_MAX];          /* our temporary directory */
  char shm[PATH_MAX];           /* a temporary directory under /dev/shm */
  char mounts[2][PATH_MAX];     /* mount points we mounted */
  char loopdev[64];             /* the loop device we attached */
};
static struct fixture *fx;

#define CHECK(cond) \
  do { if (!(cond)) fail (__LINE__, "%s", #cond); } while (0)
#define CHECKF(cond, ...) \
  do { if (!(cond)) fail (__LINE__, __VA_ARGS__); } while (0)

static void __attribute__ ((noreturn, format (printf, 2, 3)))
fail (int line, const char *fmt, ...)
{
  int saved_errno = errno;
  va_list ap;

  fprintf (stderr, "FAIL: line %d: ", line);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n  errno: %s\n", strerror (saved_errno));
  fprintf (stderr, "  last vmshadow error: %s\n",
           vms_get_error () ? vms_get_error () : "(none)");
  fflush (stderr);
  _exit (1);
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
skip (const char *fmt, ...)
{
  va_list ap;

  printf ("SKIP: ");
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  printf ("\n");
  fflush (stdout);
  _exit (77);
}

/* ---- Small helpers ---- */

static char *
path_of (const char *dir, const char *name)
{
  char *p;
  CHECK (asprintf (&p, "%s/%s", dir, name) != -1);
  return p;
}

/* Run a command, its output to stderr; returns its exit status, 127 if it
 * could not be run. If out is not NULL, the first line of its standard
 * output goes there instead. */
static int
run_cmd (char *out, size_t outlen, const char *arg0, ...)
{
  const char *argv[16];
  int pfd[2] = { -1, -1 }, status;
  size_t n = 0;
  va_list ap;
  pid_t pid;

  argv[n++] = arg0;
  va_start (ap, arg0);
  while ((argv[n] = va_arg (ap, const char *)) != NULL && n < 15)
    n++;
  va_end (ap);
  argv[n] = NULL;
  if (out && pipe (pfd) == -1)
    return 127;
  fflush (NULL);
  pid = fork ();
  if (pid == -1)
    return 127;
  if (pid == 0) {
    dup2 (out ? pfd[1] : 2, 1);
    if (out) {
      close (pfd[0]);
      close (pfd[1]);
    }
    execvp (argv[0], (char **) argv);
    _exit (127);
  }
  if (out) {
    ssize_t r;
    size_t got = 0;

    close (pfd[1]);
    while (got + 1 < outlen &&
           (r = read (pfd[0], out + got, outlen - 1 - got)) > 0)
      got += (size_t) r;
    out[got] = '\0';
    out[strcspn (out, "\n")] = '\0';
    close (pfd[0]);
  }
  if (waitpid (pid, &status, 0) == -1)
    return 127;
  return WIFEXITED (status) ? WEXITSTATUS (status) : 127;
}

static void
fill_pattern (unsigned char *buf, size_t len, unsigned seed)
{
  uint32_t x = seed * 2654435761u + 1;

  for (size_t i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    buf[i] = (unsigned char) x;
  }
}

static void
write_at (const char *path, off_t off, const void *buf, size_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  const unsigned char *p = buf;

  CHECKF (fd >= 0, "open %s", path);
  while (len > 0) {
    ssize_t r = pwrite (fd, p, len, off);
    CHECKF (r > 0, "write %s", path);
    p += r; off += r; len -= (size_t) r;
  }
  CHECKF (fsync (fd) == 0, "fsync %s", path);
  close (fd);
}

/* A new file of len bytes of pattern seed; returns its content. */
static unsigned char *
make_file (const char *path, size_t len, unsigned seed)
{
  unsigned char *buf = malloc (len ? len : 1);

  CHECK (buf != NULL);
  fill_pattern (buf, len, seed);
  unlink (path);
  write_at (path, 0, buf, len);
  return buf;
}

static unsigned char *
read_all (const char *path, size_t *len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  unsigned char *buf;
  size_t got = 0;

  CHECKF (fd >= 0, "open %s", path);
  CHECK (fstat (fd, &st) == 0);
  buf = malloc ((size_t) st.st_size + 1);
  CHECK (buf != NULL);
  while (got < (size_t) st.st_size) {
    ssize_t r = read (fd, buf + got, (size_t) st.st_size - got);
    CHECKF (r > 0, "read %s", path);
    got += (size_t) r;
  }
  close (fd);
  *len = got;
  return buf;
}

static void
check_content (const char *path, const unsigned char *want, size_t len)
{
  size_t got_len;
  unsigned char *got = read_all (path, &got_len);

  CHECKF (got_len == len, "%s has %zu bytes, want %zu", path, got_len, len);
  for (size_t i = 0; i < len; i++)
    CHECKF (got[i] == want[i], "%s differs at byte %zu", path, i);
  free (got);
}

/* Number of entries in dir (not . and ..); -1 if it does not exist. */
static int
count_entries (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  int n = 0;

  if (d == NULL) {
    CHECKF (errno == ENOENT, "opendir %s", dir);
    return -1;
  }
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, ".."))
      n++;
  closedir (d);
  return n;
}

/* Entries in the only session directory under the scratch root (-1 if
 * there is none), not counting its owner file (lib/util/session-dir.h). */
static int
count_copies (const char *scratch)
{
  DIR *d = opendir (scratch);
  struct dirent *e;
  int n = -1;

  CHECKF (d != NULL, "opendir %s", scratch);
  while ((e = readdir (d)) != NULL) {
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    char *p = path_of (scratch, e->d_name);
    CHECKF (n == -1, "more than one session directory in %s", scratch);
    char *owner = path_of (p, VMS_SESSION_OWNER_FILE);
    n = count_entries (p) - (access (owner, F_OK) == 0);
    free (owner);
    free (p);
  }
  closedir (d);
  return n;
}

/* Extents of path: how many, and how many are shared (reflinked). */
static void
fiemap_count (const char *path, unsigned *extents, unsigned *shared)
{
  enum { MAX = 512 };
  size_t sz = sizeof (struct fiemap) + MAX * sizeof (struct fiemap_extent);
  struct fiemap *fm = calloc (1, sz);
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  CHECK (fm != NULL && fd >= 0);
  fm->fm_start = 0;
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = MAX;
  *extents = *shared = 0;
  if (ioctl (fd, FS_IOC_FIEMAP, fm) == -1) {
    /* tmpfs has no extents to map: nothing is shared there. */
    CHECKF (errno == EOPNOTSUPP, "FIEMAP %s", path);
    fm->fm_mapped_extents = 0;
  }
  *extents = fm->fm_mapped_extents;
  for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
    if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED)
      (*shared)++;
  close (fd);
  free (fm);
}

/* Can a file in dir be a reflink of src? */
static int
can_reflink (const char *src, const char *dir)
{
  char *probe = path_of (dir, "reflink-probe");
  int in = open (src, O_RDONLY | O_CLOEXEC);
  int out = open (probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  int r;

  CHECK (in >= 0 && out >= 0);
  r = ioctl (out, FICLONE, in) == 0;
  close (in);
  close (out);
  unlink (probe);
  free (probe);
  return r;
}

static int
is_tmpfs (const char *path)
{
  struct statfs sf;
  return statfs (path, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
}

static void
need_root (const char *what)
{
  if (geteuid () != 0)
    skip ("%s needs root (to mount)", what);
}

/* Mount a tmpfs of size bytes on <work>/<name>; skips if it cannot. */
static char *
mount_tmpfs (const char *name, const char *size)
{
  char *mnt = path_of (fx->work, name);
  char opts[64];

  need_root ("mounting a small tmpfs");
  CHECK (mkdir (mnt, 0755) == 0);
  snprintf (opts, sizeof opts, "size=%s,mode=0755", size);
  if (run_cmd (NULL, 0, "mount", "-t", "tmpfs", "-o", opts, "vmshadow-test",
               mnt, NULL) != 0)
    skip ("cannot mount a tmpfs on %s", mnt);
  snprintf (fx->mounts[0], sizeof fx->mounts[0], "%s", mnt);
  return mnt;
}

/* A 256 MiB btrfs on a loop device of our own, mounted on <work>/btrfs. */
static char *
mount_btrfs (void)
{
  char *img = path_of (fx->work, "btrfs.img");
  char *mnt = path_of (fx->work, "btrfs");
  char dev[64];
  int fd;

  need_root ("a loop-mounted btrfs");
  if (run_cmd (NULL, 0, "mkfs.btrfs", "--version", NULL) != 0)
    skip ("mkfs.btrfs is not installed (btrfs-progs)");
  fd = open (img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  CHECK (fd >= 0 && ftruncate (fd, 256 * MiB) == 0);
  close (fd);
  if (run_cmd (dev, sizeof dev, "losetup", "--find", "--show", img, NULL) != 0
      || strncmp (dev, "/dev/loop", 9) != 0)
    skip ("cannot attach a loop device to %s", img);
  snprintf (fx->loopdev, sizeof fx->loopdev, "%s", dev);
  CHECK (run_cmd (NULL, 0, "mkfs.btrfs", "-q", "-f", dev, NULL) == 0);
  CHECK (mkdir (mnt, 0755) == 0);
  if (run_cmd (NULL, 0, "mount", "-t", "btrfs", dev, mnt, NULL) != 0)
    skip ("cannot mount btrfs from %s (no btrfs in this kernel?)", dev);
  snprintf (fx->mounts[1], sizeof fx->mounts[1], "%s", mnt);
  free (img);
  return mnt;
}

/* ---- Sessions ---- */

static vms_coordinator *
coord_new (struct test_double_writer *w, const char *scratch)
{
  vms_coordinator *c = vms_coordinator_new ();

  CHECK (c != NULL);
  CHECK (test_double_writer_add (c, w) == 0);
  CHECK (vms_file_provider_add (c, scratch) == 0);
  return c;
}

/* Identify, PrepareForBackup, DoSnapshotSet; expect_ok says whether the
 * snapshot set should succeed. */
static vms_session *
session_snapshot (vms_coordinator *c, int expect_ok)
{
  vms_session *s = vms_backup_session_new (c, NULL);

  CHECK (s != NULL);
  CHECK (vms_session_identify (s) == 0);
  CHECK (vms_session_prepare_backup (s) == 0);
  if (expect_ok) {
    CHECKF (vms_session_do_snapshot_set (s) == 0, "do_snapshot_set failed");
    CHECK (vms_session_state (s) == VMS_SESSION_SNAPSHOTTED);
  }
  else {
    CHECKF (vms_session_do_snapshot_set (s) == -1,
            "do_snapshot_set succeeded, should have failed");
    CHECKF (vms_session_state (s) == VMS_SESSION_ABORTED, "state is %s",
            vms_session_state_name (vms_session_state (s)));
  }
  return s;
}

static const char *
access_of (vms_session *s, const char *path)
{
  return vms_session_file_access (s, TEST_DOUBLE_WRITER_ID,
                                  TEST_DOUBLE_COMPONENT, path);
}

static void
print_failure (vms_session *s, struct vms_session_failure *f)
{
  CHECKF (vms_session_failure (s, f) == 0, "the session has no failure");
  printf ("failure: phase %s, kind %s, %s %s: %s\n", vms_event_name (f->phase),
          vms_failure_name (f->kind), f->is_provider ? "provider" : "writer",
          f->culprit ? f->culprit : "?", f->message ? f->message : "?");
}

/* ---- The copy path ---- */

static struct {
  const char *a, *b;
  unsigned char *a_want, *b_want;
} copy_hook_state;

/* Change a before Freeze and inside the freeze window: the copy must hold
 * the freeze-window bytes (what commit saw), not the earlier ones. */
static void
copy_hook (struct test_double_writer *w, enum vms_event ev)
{
  static const char before[] = "prepare-time";
  static const char inside[] = "freeze-time!";

  if (ev == VMS_EVENT_PREPARE_SNAPSHOT)
    write_at (copy_hook_state.a, 100, before, sizeof before - 1);
  else if (ev == VMS_EVENT_FREEZE) {
    write_at (copy_hook_state.a, 100, inside, sizeof inside - 1);
    memcpy (copy_hook_state.a_want + 100, inside, sizeof inside - 1);
    write_at (copy_hook_state.b, 5000, inside, sizeof inside - 1);
    memcpy (copy_hook_state.b_want + 5000, inside, sizeof inside - 1);
  }
}

/* Two files with the same basename, an oddly named one and a sparse one;
 * scratch is where copies go. */
static void
check_copies_hold_commit_time_bytes (const char *scratch)
{
  char *da = path_of (fx->work, "a"), *db = path_of (fx->work, "b");
  char *a = path_of (da, "disk.img"), *b = path_of (db, "disk.img");
  char *odd = path_of (fx->work, "we ird\n..name");
  char *sp = path_of (fx->work, "sparse.img");
  unsigned char *a_want, *b_want, *odd_want, *sp_data;
  struct test_double_writer w = { .veto_at = -1, .hook = copy_hook };
  const char *acc[4];
  char *real_scratch, *sessdir;
  struct stat st;
  unsigned ext, shared;
  vms_coordinator *c;
  vms_session *s;
  int fd;

  CHECK (mkdir (da, 0755) == 0 && mkdir (db, 0755) == 0);
  a_want = make_file (a, 1 * MiB, 1);
  b_want = make_file (b, 1 * MiB + 123, 2);
  odd_want = make_file (odd, 4096, 3);
  /* 64 MiB, with 64 KiB of data at 0 and at 40 MiB: the rest is holes. */
  sp_data = malloc (64 * 1024);
  CHECK (sp_data != NULL);
  fill_pattern (sp_data, 64 * 1024, 4);
  fd = open (sp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECK (fd >= 0 && ftruncate (fd, 64 * MiB) == 0);
  close (fd);
  write_at (sp, 0, sp_data, 64 * 1024);
  write_at (sp, 40 * MiB, sp_data, 64 * 1024);
  copy_hook_state.a = a; copy_hook_state.b = b;
  copy_hook_state.a_want = a_want; copy_hook_state.b_want = b_want;

  w.nr_files = 4;
  w.paths[0] = a; w.paths[1] = b; w.paths[2] = odd; w.paths[3] = sp;
  c = coord_new (&w, scratch);
  s = session_snapshot (c, 1);

  real_scratch = realpath (scratch, NULL);
  CHECK (real_scratch != NULL);
  sessdir = path_of (real_scratch, vms_session_id (s));
  CHECKF (stat (sessdir, &st) == 0 && S_ISDIR (st.st_mode) &&
          (st.st_mode & 07777) == 0700,
          "session directory %s is not a 0700 directory", sessdir);

  for (size_t i = 0; i < 4; i++) {
    struct stat orig;
    size_t plen = strlen (sessdir);

    acc[i] = access_of (s, w.paths[i]);
    CHECKF (acc[i] != NULL, "no access path for %s", w.paths[i]);
    printf ("copy of %s is %s\n", w.paths[i], acc[i]);
    CHECKF (strncmp (acc[i], sessdir, plen) == 0 && acc[i][plen] == '/' &&
            strchr (acc[i] + plen + 1, '/') == NULL &&
            strcmp (acc[i] + plen + 1, "..") != 0,
            "copy %s is not directly in %s", acc[i], sessdir);
    for (size_t j = 0; j < i; j++)
      CHECKF (strcmp (acc[i], acc[j]) != 0, "two files share copy %s", acc[i]);
    CHECK (lstat (acc[i], &st) == 0 && S_ISREG (st.st_mode));
    CHECKF ((st.st_mode & 07777) == 0600, "copy %s has mode %o", acc[i],
            st.st_mode & 07777);
    CHECK (stat (w.paths[i], &orig) == 0);
    CHECKF (st.st_size == orig.st_size, "copy %s has size %lld, want %lld",
            acc[i], (long long) st.st_size, (long long) orig.st_size);
  }

  /* Writes after the snapshot must not reach the copies. */
  write_at (a, 100, "after-commit", 12);
  write_at (b, 0, "after-commit", 12);
  write_at (odd, 0, "after-commit", 12);
  write_at (sp, 20 * MiB, "after-commit", 12);

  check_content (acc[0], a_want, 1 * MiB);
  check_content (acc[1], b_want, 1 * MiB + 123);
  check_content (acc[2], odd_want, 4096);
  {
    unsigned char *sp_want = calloc (1, 64 * MiB);
    CHECK (sp_want != NULL);
    memcpy (sp_want, sp_data, 64 * 1024);
    memcpy (sp_want + 40 * MiB, sp_data, 64 * 1024);
    check_content (acc[3], sp_want, 64 * MiB);
    free (sp_want);
  }
  CHECK (stat (acc[3], &st) == 0);
  CHECKF ((long long) st.st_blocks * 512 <= 1 * MiB,
          "the copy of a 64 MiB file with 128 KiB of data takes %lld bytes: "
          "holes were filled", (long long) st.st_blocks * 512);

  fiemap_count (acc[0], &ext, &shared);
  printf ("copy of %s: %u extent(s), %u shared: %s\n", a, ext, shared,
          shared ? "reflinked" : "plain copy");
  if (is_tmpfs (scratch))
    CHECKF (shared == 0, "a copy on tmpfs claims shared extents");

  CHECK (vms_session_backup_complete (s, 1) == 0);
  vms_session_free (s);
  CHECKF (count_entries (sessdir) == -1, "%s is still there after the "
          "session ended", sessdir);
  CHECKF (count_entries (scratch) == 0, "%s is not empty", scratch);
  vms_coordinator_free (c);
  free (real_scratch); free (sessdir);
  free (a_want); free (b_want); free (odd_want); free (sp_data);
  free (a); free (b); free (da); free (db); free (odd); free (sp);
}

static void
test_copy_holds_commit_time_bytes (void)
{
  char *scratch = path_of (fx->work, "scratch");

  check_copies_hold_commit_time_bytes (scratch);
  free (scratch);
}

static void
test_copy_to_another_filesystem (void)
{
  char tmpl[] = "/dev/shm/vmshadow-test-XXXXXX";

  if (!is_tmpfs ("/dev/shm") || access ("/dev/shm", W_OK) != 0)
    skip ("/dev/shm is not a writable tmpfs");
  if (is_tmpfs (fx->work))
    skip ("the build directory is on tmpfs too");
  CHECK (mkdtemp (tmpl) != NULL);
  snprintf (fx->shm, sizeof fx->shm, "%s", tmpl);
  check_copies_hold_commit_time_bytes (tmpl);
}

/* ---- Release after aborts and failures ---- */

static struct {
  const char *scratch;
  int copies_seen;
  const char *unlink_at_freeze;
  const char *grow_at_freeze;
} fail_hook_state = { .copies_seen = -2 };

static void
fail_hook (struct test_double_writer *w, enum vms_event ev)
{
  if (ev == (enum vms_event) w->veto_at)
    fail_hook_state.copies_seen = count_copies (fail_hook_state.scratch);
  if (ev == VMS_EVENT_FREEZE && fail_hook_state.unlink_at_freeze)
    CHECK (unlink (fail_hook_state.unlink_at_freeze) == 0);
  if (ev == VMS_EVENT_FREEZE && fail_hook_state.grow_at_freeze) {
    unsigned char *buf = malloc (6 * MiB);
    CHECK (buf != NULL);
    fill_pattern (buf, 6 * MiB, 9);
    write_at (fail_hook_state.grow_at_freeze, 0, buf, 6 * MiB);
    free (buf);
  }
}

/* Three 1 MiB files in <work>; the test double calls fail_hook. */
static vms_coordinator *
fail_setup (struct test_double_writer *w, const char *scratch, char **files)
{
  for (size_t i = 0; i < 3; i++) {
    char name[16];
    snprintf (name, sizeof name, "f%zu.img", i);
    files[i] = path_of (fx->work, name);
    free (make_file (files[i], 1 * MiB, (unsigned) i));
    w->paths[i] = files[i];
  }
  w->nr_files = 3;
  w->hook = fail_hook;
  fail_hook_state.scratch = scratch;
  return coord_new (w, scratch);
}

static void
check_nothing_left (vms_coordinator *c, vms_session *s, const char *scratch)
{
  vms_session_free (s);
  CHECKF (count_entries (scratch) == 0, "%s is not empty after the session "
          "ended", scratch);
  vms_coordinator_free (c);
}

static void
check_veto_leaves_nothing (enum vms_event veto, int copies_expected)
{
  char *scratch = path_of (fx->work, "scratch");
  char *files[3];
  struct test_double_writer w = { .veto_at = (int) veto };
  struct vms_session_failure f;
  vms_coordinator *c = fail_setup (&w, scratch, files);
  vms_session *s = session_snapshot (c, 0);

  print_failure (s, &f);
  CHECK (!f.is_provider && f.culprit &&
         strcmp (f.culprit, TEST_DOUBLE_WRITER_NAME) == 0);
  CHECKF (fail_hook_state.copies_seen == copies_expected,
          "at %s the session directory held %d copies, want %d",
          vms_event_name (veto), fail_hook_state.copies_seen,
          copies_expected);
  check_nothing_left (c, s, scratch);
  CHECK (w.events_seen & (1u << VMS_EVENT_ABORT));
  for (size_t i = 0; i < 3; i++) free (files[i]);
  free (scratch);
}

static void
test_veto_at_freeze (void)
{
  /* prepare made the (empty) session directory, commit never ran. */
  check_veto_leaves_nothing (VMS_EVENT_FREEZE, 0);
}

static void
test_veto_at_post_snapshot (void)
{
  check_veto_leaves_nothing (VMS_EVENT_POST_SNAPSHOT, 3);
}

static void
test_requester_abort (void)
{
  char *scratch = path_of (fx->work, "scratch");
  char *files[3];
  struct test_double_writer w = { .veto_at = -1 };
  vms_coordinator *c = fail_setup (&w, scratch, files);
  vms_session *s = session_snapshot (c, 1);

  CHECK (count_copies (scratch) == 3);
  CHECK (vms_session_abort (s, "test: the requester's copy failed") == 0);
  CHECK (vms_session_state (s) == VMS_SESSION_ABORTED);
  check_nothing_left (c, s, scratch);
  for (size_t i = 0; i < 3; i++) free (files[i]);
  free (scratch);
}

static void
test_commit_failure (void)
{
  char *scratch = path_of (fx->work, "scratch");
  char *files[3];
  struct test_double_writer w = { .veto_at = -1 };
  struct vms_session_failure f;
  vms_coordinator *c = fail_setup (&w, scratch, files);
  vms_session *s;

  /* The second file disappears inside the freeze window: commit copies the
   * first, then fails. */
  fail_hook_state.unlink_at_freeze = files[1];
  s = session_snapshot (c, 0);
  print_failure (s, &f);
  CHECK (f.is_provider && f.culprit &&
         strcmp (f.culprit, VMS_FILE_PROVIDER_NAME) == 0);
  CHECKF (f.message && strstr (f.message, files[1]),
          "the failure does not name %s", files[1]);
  CHECKF (count_copies (scratch) <= 0, "the copy made before the failure "
          "is still there after the commit failed");
  check_nothing_left (c, s, scratch);
  for (size_t i = 0; i < 3; i++) free (files[i]);
  free (scratch);
}

static void
test_commit_overrun (void)
{
  char *scratch = path_of (fx->work, "scratch");
  char *big = path_of (fx->work, "big.img");
  struct test_double_writer w = { .veto_at = -1, .nr_files = 1 };
  struct vms_session_failure f;
  vms_coordinator *c;
  vms_session *s;

  /* 256 MiB to copy in 5 ms: the copy must give up and clean up. */
  w.paths[0] = big;
  free (make_file (big, 256 * MiB, 7));
  if (can_reflink (big, fx->work))
    skip ("%s can reflink: nothing slow to overrun the budget with",
          fx->work);
  CHECK (setenv ("VMSHADOW_FILE_COMMIT_BUDGET_MS", "5", 1) == 0);
  c = coord_new (&w, scratch);
  s = session_snapshot (c, 0);
  print_failure (s, &f);
  CHECK (f.is_provider);
  CHECKF (f.kind == VMS_FAILURE_TIMEOUT, "failure kind is %s, want timeout",
          vms_failure_name (f.kind));
  check_nothing_left (c, s, scratch);
  free (big);
  free (scratch);
}

/* ---- Scratch space ---- */

static void
test_full_scratch (void)
{
  char *scratch = mount_tmpfs ("scratchfs", "1m");
  char *big = path_of (fx->work, "big.img");
  struct test_double_writer w = { .veto_at = -1, .nr_files = 1 };
  struct vms_session_failure f;
  vms_coordinator *c;
  vms_session *s;

  w.paths[0] = big;
  free (make_file (big, 4 * MiB, 5));
  c = coord_new (&w, scratch);
  s = session_snapshot (c, 0);
  print_failure (s, &f);
  CHECK (f.is_provider);
  CHECKF (f.message && strstr (f.message, "not enough space"),
          "the failure does not say there is not enough space");
  CHECKF (f.kind == VMS_FAILURE_OUT_OF_RESOURCES,
          "failure kind is %s, want out-of-resources",
          vms_failure_name (f.kind));
  check_nothing_left (c, s, scratch);
  free (big);
  free (scratch);
}

static void
test_scratch_fills_at_commit (void)
{
  char *scratch = mount_tmpfs ("scratchfs", "2m");
  char *files[3];
  struct test_double_writer w = { .veto_at = -1 };
  struct vms_session_failure f;
  vms_coordinator *c;
  vms_session *s;

  /* 3 MiB fit at prepare; the first file grows to 6 MiB before commit. */
  c = fail_setup (&w, scratch, files);
  w.nr_files = 1;
  fail_hook_state.grow_at_freeze = files[0];
  s = session_snapshot (c, 0);
  print_failure (s, &f);
  CHECK (f.is_provider);
  CHECKF (f.message && strstr (f.message, "no space left"),
          "the failure does not say the space ran out");
  CHECKF (f.kind == VMS_FAILURE_OUT_OF_RESOURCES,
          "failure kind is %s, want out-of-resources",
          vms_failure_name (f.kind));
  check_nothing_left (c, s, scratch);
  for (size_t i = 0; i < 3; i++) free (files[i]);
  free (scratch);
}

static void
test_scratch_from_environment (void)
{
  char *scratch = path_of (fx->work, "from-env/scratch");
  char *files[3];
  struct test_double_writer w = { .veto_at = -1 };
  vms_coordinator *c;
  vms_session *s;
  const char *acc;

  /* The root does not exist yet: the provider makes it. */
  CHECK (setenv ("VMSHADOW_SCRATCH_DIR", scratch, 1) == 0);
  c = fail_setup (&w, NULL, files);
  fail_hook_state.scratch = scratch;
  s = session_snapshot (c, 1);
  acc = access_of (s, files[0]);
  CHECK (acc != NULL);
  CHECKF (strstr (acc, "/from-env/scratch/") != NULL,
          "copy %s is not under $VMSHADOW_SCRATCH_DIR", acc);
  CHECK (count_copies (scratch) == 3);
  CHECK (vms_session_backup_complete (s, 1) == 0);
  check_nothing_left (c, s, scratch);
  for (size_t i = 0; i < 3; i++) free (files[i]);
  free (scratch);
}

/* ---- Which files the provider takes ---- */

/* A session over one file that no provider should take: PrepareForBackup
 * fails naming the file, and no scratch directory is made. */
static void
check_not_taken (const char *path, const char *provider, const char *why)
{
  char *scratch = path_of (fx->work, "scratch");
  struct test_double_writer w = { .veto_at = -1, .nr_files = 1,
                                  .provider = provider };
  struct vms_session_failure f;
  vms_coordinator *c;
  vms_session *s;

  w.paths[0] = path;
  c = coord_new (&w, scratch);
  s = vms_backup_session_new (c, NULL);
  CHECK (s != NULL);
  CHECK (vms_session_identify (s) == 0);
  CHECKF (vms_session_prepare_backup (s) == -1, "the provider took %s", path);
  print_failure (s, &f);
  CHECKF (f.message && strstr (f.message, path) && strstr (f.message, why),
          "the failure does not name %s and say \"%s\"", path, why);
  vms_session_free (s);
  vms_coordinator_free (c);
  CHECKF (count_entries (scratch) == -1, "a scratch directory was made");
  free (scratch);
}

static void
test_takes_only_regular_files (void)
{
  char *dir = path_of (fx->work, "a-directory");
  char *file = path_of (fx->work, "disk.img");
  char *missing = path_of (fx->work, "missing.img");

  CHECK (mkdir (dir, 0755) == 0);
  free (make_file (file, 4096, 1));
  check_not_taken (dir, NULL, "no provider");
  check_not_taken ("/dev/null", NULL, "no provider");
  check_not_taken (file, "qemu", "no provider");
  check_not_taken (missing, VMS_FILE_PROVIDER_NAME, "cannot stat");
  free (dir); free (file); free (missing);
}

/* ---- Reflinks ---- */

/* Files on btrfs, copies into scratch: returns after checking content, with
 * *all_shared set if every extent of every copy is shared. */
static void
check_btrfs_copies (const char *mnt, const char *scratch, int *all_shared,
                    int *none_shared)
{
  char *dir = path_of (mnt, "vm");
  char *disk = path_of (dir, "disk.img"), *nvram = path_of (dir, "nvram.fd");
  struct test_double_writer w = { .veto_at = -1, .nr_files = 2 };
  unsigned char *disk_want, *nvram_want;
  const char *acc[2];
  vms_coordinator *c;
  vms_session *s;

  mkdir (dir, 0755);
  disk_want = make_file (disk, 8 * MiB, 11);
  nvram_want = make_file (nvram, 128 * 1024, 12);
  w.paths[0] = disk; w.paths[1] = nvram;
  c = coord_new (&w, scratch);
  s = session_snapshot (c, 1);
  *all_shared = 1;
  *none_shared = 1;
  for (size_t i = 0; i < 2; i++) {
    unsigned ext, shared;
    acc[i] = access_of (s, w.paths[i]);
    CHECK (acc[i] != NULL);
    fiemap_count (acc[i], &ext, &shared);
    printf ("copy %s: %u extent(s), %u shared\n", acc[i], ext, shared);
    if (ext == 0 || shared != ext) *all_shared = 0;
    if (shared) *none_shared = 0;
  }
  /* Writes after the snapshot do not reach the copies (copy-on-write). */
  write_at (disk, 0, "after-commit", 12);
  write_at (nvram, 4096, "after-commit", 12);
  check_content (acc[0], disk_want, 8 * MiB);
  check_content (acc[1], nvram_want, 128 * 1024);
  CHECK (vms_session_backup_complete (s, 1) == 0);
  check_nothing_left (c, s, scratch);
  free (disk_want); free (nvram_want);
  free (disk); free (nvram); free (dir);
}

static void
test_reflink_on_btrfs (void)
{
  char *mnt = mount_btrfs ();
  char *scratch = path_of (mnt, "scratch");
  int all_shared, none_shared;

  check_btrfs_copies (mnt, scratch, &all_shared, &none_shared);
  CHECKF (all_shared, "a copy on the same btrfs does not share all its "
          "extents with the file: no reflink was made");
  free (scratch);
  free (mnt);
}

static void
test_reflink_across_filesystems (void)
{
  char *mnt = mount_btrfs ();
  char *scratch = path_of (fx->work, "scratch");
  int all_shared, none_shared;

  check_btrfs_copies (mnt, scratch, &all_shared, &none_shared);
  CHECKF (none_shared, "a copy on another filesystem claims shared extents");
  free (scratch);
  free (mnt);
}

/* ---- Driver ---- */

static const struct {
  const char *name;
  void (*fn) (void);
} tests[] = {
  { "copy-holds-commit-time-bytes", test_copy_holds_commit_time_bytes },
  { "copy-to-another-filesystem-holds-commit-time-bytes",
    test_copy_to_another_filesystem },
  { "veto-at-freeze-leaves-nothing-behind", test_veto_at_freeze },
  { "veto-at-post-snapshot-deletes-copies", test_veto_at_post_snapshot },
  { "requester-abort-deletes-copies", test_requester_abort },
  { "commit-failure-deletes-copies", test_commit_failure },
  { "commit-overrun-fails-with-timeout-and-deletes-copy",
    test_commit_overrun },
  { "full-scratch-fails-out-of-resources", test_full_scratch },
  { "scratch-filling-up-at-commit-fails-out-of-resources",
    test_scratch_fills_at_commit },
  { "scratch-root-from-environment", test_scratch_from_environment },
  { "takes-only-regular-files-meant-for-it", test_takes_only_regular_files },
  { "reflink-on-btrfs-shares-extents", test_reflink_on_btrfs },
  { "reflink-across-filesystems-falls-back-to-copy",
    test_reflink_across_filesystems },
};

static volatile sig_atomic_t parent_signalled;

static void
parent_on_signal (int sig)
{
  parent_signalled = sig;
}

static void
fixture_undo (void)
{
  for (size_t i = 0; i < 2; i++)
    if (fx->mounts[i][0] &&
        run_cmd (NULL, 0, "umount", fx->mounts[i], NULL) != 0 &&
        run_cmd (NULL, 0, "umount", "-l", fx->mounts[i], NULL) != 0)
      fprintf (stderr, "test: could not unmount %s\n", fx->mounts[i]);
  if (fx->loopdev[0] &&
      run_cmd (NULL, 0, "losetup", "-d", fx->loopdev, NULL) != 0)
    fprintf (stderr, "test: could not detach %s\n", fx->loopdev);
  if (fx->shm[0])
    run_cmd (NULL, 0, "rm", "-rf", "--one-file-system", fx->shm, NULL);
  if (fx->work[0])
    run_cmd (NULL, 0, "rm", "-rf", "--one-file-system", fx->work, NULL);
}

int
main (int argc, char *argv[])
{
  char tmpl[] = "file-provider-test-XXXXXX";
  int status;
  pid_t pid;

  if (argc != 2) {
    fprintf (stderr, "usage: %s TEST\n", argv[0]);
    return 2;
  }
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (strcmp (argv[1], tests[i].name) != 0)
      continue;
    fx = mmap (NULL, sizeof *fx, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fx == MAP_FAILED || mkdtemp (tmpl) == NULL ||
        realpath (tmpl, fx->work) == NULL) {
      perror ("test setup");
      return 1;
    }
    setvbuf (stdout, NULL, _IOLBF, 0);
    fflush (NULL);
    pid = fork ();
    if (pid == -1) {
      perror ("fork");
      return 1;
    }
    if (pid == 0) {
      tests[i].fn ();
      fflush (NULL);
      _exit (0);
    }
    /* If the test runner kills us (a time-out), the child dies of it, and
     * we still undo its mounts before going. */
    {
      struct sigaction sa = { .sa_handler = parent_on_signal };
      sigemptyset (&sa.sa_mask);
      sa.sa_flags = 0;          /* no SA_RESTART: waitpid must return */
      sigaction (SIGTERM, &sa, NULL);
      sigaction (SIGINT, &sa, NULL);
      sigaction (SIGHUP, &sa, NULL);
    }
    while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
      if (parent_signalled)
        kill (pid, SIGKILL);
    fixture_undo ();
    if (parent_signalled)
      return 1;
    if (WIFEXITED (status) && (WEXITSTATUS (status) == 0 ||
                               WEXITSTATUS (status) == 77))
      return WEXITSTATUS (status);
    if (WIFSIGNALED (status))
      fprintf (stderr, "FAIL: the test died of signal %d\n",
               WTERMSIG (status));
    return 1;
  }
  fprintf (stderr, "%s: no test named %s\n", argv[0], argv[1]);
  return 2;
}

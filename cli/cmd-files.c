/* vmshadow files / mount: file-level restore, sandboxed (issue 16, R26).
 * The filesystems inside a backed-up VM's disks, read by the libguestfs
 * appliance over the repository's NBD exports (lib/guestfiles); the host
 * kernel never mounts one. Every name and link target printed here is
 * the guest's: escaped (cli_text). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "vmshadow/error.h"

#ifdef VMS_HAVE_GUESTFILES
#include "guestfiles.h"

static void
files_options (const struct options *opts, struct vms_guest_files_options *o,
               const char *backup, const char *vm)
{
  o->repo_dir = opts->repo_dir ? opts->repo_dir : getenv ("VMSHADOW_REPO");
  if (o->repo_dir == NULL || *o->repo_dir == '\0')
    o->repo_dir = VMS_REPO_DEFAULT_DIR;
  o->backup_id = backup;
  o->vm = vm;
}

/* "drwxr-xr-x" of a mode. */
static const char *
files_mode (uint32_t mode, char s[11])
{
  static const char rwx[] = "rwxrwxrwx";
  switch (mode & S_IFMT) {
  case S_IFDIR: s[0] = 'd'; break;
  case S_IFLNK: s[0] = 'l'; break;
  case S_IFCHR: s[0] = 'c'; break;
  case S_IFBLK: s[0] = 'b'; break;
  case S_IFIFO: s[0] = 'p'; break;
  case S_IFSOCK: s[0] = 's'; break;
  default: s[0] = '-'; break;
  }
  for (int i = 0; i < 9; i++)
    s[1 + i] = mode & (1u << (8 - i)) ? rwx[i] : '-';
  if (mode & S_ISUID)
    s[3] = s[3] == 'x' ? 's' : 'S';
  if (mode & S_ISGID)
    s[6] = s[6] == 'x' ? 's' : 'S';
  if (mode & S_ISVTX)
    s[9] = s[9] == 'x' ? 't' : 'T';
  s[10] = '\0';
  return s;
}

static int
files_list_filesystems (vms_guest_files *gf)
{
  char b1[32], b2[32];
  printf ("%-16s %-8s %10s %10s  %s\n", "FILESYSTEM", "TYPE", "SIZE", "USED", "LABEL");
  for (size_t i = 0; i < vms_guest_files_fs_count (gf); i++) {
    const struct vms_guest_fs *fs = vms_guest_files_fs (gf, i);
    char name[200];
    snprintf (name, sizeof name, "/%s", fs->name);
    if (fs->error)
      printf ("%-16s %-8s %10s %10s  %s  (cannot be mounted: %s)\n", name,
              cli_text (fs->type), cli_bytes (fs->size, b1), "-",
              cli_text (fs->label), cli_text (fs->error));
    else
      printf ("%-16s %-8s %10s %10s  %s\n", name, cli_text (fs->type),
              cli_bytes (fs->size, b1), cli_bytes (fs->used, b2),
              cli_text (fs->label));
  }
  return EXIT_SUCCESS;
}

static int
files_ls (vms_guest_files *gf, const char *path, int header)
{
  struct vms_guest_entry *e;
  ssize_t n = vms_guest_files_ls (gf, path, &e);

  if (n < 0)
    return -1;
  if (header)
    printf ("%s:\n", cli_text (path));
  for (ssize_t i = 0; i < n; i++) {
    char mode[11], when[32];
    time_t t = (time_t) e[i].mtime;
    struct tm tm;
    if (gmtime_r (&t, &tm) == NULL || strftime (when, sizeof when, "%Y-%m-%d %H:%M", &tm) == 0)
      snprintf (when, sizeof when, "?");
    printf ("%s %5lld %5lld %12llu %s %s%s%s\n", files_mode (e[i].mode, mode),
            (long long) e[i].uid, (long long) e[i].gid,
            (unsigned long long) e[i].size, when, cli_text (e[i].name),
            e[i].link ? " -> " : "", e[i].link ? cli_text (e[i].link) : "");
  }
  vms_guest_entries_free (e, (size_t) n);
  return 0;
}

static void
files_get_report (void *opaque, const char *path, const char *why)
{
  fprintf (stderr, "vmshadow files: %s: %s\n", cli_text (path), cli_message (why));
}

/* 0 when every path was done, EXIT_PARTIAL when some were, else 1. */
static int
files_outcome (size_t ok, size_t failed)
{
  return failed == 0 ? EXIT_SUCCESS : ok ? EXIT_PARTIAL : EXIT_FAILURE;
}

int
cmd_files (const struct options *opts, int argc, char **argv)
{
  static const char usage[] = "usage: vmshadow files BACKUP VM [ls [PATH...] | "
    "cat PATH... | get PATH... [--to DIR]]";
  struct vms_guest_files_options o;
  const char *verb = argc >= 3 ? argv[2] : NULL;
  vms_guest_files *gf;
  size_t ok = 0, failed = 0;
  int tofd = -1;

  if (argc < 2 || (verb && strcmp (verb, "ls") != 0 && strcmp (verb, "cat") != 0 &&
                   strcmp (verb, "get") != 0) ||
      (verb && strcmp (verb, "ls") != 0 && argc < 4))
    return cli_error ("files", EXIT_USAGE, "%s", usage);
  if (opts->to && (verb == NULL || strcmp (verb, "get") != 0))
    return cli_error ("files", EXIT_USAGE, "--to is for files ... get; %s", usage);
  /* Paths are checked before the appliance starts. */
  for (int i = 3; i < argc; i++)
    if (vms_guest_path_check (argv[i]) == -1)
      return cli_error ("files", EXIT_USAGE, "%s", vms_get_error ());
  if (verb && strcmp (verb, "get") == 0) {
    const char *to = opts->to ? opts->to : ".";
    /* The target directory is the caller's: opened once, everything is
     * made relative to it. */
    if ((tofd = open (to, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
      return cli_error ("files", EXIT_FAILURE, "cannot open the target directory "
                        "%s: %s", to, strerror (errno));
  }
  files_options (opts, &o, argv[0], argv[1]);
  /* A reader that goes away (… | head) ends the output, not us. */
  signal (SIGPIPE, SIG_IGN);
  if ((gf = vms_guest_files_open (&o)) == NULL) {
    if (tofd >= 0)
      close (tofd);
    return cli_fail ("files");
  }

  if (verb == NULL)
    ok = files_list_filesystems (gf) == EXIT_SUCCESS;
  else if (strcmp (verb, "ls") == 0) {
    if (argc == 3) {
      if (files_ls (gf, "/", 0) == 0)
        ok++;
      else {
        cli_fail ("files");
        failed++;
      }
    }
    for (int i = 3; i < argc; i++) {
      if (i > 3)
        printf ("\n");
      if (files_ls (gf, argv[i], argc > 4) == 0)
        ok++;
      else {
        fflush (stdout);
        cli_fail ("files");
        failed++;
      }
    }
  }
  else if (strcmp (verb, "cat") == 0) {
    int tty = isatty (STDOUT_FILENO);
    for (int i = 3; i < argc; i++) {
      fflush (stdout);
      if (vms_guest_files_cat (gf, argv[i], STDOUT_FILENO, tty) == 0)
        ok++;
      else {
        cli_fail ("files");
        failed++;
      }
    }
  }
  else {
    for (int i = 3; i < argc; i++) {
      struct vms_guest_get_stats st;
      char b[32];
      int r = vms_guest_files_get (gf, argv[i], tofd, &st, files_get_report, NULL);
      if (r == -1) {
        cli_fail ("files");
        failed++;
        continue;
      }
      printf ("%s: %llu file(s), %llu dir(s), %llu link(s), %s%s\n",
              cli_text (argv[i]), (unsigned long long) st.files,
              (unsigned long long) st.dirs, (unsigned long long) st.links,
              cli_bytes (st.bytes, b), st.refused ? "; some not restored (above)" : "");
      if (r == 0)
        ok++;
      else
        failed++;
    }
    close (tofd);
  }
  fflush (stdout);
  vms_guest_files_close (gf);
  return files_outcome (ok, failed);
}

int
cmd_mount (const struct options *opts, int argc, char **argv)
{
  struct vms_guest_files_options o;
  pid_t child;

  if (argc != 3)
    return cli_error ("mount", EXIT_USAGE, "usage: vmshadow mount BACKUP VM DIR");
  files_options (opts, &o, argv[0], argv[1]);
  if (vms_guest_files_mount (&o, argv[2], &child) == -1)
    return cli_fail ("mount");
  printf ("%s\n", argv[2]);
  fprintf (stderr, "vmshadow mount: the filesystems of VM %s in backup %s are on "
           "%s, read-only (served by process %ld); unmount with: umount %s\n",
           cli_text (argv[1]), cli_text (argv[0]), cli_text (argv[2]),
           (long) child, cli_text (argv[2]));
  return EXIT_SUCCESS;
}

#else

int
cmd_files (const struct options *opts, int argc, char **argv)
{
  return cli_error ("files", EXIT_FAILURE, "this vmshadow was built without "
                    "libguestfs-dev: it cannot read files inside backups");
}

int
cmd_mount (const struct options *opts, int argc, char **argv)
{
  return cli_error ("mount", EXIT_FAILURE, "this vmshadow was built without "
                    "libguestfs-dev: it cannot mount backups");
}

#endif

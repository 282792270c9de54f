/* vmshadow — the requester (R1): the command an administrator runs.
 * Each subcommand is one function in the table at the bottom; they share
 * the global options parsed here. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "log.h"
#include "vmshadow/config.h"

/* One line of a command's help: an option (its OPT_* bit: several
 * options may share one, as --keep-*) as it is spelt, and what it does for
 * this command. A command's table is what it accepts (main refuses any
 * other option for it) and what `vmshadow help COMMAND` shows; the man
 * page has the same options in the command's section (a test checks). */
struct cmd_option {
  uint64_t bit;
  const char *spelling;
  const char *help;             /* lines separated by '\n' */
};

#define JSON_OPT { OPT_JSON, "--json", "print the result as JSON (errors too)" }
#define REPO_OPT { OPT_REPO, "--repo REPO", "the repository: a directory, rados:POOL[/NS]\n" \
                   "or s3://BUCKET[/PREFIX] (default $VMSHADOW_REPO\nor " \
                   VMS_REPO_DEFAULT_DIR ")" }
#define CONNECT_OPT(what) { OPT_CONNECT, "-c, --connect URI", \
                            "libvirt URI " what " (default qemu:///system)" }
#define WRITERS_OPT { OPT_WRITERS_DIR, "--writers-dir DIR", "exec writers directory (default\n" \
                      "$VMSHADOW_WRITERS_DIR or @WRITERS_DIR@)" }
#define CONFIG_OPT { OPT_CONFIG, "--config DIR", "the configuration directory (default\n" \
                     "$VMSHADOW_CONFIG_DIR or " VMS_CONFIG_DEFAULT_DIR ")" }
/* Encrypted repositories (issue 13, R28): every command that opens one. */
#define PASS_OPT { OPT_PASSPHRASE_FD, "--passphrase-fd N", "read the key's passphrase from file descriptor N\n" \
                   "(else $VMSHADOW_PASSPHRASE or the terminal)" }
#define WAIT_OPTS \
  { OPT_WAIT, "--wait", "wait for a held repository lock and for other\n" \
    "tools' jobs on the VMs instead of failing" }, \
  { OPT_WAIT, "--wait-timeout SECONDS", "wait at most this long (implies --wait;\n" \
    "default 3600)" }

static const struct cmd_option writers_opts[] = {
  JSON_OPT, WRITERS_OPT, CONNECT_OPT ("of the VM writer; without it, listed\nwhen libvirtd runs"),
  { 0 } };
static const struct cmd_option backup_opts[] = {
  JSON_OPT, REPO_OPT, PASS_OPT, WRITERS_OPT, CONNECT_OPT ("of the VMs"),
  { OPT_ALL, "--all", "every VM of the host (and every exec writer)" },
  { OPT_EACH, "--each", "one consistency set (and backup) per VM, so\n"
    "one failing VM does not sink the others" },
  { OPT_GROUP, "--group", "the set's VMs as one instant: every guest frozen\n"
    "before the first backup job begins, every job\n"
    "begun before the first guest thaws (issue 17)" },
  { OPT_GUEST, "--guest-processing required|tried|off",
    "guest writers inside online VMs take part\n"
    "(vmshadow-guest); tried falls back to\n"
    "crash-consistent, saying so (default off)" },
  { OPT_METHOD, "--method auto|online|crash-consistent|saved-state",
    "how running VMs are captured (default auto; a\n"
    "VM's vmshadow:policy metadata wins)" },
  { OPT_FALLBACK, "--fallback crash-consistent|saved-state|fail",
    "what auto does where online is not possible\n"
    "(default crash-consistent: no VM is paused)" },
  { OPT_FULL, "--full", "read everything, not only what changed" },
  { OPT_SAMPLE, "--sample PERCENT", "re-read PERCENT (1-100) of what dirty bitmaps\n"
    "call unchanged, to check them (default about 0.1%)" },
  { OPT_DRY_RUN, "--dry-run", "say per VM the method and why, the disks and\n"
    "the scratch space; change nothing" },
  WAIT_OPTS,
  { 0 } };
static const struct cmd_option init_opts[] = {
  JSON_OPT, REPO_OPT,
  { OPT_REPO_FORMAT, "--format 1|2", "repository format version (default 2: packs)" },
  { OPT_ENCRYPT, "--encrypt", "an encrypted repository (AES-256-GCM, keyed\n"
    "chunk ids; a new key unless --key)" },
  { OPT_ENCRYPT, "--key FINGERPRINT", "with --encrypt: use this existing key" },
  { OPT_ENCRYPT, "--visible-backup-ids", "with --encrypt: backup ids readable in object\n"
    "names, so list works without the key (default:\nhidden)" },
  { OPT_MASTER_KEY, "--master-key FILE", "with --encrypt: an X25519 or RSA public key\n"
    "(PEM) that also wraps the new key" },
  { OPT_PROTECT, "--retention-days N", "S3 Object Lock: every object of every backup\n"
    "is retained N days (1-36500) from its session;\n"
    "the bucket must have Object Lock (issue 14)" },
  { OPT_PROTECT, "--retention-mode governance|compliance",
    "the Object Lock mode (default governance)" },
  { OPT_PROTECT, "--append-only", "backup hosts never delete or write over a\n"
    "backup's objects; prune and gc need --admin" },
  PASS_OPT,
  { 0 } };
static const struct cmd_option sync_opts[] = {
  JSON_OPT,
  { OPT_VM, "--vm NAME|UUID", "only backups holding this VM (repeat: any of\n"
    "them)" },
  { OPT_SINCE, "--since TIME", "only backups made at or after TIME: YYYY-MM-DD,\n"
    "YYYY-MM-DDTHH:MM:SSZ (UTC), or Nd / Nh ago" },
  { 0 } };
static const struct cmd_option repo_only_opts[] = { JSON_OPT, REPO_OPT, PASS_OPT, { 0 } };
static const struct cmd_option key_opts[] = {
  JSON_OPT, REPO_OPT,
  { OPT_PAPER, "--paper", "export: the key as printable lines with a\n"
    "checksum each; import: read that form" },
  { OPT_MASTER_KEY, "--master-key FILE", "create: an X25519 or RSA public key (PEM)\n"
    "that also wraps the new key; import: the private\n"
    "key that recovers the repository's wrapped copy" },
  { OPT_PASSPHRASE_FD, "--passphrase-fd N", "read passphrases from file descriptor N, one\n"
    "per line (else $VMSHADOW_PASSPHRASE and\n$VMSHADOW_NEW_PASSPHRASE, or the terminal)" },
  { 0 } };
static const struct cmd_option verify_opts[] = {
  JSON_OPT, REPO_OPT, PASS_OPT,
  { OPT_DEEP, "--deep", "read and re-hash every chunk" },
  { OPT_SAMPLE, "--sample PERCENT", "check a random PERCENT (1-100) of the chunks,\n"
    "a different one each run" },
  { OPT_INSTANT, "--resume", "finish an interrupted verify (same BACKUP,\n"
    "--deep, --sample): packs it checked are not\n"
    "read again, its damage is reported again" },
  { OPT_BOOT, "--boot", "boot a throw-away copy of each VM of BACKUP\n"
    "(no network) until its guest agent answers; the\n"
    "result is recorded beside the backup (issue 16)" },
  { OPT_VM, "--vm NAME|UUID", "with --boot: this VM only (repeat)" },
  { OPT_BOOT, "--probe COMMAND", "with --boot: run 'sh -c COMMAND' in the guest;\n"
    "it must exit 0" },
  { OPT_BOOT, "--boot-timeout SECONDS", "with --boot: wait this long for the agent and\n"
    "the probe (default 300)" },
  CONNECT_OPT ("of the throw-away copies (--boot)"),
  { 0 } };
static const struct cmd_option prune_opts[] = {
  JSON_OPT, REPO_OPT, PASS_OPT, CONNECT_OPT ("of the VMs whose checkpoints are deleted"),
  { OPT_KEEP, "--keep-last N", "keep the N newest backups" },
  { OPT_KEEP, "--keep-daily N", "keep the newest backup of each of N days" },
  { OPT_KEEP, "--keep-weekly N", "... of each of N weeks" },
  { OPT_KEEP, "--keep-monthly N", "... of each of N months" },
  { OPT_DRY_RUN, "--dry-run", "only say what would be deleted" },
  { OPT_ADMIN, "--admin", "prune an append-only repository (this host's\n"
    "credentials may delete: the admin's)" },
  { 0 } };
static const struct cmd_option gc_opts[] = {
  JSON_OPT, REPO_OPT, PASS_OPT,
  { OPT_GRACE, "--grace SECONDS", "keep unreferenced chunks younger than this\n"
    "(default 3600; no upper limit)" },
  { OPT_ADMIN, "--admin", "collect garbage in an append-only repository\n"
    "(this host's credentials may delete: the admin's)" },
  { 0 } };
static const struct cmd_option restore_opts[] = {
  JSON_OPT, REPO_OPT, PASS_OPT, CONNECT_OPT ("of the VMs"), WRITERS_OPT,
  { OPT_VM, "--vm NAME|UUID", "this VM of the backup (repeat; default all)" },
  { OPT_COMPONENT, "--component WRITER[:COMPONENT]",
    "this component (or all) of a writer, by writer\n"
    "ID or name (repeat; default: everything)" },
  { OPT_TO, "--to DIR", "the directory for the disks (links at the old\n"
    "paths) and other files (DIR/<their path>)" },
  { OPT_NAME, "--name NAME", "a copy of the (one) VM under this name (new\n"
    "UUID, MACs, disk files; original untouched)" },
  { OPT_REPLACE, "--replace", "replace a VM of the same UUID that exists\n"
    "(turned off, undefined, files written over)" },
  { OPT_REPLACE, "--write-devices", "write disks that are host block devices or\n"
    "network disks (RBD, iSCSI, NBD) back into them in\n"
    "place (RBD images made again if gone)" },
  { OPT_EXISTING, "--existing keep|rename|refuse", "with --to/--name: a file at a target is\n"
    "left (restored beside it), kept aside, or refused\n"
    "(default); never overwritten" },
  { OPT_START, "--start", "start VMs that come back stopped" },
  { OPT_NETWORK_MAP, "--network-map OLD=NEW", "connect interfaces on network/bridge OLD to\n"
    "NEW instead (repeat)" },
  { OPT_DRY_RUN, "--dry-run", "print every change, change nothing" },
  { OPT_INSTANT, "--instant", "run the (one) VM from the backup at once and\n"
    "move its disks meanwhile (instant recovery)" },
  { OPT_INSTANT, "--resume", "restore --resume [VM]: finish an interrupted\n"
    "instant restore (all pending, without VM)" },
  { OPT_INSTANT, "--rollback", "restore --rollback [VM]: undo an unfinished\n"
    "instant restore (the VM and all it made)" },
  { OPT_INSTANT, "--bandwidth N", "--instant/--resume: move at most N MiB/s" },
  { 0 } };
static const struct cmd_option extract_opts[] = {
  JSON_OPT, REPO_OPT, PASS_OPT,
  { OPT_TO, "--to PATH", "where to write the file (required)" },
  { OPT_FORMAT, "--format raw|qcow2", "image format of a disk (default: its original\n"
    "format)" },
  { 0 } };
static const struct cmd_option serve_opts[] = {
  JSON_OPT, REPO_OPT, PASS_OPT,
  { OPT_VM, "--vm NAME|UUID", "the VM whose disk to serve" },
  { OPT_DISK, "--disk TARGET", "the VM's disk (vda, ...), when it has several" },
  { 0 } };
static const struct cmd_option files_opts[] = {
  REPO_OPT, PASS_OPT,
  { OPT_TO, "--to DIR", "get: the directory to copy into (default: the\n"
    "current one)" },
  { 0 } };
static const struct cmd_option mount_opts[] = { REPO_OPT, PASS_OPT, { 0 } };
static const struct cmd_option config_opts[] = { JSON_OPT, CONFIG_OPT, { 0 } };
static const struct cmd_option job_opts[] = {
  JSON_OPT, CONFIG_OPT, CONNECT_OPT ("of the VMs"), WRITERS_OPT, WAIT_OPTS, { 0 } };
static const struct cmd_option status_opts[] = {
  JSON_OPT, CONFIG_OPT,
  { OPT_PROMETHEUS, "--prometheus FILE", "also write a node_exporter textfile (atomically)" },
  { 0 } };
static const struct cmd_option guest_opts[] = {
  JSON_OPT, CONNECT_OPT ("of the VM"), { 0 } };
static const struct cmd_option no_opts[] = { { 0 } };

static int cmd_help (const struct options *, int, char **);

static const struct command {
  const char *name;
  int (*run) (const struct options *, int, char **);
  const struct cmd_option *options;
  const char *args;
  const char *summary;
  const char *exits;            /* its exit codes (vmshadow(1), EXIT STATUS) */
  int reports;                  /* its stdout is a report --quiet drops */
} commands[] = {
  { "writers", cmd_writers, writers_opts, "",
    "list every writer with its ID, state and components",
    "0 every writer identified itself, 1 one did not, 2 usage", 0 },
  { "backup", cmd_backup, backup_opts, "[--all | VM...]",
    "back up VMs and host applications into the repository",
    "0 stored, 1 nothing stored, 2 usage, 3 stored with warnings,\n"
    "4 some sets (--each) failed", 1 },
  { "init", cmd_init, init_opts, "",
    "create a repository (--format 2, the default here: packs; --encrypt)",
    "0 created, 1 failed (or one is there), 2 usage", 1 },
  { "key", cmd_key, key_opts, "create|show|change-passphrase|export|import",
    "keys of encrypted repositories (export/import --paper)",
    "0 done, 1 failed (nothing changed), 2 usage", 0 },
  { "upgrade", cmd_upgrade, repo_only_opts, "",
    "move a version 1 repository to version 2, keeping every backup",
    "0 upgraded (or already version 2), 1 failed, 2 usage", 1 },
  { "sync", cmd_sync, sync_opts, "SRC DST [BACKUP...]",
    "copy the backups DST lacks from SRC (any two repositories)",
    "0 synced, 1 failed (what was sent stays: run it again), 2 usage", 1 },
  { "list", cmd_list, repo_only_opts, "",
    "list the backups in the repository",
    "0 listed, 1 failed, 2 usage", 0 },
  { "show", cmd_show, repo_only_opts, "BACKUP",
    "show one backup: writers, components, files, sizes",
    "0 shown, 1 failed, 2 usage", 0 },
  { "verify", cmd_verify, verify_opts, "[BACKUP]",
    "check backups (--deep: re-hash every chunk; --boot: boot them)",
    "0 no problem found, 1 a problem found (or failed), 2 usage", 1 },
  { "prune", cmd_prune, prune_opts, "",
    "delete backups --keep-* does not keep, then unneeded VM checkpoints",
    "0 pruned, 1 failed, 2 usage, 3 a VM checkpoint could not be deleted", 1 },
  { "gc", cmd_gc, gc_opts, "",
    "delete chunks no backup uses any more",
    "0 collected, 1 failed, 2 usage", 1 },
  { "restore", cmd_restore, restore_opts, "BACKUP",
    "put VMs and components of a backup back (--dry-run, --replace, --instant)",
    "0 restored, 1 nothing restored, 2 usage, 3 interfaces left\n"
    "disconnected, 4 some VMs restored and others not", 1 },
  { "extract", cmd_extract, extract_opts, "BACKUP COMPONENT FILE",
    "write one file of a backup to --to PATH",
    "0 written, 1 failed (nothing left at PATH), 2 usage", 1 },
  { "serve", cmd_serve, serve_opts, "BACKUP --vm VM",
    "serve a disk of a backup over NBD, read-only (--disk)",
    "0 stopped by a signal, 1 failed, 2 usage", 0 },
  { "files", cmd_files, files_opts, "BACKUP VM [ls|cat|get] PATH...",
    "list, print or copy out (--to DIR) files inside a VM's disks",
    "0 done, 1 failed, 2 usage, 4 some paths done and others not", 0 },
  { "mount", cmd_mount, mount_opts, "BACKUP VM DIR",
    "mount a VM's filesystems from a backup on DIR, read-only (FUSE)",
    "0 mounted, 1 failed (nothing mounted), 2 usage", 0 },
  { "config", cmd_config, config_opts, "check",
    "check the configuration (" VMS_CONFIG_DEFAULT_DIR ")",
    "0 good, 2 errors found (or usage)", 1 },
  { "job", cmd_job, job_opts, "run|verify|prune JOB, timers [DIR]",
    "run a configured job (backup, prune), verify, prune; timers",
    "run: as backup (a prune that failed after a good backup:\n"
    "3); verify, prune: as those commands; timers: 0 done, 1 a\n"
    "timer not made; 2 also for a configuration with errors", 1 },
  { "status", cmd_status, status_opts, "",
    "last good backup of each job's VMs and components, and its health",
    "Nagios: 0 ok, 1 warning, 2 critical or never backed up", 0 },
  { "guest", cmd_guest, guest_opts, "install VM",
    "put the guest side (vmshadow-guest) into a running VM via its agent",
    "0 installed and answering, 1 failed, 2 usage", 0 },
  { "help", cmd_help, no_opts, "[COMMAND]",
    "show the commands, or one command's options",
    "0 shown, 2 no such command", 0 },
};
#define NR_COMMANDS (sizeof commands / sizeof commands[0])

static const struct command *
find_command (const char *name)
{
  for (size_t i = 0; i < NR_COMMANDS; i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/* The OPT_* bits a command takes: those of its table. */
static uint64_t
command_bits (const struct command *cmd)
{
  uint64_t bits = 0;
  for (const struct cmd_option *o = cmd->options; o->spelling; o++)
    bits |= o->bit;
  return bits;
}

/* "  --repo DIR            the repository ..." with the help's further
 * lines under its first. */
static void
print_lines (FILE *fp, const char *left, const char *text)
{
  enum { COL = 26 };
  int w = fprintf (fp, "  %s", left);
  if (w >= COL) {
    fputc ('\n', fp);
    w = 0;
  }
  fprintf (fp, "%*s", COL - w, "");
  for (const char *p = text; *p; p++) {
    /* The default writers directory is the library's to say. */
    if (strncmp (p, "@WRITERS_DIR@", 13) == 0) {
      fputs (vms_default_writers_dir (), fp);
      p += 12;
      continue;
    }
    fputc (*p, fp);
    if (*p == '\n')
      fprintf (fp, "%*s", COL, "");
  }
  fputc ('\n', fp);
}

static const char global_options[] =
  "Global options (any command):\n"
  "  -q, --quiet             print only what the command is for: no report of\n"
  "                          backup, restore, verify, prune, gc, init, upgrade,\n"
  "                          extract, config or job, and no progress (errors\n"
  "                          and warnings still go to stderr; the exit status\n"
  "                          says how it went)\n"
  "  -v, --verbose           debug messages on stderr\n"
  "  -h, --help              show this help (vmshadow help COMMAND: a command's)\n"
  "  -V, --version           show the version\n";

static void
usage (FILE *fp)
{
  fprintf (fp,
           "Usage: vmshadow [OPTION...] COMMAND [ARG...]\n"
           "Consistent backup and restore of the VMs and applications of a host.\n"
           "\n"
           "Commands:\n");
  for (size_t i = 0; i < NR_COMMANDS; i++)
    fprintf (fp, "  %-8s %-22s %s\n", commands[i].name, commands[i].args,
             commands[i].summary);
  fprintf (fp, "\n%s\n"
           "'vmshadow help COMMAND' or 'vmshadow COMMAND --help' shows a command's\n"
           "options. Exit status: 0 success, 1 failure, 2 usage, 3 warnings,\n"
           "4 partial (each command's help says which it uses; vmshadow(1)).\n",
           global_options);
}

static void
command_usage (FILE *fp, const struct command *cmd)
{
  fprintf (fp, "Usage: vmshadow %s [OPTION...]%s%s\n", cmd->name,
           *cmd->args ? " " : "", cmd->args);
  fprintf (fp, "%c%s.\n", cmd->summary[0] - 'a' + 'A', cmd->summary + 1);
  if (cmd->options[0].spelling) {
    fprintf (fp, "\nOptions:\n");
    for (const struct cmd_option *o = cmd->options; o->spelling; o++)
      print_lines (fp, o->spelling, o->help);
  }
  fprintf (fp, "\nExit status:\n  ");
  for (const char *p = cmd->exits; *p; p++)
    fputs (*p == '\n' ? "\n  " : (char[2]) { *p, '\0' }, fp);
  fprintf (fp, "\n\nGlobal options: -q/--quiet, -v/--verbose, -h/--help, -V/--version.\n"
           "See vmshadow(1), section %s.\n", cmd->name);
}

static int
cmd_help (const struct options *opts, int argc, char **argv)
{
  (void) opts;
  if (argc == 0) {
    usage (stdout);
    return EXIT_SUCCESS;
  }
  const struct command *cmd = find_command (argv[0]);
  if (argc > 1 || cmd == NULL)
    return cli_error ("help", EXIT_USAGE, "no command '%s'; 'vmshadow help' "
                      "lists them", argv[0]);
  command_usage (stdout, cmd);
  return EXIT_SUCCESS;
}

/* sync --since (issue 14): "YYYY-MM-DD" (00:00 UTC), "YYYY-MM-DDTHH:MM:SSZ"
 * or "Nd" / "Nh" before now; Unix seconds into *out. */
static int
parse_since (const char *arg, int64_t *out)
{
  struct tm tm = { 0 };
  int n = 0;
  char unit = 0;
  unsigned long v;

  if (sscanf (arg, "%lu%c%n", &v, &unit, &n) == 2 && arg[n] == '\0' &&
      isdigit ((unsigned char) arg[0]) && (unit == 'd' || unit == 'h') &&
      v <= 365000) {
    *out = (int64_t) time (NULL) - (int64_t) v * (unit == 'd' ? 86400 : 3600);
    return 0;
  }
  n = 0;
  if (sscanf (arg, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
              &n) != 3 || n != 10)
    return -1;
  if (arg[10] != '\0') {
    int m = 0;
    if (sscanf (arg + 10, "T%2d:%2d:%2dZ%n", &tm.tm_hour, &tm.tm_min,
                &tm.tm_sec, &m) != 3 || m != 10 || arg[10 + m] != '\0')
      return -1;
  }
  if (tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
      tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm (&tm);
  if (t == (time_t) -1)
    return -1;
  *out = (int64_t) t;
  return 0;
}

/* A whole number from 0 to max (the range said in the message when arg is
 * not one): no other limit is imposed (issue 9, item 9). */
static int
parse_number (const char *name, const char *arg, uint64_t max, uint64_t *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull (arg, &end, 10);
  if (errno || end == arg || *end || v > max || arg[0] < '0' || arg[0] > '9') {
    cli_error (NULL, EXIT_USAGE, "%s needs a whole number from 0 to %" PRIu64
               ", not '%s'; see 'vmshadow --help'", name, max, arg);
    return -1;
  }
  *out = v;
  return 0;
}

int
main (int argc, char **argv)
{
  enum { O_JSON = 256, O_WRITERS_DIR, O_REPO, O_FULL, O_DEEP, O_DRY_RUN,
         O_KEEP_LAST, O_KEEP_DAILY, O_KEEP_WEEKLY, O_KEEP_MONTHLY, O_TO,
         O_FORMAT, O_GRACE, O_METHOD, O_ALL, O_VM, O_NAME, O_START,
         O_NETWORK_MAP, O_DISK, O_REPLACE, O_WRITE_DEVICES, O_EXISTING, O_FALLBACK, O_COMPONENT,
         O_SAMPLE, O_EACH, O_WAIT, O_WAIT_TIMEOUT, O_CONFIG, O_PROMETHEUS,
         O_ENCRYPT, O_KEY, O_VISIBLE_IDS, O_MASTER_KEY, O_PAPER,
         O_INSTANT, O_RESUME, O_ROLLBACK, O_BANDWIDTH, O_BOOT, O_PROBE,
         O_BOOT_TIMEOUT,
         O_PASSPHRASE_FD, O_GROUP, O_GUEST,
         O_RETENTION_DAYS, O_RETENTION_MODE, O_APPEND_ONLY, O_ADMIN, O_SINCE };
  static const struct option long_options[] = {
    { "json", no_argument, NULL, O_JSON },
    { "writers-dir", required_argument, NULL, O_WRITERS_DIR },
    { "repo", required_argument, NULL, O_REPO },
    { "full", no_argument, NULL, O_FULL },
    { "deep", no_argument, NULL, O_DEEP },
    { "dry-run", no_argument, NULL, O_DRY_RUN },
    { "keep-last", required_argument, NULL, O_KEEP_LAST },
    { "keep-daily", required_argument, NULL, O_KEEP_DAILY },
    { "keep-weekly", required_argument, NULL, O_KEEP_WEEKLY },
    { "keep-monthly", required_argument, NULL, O_KEEP_MONTHLY },
    { "to", required_argument, NULL, O_TO },
    { "format", required_argument, NULL, O_FORMAT },
    { "grace", required_argument, NULL, O_GRACE },
    { "connect", required_argument, NULL, 'c' },
    { "method", required_argument, NULL, O_METHOD },
    { "fallback", required_argument, NULL, O_FALLBACK },
    { "all", no_argument, NULL, O_ALL },
    { "vm", required_argument, NULL, O_VM },
    { "name", required_argument, NULL, O_NAME },
    { "start", no_argument, NULL, O_START },
    { "network-map", required_argument, NULL, O_NETWORK_MAP },
    { "disk", required_argument, NULL, O_DISK },
    { "replace", no_argument, NULL, O_REPLACE },
    { "write-devices", no_argument, NULL, O_WRITE_DEVICES },
    { "existing", required_argument, NULL, O_EXISTING },
    { "component", required_argument, NULL, O_COMPONENT },
    { "sample", required_argument, NULL, O_SAMPLE },
    { "each", no_argument, NULL, O_EACH },
    { "group", no_argument, NULL, O_GROUP },
    { "guest-processing", required_argument, NULL, O_GUEST },
    { "wait", no_argument, NULL, O_WAIT },
    { "wait-timeout", required_argument, NULL, O_WAIT_TIMEOUT },
    { "config", required_argument, NULL, O_CONFIG },
    { "prometheus", required_argument, NULL, O_PROMETHEUS },
    { "encrypt", no_argument, NULL, O_ENCRYPT },
    { "key", required_argument, NULL, O_KEY },
    { "visible-backup-ids", no_argument, NULL, O_VISIBLE_IDS },
    { "master-key", required_argument, NULL, O_MASTER_KEY },
    { "paper", no_argument, NULL, O_PAPER },
    { "instant", no_argument, NULL, O_INSTANT },
    { "resume", no_argument, NULL, O_RESUME },
    { "rollback", no_argument, NULL, O_ROLLBACK },
    { "bandwidth", required_argument, NULL, O_BANDWIDTH },
    { "boot", no_argument, NULL, O_BOOT },
    { "probe", required_argument, NULL, O_PROBE },
    { "boot-timeout", required_argument, NULL, O_BOOT_TIMEOUT },
    { "passphrase-fd", required_argument, NULL, O_PASSPHRASE_FD },
    { "retention-days", required_argument, NULL, O_RETENTION_DAYS },
    { "retention-mode", required_argument, NULL, O_RETENTION_MODE },
    { "append-only", no_argument, NULL, O_APPEND_ONLY },
    { "admin", no_argument, NULL, O_ADMIN },
    { "since", required_argument, NULL, O_SINCE },
    { "verbose", no_argument, NULL, 'v' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  struct options opts = { .grace_seconds = 3600, .wait_seconds = 3600 };
  /* Repeatable options: at most argc of each (freed on every return). */
  CLEANUP_FREE const char **vms = calloc ((size_t) argc + 1, sizeof *vms);
  CLEANUP_FREE const char **netmap = calloc ((size_t) argc + 1, sizeof *netmap);
  CLEANUP_FREE const char **comps = calloc ((size_t) argc + 1, sizeof *comps);
  /* The long name of the option that set each OPT_* bit, for messages. */
  const char *given_as[64] = { NULL };
  size_t nr_vms = 0, nr_netmap = 0, nr_comps = 0;
  uint64_t n;
  int c, longindex, want_help = 0, quiet = 0;
  int passphrase_fd = -1;

  /* Options may come before or after the command ("vmshadow writers
   * --json"), so let getopt permute. Its own messages are off: ours name
   * the option in one line (issue 9, item 9). */
  /* --json anywhere (before a "--") makes every error JSON, also a usage
   * error found before getopt reaches it (issue 20). */
  for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
    if (strcmp (argv[i], "--json") == 0)
      cli_json_errors = 1;
  if (vms == NULL || netmap == NULL || comps == NULL)
    return cli_error (NULL, EXIT_FAILURE, "out of memory");
  opterr = 0;
  while ((longindex = -1,
          c = getopt_long (argc, argv, ":c:vhVq", long_options, &longindex)) != -1) {
    const char *name = longindex >= 0 ? long_options[longindex].name
      : c == 'c' ? "connect" : NULL;
    uint64_t bit = 0;

    if (c == '?' || c == ':') {
      /* The option as typed: an unknown short one is optopt, anything else
       * the word getopt just read (up to an '='). */
      const char *word = argv[optind - 1];
      char shortopt[3] = { '-', (char) optopt, '\0' };
      int wordlen = (int) strcspn (word, "=");
      if (c == '?' && optopt > 0 && optopt < 256)
        word = shortopt, wordlen = 2;
      return cli_error (NULL, EXIT_USAGE, "%s '%.*s'; see 'vmshadow --help'",
                        c == ':' ? "missing value for option"
                        : optopt >= 256 ? "no value is taken by option"
                        : "unknown option", wordlen, word);
    }
    /* An empty value never means "the default" (--repo '' is not the
     * default repository): it is a mistake, said as such. */
    if (optarg && optarg[0] == '\0')
      return cli_error (NULL, EXIT_USAGE, "--%s needs a value, not an empty "
                        "string; see 'vmshadow --help'", name);
    switch (c) {
    case O_JSON: opts.json = 1; bit = OPT_JSON; break;
    case O_WRITERS_DIR: opts.writers_dir = optarg; bit = OPT_WRITERS_DIR; break;
    case O_REPO: opts.repo_dir = optarg; bit = OPT_REPO; break;
    case O_FULL: opts.full = 1; bit = OPT_FULL; break;
    case O_DEEP: opts.deep = 1; bit = OPT_DEEP; break;
    case O_DRY_RUN: opts.dry_run = 1; bit = OPT_DRY_RUN; break;
    case O_KEEP_LAST: case O_KEEP_DAILY: case O_KEEP_WEEKLY: case O_KEEP_MONTHLY: {
      unsigned *slot = c == O_KEEP_LAST ? &opts.keep.keep_last
        : c == O_KEEP_DAILY ? &opts.keep.keep_daily
        : c == O_KEEP_WEEKLY ? &opts.keep.keep_weekly : &opts.keep.keep_monthly;
      char spelt[32];
      snprintf (spelt, sizeof spelt, "--%s", name);
      if (parse_number (spelt, optarg, UINT_MAX, &n) == -1)
        return EXIT_USAGE;
      *slot = (unsigned) n;
      bit = OPT_KEEP;
      break;
    }
    case O_TO: opts.to = optarg; bit = OPT_TO; break;
    case O_FORMAT:
      /* A repository format version (init) or an image format (extract):
       * which command takes it is checked below, as for every option. */
      if (strcmp (optarg, "1") == 0 || strcmp (optarg, "2") == 0) {
        opts.repo_format = optarg[0] - '0';
        bit = OPT_REPO_FORMAT;
        break;
      }
      if (strcmp (optarg, "raw") != 0 && strcmp (optarg, "qcow2") != 0)
        return cli_error (NULL, EXIT_USAGE, "--format must be raw or qcow2 "
                          "(extract), or 1 or 2 (init), not '%s'", optarg);
      opts.format = optarg; bit = OPT_FORMAT; break;
    case O_GRACE:
      if (parse_number ("--grace", optarg, INT64_MAX, &n) == -1)
        return EXIT_USAGE;
      opts.grace_seconds = (int64_t) n; bit = OPT_GRACE; break;
    case 'c': opts.connect = optarg; bit = OPT_CONNECT; break;
    case O_METHOD:
      if (strcmp (optarg, "auto") != 0 && strcmp (optarg, "online") != 0 &&
          strcmp (optarg, "crash-consistent") != 0 &&
          strcmp (optarg, "saved-state") != 0)
        return cli_error (NULL, EXIT_USAGE, "--method must be auto, online, "
                          "crash-consistent or saved-state, not '%s'", optarg);
      opts.method = optarg; bit = OPT_METHOD; break;
    case O_FALLBACK:
      if (strcmp (optarg, "crash-consistent") != 0 &&
          strcmp (optarg, "saved-state") != 0 && strcmp (optarg, "fail") != 0)
        return cli_error (NULL, EXIT_USAGE, "--fallback must be crash-consistent, "
                          "saved-state or fail, not '%s'", optarg);
      opts.fallback = optarg; bit = OPT_FALLBACK; break;
    case O_ALL: opts.all = 1; bit = OPT_ALL; break;
    case O_EACH: opts.each = 1; bit = OPT_EACH; break;
    case O_GROUP: opts.group = 1; bit = OPT_GROUP; break;
    case O_GUEST:
      if (strcmp (optarg, "required") != 0 && strcmp (optarg, "tried") != 0 &&
          strcmp (optarg, "off") != 0)
        return cli_error (NULL, EXIT_USAGE, "--guest-processing must be required, "
                          "tried or off, not '%s'", optarg);
      opts.guest_processing = optarg; bit = OPT_GUEST; break;
    case O_WAIT: opts.wait = 1; bit = OPT_WAIT; break;
    case O_WAIT_TIMEOUT:
      /* Milliseconds of it must fit an int64_t. */
      if (parse_number ("--wait-timeout", optarg, INT64_MAX / 1000, &n) == -1)
        return EXIT_USAGE;
      opts.wait = 1; opts.wait_seconds = (int64_t) n; bit = OPT_WAIT; break;
    case O_VM: vms[nr_vms++] = optarg; opts.vms = vms; bit = OPT_VM; break;
    case O_NAME: opts.new_name = optarg; bit = OPT_NAME; break;
    case O_START: opts.start = 1; bit = OPT_START; break;
    case O_NETWORK_MAP:
      netmap[nr_netmap++] = optarg; opts.network_map = netmap;
      bit = OPT_NETWORK_MAP; break;
    case O_DISK: opts.disk = optarg; bit = OPT_DISK; break;
    case O_REPLACE: opts.replace = 1; bit = OPT_REPLACE; break;
    case O_WRITE_DEVICES: opts.write_devices = 1; bit = OPT_REPLACE; break;
    case O_EXISTING:
      if (strcmp (optarg, "keep") != 0 && strcmp (optarg, "rename") != 0 &&
          strcmp (optarg, "refuse") != 0)
        return cli_error (NULL, EXIT_USAGE, "--existing must be keep, rename "
                          "or refuse, not '%s'", optarg);
      opts.existing = optarg; bit = OPT_EXISTING; break;
    case O_SAMPLE:
      if (parse_number ("--sample", optarg, 100, &n) == -1)
        return EXIT_USAGE;
      if (n == 0)
        return cli_error (NULL, EXIT_USAGE, "--sample needs a whole number "
                          "from 1 to 100, not '0'; see 'vmshadow --help'");
      opts.sample_percent = (unsigned) n; bit = OPT_SAMPLE; break;
    case O_COMPONENT:
      comps[nr_comps++] = optarg; opts.components = comps;
      bit = OPT_COMPONENT; break;
    case O_CONFIG: opts.config_dir = optarg; bit = OPT_CONFIG; break;
    case O_PROMETHEUS: opts.prometheus = optarg; bit = OPT_PROMETHEUS; break;
    case O_ENCRYPT: opts.encrypt = 1; bit = OPT_ENCRYPT; break;
    case O_KEY: opts.key = optarg; bit = OPT_ENCRYPT; break;
    case O_VISIBLE_IDS: opts.visible_ids = 1; bit = OPT_ENCRYPT; break;
    case O_MASTER_KEY: opts.master_key = optarg; bit = OPT_MASTER_KEY; break;
    case O_PAPER: bit = OPT_PAPER; break;
    case O_RETENTION_DAYS:
      if (parse_number ("--retention-days", optarg, 36500, &n) == -1)
        return EXIT_USAGE;
      if (n == 0)
        return cli_error (NULL, EXIT_USAGE, "--retention-days is 1 to 36500");
      opts.retention_days = (unsigned) n; bit = OPT_PROTECT; break;
    case O_RETENTION_MODE:
      if (strcmp (optarg, "governance") != 0 && strcmp (optarg, "compliance") != 0)
        return cli_error (NULL, EXIT_USAGE, "--retention-mode must be governance "
                          "or compliance, not '%s'", optarg);
      opts.retention_mode = optarg; bit = OPT_PROTECT; break;
    case O_APPEND_ONLY: opts.append_only = 1; bit = OPT_PROTECT; break;
    case O_ADMIN: opts.admin = 1; bit = OPT_ADMIN; break;
    case O_SINCE:
      if (parse_since (optarg, &opts.since) == -1)
        return cli_error (NULL, EXIT_USAGE, "--since takes YYYY-MM-DD, "
                          "YYYY-MM-DDTHH:MM:SSZ (UTC) or Nd / Nh (days or "
                          "hours ago), not '%s'", optarg);
      bit = OPT_SINCE; break;
    case O_INSTANT: opts.instant = 1; bit = OPT_INSTANT; break;
    case O_RESUME: opts.resume = 1; bit = OPT_INSTANT; break;
    case O_ROLLBACK: opts.rollback = 1; bit = OPT_INSTANT; break;
    case O_BANDWIDTH:
      if (parse_number ("--bandwidth", optarg, 1 << 20, &n) == -1)
        return EXIT_USAGE;
      if (n == 0)
        return cli_error (NULL, EXIT_USAGE, "--bandwidth needs MiB/s from 1 "
                          "(leave it out for no limit), not '0'");
      opts.bandwidth = n << 20; bit = OPT_INSTANT; break;
    case O_BOOT: opts.boot = 1; bit = OPT_BOOT; break;
    case O_PROBE: opts.probe = optarg; bit = OPT_BOOT; break;
    case O_BOOT_TIMEOUT:
      if (parse_number ("--boot-timeout", optarg, 86400, &n) == -1)
        return EXIT_USAGE;
      opts.boot_timeout = (int) n; bit = OPT_BOOT; break;
    case O_PASSPHRASE_FD:
      if (parse_number ("--passphrase-fd", optarg, INT_MAX, &n) == -1)
        return EXIT_USAGE;
      passphrase_fd = (int) n; bit = OPT_PASSPHRASE_FD; break;
    case 'v': vms_log_set_debug (1); break;
    case 'q': quiet = 1; break;
    /* Whose help: the command's, known once every option is read. */
    case 'h': want_help = 1; break;
    case 'V': printf ("vmshadow %s\n", VMSHADOW_VERSION); return EXIT_SUCCESS;
    default: abort ();          /* every option of long_options is handled */
    }
    if (bit) {
      opts.given |= bit;
      if (given_as[__builtin_ctzll (bit)] == NULL)
        given_as[__builtin_ctzll (bit)] = name;
    }
  }
  const struct command *cmd = optind < argc ? find_command (argv[optind]) : NULL;
  if (want_help) {
    if (optind < argc && cmd == NULL)
      return cli_error (NULL, EXIT_USAGE, "unknown command '%s'; see 'vmshadow "
                        "--help'", argv[optind]);
    if (cmd && cmd->run == cmd_help && optind + 1 < argc)
      return cmd_help (&opts, argc - optind - 1, argv + optind + 1);
    if (cmd)
      command_usage (stdout, cmd);
    else
      usage (stdout);
    return EXIT_SUCCESS;
  }
  if (optind >= argc) {
    if (cli_json_errors)
      return cli_error (NULL, EXIT_USAGE, "no command given; see 'vmshadow --help'");
    usage (stderr);
    return EXIT_USAGE;
  }
  if (cmd == NULL)
    return cli_error (NULL, EXIT_USAGE, "unknown command '%s'; see 'vmshadow --help'",
                      argv[optind]);
  uint64_t extra = opts.given & ~command_bits (cmd);
  if (extra)
    return cli_error (cmd->name, EXIT_USAGE, "option --%s does not apply to "
                      "this command (see 'vmshadow help %s')",
                      given_as[__builtin_ctzll (extra)], cmd->name);
  /* --quiet: a command's report is dropped, what it is for (a listing, a
   * status, JSON asked for) is not; errors and warnings are on stderr. */
  if (quiet) {
    cli_quiet = 1;
    if (cmd->reports && !opts.json) {
      int null = open ("/dev/null", O_WRONLY | O_CLOEXEC);
      fflush (stdout);
      if (null == -1 || dup2 (null, STDOUT_FILENO) == -1)
        return cli_error (cmd->name, EXIT_FAILURE, "--quiet: cannot open "
                          "/dev/null: %s", strerror (errno));
      close (null);
    }
  }
  cli_passphrase_setup (passphrase_fd);
  return cmd->run (&opts, argc - optind - 1, argv + optind + 1);
}

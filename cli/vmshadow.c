/* vmshadow — the requester (R1): the command an administrator runs.
 * Each subcommand is one function in the table at the bottom; they share
 * the global options parsed here. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "log.h"
#include "vmshadow/config.h"

static const struct command {
  const char *name;
  int (*run) (const struct options *, int, char **);
  unsigned options;             /* OPT_* bits this command takes */
  const char *args;
  const char *summary;
} commands[] = {
  { "writers", cmd_writers, OPT_JSON | OPT_WRITERS_DIR | OPT_CONNECT, "",
    "list every writer with its ID, state and components" },
  { "backup", cmd_backup, OPT_JSON | OPT_WRITERS_DIR | OPT_REPO | OPT_FULL |
    OPT_CONNECT | OPT_METHOD | OPT_FALLBACK | OPT_ALL | OPT_DRY_RUN | OPT_EACH |
    OPT_WAIT | OPT_SAMPLE, "[--all | VM...]",
    "back up VMs and host applications into the repository" },
  { "init", cmd_init, OPT_JSON | OPT_REPO | OPT_REPO_FORMAT, "",
    "create a repository (--format 2, the default here: packs)" },
  { "upgrade", cmd_upgrade, OPT_JSON | OPT_REPO, "",
    "move a version 1 repository to version 2, keeping every backup" },
  { "list", cmd_list, OPT_JSON | OPT_REPO, "",
    "list the backups in the repository" },
  { "show", cmd_show, OPT_JSON | OPT_REPO, "BACKUP",
    "show one backup: writers, components, files, sizes" },
  { "verify", cmd_verify, OPT_JSON | OPT_REPO | OPT_DEEP | OPT_SAMPLE, "[BACKUP]",
    "check backups (with --deep, re-read and re-hash every chunk)" },
  { "prune", cmd_prune, OPT_JSON | OPT_REPO | OPT_KEEP | OPT_DRY_RUN | OPT_CONNECT, "",
    "delete backups --keep-* does not keep, then unneeded VM checkpoints" },
  { "gc", cmd_gc, OPT_JSON | OPT_REPO | OPT_GRACE, "",
    "delete chunks no backup uses any more" },
  { "restore", cmd_restore, OPT_JSON | OPT_REPO | OPT_CONNECT | OPT_VM | OPT_TO |
    OPT_NAME | OPT_START | OPT_NETWORK_MAP | OPT_REPLACE | OPT_EXISTING |
    OPT_DRY_RUN | OPT_COMPONENT | OPT_WRITERS_DIR, "BACKUP",
    "put VMs and components of a backup back (--dry-run, --replace, --component)" },
  { "extract", cmd_extract, OPT_JSON | OPT_REPO | OPT_TO | OPT_FORMAT,
    "BACKUP COMPONENT FILE", "write one file of a backup to --to PATH" },
  { "serve", cmd_serve, OPT_JSON | OPT_REPO | OPT_VM | OPT_DISK,
    "BACKUP --vm VM", "serve a disk of a backup over NBD, read-only (--disk)" },
  { "config", cmd_config, OPT_JSON | OPT_CONFIG, "check",
    "check the configuration (" VMS_CONFIG_DEFAULT_DIR ")" },
  { "job", cmd_job, OPT_CONFIG | OPT_CONNECT | OPT_WRITERS_DIR | OPT_WAIT,
    "run JOB", "run a configured job: its backup, then its prune" },
  { "status", cmd_status, OPT_JSON | OPT_CONFIG | OPT_PROMETHEUS, "",
    "last good backup of each job's VMs and components, and its health" },
};
#define NR_COMMANDS (sizeof commands / sizeof commands[0])

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
  fprintf (fp,
           "\n"
           "Options:\n"
           "  --json               print results as JSON\n"
           "  --repo DIR           the repository (default $VMSHADOW_REPO or\n"
           "                       " VMS_REPO_DEFAULT_DIR ")\n"
           "  --writers-dir DIR    exec writers directory (default $VMSHADOW_WRITERS_DIR\n"
           "                       or %s)\n"
           "  --all                backup: every VM of the host and every exec writer\n"
           "  --each               backup: one consistency set (and backup) per VM,\n"
           "                       so one failing VM does not sink the others\n"
           "  --wait               backup: wait for a held repository lock and for\n"
           "                       other tools' jobs on the VMs instead of failing\n"
           "  --wait-timeout SECONDS\n"
           "                       backup: wait at most this long (implies --wait;\n"
           "                       default 3600)\n"
           "  -c, --connect URI    libvirt URI of the VMs (default qemu:///system)\n"
           "  --method auto|online|crash-consistent|saved-state\n"
           "                       backup: how running VMs are captured (default auto;\n"
           "                       a VM's vmshadow:policy metadata wins)\n"
           "  --fallback crash-consistent|saved-state|fail\n"
           "                       backup: what auto does where online is not possible\n"
           "                       (default crash-consistent: no VM is paused)\n"
           "  --full               backup: read everything, not only what changed\n"
           "  --deep               verify: read and re-hash every chunk\n"
           "  --sample PERCENT     verify: check a random PERCENT (1-100) of the\n"
           "                       chunks, a different one each run; backup: re-read\n"
           "                       PERCENT of what dirty bitmaps call unchanged, to\n"
           "                       check them (default about 0.1%%)\n"
           "  --keep-last N        prune: keep the N newest backups\n"
           "  --keep-daily N       prune: keep the newest backup of each of N days\n"
           "  --keep-weekly N      prune: ... of each of N weeks\n"
           "  --keep-monthly N     prune: ... of each of N months\n"
           "  --dry-run            prune: only say what would be deleted; restore:\n"
           "                       print every change, change nothing; backup: say\n"
           "                       per VM the method and why, the disks, the scratch space\n"
           "  --grace SECONDS      gc: keep unreferenced chunks younger than this\n"
           "                       (default 3600; no upper limit)\n"
           "  --vm NAME|UUID       restore: this VM of the backup (repeat; default all);\n"
           "                       serve: the VM whose disk to serve\n"
           "  --disk TARGET        serve: the VM's disk (vda, ...), when it has several\n"
           "  --component WRITER[:COMPONENT]\n"
           "                       restore: this component (or all) of a writer, by\n"
           "                       writer ID or name (repeat; default: everything)\n"
           "  --to PATH            extract: where to write the file; restore: the\n"
           "                       directory for the disks (links at the old paths)\n"
           "                       and other files (DIR/<their path>)\n"
           "  --name NAME          restore: a copy of the (one) VM under this name\n"
           "                       (new UUID, MACs, disk files; original untouched)\n"
           "  --replace            restore: replace a VM of the same UUID that exists\n"
           "                       (turned off, undefined, files written over)\n"
           "  --existing keep|rename|refuse\n"
           "                       restore --to/--name: a file at a target is left\n"
           "                       (restored beside it), kept aside, or refused\n"
           "                       (default); never overwritten\n"
           "  --start              restore: start VMs that come back stopped\n"
           "  --network-map OLD=NEW\n"
           "                       restore: connect interfaces on network/bridge OLD\n"
           "                       to NEW instead (repeat)\n"
           "  --format raw|qcow2   extract: image format of a disk (default: its\n"
           "                       original format)\n"
           "  --format 1|2         init: repository format version (default 2)\n"
           "  --config DIR         config, job, status: the configuration directory\n"
           "                       (default $VMSHADOW_CONFIG_DIR or " VMS_CONFIG_DEFAULT_DIR ")\n"
           "  --prometheus FILE    status: also write a node_exporter textfile\n"
           "  -v, --verbose        debug messages on stderr\n"
           "  -h, --help           show this help\n"
           "  -V, --version        show the version\n",
           vms_default_writers_dir ());
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
         O_NETWORK_MAP, O_DISK, O_REPLACE, O_EXISTING, O_FALLBACK, O_COMPONENT,
         O_SAMPLE, O_EACH, O_WAIT, O_WAIT_TIMEOUT, O_CONFIG, O_PROMETHEUS };
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
    { "existing", required_argument, NULL, O_EXISTING },
    { "component", required_argument, NULL, O_COMPONENT },
    { "sample", required_argument, NULL, O_SAMPLE },
    { "each", no_argument, NULL, O_EACH },
    { "wait", no_argument, NULL, O_WAIT },
    { "wait-timeout", required_argument, NULL, O_WAIT_TIMEOUT },
    { "config", required_argument, NULL, O_CONFIG },
    { "prometheus", required_argument, NULL, O_PROMETHEUS },
    { "verbose", no_argument, NULL, 'v' },
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
  const char *given_as[32] = { NULL };
  size_t nr_vms = 0, nr_netmap = 0, nr_comps = 0;
  uint64_t n;
  int c, longindex;

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
          c = getopt_long (argc, argv, ":c:vhV", long_options, &longindex)) != -1) {
    const char *name = longindex >= 0 ? long_options[longindex].name
      : c == 'c' ? "connect" : NULL;
    unsigned bit = 0;

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
    case 'v': vms_log_set_debug (1); break;
    case 'h': usage (stdout); return EXIT_SUCCESS;
    case 'V': printf ("vmshadow %s\n", VMSHADOW_VERSION); return EXIT_SUCCESS;
    default: abort ();          /* every option of long_options is handled */
    }
    if (bit) {
      opts.given |= bit;
      if (given_as[__builtin_ctz (bit)] == NULL)
        given_as[__builtin_ctz (bit)] = name;
    }
  }
  if (optind >= argc) {
    if (cli_json_errors)
      return cli_error (NULL, EXIT_USAGE, "no command given; see 'vmshadow --help'");
    usage (stderr);
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < NR_COMMANDS; i++) {
    const struct command *cmd = &commands[i];
    if (strcmp (argv[optind], cmd->name) != 0)
      continue;
    unsigned extra = opts.given & ~cmd->options;
    if (extra)
      return cli_error (cmd->name, EXIT_USAGE, "option --%s does not apply to "
                        "this command (see 'vmshadow --help')",
                        given_as[__builtin_ctz (extra)]);
    return cmd->run (&opts, argc - optind - 1, argv + optind + 1);
  }
  return cli_error (NULL, EXIT_USAGE, "unknown command '%s'; see 'vmshadow --help'",
                    argv[optind]);
}

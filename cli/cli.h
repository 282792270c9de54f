/* What the subcommands of the vmshadow command share: the parsed options,
 * loading the host's writers and providers, progress on a terminal, and
 * JSON output. */
#ifndef VMS_CLI_H
#define VMS_CLI_H

#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "vmshadow/coordinator.h"
#include "vmshadow/repo.h"
#include "vmshadow/requester.h"

/* The exit codes of every command (docs/vmshadow.1, EXIT STATUS; issue
 * 20): 0 success (EXIT_SUCCESS), 1 failure, nothing stored or restored
 * (EXIT_FAILURE), and these. */
#define EXIT_USAGE 2            /* a bad command line; nothing was done */
#define EXIT_WARNINGS 3         /* done, but something needs a look: disks
                                   left out (R13), a writer that failed
                                   after the commit, interfaces left
                                   disconnected (R21) */
#define EXIT_PARTIAL 4          /* some sets (backup --each) or some VMs
                                   (restore) failed, the others are done */
#define EXIT_UNREACHABLE 5      /* verify: the repository's storage out of
                                   reach (not damage); --resume continues */

/* The exit code of a run that ended so. */
extern int cli_exit_code (enum vms_outcome o);

/* Option bits, so that each command says which options it takes. */
enum {
  OPT_JSON = 1 << 0,
  OPT_WRITERS_DIR = 1 << 1,
  OPT_REPO = 1 << 2,
  OPT_FULL = 1 << 3,
  OPT_DEEP = 1 << 4,
  OPT_DRY_RUN = 1 << 5,
  OPT_KEEP = 1 << 6,
  OPT_TO = 1 << 7,
  OPT_FORMAT = 1 << 8,
  OPT_GRACE = 1 << 9,
  OPT_CONNECT = 1 << 10,
  OPT_METHOD = 1 << 11,
  OPT_ALL = 1 << 12,
  OPT_VM = 1 << 13,
  OPT_NAME = 1 << 14,
  OPT_START = 1 << 15,
  OPT_NETWORK_MAP = 1 << 16,
  OPT_DISK = 1 << 17,
  OPT_REPO_FORMAT = 1 << 18,    /* --format 1|2 (init) */
  OPT_REPLACE = 1 << 19,
  OPT_EXISTING = 1 << 20,
  OPT_FALLBACK = 1 << 21,
  OPT_COMPONENT = 1 << 22,
  OPT_SAMPLE = 1 << 23,
  OPT_EACH = 1 << 24,
  OPT_WAIT = 1 << 25,
  OPT_CONFIG = 1 << 26,         /* --config DIR (config, job, status) */
  OPT_PROMETHEUS = 1 << 27,     /* status --prometheus FILE */
  OPT_ENCRYPT = 1 << 28,        /* init --encrypt, --key, --visible-backup-ids */
  OPT_PASSPHRASE_FD = 1 << 29,  /* --passphrase-fd N (encrypted repositories) */
  OPT_PAPER = 1 << 30,          /* key export|import --paper */
};

/* Past what an int enumerator holds (ISO C). */
#define OPT_MASTER_KEY ((uint64_t) 1 << 31)   /* --master-key FILE (init, key) */
#define OPT_GROUP ((uint64_t) 1 << 32)        /* backup --group (issue 17) */
#define OPT_INSTANT ((uint64_t) 1 << 33)  /* restore --instant, --resume, --rollback, --bandwidth (issue 16) */
#define OPT_BOOT ((uint64_t) 1 << 34)     /* verify --boot, --probe, --boot-timeout (issue 16) */
#define OPT_GUEST ((uint64_t) 1 << 35)        /* backup --guest-processing (issue 17) */
#define OPT_PROTECT ((uint64_t) 1 << 44)  /* init --retention-days, --retention-mode, --append-only (issue 14) */
#define OPT_ADMIN ((uint64_t) 1 << 45)    /* prune, gc --admin (issue 14) */
#define OPT_SINCE ((uint64_t) 1 << 46)    /* sync --since TIME (issue 14) */

struct options {
  uint64_t given;               /* OPT_* bits of the options on the line */
  int json;
  const char *writers_dir;      /* NULL: VMSHADOW_WRITERS_DIR or default */
  const char *repo_dir;         /* NULL: VMSHADOW_REPO or default */
  int full;
  int deep;
  int dry_run;
  struct vms_prune_policy keep;
  const char *to;
  const char *format;
  int64_t grace_seconds;
  const char *connect;          /* libvirt URI, NULL: qemu:///system */
  const char *method;           /* auto|online|crash-consistent|saved-state,
                                   NULL: auto */
  const char *fallback;         /* crash-consistent|saved-state|fail, NULL:
                                   crash-consistent */
  int all;                      /* backup every VM (and every exec writer) */
  int each;                     /* backup: one consistency set per VM */
  int group;                    /* backup: the set's VMs are one instant */
  const char *guest_processing; /* backup: required|tried|off, NULL: off */
  int wait;                     /* backup: wait for locks and VM jobs */
  int64_t wait_seconds;         /* … this long at most */
  const char **vms;             /* restore --vm, NULL-terminated (or NULL) */
  const char *new_name;         /* restore --name */
  int start;                    /* restore --start */
  int replace;                  /* restore --replace */
  int write_devices;            /* restore --write-devices (issue 11) */
  const char *existing;         /* restore --existing keep|rename|refuse */
  const char **network_map;     /* restore --network-map OLD=NEW, NULL-terminated */
  const char *disk;             /* serve --disk TARGET */
  int repo_format;              /* init --format 1|2; 0: not given */
  unsigned sample_percent;      /* verify --sample; 0: not given (all) */
  const char **components;      /* restore --component WRITER[:COMPONENT], NULL-terminated */
  const char *config_dir;       /* --config DIR; NULL: $VMSHADOW_CONFIG_DIR
                                   or /etc/vmshadow */
  const char *prometheus;       /* status --prometheus FILE */
  int encrypt;                  /* init --encrypt */
  int visible_ids;              /* init --visible-backup-ids */
  const char *key;              /* init --key FINGERPRINT */
  const char *master_key;       /* --master-key FILE (PEM) */
  int instant, resume, rollback;    /* restore --instant|--resume|--rollback (issue 16) */
  uint64_t bandwidth;           /* restore: the mover's bytes/s; 0: no limit */
  int boot;                     /* verify --boot */
  const char *probe;            /* verify --boot --probe CMD */
  int boot_timeout;             /* verify --boot-timeout SECONDS; 0: 300 */
  unsigned retention_days;      /* init --retention-days N (issue 14) */
  const char *retention_mode;   /* init --retention-mode governance|compliance */
  int append_only;              /* init --append-only */
  int admin;                    /* prune, gc --admin */
  int64_t since;                /* sync --since: Unix seconds; 0: not given */
  /* Set by job run, not by an option (issue 19): */
  const char *job;              /* the job, recorded in the manifest */
  int no_exec_writers;          /* the job's exec-writers = no */
  char **report;                /* non-NULL: backup leaves its report's
                                   JSON here (the caller frees it) */
};

/* Each subcommand: argc/argv are the arguments after the command name. */
extern int cmd_writers (const struct options *opts, int argc, char **argv);
extern int cmd_backup (const struct options *opts, int argc, char **argv);
extern int cmd_list (const struct options *opts, int argc, char **argv);
extern int cmd_show (const struct options *opts, int argc, char **argv);
extern int cmd_verify (const struct options *opts, int argc, char **argv);
extern int cmd_prune (const struct options *opts, int argc, char **argv);
extern int cmd_gc (const struct options *opts, int argc, char **argv);
extern int cmd_init (const struct options *opts, int argc, char **argv);
extern int cmd_upgrade (const struct options *opts, int argc, char **argv);
/* The backup's last boot check (verify --boot), or NULL when it was never
 * checked or its note is malformed (said on stderr); and its JSON form for
 * --json output, NULL for none (cmd-repo.c). */
extern struct vms_boot_check_report *cli_boot_check (vms_repo *repo, const char *id);
extern json_object *cli_boot_check_json (const struct vms_boot_check_report *r);
extern int cmd_sync (const struct options *opts, int argc, char **argv);
extern int cmd_extract (const struct options *opts, int argc, char **argv);
extern int cmd_restore (const struct options *opts, int argc, char **argv);
extern int cmd_serve (const struct options *opts, int argc, char **argv);
extern int cmd_files (const struct options *opts, int argc, char **argv);
extern int cmd_mount (const struct options *opts, int argc, char **argv);
extern int cmd_guest (const struct options *opts, int argc, char **argv);
extern int cmd_config (const struct options *opts, int argc, char **argv);
extern int cmd_job (const struct options *opts, int argc, char **argv);
extern int cmd_status (const struct options *opts, int argc, char **argv);
extern int cmd_key (const struct options *opts, int argc, char **argv);
/* cmd-key.c: passphrases of encrypted repositories from fd (-1: none),
 * the environment or the terminal, for every command. */
extern void cli_passphrase_setup (int fd);

/* Errors as JSON: set by main when --json is anywhere on the command
 * line, before any option is parsed, so that even a usage error after it
 * is JSON. */
extern int cli_json_errors;

/* --quiet: no progress (and main sends the reports of commands that make
 * one to /dev/null). */
extern int cli_quiet;

/* Report an error and return code. The message is made from fmt and its
 * arguments as they are (not yet escaped). With cli_json_errors, one JSON
 * object on stdout: {"command": CMD, "error": MESSAGE, "exit_code": CODE};
 * otherwise "vmshadow CMD: MESSAGE" (or "vmshadow: MESSAGE" when cmd is
 * NULL) on stderr, escaped for the terminal (cli_message). */
extern int cli_error (const char *cmd, int code, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* cli_error (cmd, EXIT_FAILURE, <the last error>). */
extern int cli_fail (const char *cmd);

/* Text from outside (writer, guest, repository, command line) made safe
 * for the terminal (vms_term_escape): every such %s of human output goes
 * through one of these (issue 9, item 7). cli_message keeps newlines (an
 * error of several lines). The string returned is borrowed and stays valid
 * for the next 15 calls on the thread — enough for the arguments of one
 * printf. */
extern const char *cli_text (const char *s);
extern const char *cli_message (const char *s);

/* Print a JSON value on stdout (pretty) and drop it. Strings that are not
 * UTF-8 are printed escaped, so the output is always valid JSON. */
extern void cli_print_json (json_object *value);
/* Print text made by the library (a report's JSON) and free it; NULL: the
 * error. */
extern void cli_print_text (char *text);

/* Progress on stderr when it is a terminal: bytes, rate, ETA. */
struct progress {
  int enabled;
  const char *label;
  int64_t start_ms, last_ms;
  uint64_t base;                /* bytes done by earlier files */
  char path[4096];              /* progress_file: the file's label */
};
extern void progress_init (struct progress *p, const char *label);
/* A vms_progress_fn; opaque is the struct progress. */
extern void progress_update (void *opaque, uint64_t done, uint64_t total);
extern void progress_done (struct progress *p);
/* A vms_requester_progress_fn: one progress line per file; opaque is a
 * struct progress made by progress_init. */
extern void progress_file (void *opaque, const struct vms_progress *p);

/* cli_print_text with "exit_code": the code the command exits with. */
extern void cli_print_report (char *text, int exit_code);

/* "1.5 GiB" etc. into buf. */
extern const char *cli_bytes (uint64_t n, char buf[32]);

#endif /* VMS_CLI_H */

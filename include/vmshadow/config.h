/* The configuration of scheduled runs (issue 19, docs/configuration.md):
 * /etc/vmshadow/vmshadow.conf and /etc/vmshadow/jobs.d/ *.conf, INI files
 * read with libinih. Part of lib/requester: a job is a backup request and
 * a prune policy with a name. */
#ifndef VMSHADOW_CONFIG_H
#define VMSHADOW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "vmshadow/api.h"
#include "vmshadow/repo.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_CONFIG_DEFAULT_DIR "/etc/vmshadow"
/* In a job's vms or exclude: "tag:NAME", the VMs whose libvirt metadata
 * has the tag NAME (docs/configuration.md; issue 19). */
#define VMS_CONFIG_TAG_PREFIX "tag:"

struct vms_config_repository {
  char *name;
  char *path;                   /* an absolute directory, rados:POOL[/NS] or s3://BUCKET[/PREFIX] */
  char *file;                   /* where it is defined */
  int line;
  /* The client's credentials, by reference (NULL: the backend's defaults):
   * a ceph.conf, client id and keyring for rados:, an S3 settings file for
   * s3:// (docs/configuration.md). */
  char *rados_conf, *rados_id, *rados_keyring, *s3_config;
};

struct vms_config_job {
  char *name;
  char **vms;                   /* NULL-terminated names, UUIDs, globs
                                   (fnmatch) or tag:NAME; NULL: none */
  int all_vms;                  /* vms = all */
  char **exclude;               /* exclude = names, UUIDs, globs, tags never
                                   backed up by the job; NULL: none */
  int exec_writers;             /* exec-writers = yes (default) */
  char *method, *fallback;      /* NULL: the command's defaults */
  int each;                     /* each = yes */
  char *guest_processing;       /* guest-processing = required|tried|off
                                   (issue 17); NULL: off */
  int group;                    /* group = yes: the online VMs of the set
                                   are one instant (issue 17) */
  char *repository;             /* a [repository NAME]; NULL: none (error) */
  struct vms_prune_policy keep; /* all 0: no prune after the backup */
  int64_t max_age_s;            /* status: critical after this; 0: 26 h */
  /* OnCalendar= of the job's timers (systemd.time(7)); NULL: no timer
   * from `job timers` (issue 19). */
  char *schedule, *verify_schedule, *prune_schedule;
  int verify_deep;              /* verify-deep = yes: job verify --deep */
  int verify_after;             /* verify-after: 0 no, 1 yes, 2 deep: verify
                                   the repository after each run */
  char *sync_to;                /* sync-to = a [repository NAME]: sync into
                                   it after each run; NULL: none */
  char *file;
  int line;
  unsigned set;                 /* which keys the job's own section set */
};

struct vms_config {
  char *dir;
  struct vms_config_repository *repos;
  size_t nr_repos;
  struct vms_config_job *jobs;
  size_t nr_jobs;
  /* Every problem found, one "FILE:LINE: problem" each (FILE alone when
   * the whole file is at fault). The configuration is usable only when
   * there are none. */
  char **errors;
  size_t nr_errors;
  size_t nr_files;              /* files read */
  /* [notify]: NULL: DIR/notify.d of the configuration directory (may be
   * missing); 0: 60 s. */
  char *notify_dir;
  int64_t notify_timeout_s;
};

/* Read the configuration of dir (NULL: $VMSHADOW_CONFIG_DIR if set and
 * non-empty, else VMS_CONFIG_DEFAULT_DIR): dir/vmshadow.conf (may be
 * missing), then dir/jobs.d/ *.conf in name order. [defaults] gives every
 * job the keys it does not set itself, wherever it is. NULL only when out
 * of memory; problems of the files are in errors. */
extern VMS_API struct vms_config *vms_config_load (const char *dir);
extern VMS_API void vms_config_free (struct vms_config *c);

extern VMS_API const struct vms_config_job *vms_config_job (const struct vms_config *c,
                                                    const char *name);
extern VMS_API const struct vms_config_repository *
vms_config_repository (const struct vms_config *c, const char *name);

/* Points this process's repository clients at R's credentials (the
 * VMSHADOW_RADOS_* and VMSHADOW_S3_CONFIG variables the backends read),
 * before R is opened; a key R does not set leaves the variable alone.
 * 0, or -1 with the error set. */
int vms_config_repository_use (const struct vms_config_repository *r);

/* "26h", "90m", "3600s", "3600", "2d", "1w": seconds into *out; -1 if not
 * such a duration (or not more than 0). */
extern VMS_API int vms_config_parse_duration (const char *s, int64_t *out);

/* Take the job's lock (a run of a job never overlaps another run of the
 * same job): flock on $VMSHADOW_RUN_DIR (default /run/vmshadow)/job-NAME.lock,
 * made if needed. Returns the fd holding it (close it to release), or -1:
 * errno EWOULDBLOCK when another run holds it (the error names the file),
 * else why not. Never waits. */
extern VMS_API int vms_config_job_lock (const struct vms_config_job *job);
/* The same with a lock of its own for kind (NULL: the run's job-NAME.lock;
 * "verify": verify-NAME.lock, so that a verify never overlaps another
 * verify of the job but may run beside its backup). */
extern VMS_API int vms_config_job_lock_kind (const struct vms_config_job *job,
                                             const char *kind);

/* The job's record of its last KIND ("verify": job verify and
 * verify-after), a small JSON text kept in $VMSHADOW_STATE_DIR (default
 * /var/lib/vmshadow/state)/KIND-NAME.json, replaced whole (written aside,
 * then renamed). put: 0 or -1 with the error set. get: the text (free it),
 * or NULL: never recorded (errno ENOENT, no error set) or unreadable (the
 * error set). */
/* The state directory ($VMSHADOW_STATE_DIR, else /var/lib/vmshadow/state;
 * made 0700 if missing with create), opened, its name in *name; -1 with
 * the error set (not when it is missing without create: errno ENOENT). */
extern VMS_API int vms_config_state_dir (int create, const char **name);
extern VMS_API int vms_config_job_note_put (const struct vms_config_job *job,
                                            const char *kind, const char *text);
extern VMS_API char *vms_config_job_note_get (const struct vms_config_job *job,
                                              const char *kind);

/* Whether v can be a schedule (an OnCalendar= value): 1 to 128 letters,
 * digits, blanks and * : , . / ~ + - _ (no '%' specifier, quote or
 * control). systemd itself checks the expression. */
extern VMS_API int vms_config_calendar_valid (const char *v);

/* Whether a job's name can be a systemd unit instance as it is (no
 * escaping, so that %i in the units is the name): letters, digits and
 * : _ . -, not starting with '.'. */
extern VMS_API int vms_config_job_unit_name_ok (const char *name);

/* Which VMs a job backs up (issue 19): 1 when its vms has a glob or it
 * has exclude, so that the host's VMs must be listed and matched
 * (vms_config_job_select_from); 0 when its names are taken as they are. */
extern VMS_API int vms_config_job_needs_host_vms (const struct vms_config_job *j);

/* The VMs of host_vms (names, NULL-terminated, in the host's order) the
 * job takes: every one with vms = all, else each that a name of vms equals
 * or a glob of it matches (fnmatch), but none that an entry of exclude
 * equals or matches; then the names and UUIDs of vms the host did not list
 * (unless excluded: the backup reports a VM it cannot find). *selected:
 * NULL-terminated, malloc'd (free each and it), *n of them. -1 only when
 * out of memory. */
extern VMS_API int vms_config_job_select_from (const struct vms_config_job *j,
                                               const char *const *host_vms,
                                               char ***selected, size_t *n);

/* As vms_config_job_select_from, with host_tags[i] the tags of host_vms[i]
 * (NULL-terminated; host_tags or an entry NULL: none): an entry
 * VMS_CONFIG_TAG_PREFIX "NAME" of vms takes, and of exclude leaves out,
 * every VM with the tag NAME (issue 19). */
extern VMS_API int vms_config_job_select_tagged (const struct vms_config_job *j,
                                                 const char *const *host_vms,
                                                 const char *const *const *host_tags,
                                                 char ***selected, size_t *n);

/* vms_config_job_select_tagged over the VMs of the libvirt host at uri
 * (NULL: qemu:///system; their tags are read only when the job has a tag:
 * entry), with a warning for each glob or tag that matches none and for
 * each VM whose tags cannot be read (no tag: entry takes or leaves it).
 * -1 with the error set when the host cannot be listed. */
extern VMS_API int vms_config_job_select (const struct vms_config_job *j,
                                          const char *uri, char ***selected,
                                          size_t *n);

/* What a run of a job did (issue 19), for vms_job_result_json. */
struct vms_job_result {
  const char *job, *repository, *repository_path;
  int64_t started, finished;    /* seconds since the epoch */
  int exit_code;                /* vmshadow(1) EXIT STATUS of job run */
  const char *error;            /* a run that never got to a backup report:
                                   why; else NULL */
  const char *backup_report;    /* the backup's report (JSON), or NULL */
  char *const *selected;        /* the VMs the job asked the backup for
                                   (NULL-terminated); NULL: all of the host */
  int prune_exit_code;          /* -1: no prune ran */
  /* A prune the job's keep-* rules ask for that the repository's policy
   * leaves to its admin (append-only, issue 14): why; else NULL. */
  const char *prune_skipped;
};

/* The job's result document (docs/configuration.md, "The job's result"):
 * the run, one row per VM and per host application (state, backup id,
 * method, type, size, bytes, elapsed time, or the error of a failed set),
 * totals and the backup's report. One line of JSON, malloc'd; NULL when
 * out of memory. */
extern VMS_API char *vms_job_result_json (const struct vms_job_result *in);

/* After a run of job (issue 19): each executable of the notify directory
 * ([notify] dir, else notify.d of the configuration directory; a missing
 * default one is no error), in name order, gets result (the job's result,
 * JSON; docs/configuration.md) on its stdin and VMSHADOW_JOB,
 * VMSHADOW_OUTCOME and VMSHADOW_EXIT_CODE in its environment, one after
 * the other, each killed when it takes longer than the [notify] timeout
 * (default 60 s). Names run-parts(8) skips, files that are not regular or
 * not executable are skipped; one anyone may write to, or that another
 * user than root or us owns, is refused. A notifier that cannot be run,
 * fails or times out is a warning on stderr, naming it and how it ended:
 * nothing of it changes the job's result. Returns how many did not
 * succeed. */
extern VMS_API size_t vms_config_notify (const struct vms_config *c,
                                         const char *job, const char *outcome,
                                         int exit_code, const char *result);

#ifdef __cplusplus
}
#endif

#endif /* VMSHADOW_CONFIG_H */

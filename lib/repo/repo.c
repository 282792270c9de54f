/* Opening a repository: creating it on first use, reading its config,
 * taking the writer lock; and the catalogue of committed backups
 * (docs/repository-format.md "Layout", "Config", "Lock").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "crypt.h"
#include "fs-util.h"
#include "repo-internal.h"
#include "storage.h"
#include "vector.h"
#include "vmshadow/error.h"

const char *
vms_repo_path (const vms_repo *repo)
{
  return repo->path;
}

int
vms_repo_format_version (const vms_repo *repo)
{
  return repo->version;
}

const char *
vms_repo_key_fingerprint (const vms_repo *repo)
{
  return repo->encrypted ? repo->key_fp : NULL;
}

int
vms_repo_has_key (const vms_repo *repo)
{
  return !repo->encrypted || repo->key != NULL;
}

int
vms_repo_backup_ids_hidden (const vms_repo *repo)
{
  return repo->encrypted && repo->hide_ids;
}

int
vms_repo_key_handoff (vms_repo *repo)
{
  if (!repo->encrypted) {
    vms_set_error (EINVAL, "repository %s is not encrypted", repo->path);
    return -1;
  }
  if (repo->key == NULL) {
    vms_set_error (ENOKEY, "repository %s was opened without its key",
                   repo->path);
    return -1;
  }
  return key_handoff_fd (repo->key_fp);
}

char *
vms_repo_recovery_key (vms_repo *repo, size_t *len)
{
  char name[64];
  void *buf;

  if (!repo->encrypted) {
    vms_set_error (EINVAL, "repository %s is not encrypted", repo->path);
    return NULL;
  }
  snprintf (name, sizeof name, "keys/%s", repo->key_fp);
  if (storage_get_all (repo->store, name, 65536, &buf, len) == -1) {
    vms_set_error (errno, "repository %s: %s: %s", repo->path, name,
                   errno == ENOENT ? "absent (the key was made without "
                   "--master-key)" : repo_errstr (errno));
    return NULL;
  }
  return buf;
}

int
repo_backup_dir (vms_repo *repo, const char *id, char *buf, size_t size)
{
  if (!repo->encrypted || !repo->hide_ids) {
    snprintf (buf, size, "backups/%s", id);
    return 0;
  }
  if (repo->key == NULL) {
    errno = ENOKEY;
    return -1;
  }
  uint8_t mac[32];
  char h[65];
  if (crypt_mac (repo->key->k_name, id, strlen (id), mac) == -1) {
    errno = EIO;
    return -1;
  }
  crypt_hex (mac, 32, h);
  snprintf (buf, size, "backups/%s", h);
  return 0;
}

void
vms_repo_protection (const vms_repo *repo, unsigned *days, const char **mode,
                     int *append_only)
{
  *days = repo->retention_days;
  *mode = repo->retention_days ? repo->retention_mode : NULL;
  *append_only = repo->append_only;
}

void
vms_repo_kept_locked (const vms_repo *repo, uint64_t *objects,
                      uint64_t *bytes, int64_t *until)
{
  *objects = repo->kept_objects;
  *bytes = repo->kept_bytes;
  *until = repo->kept_until;
}

void
repo_note_kept (vms_repo *repo, uint64_t size, int64_t until)
{
  repo->kept_objects++;
  repo->kept_bytes += size;
  if (until > repo->kept_until)
    repo->kept_until = until;
}

int
repo_need_delete (vms_repo *repo, const char *what)
{
  if (!repo->append_only || repo->admin)
    return 0;
  vms_set_error (EPERM, "cannot %s: repository %s is append-only (its "
                 "config says so): nothing is deleted from this host; %s "
                 "runs on the admin host with --admin and credentials that "
                 "may delete (docs/repository-format.md \"Immutability\")",
                 what, repo->path, what);
  return -1;
}

/* The protection a new repository asks for ($VMSHADOW_REPO_RETENTION_DAYS,
 * _MODE, $VMSHADOW_REPO_APPEND_ONLY; issue 14): 0 and the fields set, or
 * -1 with the error set. */
static int
creation_protection (vms_repo *repo)
{
  const char *d = getenv ("VMSHADOW_REPO_RETENTION_DAYS");
  const char *m = getenv ("VMSHADOW_REPO_RETENTION_MODE");
  const char *a = getenv ("VMSHADOW_REPO_APPEND_ONLY");

  if (d && *d) {
    char *end;
    errno = 0;
    unsigned long n = strtoul (d, &end, 10);
    if (errno || *end || n < 1 || n > 36500 || d[0] == '-') {
      vms_set_error (EINVAL, "cannot create repository %s: a retention of "
                     "'%s' days (1 to 36500)", repo->path, d);
      return -1;
    }
    if (strncmp (repo->path, "s3://", 5) != 0) {
      vms_set_error (ENOTSUP, "cannot create repository %s with a retention: "
                     "only S3 Object Lock keeps one (a local directory or "
                     "RADOS has no lock to keep it: refused, not faked)",
                     repo->path);
      return -1;
    }
    repo->retention_days = (unsigned) n;
    if (m == NULL || *m == '\0' || strcmp (m, "governance") == 0)
      strcpy (repo->retention_mode, "GOVERNANCE");
    else if (strcmp (m, "compliance") == 0)
      strcpy (repo->retention_mode, "COMPLIANCE");
    else {
      vms_set_error (EINVAL, "cannot create repository %s: retention mode "
                     "'%s' is neither governance nor compliance", repo->path,
                     m);
      return -1;
    }
  }
  else if (m && *m) {
    vms_set_error (EINVAL, "cannot create repository %s: a retention mode "
                   "without a retention in days", repo->path);
    return -1;
  }
  if (a && *a) {
    if (strcmp (a, "1") != 0 && strcmp (a, "0") != 0) {
      vms_set_error (EINVAL, "cannot create repository %s: "
                     "VMSHADOW_REPO_APPEND_ONLY is 1 or 0, not '%s'",
                     repo->path, a);
      return -1;
    }
    repo->append_only = a[0] == '1';
  }
  return 0;
}

int
vms_repo_prepare_store (vms_repo *repo)
{
  if (repo_need_write (repo, "prepare to store chunks") == -1)
    return -1;
  /* Format 1 has no table to load: a chunk is a file. */
  return repo->version >= 2 ? pack_preload (repo) : 0;
}

int
repo_need_write (vms_repo *repo, const char *what)
{
  if (repo->lock_fd >= 0 || repo->session)
    return 0;
  vms_set_error (EBADF, "cannot %s: repository %s was opened without the "
                 "writer lock (VMS_REPO_WRITE)", what, repo->path);
  return -1;
}

/* mkdir -p, each new directory 0700. */
static int
mkdir_parents (const char *path)
{
  CLEANUP_FREE char *p = strdup (path);
  if (p == NULL)
    return -1;
  for (char *s = p + 1; ; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (repo_mkdirat (AT_FDCWD, p) == -1)
        return -1;
      if (c == '\0')
        break;
      *s = c;
    }
  }
  return 0;
}

/* The format version a local repository's config names (0 if it cannot
 * tell: then the lock is taken, and read_config says what is wrong). */
static int
peek_version (vms_repo *repo)
{
  CLEANUP_FREE char *text = NULL;
  size_t len;
  json_object *root, *v;
  int version = 0;

  if (repo_read_file (repo->dirfd, "config", 65536, &text, &len) == -1)
    return 0;
  root = json_tokener_parse (text);
  if (root && json_object_is_type (root, json_type_object) &&
      json_object_object_get_ex (root, "version", &v) &&
      json_object_is_type (v, json_type_int))
    version = (int) json_object_get_int64 (v);
  json_object_put (root);
  return version;
}

int
repo_start_session (vms_repo *repo)
{
  repo->session = lease_take (repo, NULL);
  if (repo->session == NULL) {
    vms_set_error (vms_get_errno (), "%s%s", vms_get_error (),
                   vms_get_errno () == ETIMEDOUT ? " (is the pool full? see "
                   "ceph df and ceph osd pool get-quota)" : "");
    return -1;
  }
  return 0;
}

static int
take_lock (vms_repo *repo)
{
  int fd = vms_open_beneath (repo->dirfd, "lock", O_RDWR | O_CREAT, 0600);
  if (fd == -1) {
    vms_set_error (errno, "repository %s: cannot open its lock file: %s",
                   repo->path, repo_errstr (errno));
    return -1;
  }
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    int e = errno;
    char buf[32] = { 0 };
    ssize_t r = pread (fd, buf, sizeof buf - 1, 0);
    long pid = r > 0 ? strtol (buf, NULL, 10) : 0;
    close (fd);
    if (e == EWOULDBLOCK) {
      if (pid > 0)
        vms_set_error (EBUSY, "repository %s is locked by pid %ld (another "
                       "backup, prune or gc is running)", repo->path, pid);
      else
        vms_set_error (EBUSY, "repository %s is locked by another process "
                       "(another backup, prune or gc is running)", repo->path);
    }
    else
      vms_set_error (e, "repository %s: cannot lock it: %s", repo->path,
                     repo_errstr (e));
    return -1;
  }
  char pid[32];
  int n = snprintf (pid, sizeof pid, "%d\n", (int) getpid ());
  if (fchmod (fd, 0600) == -1 || ftruncate (fd, 0) == -1 ||
      pwrite (fd, pid, (size_t) n, 0) != n) {
    vms_set_error (errno, "repository %s: cannot write its lock file: %s",
                   repo->path, repo_errstr (errno));
    close (fd);
    return -1;
  }
  repo->lock_fd = fd;
  return 0;
}

/* The directories of a repository, made by create_layout. */
static const char *const layout_dirs[] = { "chunks", "backups", "tmp" };

static int
is_layout_dir (const char *name)
{
  for (size_t i = 0; i < sizeof layout_dirs / sizeof *layout_dirs; i++)
    if (strcmp (name, layout_dirs[i]) == 0)
      return 1;
  return 0;
}

/* 1 if directory fd holds nothing, or only what an interrupted
 * create_layout leaves (killed, or out of space, before the config was
 * renamed into place): the lock file, config.tmp.* files, and the empty
 * directories chunks/, backups/, tmp/ — a repository that the next
 * vms_repo_open with VMS_REPO_CREATE completes. 0 if it holds anything
 * else, -1 on error. top: fd is the repository directory, not one of
 * those subdirectories (which must be empty). */
static int
is_skeleton (int fd, int top)
{
  int dfd = openat (fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir (dfd) : NULL;
  struct dirent *e;
  int r = 1;

  if (d == NULL) {
    if (dfd >= 0) close (dfd);
    return -1;
  }
  while (r == 1 && (e = readdir (d)) != NULL) {
    const char *n = e->d_name;
    struct stat st;
    if (strcmp (n, ".") == 0 || strcmp (n, "..") == 0)
      continue;
    if (!top || fstatat (dirfd (d), n, &st, AT_SYMLINK_NOFOLLOW) == -1)
      r = 0;
    else if (strcmp (n, "lock") == 0 || strncmp (n, "config.tmp.", 11) == 0)
      r = S_ISREG (st.st_mode);
    else if (is_layout_dir (n) && S_ISDIR (st.st_mode)) {
      CLEANUP_CLOSE int sub = vms_open_beneath (dirfd (d), n,
                                                O_RDONLY | O_DIRECTORY, 0);
      r = sub >= 0 ? is_skeleton (sub, 0) : 0;
    }
    else
      r = 0;
  }
  closedir (d);
  return r;
}

/* Remove the config.tmp.* files that an interrupted creation left (only
 * called with the writer lock held: no other process is writing one). */
static void
remove_config_temps (int fd)
{
  int dfd = openat (fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir (dfd) : NULL;
  struct dirent *e;

  if (d == NULL) {
    if (dfd >= 0) close (dfd);
    return;
  }
  while ((e = readdir (d)) != NULL)
    if (strncmp (e->d_name, "config.tmp.", 11) == 0)
      unlinkat (dirfd (d), e->d_name, 0);
  closedir (d);
}

/* The version and pack size a new repository gets: VMS_REPO_FORMAT_2,
 * else $VMSHADOW_REPO_FORMAT, else VMS_REPO_FORMAT_VERSION (2: packs, issue
 * 12); $VMSHADOW_REPO_PACK_SIZE (bytes) for v2. */
static int
creation_format (vms_repo *repo, int *version, uint32_t *pack_size)
{
  const char *v = getenv (REPO_FORMAT_ENV);
  const char *ps = getenv ("VMSHADOW_REPO_PACK_SIZE");

  *version = VMS_REPO_FORMAT_VERSION;
  *pack_size = PACK_SIZE_DEFAULT;
  if (repo->flags & VMS_REPO_FORMAT_2)
    *version = 2;
  else if (v && *v) {
    if (strcmp (v, "1") != 0 && strcmp (v, "2") != 0) {
      vms_set_error (EINVAL, "cannot create repository %s: %s=%s is not a "
                     "format version this vmshadow writes (1 or 2)",
                     repo->path, REPO_FORMAT_ENV, v);
      return -1;
    }
    *version = v[0] - '0';
  }
  if (*version == 2 && ps && *ps) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull (ps, &end, 10);
    if (errno || *end || n < PACK_SIZE_MIN || n > PACK_SIZE_MAX) {
      vms_set_error (EINVAL, "cannot create repository %s: "
                     "VMSHADOW_REPO_PACK_SIZE=%s is not a size from %u to %u "
                     "bytes", repo->path, ps, PACK_SIZE_MIN, PACK_SIZE_MAX);
      return -1;
    }
    *pack_size = (uint32_t) n;
  }
  return 0;
}

/* A new repository's config (text in a new string): version 2 always
 * for a repository on an object store. */
static int
config_text (vms_repo *repo, char **out)
{
  uint8_t rnd[16];
  char id[33];
  char *text = NULL;
  int version;
  uint32_t pack_size;
  char extra[512] = "";

  if (repo->remote) {
    const char *v = getenv (REPO_FORMAT_ENV);
    if (v && strcmp (v, "1") == 0 && !(repo->flags & VMS_REPO_FORMAT_2)) {
      vms_set_error (ENOTSUP, "cannot create repository %s: format version "
                     "1 is a local directory only (%s=1); a RADOS "
                     "repository is version 2", repo->path, REPO_FORMAT_ENV);
      return -1;
    }
    repo->flags |= VMS_REPO_FORMAT_2;
  }
  if (creation_format (repo, &version, &pack_size) == -1)
    return -1;
  /* One write_full per pack: RADOS takes at most osd_max_write_size
   * (90 MiB by default) in one write. */
  if (repo->remote && pack_size > (64u << 20)) {
    vms_set_error (EINVAL, "cannot create repository %s: packs of a RADOS "
                   "repository are at most 64 MiB (VMSHADOW_REPO_PACK_SIZE)",
                   repo->path);
    return -1;
  }
  if (repo->encrypted || repo->remote)
    version = 2;
  if (creation_protection (repo) == -1)
    return -1;
  if ((repo->retention_days || repo->append_only) && version != 2) {
    vms_set_error (EINVAL, "cannot create repository %s: retention and "
                   "append-only need format version 2", repo->path);
    return -1;
  }
  if (version == 2)
    snprintf (extra, sizeof extra, "  \"pack_size\": %" PRIu32 ",\n",
              pack_size);
  if (repo->encrypted)
    snprintf (extra + strlen (extra), sizeof extra - strlen (extra),
              "  \"encryption\": { \"cipher\": \"aes-256-gcm\", "
              "\"chunk_id\": \"hmac-sha256\",\n                  "
              "\"key_fingerprint\": \"%s\", \"hide_backup_ids\": %s },\n",
              repo->key_fp, repo->hide_ids ? "true" : "false");
  if (repo->retention_days)
    snprintf (extra + strlen (extra), sizeof extra - strlen (extra),
              "  \"retention\": { \"mode\": \"%s\", \"days\": %u },\n",
              repo->retention_days && repo->retention_mode[0] == 'G'
              ? "governance" : "compliance", repo->retention_days);
  if (repo->append_only)
    snprintf (extra + strlen (extra), sizeof extra - strlen (extra),
              "  \"append_only\": true,\n");

  if (getrandom (rnd, sizeof rnd, 0) != sizeof rnd) {
    vms_set_error (errno, "cannot get random bytes for a repository id: %s",
                   strerror (errno));
    return -1;
  }
  for (size_t i = 0; i < sizeof rnd; i++)
    snprintf (id + 2 * i, 3, "%02x", rnd[i]);
  if (asprintf (&text, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n"
                "  \"chunk_size\": %u,\n%s  \"id\": \"%s\",\n  \"created\": %"
                PRId64 "\n}\n", REPO_CONFIG_FORMAT, version,
                VMS_CHUNK_SIZE, extra, id, (int64_t) time (NULL)) == -1) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  *out = text;
  return version;
}

static int
create_layout (vms_repo *repo)
{
  CLEANUP_FREE char *text = NULL;
  int version = config_text (repo, &text);

  if (version == -1)
    return -1;
  /* The skeleton first, the config last, by one rename: until then the
   * directory is no repository, and is_skeleton lets the next creation
   * complete it (docs/repository-format.md "Creation"). */
  char tmp[64];
  snprintf (tmp, sizeof tmp, "config.tmp.%d", (int) getpid ());
  if (repo->lock_fd >= 0)
    remove_config_temps (repo->dirfd);
  else
    unlinkat (repo->dirfd, tmp, 0);
  /* Version 2 makes only tmp/ (its objects' directories come with
   * them). */
  for (size_t i = version == 2 ? 2 : 0;
       i < sizeof layout_dirs / sizeof *layout_dirs; i++)
    if (repo_mkdirat (repo->dirfd, layout_dirs[i]) == -1)
      goto fail;
  if (fsync (repo->dirfd) == -1 ||
      repo_write_new_file (repo->dirfd, tmp, text, strlen (text)) == -1 ||
      renameat (repo->dirfd, tmp, repo->dirfd, "config") == -1 ||
      fsync (repo->dirfd) == -1)
    goto fail;
  return 0;
 fail:
  vms_set_error (errno, "cannot create repository %s: %s (run the backup "
                 "again once the cause is fixed: it completes the "
                 "repository)", repo->path, repo_errstr (errno));
  unlinkat (repo->dirfd, tmp, 0);
  return -1;
}

static int
read_config (vms_repo *repo)
{
  CLEANUP_FREE char *text = NULL;
  size_t len;
  json_object *root, *v;
  int r = -1;

  if (repo->remote
      ? storage_get_all (repo->store, "config", 65536, (void **) &text,
                         &len) == -1
      : repo_read_file (repo->dirfd, "config", 65536, &text, &len) == -1) {
    vms_set_error (errno, "repository %s: cannot read its config: %s",
                   repo->path, repo_errstr (errno));
    return -1;
  }
  root = json_tokener_parse (text);
  if (root == NULL || !json_object_is_type (root, json_type_object)) {
    vms_set_error (EBADMSG, "repository %s: config is not a JSON object",
                   repo->path);
    goto out;
  }
  if (!json_object_object_get_ex (root, "format", &v) ||
      !json_object_is_type (v, json_type_string) ||
      strcmp (json_object_get_string (v), REPO_CONFIG_FORMAT) != 0) {
    vms_set_error (EBADMSG, "%s is not a vmshadow repository (its config does "
                   "not say \"format\": \"%s\")", repo->path, REPO_CONFIG_FORMAT);
    goto out;
  }
  if (!json_object_object_get_ex (root, "version", &v) ||
      !json_object_is_type (v, json_type_int) ||
      json_object_get_int64 (v) < 1 ||
      json_object_get_int64 (v) > VMS_REPO_FORMAT_LATEST) {
    vms_set_error (EBADMSG, "repository %s has format version %s; this "
                   "vmshadow reads versions 1 to %d (a newer vmshadow wrote "
                   "it?)", repo->path, v ? json_object_get_string (v) : "(none)",
                   VMS_REPO_FORMAT_LATEST);
    goto out;
  }
  repo->version = (int) json_object_get_int64 (v);
  if (repo->version == 2) {
    if (!json_object_object_get_ex (root, "pack_size", &v) ||
        !json_object_is_type (v, json_type_int) ||
        json_object_get_int64 (v) < PACK_SIZE_MIN ||
        json_object_get_int64 (v) > PACK_SIZE_MAX) {
      vms_set_error (EBADMSG, "repository %s: its config has no valid "
                     "\"pack_size\" (%u to %u bytes)", repo->path,
                     PACK_SIZE_MIN, PACK_SIZE_MAX);
      goto out;
    }
    repo->pack_size = (uint32_t) json_object_get_int64 (v);
    if (json_object_object_get_ex (root, "encryption", &v) && v != NULL) {
      json_object *c, *f, *k, *h;
      uint8_t fp[CRYPT_FP_LEN];
      if (!json_object_is_type (v, json_type_object) ||
          !json_object_object_get_ex (v, "cipher", &c) ||
          !json_object_is_type (c, json_type_string) ||
          strcmp (json_object_get_string (c), "aes-256-gcm") != 0 ||
          !json_object_object_get_ex (v, "chunk_id", &f) ||
          !json_object_is_type (f, json_type_string) ||
          strcmp (json_object_get_string (f), "hmac-sha256") != 0 ||
          !json_object_object_get_ex (v, "key_fingerprint", &k) ||
          !json_object_is_type (k, json_type_string) ||
          crypt_unhex (json_object_get_string (k), fp, CRYPT_FP_LEN) == -1 ||
          !json_object_object_get_ex (v, "hide_backup_ids", &h) ||
          !json_object_is_type (h, json_type_boolean)) {
        vms_set_error (EBADMSG, "repository %s: its config has an "
                       "\"encryption\" this vmshadow does not know (it "
                       "knows aes-256-gcm with hmac-sha256 chunk ids)",
                       repo->path);
        goto out;
      }
      repo->encrypted = 1;
      repo->hide_ids = json_object_get_boolean (h);
      repo->blob_overhead = ENVELOPE_OVERHEAD;
      snprintf (repo->key_fp, sizeof repo->key_fp, "%s",
                json_object_get_string (k));
    }
    /* Immutability (issue 14): a config that asks for it is obeyed or
     * refused, never ignored. */
    repo->retention_days = 0;
    repo->append_only = 0;
    if (json_object_object_get_ex (root, "retention", &v) && v != NULL) {
      json_object *md, *dy;
      const char *ms;
      if (!json_object_is_type (v, json_type_object) ||
          !json_object_object_get_ex (v, "mode", &md) ||
          !json_object_is_type (md, json_type_string) ||
          (strcmp (ms = json_object_get_string (md), "governance") != 0 &&
           strcmp (ms, "compliance") != 0) ||
          !json_object_object_get_ex (v, "days", &dy) ||
          !json_object_is_type (dy, json_type_int) ||
          json_object_get_int64 (dy) < 1 || json_object_get_int64 (dy) > 36500) {
        vms_set_error (EBADMSG, "repository %s: its config has a "
                       "\"retention\" this vmshadow does not know (it knows "
                       "mode governance or compliance and 1 to 36500 days)",
                       repo->path);
        goto out;
      }
      repo->retention_days = (unsigned) json_object_get_int64 (dy);
      strcpy (repo->retention_mode, ms[0] == 'g' ? "GOVERNANCE" : "COMPLIANCE");
    }
    if (json_object_object_get_ex (root, "append_only", &v) && v != NULL) {
      if (!json_object_is_type (v, json_type_boolean)) {
        vms_set_error (EBADMSG, "repository %s: its config's \"append_only\" "
                       "is not true or false", repo->path);
        goto out;
      }
      repo->append_only = json_object_get_boolean (v);
    }
  }
  if (!json_object_object_get_ex (root, "chunk_size", &v) ||
      !json_object_is_type (v, json_type_int)) {
    vms_set_error (EBADMSG, "repository %s: its config has no valid "
                   "\"chunk_size\" (%s)", repo->path,
                   v ? json_object_get_string (v) : "none");
    goto out;
  }
  /* Chunks are cut at fixed offsets of this size: a reader with another
   * size would look for the wrong chunks, and a writer would mix sizes. */
  if (json_object_get_int64 (v) != VMS_CHUNK_SIZE) {
    vms_set_error (ENOTSUP, "repository %s uses chunks of %s bytes; this "
                   "vmshadow uses chunks of %u bytes (%u KiB) and cannot read "
                   "or write it: use the vmshadow that created it, or a new "
                   "repository", repo->path, json_object_get_string (v),
                   VMS_CHUNK_SIZE, VMS_CHUNK_SIZE / 1024);
    goto out;
  }
  repo->chunk_size = VMS_CHUNK_SIZE;
  if (json_object_object_get_ex (root, "id", &v) &&
      json_object_is_type (v, json_type_string))
    snprintf (repo->id, sizeof repo->id, "%s", json_object_get_string (v));
  r = 0;
 out:
  json_object_put (root);
  return r;
}

/* Open chunks/, backups/ and (writers) tmp/. A writer also makes the
 * repository and these directories exactly 0700, whatever they were: the
 * repository holds the data of every backup, and a directory others can
 * write lets them plant links (docs/security.md). */
static int
open_layout (vms_repo *repo)
{
  int write = repo->lock_fd >= 0 || (repo->flags & VMS_REPO_WRITE);

  if (write && fchmod (repo->dirfd, 0700) == -1) {
    vms_set_error (errno, "repository %s: cannot make it private (mode "
                   "0700): %s", repo->path, repo_errstr (errno));
    return -1;
  }
  if (repo->version >= 2) {
    /* Every object through the storage interface; tmp/ is the local
     * backend's, and gc's to sweep (its fd opened here, too). */
    repo->store = storage_local_open (repo->dirfd, repo->path, write);
    if (repo->store == NULL)
      return -1;
    if (repo->encrypted &&
        (repo->store = storage_crypt_wrap (repo->store, repo->key,
                                           repo->id)) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    if (write &&
        (repo->tmp_fd = vms_open_beneath (repo->dirfd, "tmp",
                                          O_RDONLY | O_DIRECTORY, 0)) == -1) {
      vms_set_error (errno, "repository %s: cannot open tmp/: %s", repo->path,
                     repo_errstr (errno));
      return -1;
    }
    return 0;
  }
  for (size_t i = 0; i < sizeof layout_dirs / sizeof *layout_dirs; i++) {
    int *fd = i == 0 ? &repo->chunks_fd : i == 1 ? &repo->backups_fd
      : &repo->tmp_fd;
    if (!write && fd == &repo->tmp_fd)
      break;                    /* readers never use tmp/ */
    *fd = write ? vms_mkdir_private_at (repo->dirfd, layout_dirs[i])
      : vms_open_beneath (repo->dirfd, layout_dirs[i],
                          O_RDONLY | O_DIRECTORY, 0);
    if (*fd == -1) {
      vms_set_error (errno, "repository %s: cannot open %s/: %s", repo->path,
                     layout_dirs[i], repo_errstr (errno));
      return -1;
    }
  }
  return 0;
}

/* An encrypted repository's key: unlocked (or, with VMS_REPO_NO_KEY,
 * not). */
static int
unlock_repo (vms_repo *repo)
{
  if (!repo->encrypted || (repo->flags & VMS_REPO_NO_KEY) || repo->key)
    return 0;
  repo->key = key_unlock (repo->key_fp);
  if (repo->key == NULL) {
    vms_set_error (vms_get_errno (), "repository %s is encrypted: %s",
                   repo->path, vms_get_error ());
    return -1;
  }
  return 0;
}

static vms_repo *repo_open (const char *dir, unsigned flags,
                            const struct crypt_key *new_key, int hide_ids);

vms_repo *
vms_repo_open (const char *dir, unsigned flags)
{
  return repo_open (dir, flags, NULL, 0);
}

vms_repo *
vms_repo_init_encrypted (const char *dir, const struct vms_repo_encryption *e)
{
  const struct crypt_key *k = e->key_fingerprint
    ? key_unlock (e->key_fingerprint) : key_new (e->master_public_key);
  if (k == NULL)
    return NULL;
  vms_repo *repo = repo_open (dir, VMS_REPO_CREATE | VMS_REPO_WRITE |
                              VMS_REPO_FORMAT_2, k, !e->visible_backup_ids);
  if (repo && repo->key != k) {
    vms_set_error (EEXIST, "%s is a repository already; nothing changed",
                   repo->path);
    vms_repo_close (repo);
    repo = NULL;
  }
  if (repo == NULL) {
    /* A key made for this repository and never used goes with it. */
    if (e->key_fingerprint == NULL)
      key_discard (k->fingerprint_hex);
    return NULL;
  }
  /* The recovery wrap goes with the repository: the organisation's
   * master key then opens it without this host (docs/encryption.md). */
  CLEANUP_FREE char *copy = key_recovery_copy (k->fingerprint_hex);
  if (copy) {
    char name[64];
    snprintf (name, sizeof name, "keys/%s", k->fingerprint_hex);
    if (storage_put (repo->store, name, copy, strlen (copy),
                     STORAGE_PUT_EXCLUSIVE) == -1) {
      vms_set_error (errno, "repository %s: %s while writing %s", repo->path,
                     repo_errstr (errno), name);
      vms_repo_close (repo);
      return NULL;
    }
  }
  else if (vms_get_errno () != 0 && vms_get_error ()) {
    vms_repo_close (repo);
    return NULL;
  }
  return repo;
}

/* A repository on RADOS (rados:POOL[/NAMESPACE], issue 12) or S3
 * (s3://BUCKET[/PREFIX], issue 14): the store
 * is opened first, the config read through it (made by an exclusive put
 * when creating: two hosts creating at once agree on the first); a
 * writer holds a session lease (no lock). */
static int
repo_open_remote (vms_repo *repo, const struct crypt_key *new_key,
                  int hide_ids)
{
  struct storage_stat st;
  unsigned flags = repo->flags;

  repo->remote = 1;
  repo->store = storage_remote_open (repo->path);
  if (repo->store == NULL) {
    vms_set_error (vms_get_errno (), "repository %s: %s", repo->path,
                   vms_get_error ());
    return -1;
  }
  int have_config = storage_stat (repo->store, "config", &st) == 0;
  if (!have_config && errno != ENOENT) {
    vms_set_error (errno, "repository %s: cannot read its config: %s",
                   repo->path, repo_errstr (errno));
    return -1;
  }
  if (!have_config && !(flags & VMS_REPO_CREATE)) {
    vms_set_error (ENOENT, "no repository at %s (no config object; a backup "
                   "creates one, or pass --repo or set %s)", repo->path,
                   VMS_REPO_DIR_ENV);
    return -1;
  }
  /* S3 keeps its writer lock (issue 14; its leases are not built): one
   * writer at a time there. RADOS has none: session leases (issue 12). */
  if ((flags & VMS_REPO_WRITE) && strncmp (repo->path, "s3://", 5) == 0) {
    char desc[64];
    snprintf (desc, sizeof desc, "vmshadow pid %d", (int) getpid ());
    if (storage_remote_lock (repo->store, "lock", desc) == -1) {
      char who[256];
      if (errno == EBUSY &&
          storage_remote_lock_holder (repo->store, "lock", who, sizeof who) == 0)
        vms_set_error (EBUSY, "repository %s is locked by %s (another backup, "
                       "prune or gc is running)", repo->path, who);
      else if (errno == EBUSY)
        vms_set_error (EBUSY, "repository %s is locked by another client "
                       "(another backup, prune or gc is running)", repo->path);
      else
        vms_set_error (errno, "repository %s: cannot lock it: %s%s",
                       repo->path, repo_errstr (errno),
                       errno == ETIMEDOUT ? " (is the pool full? see ceph df "
                       "and ceph osd pool get-quota)" : "");
      return -1;
    }
    repo->store_locked = 1;
  }
  if (!have_config) {
    CLEANUP_FREE char *text = NULL;
    if (new_key) {
      repo->encrypted = 1;
      repo->hide_ids = hide_ids;
      snprintf (repo->key_fp, sizeof repo->key_fp, "%s",
                new_key->fingerprint_hex);
    }
    if (config_text (repo, &text) == -1)
      return -1;
    /* A retention the bucket cannot keep is refused before anything is
     * written (issue 14). */
    if (repo->retention_days &&
        storage_s3_protect (repo->store, repo->retention_mode,
                            repo->retention_days, 0) == -1) {
      vms_set_error (vms_get_errno (), "cannot create repository %s: %s",
                     repo->path, vms_get_error ());
      return -1;
    }
    if (storage_put (repo->store, "config", text, strlen (text),
                     STORAGE_PUT_EXCLUSIVE) == -1) {
      if (errno != EEXIST) {
        vms_set_error (errno, "cannot create repository %s: %s", repo->path,
                       repo_errstr (errno));
        return -1;
      }
      /* Another host made it first: that one is the repository. */
      repo->encrypted = 0;
    }
    else
      repo->key = new_key;
  }
  if (read_config (repo) == -1)
    return -1;
  repo->admin = (flags & VMS_REPO_ADMIN) != 0;
  if ((flags & VMS_REPO_WRITE) &&
      (repo->retention_days || (repo->append_only && !repo->admin))) {
    /* Immutability (issue 14, R29): every object of a backup this session
     * writes is retained; an append-only repository's are never deleted
     * or written over from this host. RADOS has neither: its append-only
     * is prune's and gc's refusal alone (repo_need_delete). */
    if (strncmp (repo->path, "s3://", 5) == 0) {
      if (storage_s3_protect (repo->store, repo->retention_mode,
                              repo->retention_days,
                              repo->append_only && !repo->admin) == -1) {
        vms_set_error (vms_get_errno (), "repository %s: %s", repo->path,
                       vms_get_error ());
        return -1;
      }
    }
    else if (repo->retention_days) {
      vms_set_error (ENOTSUP, "repository %s asks for a retention of %u "
                     "days, which only S3 Object Lock keeps: not written to "
                     "(refused, not faked)", repo->path, repo->retention_days);
      return -1;
    }
  }
  if (repo->key == NULL && unlock_repo (repo) == -1)
    return -1;
  if (repo->key && strcmp (repo->key->fingerprint_hex, repo->key_fp) != 0)
    repo->key = NULL;
  if (repo->encrypted &&
      (repo->store = storage_crypt_wrap (repo->store, repo->key,
                                         repo->id)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  /* No repository-wide lock: a session lease (issue 12, rule 1). */
  if ((flags & VMS_REPO_WRITE) && repo_start_session (repo) == -1)
    return -1;
  return 0;
}

static vms_repo *
repo_open (const char *dir, unsigned flags, const struct crypt_key *new_key,
           int hide_ids)
{
  vms_repo *repo;
  struct stat st;

  if (dir == NULL || *dir == '\0') {
    dir = getenv (VMS_REPO_DIR_ENV);
    if (dir == NULL || *dir == '\0')
      dir = VMS_REPO_DEFAULT_DIR;
  }
  repo = calloc (1, sizeof *repo);
  if (repo == NULL || (repo->path = strdup (dir)) == NULL) {
    free (repo);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  repo->dirfd = repo->chunks_fd = repo->backups_fd = repo->tmp_fd = -1;
  repo->lock_fd = -1;
  for (size_t i = 0; i < 256; i++)
    repo->chunk_dirs[i] = -1;
  repo->flags = flags;

  if (storage_remote_spec (dir)) {
    if (repo_open_remote (repo, new_key, hide_ids) == -1)
      goto fail;
    return repo;
  }

  repo->dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (repo->dirfd == -1 && errno == ENOENT && (flags & VMS_REPO_CREATE)) {
    if (mkdir_parents (dir) == -1) {
      vms_set_error (errno, "cannot create repository %s: %s", dir,
                     repo_errstr (errno));
      goto fail;
    }
    repo->dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (repo->dirfd == -1) {
    if (errno == ENOENT)
      vms_set_error (ENOENT, "no repository at %s (the directory does not "
                     "exist; a backup creates it, or pass --repo or set %s)",
                     dir, VMS_REPO_DIR_ENV);
    else
      vms_set_error (errno, "cannot open repository %s: %s", dir,
                     repo_errstr (errno));
    goto fail;
  }
  /* Never drop a lock file into a directory that is not a repository and
   * is not about to become one. */
  int have_config = fstatat (repo->dirfd, "config", &st,
                             AT_SYMLINK_NOFOLLOW) == 0;
  if (!have_config) {
    if (errno != ENOENT) {
      vms_set_error (errno, "repository %s: cannot read its config: %s", dir,
                     repo_errstr (errno));
      goto fail;
    }
    if (!(flags & VMS_REPO_CREATE)) {
      vms_set_error (ENOENT, "no repository at %s (no config file; a backup "
                     "creates one, or pass --repo or set %s)", dir,
                     VMS_REPO_DIR_ENV);
      goto fail;
    }
    if (is_skeleton (repo->dirfd, 1) != 1)
      goto not_empty;
  }
  /* A version 2 repository has no writer lock: each writer holds a
   * session lease instead (issue 12; docs/repository-format.md
   * "Concurrency"). Version 1 and a repository being created take the
   * lock file. */
  if ((flags & VMS_REPO_WRITE) && (!have_config || peek_version (repo) < 2) &&
      take_lock (repo) == -1)
    goto fail;
  /* Created meanwhile by another process? */
  if (!have_config &&
      fstatat (repo->dirfd, "config", &st, AT_SYMLINK_NOFOLLOW) == -1) {
    if (is_skeleton (repo->dirfd, 1) != 1)
      goto not_empty;
    if (new_key) {
      repo->encrypted = 1;
      repo->hide_ids = hide_ids;
      snprintf (repo->key_fp, sizeof repo->key_fp, "%s",
                new_key->fingerprint_hex);
    }
    if (create_layout (repo) == -1)
      goto fail;
    repo->key = new_key;
  }
  if (read_config (repo) == -1)
    goto fail;
  repo->admin = (flags & VMS_REPO_ADMIN) != 0;
  if ((flags & VMS_REPO_WRITE) && repo->retention_days) {
    vms_set_error (ENOTSUP, "repository %s asks for a retention of %u days, "
                   "which only S3 Object Lock keeps: not written to (refused, "
                   "not faked)", dir, repo->retention_days);
    goto fail;
  }
  if (new_key == NULL && unlock_repo (repo) == -1)
    goto fail;
  if (repo->key && strcmp (repo->key->fingerprint_hex, repo->key_fp) != 0)
    repo->key = NULL;           /* an existing repository: not this key's */
  if (open_layout (repo) == -1)
    goto fail;
  if ((flags & VMS_REPO_WRITE) && repo->version >= 2) {
    if (repo->lock_fd >= 0) {
      if (ftruncate (repo->lock_fd, 0) == -1) { /* harmless: stale pid text */ }
      close (repo->lock_fd);
      repo->lock_fd = -1;
    }
    if (repo_start_session (repo) == -1)
      goto fail;
  }
  return repo;

 not_empty:
  vms_set_error (ENOTEMPTY, "%s is not empty and is not a vmshadow repository "
                 "(it has no config file); use an empty or new directory", dir);
 fail:
  vms_repo_close (repo);
  return NULL;
}

void
vms_repo_close (vms_repo *repo)
{
  if (repo == NULL)
    return;
  if (repo->lock_fd >= 0) {
    /* The pid is only meaningful while the lock is held. */
    if (ftruncate (repo->lock_fd, 0) == -1) { /* harmless: stale pid text */ }
    close (repo->lock_fd);
  }
  pack_state_free (repo);
  lease_release (repo->session);
  storage_close (repo->store);
  for (size_t i = 0; i < 256; i++)
    if (repo->chunk_dirs[i] >= 0)
      close (repo->chunk_dirs[i]);
  if (repo->chunks_fd >= 0)
    close (repo->chunks_fd);
  if (repo->backups_fd >= 0)
    close (repo->backups_fd);
  if (repo->tmp_fd >= 0)
    close (repo->tmp_fd);
  if (repo->dirfd >= 0)
    close (repo->dirfd);
  free (repo->path);
  free (repo);
}

/* ---- the catalogue ---- */

void
repo_backups_free (struct repo_backup *b, size_t nr)
{
  for (size_t i = 0; i < nr; i++) {
    free (b[i].id);
    free (b[i].error);
  }
  free (b);
}

static int
backup_cmp (const void *a, const void *b)
{
  const struct repo_backup *x = a, *y = b;
  if ((x->error != NULL) != (y->error != NULL))
    return x->error ? -1 : 1;
  if (x->time != y->time)
    return x->time < y->time ? -1 : 1;
  if (x->nsec != y->nsec)
    return x->nsec < y->nsec ? -1 : 1;
  return strcmp (x->id, y->id);
}

DEFINE_VECTOR_TYPE (backup_vector, struct repo_backup);

/* v2: the ids of backups/<id>/manifest objects. */
static int
collect_manifest (void *opaque, const char *name)
{
  string_vector *ids = opaque;
  size_t n = strlen (name);
  const char *id = name + 8;    /* after "backups/" */

  if (n < 8 + 1 + 9 || strcmp (name + n - 9, "/manifest") != 0)
    return 0;
  char *s = strndup (id, n - 8 - 9);
  if (s == NULL)
    return -1;
  if (strchr (s, '/') || !repo_valid_name (s)) {
    free (s);
    return 0;
  }
  if (string_vector_append (ids, s) == -1) {
    free (s);
    return -1;
  }
  return 0;
}

/* Append backup id (taken) with its time, or why its manifest cannot be
 * read. -1 on ENOMEM (error set). */
static int
backup_add (vms_repo *repo, backup_vector *v, char *id)
{
  struct repo_backup b = { .id = id };
  vms_manifest *m = manifest_load (repo, id);

  if (m) {
    b.time = vms_manifest_time (m);
    b.nsec = manifest_time_nsec (m);
    vms_manifest_free (m);
  }
  else if (repo->version >= 2 && vms_get_errno () == ENOENT) {
    /* Listed, then removed by a prune running beside us (issue 12). */
    free (id);
    return 0;
  }
  else if ((b.error = strdup (vms_get_error ())) == NULL)
    goto oom;
  if (backup_vector_append (v, b) == 0)
    return 0;
 oom:
  free (b.id);
  free (b.error);
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

static int
list_backups_v2 (vms_repo *repo, backup_vector *v)
{
  string_vector ids = empty_vector;

  if (storage_list (repo->store, "backups/", collect_manifest, &ids) != 0) {
    vms_set_error (errno, "repository %s: cannot list backups/: %s",
                   repo->path, repo_errstr (errno));
    string_vector_free_all (&ids);
    return -1;
  }
  if (repo->encrypted && repo->key == NULL && repo->hide_ids) {
    string_vector_free_all (&ids);
    vms_set_error (ENOKEY, "repository %s hides its backup ids (its owner "
                   "chose so at init): listing needs its key %s", repo->path,
                   repo->key_fp);
    return -1;
  }
  for (size_t i = 0; i < ids.len; i++) {
    char *id = ids.ptr[i];
    ids.ptr[i] = NULL;
    if (repo->encrypted && repo->key == NULL) {
      /* Without the key: the id the name shows, the time the store gave
       * the manifest (the manifest's own time is sealed). */
      char name[STORAGE_NAME_MAX + 1];
      struct storage_stat st;
      struct repo_backup b = { .id = id };
      snprintf (name, sizeof name, "backups/%s/manifest", id);
      if (storage_stat (repo->store, name, &st) == 0)
        b.time = st.mtime;
      if (backup_vector_append (v, b) == -1) {
        free (id);
        string_vector_free_all (&ids);
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
      continue;
    }
    if (repo->encrypted && repo->hide_ids) {
      /* The name is HMAC(K_name, id): the id is in the sealed manifest,
       * and must map back to the name it was found under. */
      char name[STORAGE_NAME_MAX + 1], want[STORAGE_NAME_MAX + 1];
      CLEANUP_FREE char *text = NULL;
      size_t len;
      vms_manifest *m = NULL;
      snprintf (name, sizeof name, "backups/%s/manifest", id);
      if (storage_get_all (repo->store, name, MAX_MANIFEST_BYTES,
                           (void **) &text, &len) == -1)
        vms_set_error (errno, "backup object %s: %s", name,
                       repo_errstr (errno));
      else if ((m = manifest_parse_version (text, len, NULL, 2)) != NULL &&
               (repo_backup_dir (repo, vms_manifest_backup_id (m), want,
                                 sizeof want) == -1 ||
                strcmp (want + 8, id) != 0)) {
        vms_set_error (EBADMSG, "backup object %s holds the manifest of "
                       "backup %s, which belongs elsewhere", name,
                       vms_manifest_backup_id (m));
        vms_manifest_free (m);
        m = NULL;
      }
      struct repo_backup b = { .id = id };
      if (m) {
        free (id);
        b.id = strdup (vms_manifest_backup_id (m));
        b.time = vms_manifest_time (m);
        b.nsec = manifest_time_nsec (m);
        vms_manifest_free (m);
      }
      else
        b.error = strdup (vms_get_error ());
      if (b.id == NULL || (!m && b.error == NULL) ||
          backup_vector_append (v, b) == -1) {
        free (b.id);
        free (b.error);
        string_vector_free_all (&ids);
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
      continue;
    }
    if (backup_add (repo, v, id) == -1) {
      string_vector_free_all (&ids);
      return -1;
    }
  }
  string_vector_free_all (&ids);
  return 0;
}

int
repo_list_backups (vms_repo *repo, struct repo_backup **out, size_t *nr)
{
  backup_vector v = empty_vector;

  if (repo->version >= 2) {
    if (list_backups_v2 (repo, &v) == -1) {
      repo_backups_free (v.ptr, v.len);
      return -1;
    }
    if (v.len)
      qsort (v.ptr, v.len, sizeof *v.ptr, backup_cmp);
    *out = v.ptr;
    *nr = v.len;
    return 0;
  }

  int fd = openat (repo->backups_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *e;

  if (d == NULL) {
    vms_set_error (errno, "repository %s: cannot read backups/: %s",
                   repo->path, repo_errstr (errno));
    if (fd >= 0) close (fd);
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    if (!repo_valid_name (e->d_name))
      continue;                 /* ".", "..", and nothing we wrote */
    char *id = strdup (e->d_name);
    if (id == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto fail;
    }
    if (backup_add (repo, &v, id) == -1)
      goto fail;
  }
  closedir (d);
  if (v.len)
    qsort (v.ptr, v.len, sizeof *v.ptr, backup_cmp);
  *out = v.ptr;
  *nr = v.len;
  return 0;
 fail:
  closedir (d);
  repo_backups_free (v.ptr, v.len);
  return -1;
}

int
vms_repo_list (vms_repo *repo, char ***ids, size_t *nr_ids)
{
  struct repo_backup *b;
  size_t n;

  if (repo_list_backups (repo, &b, &n) == -1)
    return -1;
  char **out = calloc (n + 1, sizeof *out);
  if (out == NULL) {
    repo_backups_free (b, n);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    out[i] = b[i].id;
    b[i].id = NULL;
  }
  repo_backups_free (b, n);
  *ids = out;
  *nr_ids = n;
  return 0;
}

/* vmshadow upgrade: a version 1 repository moved to version 2 in place
 * (docs/repository-format.md "Upgrade"), under the writer lock. A version
 * 2 view of the same directory (sharing the lock) receives every chunk
 * that a backup references, packed, then every backup written again; then
 * the config is replaced in one atomic rename, the switch; only after it
 * are version 1's files deleted. Until the switch the repository is
 * version 1 for every reader, and a run that stops (an unreadable chunk,
 * a kill) leaves packs and manifests that the next run reuses.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "fs-util.h"
#include "repo-internal.h"
#include "storage.h"
#include "vmshadow/error.h"

/* The config with "version": 2 and "pack_size" (id and times kept). */
static char *
config_v2 (vms_repo *repo, uint32_t pack_size)
{
  CLEANUP_FREE char *text = NULL;
  size_t len;
  char *out = NULL;

  if (repo_read_file (repo->dirfd, "config", 65536, &text, &len) == -1) {
    vms_set_error (errno, "repository %s: cannot read its config: %s",
                   repo->path, repo_errstr (errno));
    return NULL;
  }
  json_object *root = json_tokener_parse (text);
  if (root == NULL || !json_object_is_type (root, json_type_object) ||
      json_object_object_add (root, "version", json_object_new_int (2)) != 0 ||
      json_object_object_add (root, "pack_size",
                              json_object_new_int64 (pack_size)) != 0) {
    json_object_put (root);
    vms_set_error (EBADMSG, "repository %s: cannot rewrite its config",
                   repo->path);
    return NULL;
  }
  const char *s = json_object_to_json_string_ext (root, JSON_C_TO_STRING_PRETTY
                                                  | JSON_C_TO_STRING_SPACED);
  if (s == NULL || asprintf (&out, "%s\n", s) == -1)
    out = NULL;
  json_object_put (root);
  if (out == NULL)
    vms_set_error (ENOMEM, "out of memory");
  return out;
}

/* Version 1's files of a backup that has its version 2 manifest. */
static int
remove_v1_backup_files (vms_repo *repo, int backups_fd, const char *id)
{
  CLEANUP_CLOSE int fd = vms_open_beneath (backups_fd, id,
                                           O_RDONLY | O_DIRECTORY, 0);
  if (fd == -1)
    return errno == ENOENT ? 0 : -1;
  if ((unlinkat (fd, "manifest.json", 0) == -1 && errno != ENOENT) ||
      (unlinkat (fd, "components.json", 0) == -1 && errno != ENOENT) ||
      vms_rmtree_at (fd, "metadata") == -1 || vms_rmtree_at (fd, "indexes") == -1)
    return -1;
  return 0;
}

/* After the switch: chunks/ and every backup's version 1 files. */
static int
remove_v1 (vms_repo *repo, char **ids, size_t n)
{
  CLEANUP_CLOSE int bfd = vms_open_beneath (repo->dirfd, "backups",
                                            O_RDONLY | O_DIRECTORY, 0);
  for (size_t i = 0; bfd >= 0 && i < n; i++)
    if (remove_v1_backup_files (repo, bfd, ids[i]) == -1)
      goto fail;
  if (vms_rmtree_at (repo->dirfd, "chunks") == -1)
    goto fail;
  return 0;
 fail:
  vms_set_error (errno, "repository %s is version 2 now, but removing "
                 "version 1's files failed: %s (run vmshadow upgrade again "
                 "to finish)", repo->path, repo_errstr (errno));
  return -1;
}

static void
free_ids (char **ids, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free (ids[i]);
  free (ids);
}

int
vms_repo_upgrade (vms_repo *repo, vms_repo_report_fn report, void *opaque)
{
  vms_repo v2 = { 0 };
  char **ids = NULL;
  size_t n = 0;
  uint8_t *buf = NULL;
  CLEANUP_FREE char *cfg = NULL;
  int r = -1;
  struct stat st;

  if (repo_need_write (repo, "upgrade") == -1)
    return -1;
  if (repo->version >= 2) {
    /* Done, or interrupted after the switch: finish the clean-up. */
    if (fstatat (repo->dirfd, "chunks", &st, AT_SYMLINK_NOFOLLOW) == -1) {
      vms_set_error (EINVAL, "repository %s is format version %d already",
                     repo->path, repo->version);
      return -1;
    }
    if (vms_repo_list (repo, &ids, &n) == -1)
      return -1;
    r = remove_v1 (repo, ids, n) == -1 ? -1 : (int) n;
    free_ids (ids, n);
    return r;
  }

  /* The version 2 view: same directory, same lock. */
  v2.path = repo->path;
  v2.dirfd = repo->dirfd;
  v2.chunks_fd = v2.backups_fd = -1;
  v2.tmp_fd = repo->tmp_fd;
  v2.lock_fd = repo->lock_fd;
  for (size_t i = 0; i < 256; i++)
    v2.chunk_dirs[i] = -1;
  v2.version = 2;
  v2.pack_size = PACK_SIZE_DEFAULT;
  const char *ps = getenv ("VMSHADOW_REPO_PACK_SIZE");
  if (ps && *ps) {
    unsigned long long x = strtoull (ps, NULL, 10);
    if (x >= PACK_SIZE_MIN && x <= PACK_SIZE_MAX)
      v2.pack_size = (uint32_t) x;
  }
  v2.store = storage_local_open (repo->dirfd, repo->path, 1);
  if (v2.store == NULL)
    return -1;
  if ((buf = malloc (VMS_CHUNK_SIZE)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }

  /* Every backup readable first, as gc asks: a backup that cannot be read
   * would be lost at the switch. */
  struct repo_backup *b;
  size_t nb;
  if (repo_list_backups (repo, &b, &nb) == -1)
    goto out;
  for (size_t i = 0; i < nb; i++)
    if (b[i].error) {
      vms_set_error (EBADMSG, "upgrade stopped, the repository is still "
                     "version 1: %s; repair or remove that backup first",
                     b[i].error);
      repo_backups_free (b, nb);
      goto out;
    }
  repo_backups_free (b, nb);
  if (vms_repo_list (repo, &ids, &n) == -1)
    goto out;

  /* 1. The chunks, packed. */
  for (size_t i = 0; i < n; i++) {
    CLEANUP (vms_manifest_free) vms_manifest *m = manifest_load (repo, ids[i]);
    if (m == NULL)
      goto stopped;
    for (size_t f = 0; f < vms_manifest_file_count (m); f++) {
      CLEANUP (vms_index_free) vms_index *idx =
        vms_manifest_load_index (repo, m, f);
      if (idx == NULL)
        goto stopped;
      for (uint64_t c = 0; c < vms_index_chunk_count (idx); c++) {
        const struct vms_digest *d = vms_index_get (idx, c);
        struct pack_loc loc;
        struct vms_digest got;
        size_t len = vms_index_chunk_len (idx, c);
        if (vms_digest_is_zero (d))
          continue;
        int have = pack_lookup (&v2, d, &loc);
        if (have == -1)
          goto stopped;
        if (have == 1 && loc.plen == len)
          continue;
        if (chunk_store_read (repo, d, buf, len, 1) == -1) {
          vms_set_error (vms_get_errno (), "backup %s, file %zu, offset %llu: "
                         "%s", ids[i], f,
                         (unsigned long long) c * VMS_CHUNK_SIZE,
                         vms_get_error ());
          goto stopped;
        }
        if (vms_repo_chunk_put (&v2, buf, len, &got, NULL) == -1)
          goto stopped;
      }
    }
  }
  if (pack_flush (&v2) == -1)
    goto stopped;

  /* 2. The backups, each with its manifest last. */
  for (size_t i = 0; i < n; i++) {
    CLEANUP (vms_manifest_free) vms_manifest *m = vms_manifest_open (repo, ids[i]);
    vms_index **idx;
    size_t nf;
    if (m == NULL)
      goto stopped;
    nf = vms_manifest_file_count (m);
    idx = calloc (nf + 1, sizeof *idx);
    if (idx == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto stopped;
    }
    int ok = 1;
    for (size_t f = 0; ok && f < nf; f++)
      ok = (idx[f] = vms_manifest_load_index (repo, m, f)) != NULL;
    if (ok)
      ok = manifest_store_v2 (&v2, m, idx) == 0;
    for (size_t f = 0; f < nf; f++)
      vms_index_free (idx[f]);
    free (idx);
    if (!ok)
      goto stopped;
    repo_say (report, opaque, "upgraded %s", ids[i]);
  }

  /* 3. The switch: one atomic rename of the config. */
  if ((cfg = config_v2 (repo, v2.pack_size)) == NULL ||
      vms_write_file_atomic (repo->dirfd, "config", cfg, strlen (cfg),
                             0600) == -1)
    goto stopped;

  /* The handle is version 2's from here on. */
  repo->version = 2;
  repo->pack_size = v2.pack_size;
  repo->store = v2.store;
  v2.store = NULL;
  repo->packs = v2.packs;
  v2.packs = NULL;
  for (size_t i = 0; i < 256; i++)
    if (repo->chunk_dirs[i] >= 0) {
      close (repo->chunk_dirs[i]);
      repo->chunk_dirs[i] = -1;
    }
  if (repo->chunks_fd >= 0)
    close (repo->chunks_fd);
  if (repo->backups_fd >= 0)
    close (repo->backups_fd);
  repo->chunks_fd = repo->backups_fd = -1;

  /* 4. Version 1's files. */
  if (remove_v1 (repo, ids, n) == -1)
    goto out;
  r = (int) n;
  goto out;

 stopped:
  vms_set_error (vms_get_errno (), "upgrade stopped, the repository is still "
                 "version 1: %s", vms_get_error ());
 out:
  free (buf);
  free_ids (ids, n);
  v2.path = NULL;
  {
    /* Free only what the view owns. */
    vms_repo tmp = v2;
    pack_state_free (&tmp);
    storage_close (tmp.store);
  }
  return r;
}

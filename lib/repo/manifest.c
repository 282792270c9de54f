/* Backups: writing one (a transaction that becomes visible by one rename)
 * and reading committed ones (manifest, documents, indexes). A manifest is
 * untrusted input: manifest_parse checks every field, and the only names it
 * lets through to the file system pass repo_valid_name, so nothing in a
 * manifest can point outside backups/<id>/ (docs/repository-format.md
 * "Backups").
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "fs-util.h"
#include "log.h"
#include "repo-internal.h"
#include "storage.h"
#include "vector.h"
#include "vmshadow/error.h"

DEFINE_VECTOR_TYPE (manifest_file_vector, struct manifest_file);

struct vms_manifest {
  int version;                  /* MANIFEST_VERSION, or 2 in a v2 repository */
  char *id;
  int64_t created;
  int32_t created_nsec;         /* orders backups of one second */
  manifest_file_vector files;
  int has_components;
  size_t nr_metadata;
  json_object *attrs;           /* an object, or NULL */
  /* Loaded by vms_manifest_open only. */
  vms_document *components;
  vms_document **metadata;
};

static void
manifest_file_clear (struct manifest_file *f)
{
  free (f->writer_id);
  free (f->component);
  free (f->path);
  free (f->format);
  free (f->checkpoint);
  free (f->index);
}

void
vms_manifest_free (vms_manifest *m)
{
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->files.len; i++)
    manifest_file_clear (&m->files.ptr[i]);
  manifest_file_vector_reset (&m->files);
  json_object_put (m->attrs);
  vms_document_free (m->components);
  if (m->metadata)
    for (size_t i = 0; i < m->nr_metadata; i++)
      vms_document_free (m->metadata[i]);
  free (m->metadata);
  free (m->id);
  free (m);
}

/* ---- formatting ---- */

static int
add (json_object *o, const char *key, json_object *v)
{
  if (v == NULL || json_object_object_add (o, key, v) != 0) {
    json_object_put (v);
    return -1;
  }
  return 0;
}

/* A NULL value is JSON null. */
static int
add_opt (json_object *o, const char *key, const char *s)
{
  if (s == NULL)
    return json_object_object_add (o, key, NULL) == 0 ? 0 : -1;
  return add (o, key, json_object_new_string (s));
}

/* The manifest's time: when the backup was committed. */
static void
manifest_stamp (vms_manifest *m)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  m->created = (int64_t) ts.tv_sec;
  m->created_nsec = (int32_t) ts.tv_nsec;
}

char *
manifest_format (const vms_manifest *m)
{
  json_object *root = json_object_new_object ();
  json_object *files = json_object_new_array ();
  char *text = NULL;

  if (root == NULL || files == NULL) {
    json_object_put (root);
    json_object_put (files);
    goto nomem;
  }
  if (add (root, "format", json_object_new_string (MANIFEST_FORMAT)) == -1 ||
      add (root, "version", json_object_new_int (m->version ? m->version
                                                 : MANIFEST_VERSION)) == -1 ||
      add (root, "backup_id", json_object_new_string (m->id)) == -1 ||
      add (root, "created", json_object_new_int64 (m->created)) == -1 ||
      add (root, "created_nsec", json_object_new_int (m->created_nsec)) == -1 ||
      add (root, "chunk_size", json_object_new_int64 (VMS_CHUNK_SIZE)) == -1 ||
      add (root, "components", json_object_new_boolean (m->has_components)) == -1 ||
      add (root, "metadata_count",
           json_object_new_int64 ((int64_t) m->nr_metadata)) == -1) {
    json_object_put (files);
    goto fail;
  }
  if (add (root, "files", files) == -1)
    goto fail;
  for (size_t i = 0; i < m->files.len; i++) {
    const struct manifest_file *f = &m->files.ptr[i];
    json_object *o = json_object_new_object ();
    if (o == NULL || json_object_array_add (files, o) != 0) {
      json_object_put (o);
      goto fail;
    }
    if (add (o, "writer_id", json_object_new_string (f->writer_id)) == -1 ||
        add (o, "component", json_object_new_string (f->component)) == -1 ||
        add (o, "path", json_object_new_string (f->path)) == -1 ||
        add (o, "kind", json_object_new_string (vms_file_kind_name (f->kind))) == -1 ||
        add_opt (o, "format", f->format) == -1 ||
        add (o, "size", json_object_new_int64 ((int64_t) f->size)) == -1 ||
        add (o, "index", json_object_new_string (f->index)) == -1 ||
        add (o, "bytes_read", json_object_new_int64 ((int64_t) f->bytes_read)) == -1 ||
        add (o, "bytes_stored", json_object_new_int64 ((int64_t) f->bytes_stored)) == -1 ||
        add_opt (o, "checkpoint", f->checkpoint) == -1)
      goto fail;
  }
  if (add (root, "attrs", m->attrs ? json_object_get (m->attrs)
           : json_object_new_object ()) == -1)
    goto fail;

  const char *s = json_object_to_json_string_ext (root,
                                                  JSON_C_TO_STRING_PRETTY |
                                                  JSON_C_TO_STRING_SPACED |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
  if (s == NULL || asprintf (&text, "%s\n", s) == -1)
    text = NULL;
  json_object_put (root);
  if (text == NULL)
    goto nomem;
  return text;

 fail:
  json_object_put (root);
 nomem:
  vms_set_error (ENOMEM, "out of memory formatting a manifest");
  return NULL;
}

/* ---- parsing ---- */

static json_object *
get (json_object *o, const char *key)
{
  json_object *v;
  return json_object_object_get_ex (o, key, &v) ? v : NULL;
}

/* A required (or with optional, a null-able) string without NUL bytes. */
static int
get_string (json_object *o, const char *key, int optional, char **out,
            const char *what)
{
  json_object *v = get (o, key);

  *out = NULL;
  if (v == NULL && optional)
    return 0;
  if (v == NULL || !json_object_is_type (v, json_type_string)) {
    vms_set_error (EBADMSG, "%s: \"%s\" is %s", what, key,
                   v == NULL ? "missing"
                   : optional ? "not a string or null" : "not a string");
    return -1;
  }
  const char *s = json_object_get_string (v);
  size_t n = (size_t) json_object_get_string_len (v);
  if (strlen (s) != n || n > MAX_MANIFEST_STRING) {
    vms_set_error (EBADMSG, "%s: \"%s\" %s", what, key,
                   n > MAX_MANIFEST_STRING ? "is too long"
                   : "contains a NUL character");
    return -1;
  }
  *out = strdup (s);
  if (*out == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

static int
get_u64 (json_object *o, const char *key, uint64_t max, uint64_t *out,
         const char *what)
{
  json_object *v = get (o, key);
  int64_t n;

  if (v == NULL || !json_object_is_type (v, json_type_int)) {
    vms_set_error (EBADMSG, "%s: \"%s\" is %s", what, key,
                   v == NULL ? "missing" : "not an integer");
    return -1;
  }
  errno = 0;
  n = json_object_get_int64 (v);
  if (errno != 0 || n < 0 || (uint64_t) n > max) {
    vms_set_error (EBADMSG, "%s: \"%s\" is out of range (0 to %" PRIu64 ")",
                   what, key, max);
    return -1;
  }
  *out = (uint64_t) n;
  return 0;
}

static int
parse_file (json_object *o, struct manifest_file *f, const char *what)
{
  CLEANUP_FREE char *kind = NULL;

  if (!json_object_is_type (o, json_type_object)) {
    vms_set_error (EBADMSG, "%s is not an object", what);
    return -1;
  }
  if (get_string (o, "writer_id", 0, &f->writer_id, what) == -1 ||
      get_string (o, "component", 0, &f->component, what) == -1 ||
      get_string (o, "path", 0, &f->path, what) == -1 ||
      get_string (o, "kind", 0, &kind, what) == -1 ||
      get_string (o, "format", 1, &f->format, what) == -1 ||
      get_string (o, "index", 0, &f->index, what) == -1 ||
      get_string (o, "checkpoint", 1, &f->checkpoint, what) == -1 ||
      get_u64 (o, "size", MAX_FILE_SIZE, &f->size, what) == -1 ||
      get_u64 (o, "bytes_read", INT64_MAX, &f->bytes_read, what) == -1 ||
      get_u64 (o, "bytes_stored", INT64_MAX, &f->bytes_stored, what) == -1)
    return -1;
  if (strcmp (kind, "disk") == 0)
    f->kind = VMS_FILE_DISK;
  else if (strcmp (kind, "plain") == 0)
    f->kind = VMS_FILE_PLAIN;
  else {
    vms_set_error (EBADMSG, "%s: unknown kind \"%s\"", what, kind);
    return -1;
  }
  size_t n = strlen (f->index);
  if (!repo_valid_name (f->index) || n < 5 ||
      strcmp (f->index + n - 4, ".idx") != 0) {
    vms_set_error (EBADMSG, "%s: index name \"%s\" is not allowed "
                   "(expected NAME.idx with no '/' and no leading '.')",
                   what, f->index);
    return -1;
  }
  return 0;
}

vms_manifest *
manifest_parse (const char *text, size_t len, const char *backup_id)
{
  return manifest_parse_version (text, len, backup_id, MANIFEST_VERSION);
}

vms_manifest *
manifest_parse_version (const char *text, size_t len, const char *backup_id,
                        int version)
{
  json_tokener *tok;
  json_object *root, *v, *files;
  vms_manifest *m = NULL;
  char what[64 + MAX_BACKUP_ID_LEN];
  uint64_t u;

  if (backup_id)
    snprintf (what, sizeof what, "backup %s: manifest", backup_id);
  else
    snprintf (what, sizeof what, "manifest");
  if (len > MAX_MANIFEST_BYTES || len > INT_MAX) {
    vms_set_error (EFBIG, "%s is %zu bytes, more than the %u allowed", what,
                   len, MAX_MANIFEST_BYTES);
    return NULL;
  }
  if (len == 0) {
    vms_set_error (EBADMSG, "%s is empty", what);
    return NULL;
  }
  if (memchr (text, '\0', len) != NULL) {
    vms_set_error (EBADMSG, "%s is not JSON text (it contains a NUL byte)", what);
    return NULL;
  }
  tok = json_tokener_new_ex (32);
  if (tok == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  root = json_tokener_parse_ex (tok, text, (int) len);
  enum json_tokener_error jerr = json_tokener_get_error (tok);
  size_t used = json_tokener_get_parse_end (tok);
  json_tokener_free (tok);
  if (root == NULL || jerr != json_tokener_success) {
    json_object_put (root);
    vms_set_error (EBADMSG, "%s is not valid JSON: %s", what,
                   jerr == json_tokener_continue ? "it ends too early (truncated?)"
                   : json_tokener_error_desc (jerr));
    return NULL;
  }
  for (size_t i = used; i < len; i++)
    if (!strchr (" \t\r\n", text[i])) {
      vms_set_error (EBADMSG, "%s is not valid JSON: garbage after the end at "
                     "byte %zu", what, i);
      goto fail;
    }
  if (!json_object_is_type (root, json_type_object)) {
    vms_set_error (EBADMSG, "%s is not a JSON object", what);
    goto fail;
  }
  v = get (root, "format");
  if (v == NULL || !json_object_is_type (v, json_type_string) ||
      strcmp (json_object_get_string (v), MANIFEST_FORMAT) != 0) {
    vms_set_error (EBADMSG, "%s: \"format\" is not \"%s\"", what, MANIFEST_FORMAT);
    goto fail;
  }
  if (get_u64 (root, "version", UINT32_MAX, &u, what) == -1)
    goto fail;
  if (u != (uint64_t) version) {
    vms_set_error (EBADMSG, "%s has version %" PRIu64 "; this repository's "
                   "manifests are version %d", what, u, version);
    goto fail;
  }
  m = calloc (1, sizeof *m);
  if (m == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto fail;
  }
  m->version = version;
  if (get_string (root, "backup_id", 0, &m->id, what) == -1)
    goto fail;
  if (!repo_valid_name (m->id)) {
    vms_set_error (EBADMSG, "%s: backup id \"%s\" is not allowed", what, m->id);
    goto fail;
  }
  if (backup_id && strcmp (m->id, backup_id) != 0) {
    vms_set_error (EBADMSG, "%s names backup \"%s\"", what, m->id);
    goto fail;
  }
  snprintf (what, sizeof what, "backup %s: manifest", m->id);
  /* At most 9999-12-31T23:59:59Z: a time every calendar can show
   * (issue 9, item 9). */
  if (get_u64 (root, "created", MAX_MANIFEST_CREATED, &u, what) == -1)
    goto fail;
  m->created = (int64_t) u;
  /* Optional (older manifests have none): two backups of one second
   * still order by when they were made (prune --keep-last). */
  if (get (root, "created_nsec") != NULL) {
    if (get_u64 (root, "created_nsec", 999999999, &u, what) == -1)
      goto fail;
    m->created_nsec = (int32_t) u;
  }
  if (get_u64 (root, "chunk_size", UINT32_MAX, &u, what) == -1)
    goto fail;
  if (u != VMS_CHUNK_SIZE) {
    vms_set_error (EBADMSG, "%s has chunks of %" PRIu64 " bytes; this "
                   "vmshadow uses chunks of %u bytes", what, u, VMS_CHUNK_SIZE);
    goto fail;
  }
  v = get (root, "components");
  if (v == NULL || !json_object_is_type (v, json_type_boolean)) {
    vms_set_error (EBADMSG, "%s: \"components\" is not true or false", what);
    goto fail;
  }
  m->has_components = json_object_get_boolean (v);
  if (get_u64 (root, "metadata_count", MAX_MANIFEST_METADATA, &u, what) == -1)
    goto fail;
  m->nr_metadata = (size_t) u;
  files = get (root, "files");
  if (files == NULL || !json_object_is_type (files, json_type_array)) {
    vms_set_error (EBADMSG, "%s: \"files\" is not an array", what);
    goto fail;
  }
  size_t n = json_object_array_length (files);
  if (n > MAX_MANIFEST_FILES) {
    vms_set_error (EBADMSG, "%s lists %zu files, more than the %d allowed",
                   what, n, MAX_MANIFEST_FILES);
    goto fail;
  }
  for (size_t i = 0; i < n; i++) {
    struct manifest_file f = { 0 };
    char fwhat[sizeof what + 32];
    snprintf (fwhat, sizeof fwhat, "%s: file %zu", what, i);
    if (parse_file (json_object_array_get_idx (files, i), &f, fwhat) == -1 ||
        manifest_file_vector_append (&m->files, f) == -1) {
      manifest_file_clear (&f);
      goto fail;
    }
  }
  v = get (root, "attrs");
  if (v != NULL && !json_object_is_type (v, json_type_object) &&
      !json_object_is_type (v, json_type_null)) {
    vms_set_error (EBADMSG, "%s: \"attrs\" is not an object", what);
    goto fail;
  }
  if (v && json_object_is_type (v, json_type_object) &&
      json_object_object_length (v) > 0)
    m->attrs = json_object_get (v);
  json_object_put (root);
  return m;

 fail:
  vms_manifest_free (m);
  json_object_put (root);
  return NULL;
}

/* ---- reading committed backups ---- */

static int
check_id (vms_repo *repo, const char *backup_id)
{
  if (!repo_valid_name (backup_id)) {
    vms_set_error (EINVAL, "\"%s\" is not a valid backup id (1 to %d "
                   "characters of A-Z a-z 0-9 . _ : -, not starting with '.')",
                   backup_id ? backup_id : "(null)", MAX_BACKUP_ID_LEN);
    return -1;
  }
  return 0;
}

/* The names of a backup's files: v1's in backups/<id>/, v2's objects
 * backups/<id>/<name> (docs/repository-format.md "Version 2"). */
static const char *
backup_file_name (const vms_repo *repo, const char *v1, char *buf, size_t n)
{
  unsigned i;

  if (repo->version < 2)
    return v1;
  if (strcmp (v1, "manifest.json") == 0)
    return "manifest";
  if (strcmp (v1, "components.json") == 0)
    return "doc-components";
  if (sscanf (v1, "metadata/%u.json", &i) == 1) {
    snprintf (buf, n, "doc-metadata-%u", i);
    return buf;
  }
  if (strncmp (v1, "indexes/", 8) == 0)
    return v1 + 8;              /* file-<n>.idx: the manifest's own name */
  return v1;
}

/* Read the file (v1 name) of backup id, at most max bytes. As
 * repo_read_file: -1 with errno and no message. */
static int
backup_read (vms_repo *repo, const char *id, const char *v1, size_t max,
             char **buf, size_t *len)
{
  char name[STORAGE_NAME_MAX + 64], b[64];
  const char *file = backup_file_name (repo, v1, b, sizeof b);

  if (repo->version >= 2) {
    char dir[STORAGE_NAME_MAX + 1];
    if (repo_backup_dir (repo, id, dir, sizeof dir) == -1)
      return -1;
    snprintf (name, sizeof name, "%s/%s", dir, file);
    return storage_get_all (repo->store, name, max, (void **) buf, len);
  }
  snprintf (name, sizeof name, "%s/%s", id, file);
  return repo_read_file (repo->backups_fd, name, max, buf, len);
}

/* 0 if backup id has a directory (v1) or any object (v2). */
static int
backup_exists (vms_repo *repo, const char *id)
{
  struct stat st;
  char name[STORAGE_NAME_MAX + 64];

  if (repo->version < 2)
    return fstatat (repo->backups_fd, id, &st, AT_SYMLINK_NOFOLLOW);
  char dir[STORAGE_NAME_MAX + 1];
  if (repo_backup_dir (repo, id, dir, sizeof dir) == -1)
    return -1;
  snprintf (name, sizeof name, "%s/manifest", dir);
  struct storage_stat sst;
  return storage_stat (repo->store, name, &sst);
}

/* ---- notes beside a backup (issue 16) ---- */

static int
note_name_ok (const char *name)
{
  size_t n = name ? strlen (name) : 0;
  if (n == 0 || n > 32)
    return 0;
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
      return 0;
  return 1;
}

int
vms_repo_note_put (vms_repo *repo, const char *backup_id, const char *name,
                   const char *text)
{
  char obj[STORAGE_NAME_MAX + 64];
  size_t len = text ? strlen (text) : 0;
  json_object *j;

  if (!note_name_ok (name)) {
    vms_set_error (EINVAL, "note \"%s\": not a valid note name",
                   name ? name : "(null)");
    return -1;
  }
  if (check_id (repo, backup_id) == -1)
    return -1;
  if (len == 0 || len > VMS_REPO_NOTE_MAX ||
      (j = json_tokener_parse (text)) == NULL) {
    vms_set_error (EINVAL, "note %s of backup %s: not JSON of at most %u "
                   "bytes", name, backup_id, VMS_REPO_NOTE_MAX);
    return -1;
  }
  json_object_put (j);
  if (backup_exists (repo, backup_id) == -1) {
    vms_set_error (ENOENT, "no backup \"%s\" in repository %s", backup_id,
                   repo->path);
    return -1;
  }
  if (repo->version >= 2) {
    /* The backup's own object prefix (hashed where ids are hidden, R28),
     * so prune deletes the note with it. */
    char dir[STORAGE_NAME_MAX + 1];
    if (repo_backup_dir (repo, backup_id, dir, sizeof dir) == -1) {
      vms_set_error (errno, "repository %s: note %s of backup %s: %s",
                     repo->path, name, backup_id, repo_errstr (errno));
      return -1;
    }
    snprintf (obj, sizeof obj, "%s/note-%s", dir, name);
    if (repo->store == NULL || storage_put (repo->store, obj, text, len, 0) == -1) {
      int e = repo->store ? errno : EBADF;
      vms_set_error (e, "repository %s: cannot store note %s of backup %s: %s",
                     repo->path, name, backup_id, repo_errstr (e));
      return -1;
    }
    return 0;
  }
  CLEANUP_CLOSE int dfd = vms_open_beneath (repo->backups_fd, backup_id,
                                            O_RDONLY | O_DIRECTORY, 0);
  snprintf (obj, sizeof obj, "note-%s.json", name);
  if (dfd == -1 || vms_write_file_atomic (dfd, obj, text, len, 0600) == -1) {
    int e = errno;
    vms_set_error (e, "repository %s: cannot write note %s of backup %s: %s",
                   repo->path, name, backup_id, repo_errstr (e));
    return -1;
  }
  return 0;
}

char *
vms_repo_note_get (vms_repo *repo, const char *backup_id, const char *name)
{
  char file[64];
  char *buf = NULL;
  size_t len;
  json_object *j;

  if (!note_name_ok (name) || check_id (repo, backup_id) == -1) {
    vms_set_error (EINVAL, "note \"%s\" of backup \"%s\": not a valid name",
                   name ? name : "(null)", backup_id ? backup_id : "(null)");
    return NULL;
  }
  snprintf (file, sizeof file, repo->version >= 2 ? "note-%s" : "note-%s.json",
            name);
  if (backup_read (repo, backup_id, file, VMS_REPO_NOTE_MAX, &buf, &len) == -1) {
    int e = errno;
    vms_set_error (e, "backup %s: cannot read note %s: %s", backup_id, name,
                   repo_errstr (e));
    return NULL;
  }
  /* What comes from the repository is checked like any document. */
  if (memchr (buf, '\0', len) || (j = json_tokener_parse (buf)) == NULL) {
    free (buf);
    vms_set_error (EBADMSG, "backup %s: note %s is not JSON", backup_id, name);
    return NULL;
  }
  json_object_put (j);
  return buf;
}

vms_manifest *
manifest_load (vms_repo *repo, const char *backup_id)
{
  CLEANUP_FREE char *text = NULL;
  size_t len;

  if (check_id (repo, backup_id) == -1)
    return NULL;
  if (backup_read (repo, backup_id, "manifest.json", MAX_MANIFEST_BYTES,
                   &text, &len) == -1) {
    int e = errno;
    if (e == ENOENT && backup_exists (repo, backup_id) == -1)
      vms_set_error (ENOENT, "no backup \"%s\" in repository %s", backup_id,
                     repo->path);
    else if (e == EFBIG)
      vms_set_error (EFBIG, "backup %s: manifest is %zu bytes, more than the "
                     "%u allowed", backup_id, len, MAX_MANIFEST_BYTES);
    else if (e == ENOENT)
      vms_set_error (EBADMSG, "backup %s: its manifest is missing", backup_id);
    else
      vms_set_error (e, "backup %s: cannot read its manifest: %s", backup_id,
                     repo_errstr (e));
    return NULL;
  }
  return manifest_parse_version (text, len, backup_id,
                                 repo->version >= 2 ? 2 : MANIFEST_VERSION);
}

static vms_document *
load_document (vms_repo *repo, const char *backup_id, const char *file)
{
  CLEANUP_FREE char *text = NULL;
  size_t len;

  if (backup_read (repo, backup_id, file, MAX_MANIFEST_BYTES, &text,
                   &len) == -1) {
    vms_set_error (errno, "backup %s: cannot read %s: %s", backup_id, file,
                   repo_errstr (errno));
    return NULL;
  }
  vms_document *doc = vms_document_parse (text, len);
  if (doc == NULL)
    vms_set_error (EBADMSG, "backup %s: %s: %s", backup_id, file,
                   vms_get_error ());
  return doc;
}

vms_manifest *
vms_manifest_open (vms_repo *repo, const char *backup_id)
{
  vms_manifest *m = manifest_load (repo, backup_id);

  if (m == NULL)
    return NULL;
  if (m->has_components &&
      (m->components = load_document (repo, backup_id, "components.json")) == NULL)
    goto fail;
  if (m->nr_metadata) {
    m->metadata = calloc (m->nr_metadata, sizeof *m->metadata);
    if (m->metadata == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto fail;
    }
    for (size_t i = 0; i < m->nr_metadata; i++) {
      char file[64];
      snprintf (file, sizeof file, "metadata/%zu.json", i);
      if ((m->metadata[i] = load_document (repo, backup_id, file)) == NULL)
        goto fail;
      if (vms_document_kind (m->metadata[i]) != VMS_DOC_METADATA) {
        vms_set_error (EBADMSG, "backup %s: %s is not a writer metadata document",
                       backup_id, file);
        goto fail;
      }
    }
  }
  if (m->components && vms_document_kind (m->components) != VMS_DOC_COMPONENTS) {
    vms_set_error (EBADMSG, "backup %s: components.json is not a backup "
                   "components document", backup_id);
    goto fail;
  }
  return m;
 fail:
  vms_manifest_free (m);
  return NULL;
}

const char *
vms_manifest_backup_id (const vms_manifest *m)
{
  return m->id;
}

int64_t
vms_manifest_time (const vms_manifest *m)
{
  return m->created;
}

int32_t
manifest_time_nsec (const vms_manifest *m)
{
  return m->created_nsec;
}

const vms_document *
vms_manifest_components (const vms_manifest *m)
{
  return m->components;
}

size_t
vms_manifest_metadata_count (const vms_manifest *m)
{
  return m->metadata ? m->nr_metadata : 0;
}

const vms_document *
vms_manifest_metadata (const vms_manifest *m, size_t i)
{
  return m->metadata && i < m->nr_metadata ? m->metadata[i] : NULL;
}

const char *
vms_manifest_attrs (const vms_manifest *m)
{
  if (m->attrs == NULL)
    return "{}";
  return json_object_to_json_string_ext (m->attrs, JSON_C_TO_STRING_PLAIN |
                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}

const char *
vms_manifest_job (const vms_manifest *m)
{
  json_object *v;

  if (m->attrs && json_object_object_get_ex (m->attrs, "job", &v) &&
      json_object_is_type (v, json_type_string))
    return json_object_get_string (v);
  return NULL;
}

size_t
vms_manifest_file_count (const vms_manifest *m)
{
  return m->files.len;
}

const struct manifest_file *
manifest_file_at (const vms_manifest *m, size_t i)
{
  return i < m->files.len ? &m->files.ptr[i] : NULL;
}

size_t
manifest_metadata_expected (const vms_manifest *m)
{
  return m->nr_metadata;
}

int
manifest_has_components (const vms_manifest *m)
{
  return m->has_components;
}

int
vms_manifest_file (const vms_manifest *m, size_t i,
                   struct vms_stored_file *file, uint64_t *size)
{
  if (i >= m->files.len) {
    vms_set_error (EINVAL, "backup %s has no file %zu (it has %zu)", m->id, i,
                   m->files.len);
    return -1;
  }
  const struct manifest_file *f = &m->files.ptr[i];
  file->writer_id = f->writer_id;
  file->component = f->component;
  file->path = f->path;
  file->kind = f->kind;
  file->format = f->format;
  file->bytes_read = f->bytes_read;
  file->bytes_stored = f->bytes_stored;
  file->checkpoint = f->checkpoint;
  if (size)
    *size = f->size;
  return 0;
}

int
vms_manifest_find_file (const vms_manifest *m, const char *component,
                        const char *path)
{
  for (size_t i = 0; i < m->files.len && i <= INT_MAX; i++)
    if (strcmp (m->files.ptr[i].component, component) == 0 &&
        strcmp (m->files.ptr[i].path, path) == 0)
      return (int) i;
  return -1;
}

vms_index *
vms_manifest_load_index (vms_repo *repo, const vms_manifest *m, size_t i)
{
  char name[2 * MAX_BACKUP_ID_LEN + 32], what[MAX_BACKUP_ID_LEN + 48];
  CLEANUP_FREE char *buf = NULL;
  int v2 = repo->version >= 2;
  size_t len;

  if (i >= m->files.len) {
    vms_set_error (EINVAL, "backup %s has no file %zu (it has %zu)", m->id, i,
                   m->files.len);
    return NULL;
  }
  const struct manifest_file *f = &m->files.ptr[i];
  snprintf (what, sizeof what, "backup %s: index %zu", m->id, i);
  /* Both names passed repo_valid_name: the path stays in backups/<id>/. */
  snprintf (name, sizeof name, "indexes/%s", f->index);
  if (backup_read (repo, m->id, name, (size_t) MAX_INDEX_BYTES, &buf,
                   &len) == -1) {
    vms_set_error (errno == ENOENT ? EBADMSG : errno, "%s (%s) %s", what,
                   f->index, errno == ENOENT ? "is missing"
                   : repo_errstr (errno));
    return NULL;
  }
  vms_index *idx = index_parse_version (buf, len, v2 ? INDEX_VERSION_2
                                        : INDEX_VERSION, what);
  if (idx && vms_index_size (idx) != f->size) {
    vms_set_error (EBADMSG, "%s describes %" PRIu64 " bytes, the manifest says %"
                   PRIu64, what, vms_index_size (idx), f->size);
    vms_index_free (idx);
    return NULL;
  }
  return idx;
}

/* ---- upgrade (upgrade.c) ---- */

int
manifest_store_v2 (vms_repo *v2, vms_manifest *m, vms_index *const *idx)
{
  char name[STORAGE_NAME_MAX + 64];
  struct storage_stat st;
  CLEANUP_FREE char *text = NULL;

  snprintf (name, sizeof name, "backups/%s/manifest", m->id);
  if (storage_stat (v2->store, name, &st) == 0)
    return 0;                   /* done by an earlier, interrupted run */
  for (size_t i = 0; i < m->files.len; i++) {
    CLEANUP_FREE void *buf = NULL;
    size_t len;
    char *nm;
    if (asprintf (&nm, "file-%zu.idx", i) == -1) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    free (m->files.ptr[i].index);
    m->files.ptr[i].index = nm;
    if (index_serialize_version (idx[i], INDEX_VERSION_2, &buf, &len) == -1)
      return -1;
    snprintf (name, sizeof name, "backups/%s/%s", m->id, nm);
    if (storage_put (v2->store, name, buf, len, STORAGE_PUT_LAZY) == -1)
      goto fail;
  }
  for (size_t i = 0; i <= m->nr_metadata; i++) {
    const vms_document *doc = i < m->nr_metadata
      ? (m->metadata ? m->metadata[i] : NULL) : m->components;
    if (doc == NULL)
      continue;
    CLEANUP_FREE char *t = vms_document_format (doc);
    if (t == NULL)
      return -1;
    if (i < m->nr_metadata)
      snprintf (name, sizeof name, "backups/%s/doc-metadata-%zu", m->id, i);
    else
      snprintf (name, sizeof name, "backups/%s/doc-components", m->id);
    if (storage_put (v2->store, name, t, strlen (t), STORAGE_PUT_LAZY) == -1)
      goto fail;
  }
  m->version = 2;
  if ((text = manifest_format (m)) == NULL)
    return -1;
  if (storage_sync (v2->store) == -1)
    goto fail;
  snprintf (name, sizeof name, "backups/%s/manifest", m->id);
  if (storage_put (v2->store, name, text, strlen (text),
                   STORAGE_PUT_EXCLUSIVE) == -1 && errno != EEXIST)
    goto fail;
  return 0;
 fail:
  vms_set_error (errno, "repository %s: %s while writing %s", v2->path,
                 repo_errstr (errno), name);
  return -1;
}

/* ---- writing a backup ---- */

struct vms_repo_txn {
  vms_repo *repo;
  vms_manifest *m;
  char tmpname[MAX_BACKUP_ID_LEN + 64];   /* "<pid>.<n>.backup-<id>" in tmp/ */
  int tmpfd;
  int committed;
  int v2;                       /* objects backups/<id>/... through the store */
  size_t nr_docs;               /* v2: doc-metadata-<n> put so far */
  int put_components;           /* v2: doc-components put */
};

static void
txn_delete (vms_repo_txn *txn, const char *file)
{
  char name[STORAGE_NAME_MAX + 64], dir[STORAGE_NAME_MAX + 1];
  if (repo_backup_dir (txn->repo, txn->m->id, dir, sizeof dir) == -1)
    return;
  snprintf (name, sizeof name, "%s/%s", dir, file);
  storage_delete (txn->repo->store, name);
}

/* v2: put object backups/<id>/<file>. */
static int
txn_put (vms_repo_txn *txn, const char *file, const void *buf, size_t len,
         unsigned flags)
{
  char name[STORAGE_NAME_MAX + 64], dir[STORAGE_NAME_MAX + 1];
  if (repo_backup_dir (txn->repo, txn->m->id, dir, sizeof dir) == -1)
    return -1;
  snprintf (name, sizeof name, "%s/%s", dir, file);
  return storage_put (txn->repo->store, name, buf, len, flags);
}

vms_repo_txn *
vms_repo_txn_begin (vms_repo *repo, const char *backup_id)
{
  struct stat st;
  vms_repo_txn *txn;

  if (repo_need_write (repo, "write a backup") == -1 ||
      check_id (repo, backup_id) == -1)
    return NULL;
  if (repo->version >= 2 ? backup_exists (repo, backup_id) == 0
      : fstatat (repo->backups_fd, backup_id, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    vms_set_error (EEXIST, "backup %s already exists in repository %s",
                   backup_id, repo->path);
    return NULL;
  }
  txn = calloc (1, sizeof *txn);
  if (txn == NULL || (txn->m = calloc (1, sizeof *txn->m)) == NULL ||
      (txn->m->id = strdup (backup_id)) == NULL) {
    if (txn) vms_manifest_free (txn->m);
    free (txn);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  txn->repo = repo;
  txn->tmpfd = -1;
  txn->m->version = repo->version >= 2 ? 2 : MANIFEST_VERSION;
  if (repo->version >= 2) {
    /* Its objects go straight to backups/<id>/: without the manifest,
     * which is put last, they are no backup (gc removes them). */
    txn->v2 = 1;
    return txn;
  }
  snprintf (txn->tmpname, sizeof txn->tmpname, "%d.%u.backup-%s",
            (int) getpid (), repo->txn_counter++, backup_id);
  vms_rmtree_at (repo->tmp_fd, txn->tmpname);
  if ((txn->tmpfd = vms_mkdir_private_at (repo->tmp_fd, txn->tmpname)) == -1 ||
      repo_mkdirat (txn->tmpfd, "indexes") == -1 ||
      repo_mkdirat (txn->tmpfd, "metadata") == -1) {
    vms_set_error (errno, "repository %s: %s while starting backup %s",
                   repo->path, repo_errstr (errno), backup_id);
    vms_repo_txn_free (txn);
    return NULL;
  }
  return txn;
}

static int
txn_fail (vms_repo_txn *txn, const char *doing)
{
  vms_set_error (errno, "repository %s: %s while %s of backup %s",
                 txn->repo->path, repo_errstr (errno), doing, txn->m->id);
  return -1;
}

int
vms_repo_txn_add_file (vms_repo_txn *txn, const struct vms_stored_file *file,
                       const vms_index *idx)
{
  struct manifest_file f = { 0 };
  char name[64];
  CLEANUP_FREE void *buf = NULL;
  size_t len;

  if (txn->committed) {
    vms_set_error (EINVAL, "backup %s is already committed", txn->m->id);
    return -1;
  }
  if (file->writer_id == NULL || file->component == NULL || file->path == NULL) {
    vms_set_error (EINVAL, "a stored file needs a writer id, a component and a path");
    return -1;
  }
  if (txn->m->files.len >= MAX_MANIFEST_FILES) {
    vms_set_error (E2BIG, "backup %s: more than %d files", txn->m->id,
                   MAX_MANIFEST_FILES);
    return -1;
  }
  snprintf (name, sizeof name, "%s%zu.idx", txn->v2 ? "file-" : "",
            txn->m->files.len);
  if (index_serialize_version (idx, txn->v2 ? INDEX_VERSION_2 : INDEX_VERSION,
                               &buf, &len) == -1)
    return -1;
  char path[80];
  snprintf (path, sizeof path, "indexes/%s", name);
  /* v2: lazily, made durable with the packs by the commit's one sync
   * before the manifest (issue 15: two fsyncs fewer per file). */
  if (txn->v2 ? txn_put (txn, name, buf, len, STORAGE_PUT_LAZY) == -1
      : repo_write_new_file (txn->tmpfd, path, buf, len) == -1)
    return txn_fail (txn, "writing an index");
  /* The older packs it names are retained as long as it is (issue 14). */
  if (txn->v2 && pack_note_used (txn->repo, idx) == -1)
    return -1;

  f.kind = file->kind;
  f.size = vms_index_size (idx);
  f.bytes_read = file->bytes_read;
  f.bytes_stored = file->bytes_stored;
  if ((f.writer_id = strdup (file->writer_id)) == NULL ||
      (f.component = strdup (file->component)) == NULL ||
      (f.path = strdup (file->path)) == NULL ||
      (file->format && (f.format = strdup (file->format)) == NULL) ||
      (file->checkpoint && (f.checkpoint = strdup (file->checkpoint)) == NULL) ||
      (f.index = strdup (name)) == NULL) {
    manifest_file_clear (&f);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (manifest_file_vector_append (&txn->m->files, f) == -1) {
    manifest_file_clear (&f);
    return -1;
  }
  return 0;
}

static int
txn_write_document (vms_repo_txn *txn, const vms_document *doc,
                    const char *name)
{
  CLEANUP_FREE char *text = vms_document_format (doc);

  if (text == NULL)
    return -1;
  if (txn->v2) {
    char b[64];
    /* Lazily: the commit syncs before the manifest (txn_commit_v2). */
    if (txn_put (txn, backup_file_name (txn->repo, name, b, sizeof b), text,
                 strlen (text), STORAGE_PUT_LAZY) == -1)
      return txn_fail (txn, "writing a document");
    return 0;
  }
  if (repo_write_new_file (txn->tmpfd, name, text, strlen (text)) == -1)
    return txn_fail (txn, "writing a document");
  return 0;
}

/* v2: the documents, then the manifest, put exclusively and last: the
 * packs and segments of every chunk it names, the file indexes and the
 * documents were put before, lazily, and made durable by one sync
 * (pack_flush's, or ours when this process stored no chunk) before it
 * (issue 15: one sync instead of two fsyncs per object). */
static int
txn_commit_v2 (vms_repo_txn *txn, const vms_document *components,
               const vms_document *const *metadata, size_t nr_metadata)
{
  vms_repo *repo = txn->repo;
  vms_manifest *m = txn->m;
  CLEANUP_FREE char *text = NULL;

  if (components) {
    txn->put_components = 1;
    if (txn_write_document (txn, components, "components.json") == -1)
      return -1;
  }
  for (size_t i = 0; i < nr_metadata; i++) {
    char name[64];
    snprintf (name, sizeof name, "metadata/%zu.json", i);
    txn->nr_docs = i + 1;
    if (txn_write_document (txn, metadata[i], name) == -1)
      return -1;
  }
  if (pack_flush (repo) == -1) {
    vms_set_error (vms_get_errno (), "%s (backup %s is not committed)",
                   vms_get_error (), m->id);
    return -1;
  }
  /* No chunk stored by this process: pack_flush synced nothing. */
  if (repo->packs == NULL && storage_sync (repo->store) == -1) {
    vms_set_error (errno, "repository %s: %s while flushing backup %s (not "
                   "committed)", repo->path, repo_errstr (errno), m->id);
    return -1;
  }
  /* Lock extension (issue 14, R29): what it needs of older sessions is
   * retained until its own date before anything names it (R12: the
   * manifest last). */
  uint64_t extended;
  if (pack_extend_used (repo, m->id, &extended) == -1)
    return -1;
  if (extended)
    vms_debug ("backup %s: the Object Lock retention of %" PRIu64 " older "
               "objects it needs extended to its own", m->id, extended);
  m->has_components = components != NULL;
  m->nr_metadata = nr_metadata;
  manifest_stamp (m);
  if ((text = manifest_format (m)) == NULL)
    return -1;
  /* Rule 1 (issue 12): only a session whose lease nobody can have seen
   * expired may publish; gc waits for live sessions before it deletes a
   * pack they may reference. */
  if (repo->session && lease_ok (repo->session) == -1) {
    vms_set_error (vms_get_errno (), "%s (backup %s is not committed)",
                   vms_get_error (), m->id);
    return -1;
  }
  if (txn_put (txn, "manifest", text, strlen (text),
               STORAGE_PUT_EXCLUSIVE) == -1) {
    if (errno == EEXIST) {
      vms_set_error (EEXIST, "backup %s already exists in repository %s",
                     m->id, repo->path);
      return -1;
    }
    return txn_fail (txn, "writing the manifest");
  }
  txn->committed = 1;
  return 0;
}

int
vms_repo_txn_commit (vms_repo_txn *txn, const vms_document *components,
                     const vms_document *const *metadata, size_t nr_metadata,
                     const char *attrs_json)
{
  vms_repo *repo = txn->repo;
  vms_manifest *m = txn->m;
  CLEANUP_FREE char *text = NULL;

  if (txn->committed) {
    vms_set_error (EINVAL, "backup %s is already committed", m->id);
    return -1;
  }
  if (nr_metadata > MAX_MANIFEST_METADATA) {
    vms_set_error (E2BIG, "backup %s: more than %d metadata documents", m->id,
                   MAX_MANIFEST_METADATA);
    return -1;
  }
  json_object_put (m->attrs);
  m->attrs = NULL;
  if (attrs_json) {
    m->attrs = json_tokener_parse (attrs_json);
    if (m->attrs == NULL || !json_object_is_type (m->attrs, json_type_object)) {
      json_object_put (m->attrs);
      m->attrs = NULL;
      vms_set_error (EINVAL, "backup %s: attributes are not a JSON object: %s",
                     m->id, attrs_json);
      return -1;
    }
  }

  if (txn->v2)
    return txn_commit_v2 (txn, components, metadata, nr_metadata);

  /* Every chunk this backup references reaches the disk here, in one go
   * rather than with an fsync per chunk; only then does anything name
   * them. */
  if (syncfs (repo->dirfd) == -1)
    return txn_fail (txn, "flushing chunks");

  if (components && txn_write_document (txn, components, "components.json") == -1)
    return -1;
  for (size_t i = 0; i < nr_metadata; i++) {
    char name[64];
    snprintf (name, sizeof name, "metadata/%zu.json", i);
    if (txn_write_document (txn, metadata[i], name) == -1)
      return -1;
  }
  m->has_components = components != NULL;
  m->nr_metadata = nr_metadata;
  manifest_stamp (m);
  if ((text = manifest_format (m)) == NULL)
    return -1;
  if (repo_write_new_file (txn->tmpfd, "manifest.json", text, strlen (text)) == -1)
    return txn_fail (txn, "writing the manifest");
  if (repo_fsync_dir (txn->tmpfd, "indexes") == -1 ||
      repo_fsync_dir (txn->tmpfd, "metadata") == -1 ||
      fsync (txn->tmpfd) == -1)
    return txn_fail (txn, "flushing the backup directory");

  if (renameat (repo->tmp_fd, txn->tmpname, repo->backups_fd, m->id) == -1) {
    if (errno == EEXIST || errno == ENOTEMPTY) {
      vms_set_error (EEXIST, "backup %s already exists in repository %s",
                     m->id, repo->path);
      return -1;
    }
    return txn_fail (txn, "committing");
  }
  txn->committed = 1;
  /* Renamed: the backup exists for readers now; make it durable. */
  if (fsync (repo->backups_fd) == -1)
    return txn_fail (txn, "flushing backups/ after the commit");
  return 0;
}

void
vms_repo_txn_free (vms_repo_txn *txn)
{
  if (txn == NULL)
    return;
  if (txn->tmpfd >= 0)
    close (txn->tmpfd);
  if (txn->v2 && !txn->committed) {
    /* What it put, best effort: gc removes what is left. */
    char name[64];
    for (size_t i = 0; i < txn->m->files.len; i++) {
      snprintf (name, sizeof name, "file-%zu.idx", i);
      txn_delete (txn, name);
    }
    for (size_t i = 0; i < txn->nr_docs; i++) {
      snprintf (name, sizeof name, "doc-metadata-%zu", i);
      txn_delete (txn, name);
    }
    if (txn->put_components)
      txn_delete (txn, "doc-components");
  }
  else if (!txn->committed)
    vms_rmtree_at (txn->repo->tmp_fd, txn->tmpname);
  vms_manifest_free (txn->m);
  free (txn);
}

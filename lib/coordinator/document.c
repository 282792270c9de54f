/* Writer metadata and backup components documents (document.h), kept as
 * json-c trees. Parsing validates the whole structure once, so accessors
 * can rely on types and presence; docs/documents.md is the format spec.
 *
 * Component handles are small wrappers made eagerly (when a component is
 * parsed or added) so that writer threads only ever read the wrapper list.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "fs-util.h"
#include "document-internal.h"
#include "text.h"
#include "vector.h"
#include "vmshadow/error.h"

#define MAX_DOCUMENT_BYTES (64u << 20)  /* a document is never near this */
#define MAX_JSON_DEPTH 32
#define MAX_NAME_LEN 1024

struct vms_component {
  vms_document *doc;
  json_object *obj;
};

DEFINE_VECTOR_TYPE (component_vector, struct vms_component *);

struct vms_document {
  enum vms_document_kind kind;
  json_object *root;
  component_vector components;   /* wrappers of every component object */
  int sealed;
};

/* ---- small json helpers ---- */

static json_object *
get (json_object *o, const char *key)
{
  json_object *v;
  return json_object_object_get_ex (o, key, &v) ? v : NULL;
}

static const char *
get_str (json_object *o, const char *key)
{
  json_object *v = get (o, key);
  return v && json_object_is_type (v, json_type_string)
    ? json_object_get_string (v) : NULL;
}

/* Every string a document holds is UTF-8 (issue 9, item 7): checked where
 * it enters, in a parsed document (vms_document_parse) or through the API
 * (here), so that the document always formats as valid JSON. */
static int
check_utf8 (const char *s, const char *what)
{
  size_t bad;
  if (!vms_utf8_valid (s, strlen (s), &bad)) {
    vms_set_error (EINVAL, "%s \"%.100s\" is not UTF-8 text (byte %zu)",
                   what, s, bad);
    return -1;
  }
  return 0;
}

static int
set_new (json_object *o, const char *key, json_object *v)
{
  if (check_utf8 (key, "document key") == -1) {
    json_object_put (v);
    return -1;
  }
  if (v == NULL || json_object_object_add (o, key, v) != 0) {
    json_object_put (v);
    vms_set_error (ENOMEM, "out of memory building a document");
    return -1;
  }
  return 0;
}

static int
set_str (json_object *o, const char *key, const char *value)
{
  char what[128];
  snprintf (what, sizeof what, "document: \"%.60s\":", key);
  if (check_utf8 (value, what) == -1)
    return -1;
  return set_new (o, key, json_object_new_string (value));
}

static json_object *
array_at (json_object *o, const char *key)
{
  json_object *a = get (o, key);
  return a && json_object_is_type (a, json_type_array) ? a : NULL;
}

/* ---- component wrappers ---- */

static vms_component *
wrap_component (vms_document *doc, json_object *obj)
{
  vms_component *c = malloc (sizeof *c);
  if (c == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  c->doc = doc;
  c->obj = obj;
  if (component_vector_append (&doc->components, c) == -1) {
    free (c);
    return NULL;
  }
  return c;
}

static vms_component *
find_wrapper (const vms_document *doc, json_object *obj)
{
  for (size_t i = 0; i < doc->components.len; i++)
    if (doc->components.ptr[i]->obj == obj)
      return doc->components.ptr[i];
  return NULL;
}

static void
drop_wrappers (vms_document *doc)
{
  for (size_t i = 0; i < doc->components.len; i++)
    free (doc->components.ptr[i]);
  component_vector_reset (&doc->components);
}

static int
wrap_array (vms_document *doc, json_object *components)
{
  size_t n = json_object_array_length (components);
  for (size_t i = 0; i < n; i++)
    if (wrap_component (doc, json_object_array_get_idx (components, i)) == NULL)
      return -1;
  return 0;
}

/* Make wrappers for every component in the tree. */
static int
wrap_all (vms_document *doc)
{
  drop_wrappers (doc);
  if (doc->kind == VMS_DOC_METADATA)
    return wrap_array (doc, array_at (doc->root, "components"));

  json_object *writers = array_at (doc->root, "writers");
  size_t n = json_object_array_length (writers);
  for (size_t i = 0; i < n; i++) {
    json_object *w = json_object_array_get_idx (writers, i);
    if (wrap_array (doc, array_at (w, "components")) == -1)
      return -1;
  }
  return 0;
}

/* ---- validation of untrusted documents ---- */

/* Each check returns 0, or -1 with an error naming the place (where). */

static int
check_string (json_object *o, const char *key, int required, int absolute,
              const char *where)
{
  json_object *v = get (o, key);
  if (v == NULL || json_object_is_type (v, json_type_null)) {
    if (!required)
      return 0;
    vms_set_error (EINVAL, "%s: \"%s\" is missing", where, key);
    return -1;
  }
  if (!json_object_is_type (v, json_type_string)) {
    vms_set_error (EINVAL, "%s: \"%s\" must be a string", where, key);
    return -1;
  }
  const char *s = json_object_get_string (v);
  size_t len = (size_t) json_object_get_string_len (v);
  if (strlen (s) != len) {
    vms_set_error (EINVAL, "%s: \"%s\" contains a NUL byte", where, key);
    return -1;
  }
  if (required && len == 0) {
    vms_set_error (EINVAL, "%s: \"%s\" is empty", where, key);
    return -1;
  }
  if (absolute) {
    if (s[0] != '/' || len >= PATH_MAX) {
      vms_set_error (EINVAL, "%s: \"%s\" must be an absolute path, not \"%.200s\"",
                     where, key, s);
      return -1;
    }
  }
  else if (len > MAX_NAME_LEN) {
    vms_set_error (EINVAL, "%s: \"%s\" is longer than %d bytes",
                   where, key, MAX_NAME_LEN);
    return -1;
  }
  return 0;
}

static int
check_array (json_object *o, const char *key, int required, const char *where)
{
  json_object *v = get (o, key);
  if (v == NULL && !required)
    return 0;
  if (v == NULL || !json_object_is_type (v, json_type_array)) {
    vms_set_error (EINVAL, "%s: \"%s\" must be an array", where, key);
    return -1;
  }
  return 0;
}

static int
check_object (json_object *v, const char *where)
{
  if (v == NULL || !json_object_is_type (v, json_type_object)) {
    vms_set_error (EINVAL, "%s must be a JSON object", where);
    return -1;
  }
  return 0;
}

/* A network disk's name (issue 11): "scheme://…" with a scheme of
 * letters, digits, '+', '-' and '.', shorter than PATH_MAX, no control
 * bytes. */
static int
is_disk_uri (const char *s)
{
  const char *c = s;
  size_t len = strlen (s);

  if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
    return 0;
  while ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
         (*c >= '0' && *c <= '9') || *c == '+' || *c == '-' || *c == '.')
    c++;
  if (strncmp (c, "://", 3) != 0 || len >= PATH_MAX)
    return 0;
  for (c = s; *c; c++)
    if ((unsigned char) *c < 0x20 || *c == 0x7f)
      return 0;
  return 1;
}

static int
check_file (json_object *f, const char *where)
{
  const char *p = get_str (f, "path"), *k = get_str (f, "kind");
  /* A disk may be a network disk named by its URI (issue 11). */
  int uri = p && k && strcmp (k, "disk") == 0 && is_disk_uri (p);

  if (check_object (f, where) == -1 ||
      check_string (f, "path", 1, !uri, where) == -1 ||
      check_string (f, "kind", 1, 0, where) == -1 ||
      check_string (f, "format", 0, 0, where) == -1 ||
      check_string (f, "provider", 0, 0, where) == -1)
    return -1;
  const char *kind = get_str (f, "kind");
  if (strcmp (kind, "plain") != 0 && strcmp (kind, "disk") != 0) {
    vms_set_error (EINVAL, "%s: \"kind\" must be \"plain\" or \"disk\", not \"%.100s\"",
                   where, kind);
    return -1;
  }
  return 0;
}

static int
check_component (json_object *c, int in_components_doc, const char *where)
{
  char sub[512];

  if (check_object (c, where) == -1 ||
      check_string (c, "name", 1, 0, where) == -1 ||
      check_string (c, "caption", 0, 0, where) == -1 ||
      check_array (c, "files", 0, where) == -1 ||
      check_array (c, "excluded", 0, where) == -1)
    return -1;
  json_object *attrs = get (c, "attributes");
  if (attrs && !json_object_is_type (attrs, json_type_object)) {
    vms_set_error (EINVAL, "%s: \"attributes\" must be an object", where);
    return -1;
  }
  json_object *files = array_at (c, "files");
  for (size_t i = 0; files && i < json_object_array_length (files); i++) {
    snprintf (sub, sizeof sub, "%s, file %zu", where, i);
    if (check_file (json_object_array_get_idx (files, i), sub) == -1)
      return -1;
  }
  json_object *excl = array_at (c, "excluded");
  for (size_t i = 0; excl && i < json_object_array_length (excl); i++) {
    json_object *e = json_object_array_get_idx (excl, i);
    snprintf (sub, sizeof sub, "%s, excluded file %zu", where, i);
    if (check_object (e, sub) == -1 ||
        check_string (e, "path", 1, 0, sub) == -1 ||
        check_string (e, "reason", 1, 0, sub) == -1)
      return -1;
  }
  if (in_components_doc) {
    if (check_string (c, "restore_status", 0, 0, where) == -1)
      return -1;
    const char *st = get_str (c, "restore_status");
    if (st && strcmp (st, "unset") != 0 && strcmp (st, "all") != 0 &&
        strcmp (st, "none") != 0 && strcmp (st, "failed") != 0) {
      vms_set_error (EINVAL, "%s: unknown restore_status \"%.100s\"", where, st);
      return -1;
    }
  }
  return 0;
}

/* Is name already in the set (a json-c object used as a hash set)? Adds it
 * if not. Keeps duplicate checks linear for hostile documents. */
static int
seen_before (json_object *set, const char *name)
{
  if (json_object_object_get_ex (set, name, NULL))
    return 1;
  json_object_object_add (set, name, NULL);
  return 0;
}

static int
check_components (json_object *list, int in_components_doc, const char *where)
{
  char sub[512];
  size_t n = json_object_array_length (list);
  json_object *names = json_object_new_object ();
  int r = 0;

  for (size_t i = 0; i < n && r == 0; i++) {
    json_object *c = json_object_array_get_idx (list, i);
    const char *name = get_str (c, "name");
    snprintf (sub, sizeof sub, "%s, component %zu%s%.100s%s", where, i,
              name ? " (\"" : "", name ? name : "", name ? "\")" : "");
    if (check_component (c, in_components_doc, sub) == -1)
      r = -1;
    /* Names are unique within a writer: restore looks components up by them. */
    else if (seen_before (names, get_str (c, "name"))) {
      vms_set_error (EINVAL, "%s: component name \"%.100s\" appears twice",
                     where, get_str (c, "name"));
      r = -1;
    }
  }
  json_object_put (names);
  return r;
}

static int
check_document (json_object *root, enum vms_document_kind *kind)
{
  if (check_object (root, "document") == -1)
    return -1;
  const char *format = get_str (root, "format");
  if (format == NULL) {
    vms_set_error (EINVAL, "document: \"format\" is missing or not a string");
    return -1;
  }
  if (strcmp (format, VMS_METADATA_FORMAT) == 0)
    *kind = VMS_DOC_METADATA;
  else if (strcmp (format, VMS_COMPONENTS_FORMAT) == 0)
    *kind = VMS_DOC_COMPONENTS;
  else {
    vms_set_error (EINVAL, "document: unknown format \"%.100s\" (expected \"%s\" or \"%s\")",
                   format, VMS_METADATA_FORMAT, VMS_COMPONENTS_FORMAT);
    return -1;
  }
  json_object *version = get (root, "version");
  if (version == NULL || !json_object_is_type (version, json_type_int)) {
    vms_set_error (EINVAL, "document: \"version\" is missing or not an integer");
    return -1;
  }
  int64_t v = json_object_get_int64 (version);
  if (v < 1 || v > VMS_DOCUMENT_VERSION) {
    vms_set_error (EINVAL, "document: version %lld is not one this vmshadow reads (1 to %d)",
                   (long long) v, VMS_DOCUMENT_VERSION);
    return -1;
  }

  if (*kind == VMS_DOC_METADATA) {
    json_object *w = get (root, "writer");
    if (check_object (w, "metadata document: \"writer\"") == -1 ||
        check_string (w, "name", 1, 0, "metadata document: writer") == -1 ||
        check_string (w, "id", 0, 0, "metadata document: writer") == -1 ||
        check_array (root, "components", 1, "metadata document") == -1)
      return -1;
    return check_components (array_at (root, "components"), 0,
                             "metadata document");
  }

  if (check_string (root, "backup_id", 1, 0, "backup components document") == -1 ||
      check_array (root, "writers", 1, "backup components document") == -1)
    return -1;
  json_object *attrs = get (root, "attributes");
  if (attrs && !json_object_is_type (attrs, json_type_object)) {
    vms_set_error (EINVAL, "backup components document: \"attributes\" must be an object");
    return -1;
  }
  json_object *writers = array_at (root, "writers");
  size_t n = json_object_array_length (writers);
  json_object *ids = json_object_new_object ();
  int r = 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    char where[128];
    json_object *w = json_object_array_get_idx (writers, i);
    snprintf (where, sizeof where, "backup components document, writer %zu", i);
    if (check_object (w, where) == -1 ||
        check_string (w, "name", 1, 0, where) == -1 ||
        check_string (w, "id", 1, 0, where) == -1 ||
        check_array (w, "components", 1, where) == -1 ||
        check_components (array_at (w, "components"), 1, where) == -1)
      r = -1;
    else if (seen_before (ids, get_str (w, "id"))) {
      vms_set_error (EINVAL, "%s: writer id \"%.100s\" appears twice",
                     where, get_str (w, "id"));
      r = -1;
    }
  }
  json_object_put (ids);
  return r;
}

/* ---- construction, parsing, output ---- */

static vms_document *
document_of (enum vms_document_kind kind, json_object *root)
{
  vms_document *doc = calloc (1, sizeof *doc);
  if (doc == NULL) {
    vms_set_error (errno, "out of memory");
    json_object_put (root);
    return NULL;
  }
  doc->kind = kind;
  doc->root = root;
  if (wrap_all (doc) == -1) {
    vms_document_free (doc);
    return NULL;
  }
  return doc;
}

static json_object *
new_root (const char *format)
{
  json_object *root = json_object_new_object ();
  if (root == NULL ||
      set_str (root, "format", format) == -1 ||
      set_new (root, "version", json_object_new_int (VMS_DOCUMENT_VERSION)) == -1) {
    json_object_put (root);
    return NULL;
  }
  return root;
}

vms_document *
vms_metadata_new (const char *writer_name, const char *writer_id)
{
  json_object *root = new_root (VMS_METADATA_FORMAT);
  json_object *w = json_object_new_object ();

  /* set_new takes w, also when it fails; before that it is ours. */
  if (root == NULL || w == NULL ||
      set_str (w, "name", writer_name ? writer_name : "") == -1 ||
      (writer_id && set_str (w, "id", writer_id) == -1)) {
    json_object_put (w);
    json_object_put (root);
    return NULL;
  }
  if (set_new (root, "writer", w) == -1 ||
      set_new (root, "components", json_object_new_array ()) == -1) {
    json_object_put (root);
    return NULL;
  }
  return document_of (VMS_DOC_METADATA, root);
}

vms_document *
vms_components_new (const char *backup_id)
{
  json_object *root = new_root (VMS_COMPONENTS_FORMAT);

  if (root == NULL ||
      set_str (root, "backup_id", backup_id) == -1 ||
      set_new (root, "attributes", json_object_new_object ()) == -1 ||
      set_new (root, "writers", json_object_new_array ()) == -1) {
    json_object_put (root);
    return NULL;
  }
  return document_of (VMS_DOC_COMPONENTS, root);
}

/* Every integer in the JSON text fits in int64_t: json-c would silently
 * clamp one that does not (12345678901234567890 read as INT64_MAX), and a
 * writer's number must be stored as it was given or refused (issue 9,
 * item 7). text is JSON that json-c accepted, so a number is a run of
 * "-0123456789.eE+" outside a string; one without '.', 'e' or 'E' is an
 * integer. */
static int
check_integers (const char *text, size_t len, const char *what)
{
  int in_string = 0;

  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = 0;
      continue;
    }
    if (c == '"') {
      in_string = 1;
      continue;
    }
    if (c != '-' && (c < '0' || c > '9'))
      continue;
    size_t start = i, n;
    int integer = 1;
    while (i < len && strchr ("-+0123456789.eE", text[i]) && text[i]) {
      if (strchr (".eE", text[i]))
        integer = 0;
      i++;
    }
    n = i - start;
    if (integer) {
      char buf[24];
      int ok = n < sizeof buf;
      if (ok) {
        memcpy (buf, text + start, n);
        buf[n] = '\0';
        errno = 0;
        (void) strtoll (buf, NULL, 10);
        ok = errno == 0;
      }
      if (!ok) {
        vms_set_error (ERANGE, "%s: the integer %.*s%s at byte %zu is out of "
                       "range (%" PRId64 " to %" PRId64 ")", what,
                       (int) (n < 40 ? n : 40), text + start, n < 40 ? "" : "...",
                       start, INT64_MIN, INT64_MAX);
        return -1;
      }
    }
    i--;
  }
  return 0;
}

vms_document *
vms_document_parse (const char *text, size_t len)
{
  enum vms_document_kind kind;
  json_tokener *tok;
  json_object *root;

  if (len > MAX_DOCUMENT_BYTES || len > INT_MAX) {
    vms_set_error (EFBIG, "document is %zu bytes, more than the %u allowed",
                   len, MAX_DOCUMENT_BYTES);
    return NULL;
  }
  if (memchr (text, '\0', len) != NULL) {
    vms_set_error (EINVAL, "document is not JSON text (it contains a NUL byte)");
    return NULL;
  }
  size_t bad;
  if (!vms_utf8_valid (text, len, &bad)) {
    vms_set_error (EINVAL, "document is not UTF-8 text (byte %zu is not); "
                   "every string in it must be UTF-8", bad);
    return NULL;
  }
  tok = json_tokener_new_ex (MAX_JSON_DEPTH);
  if (tok == NULL) {
    vms_set_error (ENOMEM, "out of memory parsing a document");
    return NULL;
  }
  /* Strict: loose numbers such as 09e would be written back as another
   * value, changing a stored document's meaning. */
  json_tokener_set_flags (tok, JSON_TOKENER_STRICT);
  root = json_tokener_parse_ex (tok, text, (int) len);
  enum json_tokener_error jerr = json_tokener_get_error (tok);
  size_t used = json_tokener_get_parse_end (tok);
  json_tokener_free (tok);
  if (root == NULL && jerr == json_tokener_success) {
    vms_set_error (EINVAL, "document must be a JSON object, not null");
    return NULL;
  }
  if (root == NULL || jerr != json_tokener_success) {
    json_object_put (root);
    vms_set_error (EINVAL, "document is not valid JSON: %s",
                   len == 0 || jerr == json_tokener_continue
                   ? "it ends too early" : json_tokener_error_desc (jerr));
    return NULL;
  }
  for (size_t i = used; i < len; i++)
    if (!strchr (" \t\r\n", text[i])) {
      json_object_put (root);
      vms_set_error (EINVAL, "document is not valid JSON: text after the end at byte %zu",
                     i);
      return NULL;
    }
  if (check_integers (text, used, "document") == -1 ||
      check_document (root, &kind) == -1) {
    json_object_put (root);
    return NULL;
  }
  return document_of (kind, root);
}

vms_document *
vms_document_load (const char *path)
{
  CLEANUP_FCLOSE FILE *fp = fopen (path, "re");
  CLEANUP_FREE char *buf = NULL;
  size_t len = 0, cap = 0;

  if (fp == NULL) {
    vms_set_error (errno, "cannot open document %s: %s", path, strerror (errno));
    return NULL;
  }
  for (;;) {
    if (len == cap) {
      /* One byte beyond the limit tells a file of exactly the limit from a
       * larger one. */
      if (cap > MAX_DOCUMENT_BYTES) {
        vms_set_error (EFBIG, "document %s is larger than %u bytes", path,
                       MAX_DOCUMENT_BYTES);
        return NULL;
      }
      cap = cap ? cap * 2 : 65536;
      if (cap > MAX_DOCUMENT_BYTES)
        cap = (size_t) MAX_DOCUMENT_BYTES + 1;
      char *p = realloc (buf, cap);
      if (p == NULL) {
        vms_set_error (errno, "out of memory reading %s", path);
        return NULL;
      }
      buf = p;
    }
    size_t r = fread (buf + len, 1, cap - len, fp);
    len += r;
    if (r == 0) {
      if (ferror (fp)) {
        vms_set_error (EIO, "cannot read document %s", path);
        return NULL;
      }
      break;
    }
  }
  vms_document *doc = vms_document_parse (buf, len);
  if (doc == NULL)
    vms_set_error (vms_get_errno (), "%s: %s", path, vms_get_error ());
  return doc;
}

char *
vms_document_format (const vms_document *doc)
{
  const char *s = json_object_to_json_string_ext (
    doc->root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
    JSON_C_TO_STRING_NOSLASHESCAPE);
  char *out;
  if (s == NULL || asprintf (&out, "%s\n", s) == -1) {
    vms_set_error (ENOMEM, "out of memory formatting a document");
    return NULL;
  }
  return out;
}

int
vms_document_save (const vms_document *doc, const char *path)
{
  CLEANUP_FREE char *text = vms_document_format (doc);

  if (text == NULL)
    return -1;
  return vms_write_file_atomic (AT_FDCWD, path, text, strlen (text), 0600);
}

vms_document *
vms_document_copy (const vms_document *doc)
{
  json_object *root = NULL;
  if (json_object_deep_copy (doc->root, &root, NULL) != 0) {
    vms_set_error (ENOMEM, "out of memory copying a document");
    return NULL;
  }
  return document_of (doc->kind, root);
}

int
vms_document_replace (vms_document *dst, const vms_document *src)
{
  json_object *root = NULL;
  if (dst->kind != src->kind) {
    vms_set_error (EINVAL, "cannot replace a document by one of another kind");
    return -1;
  }
  if (json_object_deep_copy (src->root, &root, NULL) != 0) {
    vms_set_error (ENOMEM, "out of memory copying a document");
    return -1;
  }
  json_object_put (dst->root);
  dst->root = root;
  return wrap_all (dst);
}

void
vms_document_free (vms_document *doc)
{
  if (doc == NULL)
    return;
  drop_wrappers (doc);
  json_object_put (doc->root);
  free (doc);
}

enum vms_document_kind
vms_document_kind (const vms_document *doc)
{
  return doc->kind;
}

/* ---- metadata documents ---- */

const char *
vms_metadata_writer_name (const vms_document *md)
{
  return get_str (get (md->root, "writer"), "name");
}

const char *
vms_metadata_writer_id (const vms_document *md)
{
  return get_str (get (md->root, "writer"), "id");
}

vms_component *
vms_metadata_add_component (vms_document *md, const char *name,
                            const char *caption)
{
  json_object *list = array_at (md->root, "components");
  json_object *c;

  if (md->kind != VMS_DOC_METADATA || name == NULL || *name == '\0') {
    vms_set_error (EINVAL, "a component needs a name and a metadata document");
    return NULL;
  }
  if (vms_document_find_component (md, NULL, name) != NULL) {
    vms_set_error (EEXIST, "component \"%s\" is already in the metadata document",
                   name);
    return NULL;
  }
  c = json_object_new_object ();
  if (c == NULL ||
      set_str (c, "name", name) == -1 ||
      set_str (c, "caption", caption ? caption : "") == -1 ||
      set_new (c, "files", json_object_new_array ()) == -1 ||
      set_new (c, "excluded", json_object_new_array ()) == -1 ||
      set_new (c, "attributes", json_object_new_object ()) == -1) {
    json_object_put (c);
    return NULL;
  }
  if (json_object_array_add (list, c) != 0) {
    json_object_put (c);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return wrap_component (md, c);
}

/* ---- backup components documents ---- */

static json_object *
find_writer (const vms_document *bcd, const char *writer_id)
{
  json_object *writers = array_at (bcd->root, "writers");
  size_t n = writers ? json_object_array_length (writers) : 0;
  for (size_t i = 0; i < n; i++) {
    json_object *w = json_object_array_get_idx (writers, i);
    if (writer_id && strcmp (get_str (w, "id"), writer_id) == 0)
      return w;
  }
  return NULL;
}

/* The component list a (document, writer) pair means. */
static json_object *
component_list (const vms_document *doc, const char *writer_id)
{
  if (doc->kind == VMS_DOC_METADATA)
    return array_at (doc->root, "components");
  json_object *w = find_writer (doc, writer_id);
  return w ? array_at (w, "components") : NULL;
}

const char *
vms_components_backup_id (const vms_document *bcd)
{
  return get_str (bcd->root, "backup_id");
}

size_t
vms_components_writer_count (const vms_document *bcd)
{
  json_object *w = array_at (bcd->root, "writers");
  return bcd->kind == VMS_DOC_COMPONENTS && w ? json_object_array_length (w) : 0;
}

const char *
vms_components_writer_name (const vms_document *bcd, size_t i)
{
  return get_str (json_object_array_get_idx (array_at (bcd->root, "writers"), i),
                  "name");
}

const char *
vms_components_writer_id (const vms_document *bcd, size_t i)
{
  return get_str (json_object_array_get_idx (array_at (bcd->root, "writers"), i),
                  "id");
}

int
vms_components_set_attr_json (vms_document *bcd, const char *key,
                              const char *json)
{
  json_tokener *tok = json_tokener_new_ex (MAX_JSON_DEPTH);
  json_object *v, *attrs;
  size_t len = strlen (json);

  if (tok == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  json_tokener_set_flags (tok, JSON_TOKENER_STRICT);
  v = json_tokener_parse_ex (tok, json, (int) len);
  int ok = json_tokener_get_error (tok) == json_tokener_success &&
    json_tokener_get_parse_end (tok) == len;
  if (v == NULL && json_tokener_get_error (tok) == json_tokener_continue) {
    /* A bare number only ends at the end of input: say so with a NUL. */
    v = json_tokener_parse_ex (tok, "", 1);
    ok = json_tokener_get_error (tok) == json_tokener_success;
  }
  json_tokener_free (tok);
  if (!ok) {
    json_object_put (v);
    vms_set_error (EINVAL, "attribute %s: not one valid JSON value", key);
    return -1;
  }
  char what[128];
  snprintf (what, sizeof what, "attribute %.60s", key);
  if (check_utf8 (json, what) == -1 || check_integers (json, len, what) == -1) {
    json_object_put (v);
    return -1;
  }
  /* A parsed document need not have "attributes" yet. */
  attrs = get (bcd->root, "attributes");
  if (attrs == NULL || !json_object_is_type (attrs, json_type_object)) {
    if (set_new (bcd->root, "attributes", json_object_new_object ()) == -1) {
      json_object_put (v);
      return -1;
    }
    attrs = get (bcd->root, "attributes");
  }
  if (json_object_object_add (attrs, key, v) != 0) {
    json_object_put (v);
    vms_set_error (ENOMEM, "out of memory building a document");
    return -1;
  }
  return 0;
}

int
document_components_add_writer (vms_document *bcd, const char *name,
                                const char *id)
{
  json_object *w = json_object_new_object ();
  if (w == NULL ||
      set_str (w, "name", name) == -1 ||
      set_str (w, "id", id) == -1 ||
      set_new (w, "components", json_object_new_array ()) == -1 ||
      json_object_array_add (array_at (bcd->root, "writers"), w) != 0) {
    json_object_put (w);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

vms_component *
document_components_add_copy (vms_document *bcd, const char *writer_id,
                              const vms_component *from)
{
  json_object *list = component_list (bcd, writer_id);
  json_object *c = NULL;

  if (list == NULL) {
    vms_set_error (ENOENT, "writer %s is not in the backup components document",
                   writer_id);
    return NULL;
  }
  if (json_object_deep_copy (from->obj, &c, NULL) != 0 ||
      json_object_array_add (list, c) != 0) {
    json_object_put (c);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return wrap_component (bcd, c);
}

void
document_seal (vms_document *doc, int sealed)
{
  doc->sealed = sealed;
}

void
document_component_set_restore_status (vms_component *c,
                                       enum vms_restore_status st)
{
  set_str (c->obj, "restore_status", vms_restore_status_name (st));
}

void
document_components_set_writer_result (vms_document *bcd,
                                       const char *writer_id,
                                       const char *state, const char *failure,
                                       const char *message)
{
  json_object *w = find_writer (bcd, writer_id);
  if (w == NULL)
    return;
  set_str (w, "state", state);
  set_str (w, "failure", failure);
  if (message) {
    /* A writer's words, whatever bytes they are: stored escaped, so that
     * the document stays UTF-8. */
    CLEANUP_FREE char *safe = vms_term_escape (message, VMS_ESCAPE_KEEP_NEWLINE);
    if (safe)
      set_str (w, "message", safe);
  }
}

/* ---- components ---- */

size_t
vms_document_component_count (const vms_document *doc, const char *writer_id)
{
  json_object *list = component_list (doc, writer_id);
  return list ? json_object_array_length (list) : 0;
}

vms_component *
vms_document_component (const vms_document *doc, const char *writer_id,
                        size_t i)
{
  json_object *list = component_list (doc, writer_id);
  if (list == NULL || i >= json_object_array_length (list))
    return NULL;
  return find_wrapper (doc, json_object_array_get_idx (list, i));
}

vms_component *
vms_document_find_component (const vms_document *doc, const char *writer_id,
                             const char *name)
{
  json_object *list = component_list (doc, writer_id);
  size_t n = list ? json_object_array_length (list) : 0;
  for (size_t i = 0; i < n; i++) {
    json_object *c = json_object_array_get_idx (list, i);
    if (strcmp (get_str (c, "name"), name) == 0)
      return find_wrapper (doc, c);
  }
  return NULL;
}

const char *
vms_component_name (const vms_component *c)
{
  return get_str (c->obj, "name");
}

char *
vms_component_format (const vms_component *c)
{
  const char *s = json_object_to_json_string_ext (c->obj, JSON_C_TO_STRING_PLAIN |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
  char *out = s ? strdup (s) : NULL;
  if (out == NULL)
    vms_set_error (ENOMEM, "out of memory formatting a component");
  return out;
}

const char *
vms_component_caption (const vms_component *c)
{
  const char *s = get_str (c->obj, "caption");
  return s ? s : "";
}

static int
check_writable (const vms_component *c)
{
  if (c->doc->sealed) {
    vms_set_error (EPERM, "component \"%s\": the backup components document "
                   "cannot change after PostSnapshot (R5)", vms_component_name (c));
    return -1;
  }
  return 0;
}

/* The array under key, made if the component has none yet. */
static json_object *
ensure_array (json_object *obj, const char *key)
{
  json_object *a = array_at (obj, key);
  if (a == NULL && set_new (obj, key, json_object_new_array ()) == 0)
    a = array_at (obj, key);
  return a;
}

int
vms_component_add_file (vms_component *c, const char *path,
                        enum vms_file_kind kind, const char *format,
                        const char *provider)
{
  json_object *files, *f;

  if (check_writable (c) == -1)
    return -1;
  if (path == NULL ||
      (path[0] != '/' && !(kind == VMS_FILE_DISK && is_disk_uri (path)))) {
    vms_set_error (EINVAL, "component \"%s\": file path \"%s\" is not "
                   "absolute (nor, for a disk, a URI scheme://…)",
                   vms_component_name (c), path ? path : "(null)");
    return -1;
  }
  if ((files = ensure_array (c->obj, "files")) == NULL)
    return -1;
  f = json_object_new_object ();
  if (f == NULL ||
      set_str (f, "path", path) == -1 ||
      set_str (f, "kind", vms_file_kind_name (kind)) == -1 ||
      (format && set_str (f, "format", format) == -1) ||
      (provider && set_str (f, "provider", provider) == -1) ||
      json_object_array_add (files, f) != 0) {
    json_object_put (f);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

size_t
vms_component_file_count (const vms_component *c)
{
  json_object *files = array_at (c->obj, "files");
  return files ? json_object_array_length (files) : 0;
}

int
vms_component_file (const vms_component *c, size_t i,
                    struct vms_file_info *info)
{
  json_object *files = array_at (c->obj, "files");
  if (files == NULL || i >= json_object_array_length (files)) {
    vms_set_error (ERANGE, "component \"%s\" has no file %zu",
                   vms_component_name (c), i);
    return -1;
  }
  json_object *f = json_object_array_get_idx (files, i);
  const char *kind = get_str (f, "kind");
  info->path = get_str (f, "path");
  info->kind = kind && strcmp (kind, "disk") == 0 ? VMS_FILE_DISK : VMS_FILE_PLAIN;
  info->format = get_str (f, "format");
  info->provider = get_str (f, "provider");
  return 0;
}

int
vms_component_add_excluded (vms_component *c, const char *path,
                            const char *reason)
{
  json_object *list, *e;

  if (check_writable (c) == -1)
    return -1;
  if ((list = ensure_array (c->obj, "excluded")) == NULL)
    return -1;
  e = json_object_new_object ();
  if (e == NULL ||
      set_str (e, "path", path) == -1 ||
      set_str (e, "reason", reason) == -1 ||
      json_object_array_add (list, e) != 0) {
    json_object_put (e);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

size_t
vms_component_excluded_count (const vms_component *c)
{
  json_object *list = array_at (c->obj, "excluded");
  return list ? json_object_array_length (list) : 0;
}

static json_object *
excluded_at (const vms_component *c, size_t i)
{
  json_object *list = array_at (c->obj, "excluded");
  return list && i < json_object_array_length (list)
    ? json_object_array_get_idx (list, i) : NULL;
}

const char *
vms_component_excluded_path (const vms_component *c, size_t i)
{
  json_object *e = excluded_at (c, i);
  return e ? get_str (e, "path") : NULL;
}

const char *
vms_component_excluded_reason (const vms_component *c, size_t i)
{
  json_object *e = excluded_at (c, i);
  return e ? get_str (e, "reason") : NULL;
}

static json_object *
attributes (vms_component *c)
{
  json_object *a = get (c->obj, "attributes");
  if (a == NULL && set_new (c->obj, "attributes", json_object_new_object ()) == 0)
    a = get (c->obj, "attributes");
  return a;
}

int
vms_component_set_string (vms_component *c, const char *key,
                          const char *value)
{
  json_object *a;
  if (check_writable (c) == -1 || (a = attributes (c)) == NULL)
    return -1;
  return set_str (a, key, value);
}

int
vms_component_set_int (vms_component *c, const char *key, int64_t value)
{
  json_object *a;
  if (check_writable (c) == -1 || (a = attributes (c)) == NULL)
    return -1;
  return set_new (a, key, json_object_new_int64 (value));
}

const char *
vms_component_get_string (const vms_component *c, const char *key)
{
  json_object *a = get (c->obj, "attributes");
  return a ? get_str (a, key) : NULL;
}

int64_t
vms_component_get_int (const vms_component *c, const char *key, int64_t dflt)
{
  json_object *a = get (c->obj, "attributes");
  json_object *v = a ? get (a, key) : NULL;
  return v && json_object_is_type (v, json_type_int)
    ? json_object_get_int64 (v) : dflt;
}

enum vms_restore_status
vms_component_restore_status (const vms_component *c)
{
  const char *s = get_str (c->obj, "restore_status");
  if (s == NULL) return VMS_RESTORE_UNSET;
  if (strcmp (s, "all") == 0) return VMS_RESTORE_ALL;
  if (strcmp (s, "none") == 0) return VMS_RESTORE_NONE;
  if (strcmp (s, "failed") == 0) return VMS_RESTORE_FAILED;
  return VMS_RESTORE_UNSET;
}

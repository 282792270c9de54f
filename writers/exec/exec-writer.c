/* The exec writer (exec-writer.h, docs/exec-writers.md): one struct
 * vms_writer per executable of the writers directory. Every event runs the
 * executable through lib/util/subprocess with the session context as JSON
 * on stdin and the event's budget as its time-out; its exit status and
 * optional JSON reply on stdout become success, a veto with a failure kind
 * (R4), or attributes added to its components (R5).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "exec-writer.h"
#include "fs-util.h"
#include "log.h"
#include "subprocess.h"
#include "vector.h"
#include "vmshadow/error.h"
#include "vmshadow/writer.h"

#define EXEC_MAX_ERRORS (16 * 1024)   /* stderr kept for messages */
#define EXEC_TAIL_LINES 5             /* stderr lines in a failure message */
#define EXEC_TAIL_BYTES 400
#define EXEC_REPLY_DEPTH 16
#define EXEC_EX_TEMPFAIL 75           /* sysexits.h: retryable */

struct exec_writer {
  char *path;                   /* absolute path of the executable */
  char *name;                   /* basename, then the name Identify gave */
  /* Attribute keys this writer set on its components in this process:
   * with the metadata's own keys, what the stdin context lists (the public
   * API reads attributes by key only). */
  string_vector attr_keys;
};

static void
exec_writer_free (struct exec_writer *w)
{
  if (w == NULL)
    return;
  free (w->path);
  free (w->name);
  string_vector_free_all (&w->attr_keys);
  free (w);
}

static void
exec_writer_close (void *data)
{
  exec_writer_free (data);
}

static void
cleanup_json_put (json_object **o)
{
  json_object_put (*o);
}
#define CLEANUP_JSON __attribute__ ((cleanup (cleanup_json_put)))

/* ---- the context on stdin ---- */

static int
exec_json_add (json_object *o, const char *key, json_object *v)
{
  if (v == NULL || json_object_object_add (o, key, v) != 0) {
    json_object_put (v);
    vms_set_error (ENOMEM, "out of memory building an exec writer's input");
    return -1;
  }
  return 0;
}

/* A string, or JSON null (which json-c represents as a NULL object). */
static int
exec_json_add_string_or_null (json_object *o, const char *key, const char *s)
{
  if (s)
    return exec_json_add (o, key, json_object_new_string (s));
  if (json_object_object_add (o, key, NULL) != 0) {
    vms_set_error (ENOMEM, "out of memory building an exec writer's input");
    return -1;
  }
  return 0;
}

/* Add key's value in c (a string or an integer) to attrs, if it has one. */
static int
exec_add_attribute (json_object *attrs, const vms_component *c, const char *key)
{
  const char *s = vms_component_get_string (c, key);
  if (s)
    return exec_json_add (attrs, key, json_object_new_string (s));
  int64_t a = vms_component_get_int (c, key, INT64_MIN);
  int64_t b = vms_component_get_int (c, key, INT64_MAX);
  if (a == b)
    return exec_json_add (attrs, key, json_object_new_int64 (a));
  return 0;
}

/* The attributes of session component c: the keys of the same component
 * in the metadata document (metadata_components: its JSON array, or NULL)
 * and the keys this writer added. */
static json_object *
exec_component_attributes (struct exec_writer *w, const vms_component *c,
                           json_object *metadata_components)
{
  json_object *attrs = json_object_new_object ();
  json_object *own = NULL, *own_attrs = NULL;
  CLEANUP_FREE char *text = NULL;
  string_vector keys = empty_vector;
  const char *name = vms_component_name (c);

  if (attrs == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  size_t n = metadata_components ? json_object_array_length (metadata_components) : 0;
  for (size_t i = 0; i < n; i++) {
    json_object *mc = json_object_array_get_idx (metadata_components, i);
    json_object *v, *ma;
    if (json_object_object_get_ex (mc, "name", &v) &&
        strcmp (json_object_get_string (v), name) == 0 &&
        json_object_object_get_ex (mc, "attributes", &ma) &&
        json_object_is_type (ma, json_type_object)) {
      json_object_object_foreach (ma, key, val) {
        (void) val;
        if (!string_vector_contains (&keys, key) &&
            string_vector_append (&keys, (char *) key) == -1)
          goto fail;
      }
    }
  }
  for (size_t i = 0; i < w->attr_keys.len; i++)
    if (!string_vector_contains (&keys, w->attr_keys.ptr[i]) &&
        string_vector_append (&keys, w->attr_keys.ptr[i]) == -1)
      goto fail;
  /* And whatever the session's component holds: in a restore run by a new
   * process, the attributes the replies added at backup time and the
   * restore targets (VMS_ATTR_RESTORE_TARGET_PREFIX). */
  text = vms_component_format (c);
  if (text && (own = json_tokener_parse (text)) != NULL &&
      json_object_object_get_ex (own, "attributes", &own_attrs) &&
      json_object_is_type (own_attrs, json_type_object)) {
    json_object_object_foreach (own_attrs, key, val) {
      (void) val;
      if (!string_vector_contains (&keys, key) &&
          string_vector_append (&keys, (char *) key) == -1)
        goto fail;
    }
  }
  for (size_t i = 0; i < keys.len; i++)
    if (exec_add_attribute (attrs, c, keys.ptr[i]) == -1)
      goto fail;
  string_vector_reset (&keys);      /* borrowed strings */
  json_object_put (own);
  return attrs;

 fail:
  string_vector_reset (&keys);
  json_object_put (own);
  json_object_put (attrs);
  return NULL;
}

static json_object *
exec_component_json (struct exec_writer *w, vms_call *call,
                     const vms_component *c, json_object *metadata_components)
{
  json_object *o = json_object_new_object ();
  json_object *files = json_object_new_array ();
  json_object *excluded = json_object_new_array ();
  json_object *attrs = NULL;

  if (o == NULL || files == NULL || excluded == NULL) {
    json_object_put (o);
    json_object_put (files);
    json_object_put (excluded);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (exec_json_add (o, "name", json_object_new_string (vms_component_name (c))) == -1 ||
      exec_json_add (o, "caption", json_object_new_string (vms_component_caption (c))) == -1 ||
      exec_json_add (o, "files", files) == -1) {
    json_object_put (excluded);
    goto fail;
  }
  for (size_t i = 0; i < vms_component_file_count (c); i++) {
    struct vms_file_info fi;
    json_object *f;
    if (vms_component_file (c, i, &fi) == -1)
      continue;
    if ((f = json_object_new_object ()) == NULL ||
        json_object_array_add (files, f) != 0) {
      json_object_put (f);
      vms_set_error (ENOMEM, "out of memory");
      json_object_put (excluded);
      goto fail;
    }
    if (exec_json_add (f, "path", json_object_new_string (fi.path)) == -1 ||
        exec_json_add (f, "kind", json_object_new_string (vms_file_kind_name (fi.kind))) == -1 ||
        (fi.format && exec_json_add (f, "format", json_object_new_string (fi.format)) == -1) ||
        (fi.provider && exec_json_add (f, "provider", json_object_new_string (fi.provider)) == -1)) {
      json_object_put (excluded);
      goto fail;
    }
  }
  if (exec_json_add (o, "excluded", excluded) == -1)
    goto fail;
  for (size_t i = 0; i < vms_component_excluded_count (c); i++) {
    json_object *e = json_object_new_object ();
    if (e == NULL || json_object_array_add (excluded, e) != 0) {
      json_object_put (e);
      vms_set_error (ENOMEM, "out of memory");
      goto fail;
    }
    if (exec_json_add (e, "path", json_object_new_string (vms_component_excluded_path (c, i))) == -1 ||
        exec_json_add (e, "reason", json_object_new_string (vms_component_excluded_reason (c, i))) == -1)
      goto fail;
  }
  if ((attrs = exec_component_attributes (w, c, metadata_components)) == NULL ||
      exec_json_add (o, "attributes", attrs) == -1)
    goto fail;
  if (!vms_call_is_backup (call) &&
      exec_json_add (o, "restore_status", json_object_new_string (
        vms_restore_status_name (vms_component_restore_status (c)))) == -1)
    goto fail;
  return o;

 fail:
  json_object_put (o);
  return NULL;
}

/* The whole stdin document of one event, as text (caller frees). */
static char *
exec_context (struct exec_writer *w, vms_call *call, enum vms_event ev,
              int64_t budget_ms)
{
  CLEANUP_JSON json_object *ctx = json_object_new_object ();
  json_object *writer = json_object_new_object ();
  json_object *md_json = NULL, *md_components = NULL;

  if (ctx == NULL || writer == NULL) {
    json_object_put (writer);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (exec_json_add (ctx, "protocol", json_object_new_int (VMS_EXEC_PROTOCOL_VERSION)) == -1 ||
      exec_json_add (ctx, "event", json_object_new_string (vms_event_name (ev))) == -1 ||
      exec_json_add_string_or_null (ctx, "session_id", vms_call_session_id (call)) == -1 ||
      exec_json_add (ctx, "session_type", json_object_new_string (
        vms_call_is_backup (call) ? "backup" : "restore")) == -1 ||
      exec_json_add (ctx, "budget_ms", json_object_new_int64 (budget_ms)) == -1 ||
      exec_json_add (ctx, "writer", writer) == -1)
    return NULL;

  const vms_document *md = vms_call_metadata (call);
  if (exec_json_add (writer, "executable", json_object_new_string (w->path)) == -1 ||
      exec_json_add (writer, "name", json_object_new_string (w->name)) == -1 ||
      exec_json_add_string_or_null (writer, "id",
        ev != VMS_EVENT_IDENTIFY && md ? vms_metadata_writer_id (md) : NULL) == -1)
    return NULL;

  if (ev != VMS_EVENT_IDENTIFY) {
    /* The writer's own metadata document, as it gave it. */
    CLEANUP_FREE char *text = md ? vms_document_format (md) : NULL;
    if (md && text == NULL)
      return NULL;
    if (text && (md_json = json_tokener_parse (text)) == NULL) {
      vms_set_error (EINVAL, "cannot re-read its own metadata document");
      return NULL;
    }
    if (json_object_object_add (ctx, "metadata", md_json) != 0) {
      json_object_put (md_json);
      vms_set_error (ENOMEM, "out of memory");
      return NULL;
    }
    if (text)
      json_object_object_get_ex (md_json, "components", &md_components);

    json_object *list = json_object_new_array ();
    if (exec_json_add (ctx, "components", list) == -1)
      return NULL;
    size_t n = vms_call_component_count (call);
    for (size_t i = 0; i < n; i++) {
      vms_component *c = vms_call_component_at (call, i);
      json_object *cj = c ? exec_component_json (w, call, c, md_components) : NULL;
      if (cj == NULL || json_object_array_add (list, cj) != 0) {
        json_object_put (cj);
        if (c != NULL)
          return NULL;
      }
    }
  }

  const char *s = json_object_to_json_string_ext (
    ctx, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  char *out;
  if (s == NULL || asprintf (&out, "%s\n", s) == -1) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return out;
}

/* ---- running the executable ---- */

/* What the budget left by the coordinator means for the executable: it
 * gets SIGTERM a little before the budget ends, SIGKILL half-way through
 * that reserve, so that the writer reports the time-out itself — with the
 * executable's stderr — while the coordinator still waits for it. */
static void
exec_budget (int64_t left_ms, int64_t *timeout_ms, int64_t *grace_ms)
{
  if (left_ms >= INT64_MAX / 4) {
    *timeout_ms = -1;
    *grace_ms = 1000;
    return;
  }
  int64_t reserve = left_ms / 10;
  if (reserve > 1000) reserve = 1000;
  if (reserve < 20) reserve = left_ms < 20 ? left_ms : 20;
  *timeout_ms = left_ms - reserve;
  *grace_ms = reserve / 2 > 0 ? reserve / 2 : -1;   /* -1: SIGKILL at once */
}

static int
exec_run (struct exec_writer *w, vms_call *call, enum vms_event ev,
          struct vms_subprocess_result *res)
{
  int64_t timeout_ms, grace_ms;
  exec_budget (vms_call_ms_left (call), &timeout_ms, &grace_ms);

  CLEANUP_FREE char *input = exec_context (w, call, ev, timeout_ms);
  if (input == NULL)
    return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES,
                          "%s: cannot build its input: %s", w->path,
                          vms_get_error () ? vms_get_error () : "unknown error");

  const char *sid = vms_call_session_id (call);
  CLEANUP_FREE char *e_event = NULL, *e_sid = NULL, *e_type = NULL;
  CLEANUP_FREE char *e_budget = NULL, *e_proto = NULL, *e_exe = NULL;
  CLEANUP_FREE char *e_name = NULL;
  if (asprintf (&e_event, "VMSHADOW_EVENT=%s", vms_event_name (ev)) == -1 ||
      asprintf (&e_sid, "VMSHADOW_SESSION_ID=%s", sid ? sid : "") == -1 ||
      asprintf (&e_type, "VMSHADOW_SESSION_TYPE=%s",
                vms_call_is_backup (call) ? "backup" : "restore") == -1 ||
      asprintf (&e_budget, "VMSHADOW_BUDGET_MS=%lld", (long long) timeout_ms) == -1 ||
      asprintf (&e_proto, "VMSHADOW_PROTOCOL=%d", VMS_EXEC_PROTOCOL_VERSION) == -1 ||
      asprintf (&e_exe, "VMSHADOW_WRITER_EXE=%s", w->path) == -1 ||
      asprintf (&e_name, "VMSHADOW_WRITER_NAME=%s", w->name) == -1)
    return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");

  const char *argv[] = { w->path, vms_event_name (ev), NULL };
  const char *env[] = { e_event, e_sid, e_type, e_budget, e_proto, e_exe,
                        e_name, NULL };
  struct vms_subprocess_options opts = {
    .argv = argv,
    .env = env,
    .cwd = "/",
    .input = input,
    .input_len = strlen (input),
    .max_output = VMS_EXEC_MAX_OUTPUT,
    .max_errors = EXEC_MAX_ERRORS,
    .timeout_ms = timeout_ms,
    .kill_grace_ms = grace_ms,
  };
  if (vms_subprocess_run (&opts, res) == -1)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s",
                          vms_get_error () ? vms_get_error () : w->path);
  if (res->err_len > 0)
    vms_debug ("exec writer %s: %s: stderr: %s", w->path, vms_event_name (ev),
               res->err);
  return 0;
}

/* " (stderr: last lines)" or "". */
static const char *
exec_stderr_note (const struct vms_subprocess_result *res, char *buf, size_t len)
{
  char tail[EXEC_TAIL_BYTES + 1];
  vms_subprocess_error_tail (res, EXEC_TAIL_LINES, tail, sizeof tail);
  if (tail[0])
    snprintf (buf, len, " (stderr: %s)", tail);
  else
    buf[0] = '\0';
  return buf;
}

/* Up to 60 bytes of s for a message, control characters as '?'. */
static const char *
exec_quote (const char *s, size_t len, char *buf, size_t buflen)
{
  size_t n = 0;
  for (; n < len && n < 60 && n + 1 < buflen; n++) {
    unsigned char c = (unsigned char) s[n];
    buf[n] = c < 0x20 || c == 0x7f ? '?' : (char) c;
  }
  buf[n] = '\0';
  return buf;
}

/* Parse stdout as the reply: NULL with *ok = 1 when it is empty, the
 * object when it is one, NULL with *ok = 0 and why set otherwise. */
static json_object *
exec_parse_reply (const struct vms_subprocess_result *res, int *ok,
                  char *why, size_t whylen)
{
  size_t i = 0;

  *ok = 0;
  if (res->out_truncated) {
    snprintf (why, whylen, "it printed more than %d bytes on stdout",
              VMS_EXEC_MAX_OUTPUT);
    return NULL;
  }
  while (i < res->out_len && strchr (" \t\r\n", res->out[i]) && res->out[i])
    i++;
  if (i == res->out_len) {
    *ok = 1;
    return NULL;
  }
  if (memchr (res->out, '\0', res->out_len) != NULL) {
    snprintf (why, whylen, "its stdout is not a JSON object (it contains a NUL byte)");
    return NULL;
  }
  json_tokener *tok = json_tokener_new_ex (EXEC_REPLY_DEPTH);
  if (tok == NULL) {
    snprintf (why, whylen, "out of memory");
    return NULL;
  }
  char q[64];
  json_object *o = json_tokener_parse_ex (tok, res->out, (int) res->out_len);
  enum json_tokener_error jerr = json_tokener_get_error (tok);
  size_t end = json_tokener_get_parse_end (tok);
  json_tokener_free (tok);
  if (o == NULL || jerr != json_tokener_success) {
    json_object_put (o);
    snprintf (why, whylen, "its stdout is not a JSON object (%s): \"%s\"",
              jerr == json_tokener_continue ? "it ends too early"
              : json_tokener_error_desc (jerr),
              exec_quote (res->out + i, res->out_len - i, q, sizeof q));
    return NULL;
  }
  for (size_t j = end; j < res->out_len; j++)
    if (!strchr (" \t\r\n", res->out[j])) {
      json_object_put (o);
      snprintf (why, whylen, "its stdout has text after the JSON reply: \"%s\"",
                exec_quote (res->out + j, res->out_len - j, q, sizeof q));
      return NULL;
    }
  if (!json_object_is_type (o, json_type_object)) {
    json_object_put (o);
    snprintf (why, whylen, "its stdout is JSON but not an object: \"%s\"",
              exec_quote (res->out + i, res->out_len - i, q, sizeof q));
    return NULL;
  }
  *ok = 1;
  return o;
}

static const char *
exec_reply_string (json_object *reply, const char *key, int *bad)
{
  json_object *v;
  if (reply == NULL || !json_object_object_get_ex (reply, key, &v) ||
      json_object_is_type (v, json_type_null))
    return NULL;
  if (!json_object_is_type (v, json_type_string)) {
    *bad = 1;
    return NULL;
  }
  return json_object_get_string (v);
}

/* R5: attributes the reply adds to components, until PostSnapshot ends. */
static int
exec_apply_attributes (struct exec_writer *w, vms_call *call, enum vms_event ev,
                       json_object *reply)
{
  json_object *comps;
  if (reply == NULL || !json_object_object_get_ex (reply, "components", &comps) ||
      json_object_is_type (comps, json_type_null))
    return 0;
  if (!json_object_is_type (comps, json_type_object))
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                          "%s: its reply's \"components\" is not an object", w->path);
  int allowed = vms_call_is_backup (call) &&
    (ev == VMS_EVENT_PREPARE_BACKUP || ev == VMS_EVENT_PREPARE_SNAPSHOT ||
     ev == VMS_EVENT_FREEZE || ev == VMS_EVENT_THAW ||
     ev == VMS_EVENT_POST_SNAPSHOT);
  /* PreRestore may say where files go (and nothing else). */
  int targets_only = !vms_call_is_backup (call) && ev == VMS_EVENT_PRE_RESTORE;
  if (targets_only)
    allowed = 1;
  if (!allowed) {
    if (json_object_object_length (comps) > 0)
      vms_warn ("exec writer %s: %s: ignoring component attributes in its reply: "
                "they can be added only from prepare-backup to post-snapshot of a backup (R5)",
                w->path, vms_event_name (ev));
    return 0;
  }
  json_object_object_foreach (comps, cname, cval) {
    json_object *attrs;
    if (!json_object_is_type (cval, json_type_object))
      return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                            "%s: its reply's component \"%.100s\" is not an object",
                            w->path, cname);
    if (!json_object_object_get_ex (cval, "attributes", &attrs))
      continue;
    if (!json_object_is_type (attrs, json_type_object))
      return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                            "%s: its reply's \"attributes\" of component \"%.100s\" is not an object",
                            w->path, cname);
    vms_component *c = vms_call_component (call, cname);
    if (c == NULL) {
      vms_warn ("exec writer %s: %s: ignoring attributes of component \"%.100s\": "
                "it is not part of this backup", w->path, vms_event_name (ev), cname);
      continue;
    }
    json_object_object_foreach (attrs, key, val) {
      int r;
      if (targets_only &&
          (strncmp (key, VMS_ATTR_RESTORE_TARGET_PREFIX,
                    strlen (VMS_ATTR_RESTORE_TARGET_PREFIX)) != 0 ||
           !json_object_is_type (val, json_type_string))) {
        vms_warn ("exec writer %s: pre-restore: ignoring attribute \"%.100s\" "
                  "of component \"%.100s\": a restore takes only string "
                  "\"" VMS_ATTR_RESTORE_TARGET_PREFIX "PATH\" attributes",
                  w->path, key, cname);
        continue;
      }
      if (json_object_is_type (val, json_type_string))
        r = vms_component_set_string (c, key, json_object_get_string (val));
      else if (json_object_is_type (val, json_type_int))
        r = vms_component_set_int (c, key, json_object_get_int64 (val));
      else if (json_object_is_type (val, json_type_boolean))
        r = vms_component_set_int (c, key, json_object_get_boolean (val) ? 1 : 0);
      else
        return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                              "%s: attribute \"%.100s\" of component \"%.100s\" "
                              "must be a string, an integer or a boolean",
                              w->path, key, cname);
      if (r == -1)
        return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s: %s", w->path,
                              vms_get_error () ? vms_get_error () : "cannot set an attribute");
      if (!string_vector_contains (&w->attr_keys, key)
          && string_vector_append_copy (&w->attr_keys, key) == -1)
        return vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
    }
  }
  return 0;
}

/* Turn how the executable ended into 0 or a veto (R4). On success the
 * reply is returned in *reply_out (may be NULL). */
static int
exec_judge (struct exec_writer *w, vms_call *call,
            const struct vms_subprocess_result *res, json_object **reply_out)
{
  char how[160], note[EXEC_TAIL_BYTES + 20], why[200];
  int parsed_ok, bad = 0;

  *reply_out = NULL;
  vms_subprocess_describe (res, how, sizeof how);
  exec_stderr_note (res, note, sizeof note);

  if (res->timed_out)
    return vms_call_fail (call, VMS_FAILURE_TIMEOUT, "%s %s%s", w->path, how, note);
  if (!res->exited)        /* a signal: it crashed or someone killed it */
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s %s%s", w->path, how, note);

  json_object *reply = exec_parse_reply (res, &parsed_ok, why, sizeof why);
  if (res->exit_status == 0) {
    if (!parsed_ok)
      return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                            "%s exited with status 0, but %s%s", w->path, why, note);
    *reply_out = reply;
    return 0;
  }

  /* A veto: the reply may name the kind and give the message. */
  CLEANUP_JSON json_object *r = reply;
  enum vms_failure kind = res->exit_status == EXEC_EX_TEMPFAIL
    ? VMS_FAILURE_RETRYABLE : VMS_FAILURE_NON_RETRYABLE;
  const char *fname = exec_reply_string (r, "failure", &bad);
  const char *msg = exec_reply_string (r, "message", &bad);
  char extra[260] = "";

  if (fname) {
    int k = vms_failure_from_name (fname);
    if (k > VMS_FAILURE_NONE)
      kind = (enum vms_failure) k;
    else
      snprintf (extra, sizeof extra, "; its reply names an unknown failure kind \"%.60s\"",
                fname);
  }
  if (bad)
    snprintf (extra, sizeof extra, "; \"failure\" and \"message\" in its reply must be strings");
  else if (!parsed_ok)
    snprintf (extra, sizeof extra, "; %s", why);
  return vms_call_fail (call, kind, "%s %s%s%.400s%s%s", w->path, how,
                        msg ? ": " : "", msg ? msg : "", extra, note);
}

static int
exec_writer_event (void *data, vms_call *call)
{
  struct exec_writer *w = data;
  enum vms_event ev = vms_call_event (call);
  struct vms_subprocess_result res = { 0 };
  json_object *reply = NULL;
  int r;

  if (exec_run (w, call, ev, &res) == -1)
    return -1;
  r = exec_judge (w, call, &res, &reply);
  if (r == 0)
    r = exec_apply_attributes (w, call, ev, reply);
  json_object_put (reply);
  vms_subprocess_result_reset (&res);
  return r;
}

static int
exec_writer_identify (void *data, vms_call *call)
{
  struct exec_writer *w = data;
  struct vms_subprocess_result res = { 0 };
  char how[160], note[EXEC_TAIL_BYTES + 20];
  int r = -1;

  if (exec_run (w, call, VMS_EVENT_IDENTIFY, &res) == -1)
    return -1;
  vms_subprocess_describe (&res, how, sizeof how);
  exec_stderr_note (&res, note, sizeof note);

  if (!vms_subprocess_succeeded (&res)) {
    json_object *reply = NULL;
    r = exec_judge (w, call, &res, &reply);    /* a veto, with its kind */
    json_object_put (reply);
    goto out;
  }
  if (res.out_truncated) {
    r = vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                       "%s identify printed more than %d bytes; a metadata "
                       "document is never that large", w->path, VMS_EXEC_MAX_OUTPUT);
    goto out;
  }
  size_t i = 0;
  while (i < res.out_len && strchr (" \t\r\n", res.out[i]) && res.out[i])
    i++;
  if (i == res.out_len) {
    r = vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                       "%s identify printed no metadata document on stdout%s",
                       w->path, note);
    goto out;
  }

  vms_document *md = vms_document_parse (res.out, res.out_len);
  if (md == NULL) {
    r = vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                       "%s identify printed a malformed metadata document: %s%s",
                       w->path, vms_get_error () ? vms_get_error () : "", note);
    goto out;
  }
  const char *id = vms_metadata_writer_id (md);
  const char *name = vms_metadata_writer_name (md);
  if (vms_document_kind (md) != VMS_DOC_METADATA)
    r = vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                       "%s identify printed a backup components document, not "
                       "a writer metadata document (\"format\": \"%s\")",
                       w->path, VMS_METADATA_FORMAT);
  else if (id == NULL || *id == '\0')
    r = vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                       "%s identify: its metadata document has no writer id "
                       "(\"writer\": {\"id\": …}); an exec writer needs a fixed "
                       "UUID so that restores find it", w->path);
  else if (vms_document_replace (vms_call_metadata (call), md) == -1)
    r = vms_call_fail (call, VMS_FAILURE_OUT_OF_RESOURCES, "%s: %s", w->path,
                       vms_get_error () ? vms_get_error () : "out of memory");
  else {
    char *newname = strdup (name);
    if (newname) {
      free (w->name);
      w->name = newname;
    }
    r = 0;
  }
  vms_document_free (md);

 out:
  vms_subprocess_result_reset (&res);
  return r;
}

/* ---- loading the writers directory ---- */

int
vms_exec_writer_add (vms_coordinator *coord, const char *path,
                     const struct vms_exec_writer_options *opts)
{
  struct exec_writer *w = calloc (1, sizeof *w);
  const char *base;

  if (w == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  /* Executables run with "/" as their working directory: keep the path
   * absolute. */
  if (path[0] == '/')
    w->path = strdup (path);
  else {
    char cwd[PATH_MAX];
    if (getcwd (cwd, sizeof cwd) == NULL) {
      vms_set_error (errno, "exec writer %s: cannot get the current directory: %s",
                     path, strerror (errno));
      exec_writer_free (w);
      return -1;
    }
    if (asprintf (&w->path, "%s/%s", cwd, path) == -1)
      w->path = NULL;
  }
  if (w->path == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    exec_writer_free (w);
    return -1;
  }
  base = strrchr (w->path, '/') + 1;
  if ((w->name = strdup (base)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    exec_writer_free (w);
    return -1;
  }

  const struct vms_writer writer = {
    .api_version = VMS_WRITER_API_VERSION,
    .struct_size = sizeof (struct vms_writer),
    .name = w->name,
    .id = NULL,                 /* from Identify */
    .freeze_budget_ms = opts ? opts->freeze_budget_ms : 0,
    .event_budget_ms = opts ? opts->event_budget_ms : 0,
    .identify = exec_writer_identify,
    .prepare_backup = exec_writer_event,
    .prepare_snapshot = exec_writer_event,
    .freeze = exec_writer_event,
    .thaw = exec_writer_event,
    .post_snapshot = exec_writer_event,
    .abort = exec_writer_event,
    .backup_complete = exec_writer_event,
    .backup_shutdown = exec_writer_event,
    .pre_restore = exec_writer_event,
    .post_restore = exec_writer_event,
    .close = exec_writer_close,
  };
  if (vms_coordinator_add_writer (coord, &writer, w) == -1) {
    vms_set_error (vms_get_errno (), "exec writer %s: %s", w->path,
                   vms_get_error () ? vms_get_error () : "cannot add it");
    exec_writer_free (w);
    return -1;
  }
  vms_debug ("exec writer %s added", w->path);
  return 0;
}

static int
exec_compare_names (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

int
vms_exec_writers_load (vms_coordinator *coord, const char *dir)
{
  return vms_exec_writers_load_with (coord, dir, NULL);
}

int
vms_exec_writers_load_with (vms_coordinator *coord, const char *dir,
                            const struct vms_exec_writer_options *opts)
{
  /* How dir was chosen, for messages; NULL for the default, which may be
   * missing. */
  const char *origin = "";
  string_vector names = empty_vector;
  DIR *d;
  int added = 0;

  if (dir == NULL) {
    const char *env = getenv (VMS_EXEC_WRITERS_DIR_ENV);
    if (env && *env) {
      dir = env;
      origin = " (set by " VMS_EXEC_WRITERS_DIR_ENV ")";
    }
    else {
      dir = VMS_EXEC_WRITERS_DIR;
      origin = NULL;            /* the default: may be missing */
    }
  }

  d = opendir (dir);
  if (d == NULL) {
    if (origin == NULL && errno == ENOENT) {
      vms_debug ("no exec writers: %s does not exist", dir);
      return 0;
    }
    vms_set_error (errno, "cannot read the writers directory %s%s: %s",
                   dir, origin ? origin : " (the default)", strerror (errno));
    return -1;
  }
  for (;;) {
    errno = 0;
    struct dirent *de = readdir (d);
    if (de == NULL) {
      if (errno != 0) {
        vms_set_error (errno, "cannot read the writers directory %s: %s",
                       dir, strerror (errno));
        closedir (d);
        string_vector_free_all (&names);
        return -1;
      }
      break;
    }
    if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
      continue;
    if (vms_hook_name_ignored (de->d_name)) {
      vms_debug ("exec writers: skipping %s/%s (hidden or a backup file)",
                 dir, de->d_name);
      continue;
    }
    if (string_vector_append_copy (&names, de->d_name) == -1) {
      vms_set_error (ENOMEM, "out of memory");
      closedir (d);
      string_vector_free_all (&names);
      return -1;
    }
  }
  closedir (d);
  if (names.len > 0)
    qsort (names.ptr, names.len, sizeof names.ptr[0], exec_compare_names);

  for (size_t i = 0; i < names.len; i++) {
    CLEANUP_FREE char *path = NULL;
    struct stat st;
    size_t dl = strlen (dir);

    if (asprintf (&path, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/",
                  names.ptr[i]) == -1) {
      path = NULL;
      vms_set_error (ENOMEM, "out of memory");
      added = -1;
      break;
    }
    if (stat (path, &st) == -1) {
      vms_debug ("exec writers: skipping %s: %s", path, strerror (errno));
      continue;
    }
    if (!S_ISREG (st.st_mode)) {
      vms_debug ("exec writers: skipping %s: not a regular file", path);
      continue;
    }
    if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0 ||
        faccessat (AT_FDCWD, path, X_OK, AT_EACCESS) == -1) {
      vms_debug ("exec writers: skipping %s: not executable", path);
      continue;
    }
    if (st.st_mode & S_IWOTH) {
      vms_warn ("exec writers: not running %s: anyone may write to it "
                "(chmod o-w to use it)", path);
      continue;
    }
    if (vms_exec_writer_add (coord, path, opts) == -1) {
      added = -1;
      break;
    }
    added++;
  }
  string_vector_free_all (&names);
  return added;
}

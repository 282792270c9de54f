/* Guest processing (issue 17; R2, R3, R4, R5; docs/guest-writers.md): the
 * host half of the guest side. vmshadow-guest (guest/) runs inside the VM;
 * the VM writer runs it through the guest agent's guest-exec:
 *
 *   Identify           vmshadow-guest identify      → the guest writers'
 *                      metadata, stored with the VM's component (R5)
 *   PrepareForSnapshot vmshadow-guest run prepare-backup, before the
 *                      freeze; the freeze itself runs the writers' freeze
 *                      and thaw (vmshadow-guest is qemu-ga's fsfreeze
 *                      hook); vmshadow-guest status after the thaw reads
 *                      their results
 *   BackupComplete     vmshadow-guest run backup-complete (after the commit)
 *   Abort              vmshadow-guest run abort
 *
 * Everything the guest prints is data from outside: parsed with json-c,
 * every string checked for type, kept as text only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "log.h"
#include "str.h"
#include "vm-internal.h"

#define GUEST_MAX_OUTPUT (1024 * 1024)
/* What the host waits for each call (the guest's own budgets are less). */
#define GUEST_IDENTIFY_MS 30000
#define GUEST_PREPARE_MS 90000
#define GUEST_STATUS_MS 20000
#define GUEST_COMPLETE_MS 90000
#define GUEST_ABORT_MS 60000

/* ---- guest-exec through the agent ---- */

static int
b64_value (int c)
{
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Decode base64 (the agent's out-data); NULL when malformed or too long. */
static char *
b64_decode (const char *in)
{
  size_t len = strlen (in), o = 0;
  char *out;
  unsigned acc = 0;
  int bits = 0;

  if (len / 4 * 3 > GUEST_MAX_OUTPUT || (out = malloc (len / 4 * 3 + 4)) == NULL)
    return NULL;
  for (const char *p = in; *p; p++) {
    int v;
    if (*p == '=')
      break;
    if ((v = b64_value ((unsigned char) *p)) < 0) {
      free (out);
      return NULL;
    }
    acc = (acc << 6) | (unsigned) v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char) ((acc >> bits) & 0xff);
    }
  }
  out[o] = '\0';
  if (memchr (out, '\0', o) != NULL) {  /* no NUL inside text */
    free (out);
    return NULL;
  }
  return out;
}

static json_object *
agent (struct vm_entry *vm, json_object *req, int timeout_s, char **why)
{
  const char *cmd = json_object_to_json_string_ext (req, JSON_C_TO_STRING_PLAIN);
  CLEANUP_FREE char *reply = virDomainQemuAgentCommand (vm->dom, cmd, timeout_s, 0);
  json_object *r, *ret;

  if (reply == NULL) {
    *why = vms_strdup_printf ("the guest agent: %s", vm_virt_error ());
    return NULL;
  }
  r = json_tokener_parse (reply);
  if (r == NULL || !json_object_object_get_ex (r, "return", &ret) ||
      !json_object_is_type (ret, json_type_object)) {
    json_object_put (r);
    *why = strdup ("the guest agent's reply is not what guest-exec answers");
    return NULL;
  }
  json_object_get (ret);
  json_object_put (r);
  return ret;
}

/* How long the host waits for one answer of the guest side: the call's
 * own limit, or less with $VMSHADOW_GUEST_ANSWER_MS (1000..600000). */
static int64_t
answer_ms (int64_t limit_ms)
{
  const char *e = getenv ("VMSHADOW_GUEST_ANSWER_MS");
  char *end;
  long long v;

  if (e == NULL || *e == '\0')
    return limit_ms;
  errno = 0;
  v = strtoll (e, &end, 10);
  if (errno || *end || v < 1000 || v > 600000)
    return limit_ms;
  return v < limit_ms ? v : limit_ms;
}

/* Run VMS_VM_GUEST_PROGRAM with args in the guest, wait up to timeout_ms,
 * and parse its stdout: one JSON object. NULL with *why (malloc'd).
 * A guest side that hangs (issue 17: it runs but never answers) costs one
 * wait: after it, nothing more is asked of it in this session (an abort
 * sent to it would only wait as long again). */
static json_object *
guest_run (struct vm_entry *vm, const char *const *args, int64_t timeout_ms,
           char **why)
{
  json_object *req, *a, *argv, *st = NULL, *v, *out;
  int64_t deadline;
  int64_t pid;
  CLEANUP_FREE char *text = NULL;

  *why = NULL;
  if (vm->guest_hung) {
    *why = vms_strdup_printf ("not asked: %s did not answer an earlier call "
                              "in time", VMS_VM_GUEST_PROGRAM);
    return NULL;
  }
  timeout_ms = answer_ms (timeout_ms);
  deadline = vms_now_ms () + timeout_ms;
  req = json_object_new_object ();
  a = json_object_new_object ();
  argv = json_object_new_array ();
  for (size_t i = 0; args[i]; i++)
    json_object_array_add (argv, json_object_new_string (args[i]));
  json_object_object_add (a, "path", json_object_new_string (VMS_VM_GUEST_PROGRAM));
  json_object_object_add (a, "arg", argv);
  json_object_object_add (a, "capture-output", json_object_new_boolean (1));
  json_object_object_add (req, "execute", json_object_new_string ("guest-exec"));
  json_object_object_add (req, "arguments", a);
  v = agent (vm, req, 10, why);
  json_object_put (req);
  if (v == NULL)
    return NULL;
  if (!json_object_object_get_ex (v, "pid", &out) ||
      !json_object_is_type (out, json_type_int)) {
    json_object_put (v);
    *why = strdup ("guest-exec gave no pid");
    return NULL;
  }
  pid = json_object_get_int64 (out);
  json_object_put (v);
  /* Issue 15/17: asked after 2 ms, then twice as long each time up to
   * 50 ms: vmshadow-guest usually ends within a few ms, and a fixed 50 ms
   * step was most of each call's time (prepare-backup before the freeze,
   * status after the thaw). */
  for (long step_ms = 2;; step_ms = step_ms * 2 > 50 ? 50 : step_ms * 2) {
    json_object *exited;
    struct timespec ts = { 0, step_ms * 1000 * 1000 };
    req = json_object_new_object ();
    a = json_object_new_object ();
    json_object_object_add (a, "pid", json_object_new_int64 (pid));
    json_object_object_add (req, "execute", json_object_new_string ("guest-exec-status"));
    json_object_object_add (req, "arguments", a);
    st = agent (vm, req, 10, why);
    json_object_put (req);
    if (st == NULL)
      return NULL;
    if (json_object_object_get_ex (st, "exited", &exited) &&
        json_object_get_boolean (exited))
      break;
    json_object_put (st);
    if (vms_now_ms () > deadline) {
      *why = vms_strdup_printf ("%s %s%s%s did not answer within %" PRId64
                                " ms", VMS_VM_GUEST_PROGRAM, args[0],
                                args[1] ? " " : "", args[1] ? args[1] : "",
                                timeout_ms);
      vm->guest_hung = 1;
      return NULL;
    }
    nanosleep (&ts, NULL);
  }
  if (json_object_object_get_ex (st, "exitcode", &v) &&
      json_object_get_int (v) != 0) {
    CLEANUP_FREE char *err = NULL;
    if (json_object_object_get_ex (st, "err-data", &v) &&
        json_object_is_type (v, json_type_string))
      err = b64_decode (json_object_get_string (v));
    *why = vms_strdup_printf ("%s %s exited with status %d%s%.300s",
                              VMS_VM_GUEST_PROGRAM, args[0],
                              json_object_get_int (json_object_object_get (st, "exitcode")),
                              err && *err ? ": " : "", err ? err : "");
    /* 127: the agent could not run it (not installed). */
    json_object_put (st);
    return NULL;
  }
  if (!json_object_object_get_ex (st, "out-data", &v) ||
      !json_object_is_type (v, json_type_string) ||
      (text = b64_decode (json_object_get_string (v))) == NULL) {
    json_object_put (st);
    *why = vms_strdup_printf ("%s %s printed nothing readable",
                              VMS_VM_GUEST_PROGRAM, args[0]);
    return NULL;
  }
  json_object_put (st);
  out = json_tokener_parse (text);
  if (out == NULL || !json_object_is_type (out, json_type_object)) {
    json_object_put (out);
    *why = vms_strdup_printf ("%s %s printed something that is not a JSON "
                              "object", VMS_VM_GUEST_PROGRAM, args[0]);
    return NULL;
  }
  return out;
}

/* ---- results ---- */

static const char *
str_of (json_object *o, const char *key)
{
  json_object *v;
  if (o && json_object_object_get_ex (o, key, &v) &&
      json_object_is_type (v, json_type_string))
    return json_object_get_string (v);
  return NULL;
}

static json_object *
results_of (struct vm_entry *vm)
{
  if (vm->guest_results == NULL)
    vm->guest_results = json_object_new_array ();
  return vm->guest_results;
}

/* Keep each writer's result of one event (writer, event, result, failure,
 * message: strings only); return the first veto in words, or NULL. */
static char *
take_results (struct vm_entry *vm, json_object *writers)
{
  char *veto = NULL;
  size_t n;

  if (writers == NULL || !json_object_is_type (writers, json_type_array))
    return NULL;
  n = json_object_array_length (writers);
  for (size_t i = 0; i < n; i++) {
    json_object *w = json_object_array_get_idx (writers, i), *k;
    const char *name = str_of (w, "writer"), *event = str_of (w, "event");
    const char *result = str_of (w, "result"), *failure = str_of (w, "failure");
    const char *message = str_of (w, "message");
    if (name == NULL || event == NULL || result == NULL)
      continue;
    k = json_object_new_object ();
    json_object_object_add (k, "writer", json_object_new_string (name));
    json_object_object_add (k, "event", json_object_new_string (event));
    json_object_object_add (k, "result", json_object_new_string (result));
    if (failure)
      json_object_object_add (k, "failure", json_object_new_string (failure));
    if (message)
      json_object_object_add (k, "message", json_object_new_string (message));
    json_object_array_add (results_of (vm), k);
    if (veto == NULL && strcmp (result, "ok") != 0 &&
        strcmp (result, "not-run") != 0)
      veto = vms_strdup_printf ("guest writer \"%s\" %s at %s (%s): %s", name,
                                strcmp (result, "timeout") == 0 ? "ran past "
                                "its budget" : strcmp (result, "crashed") == 0
                                ? "crashed" : "vetoed", event,
                                failure ? failure : "non-retryable",
                                message ? message : "no reason given");
  }
  return veto;
}

static void
note (struct vm_entry *vm, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
note (struct vm_entry *vm, const char *fmt, ...)
{
  va_list ap;
  char *s;
  va_start (ap, fmt);
  s = vms_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (s) {
    free (vm->guest_note);
    vm->guest_note = s;
  }
}

/* ---- the steps ---- */

int
vm_guest_identify (struct vm_writer *w, struct vm_entry *vm, vms_component *c,
                   char **why)
{
  static const char *const args[] = { "identify", NULL };
  json_object *o, *writers, *meta = NULL;
  size_t n;

  *why = NULL;
  vm->guest_policy = vm->cfg.policy_guest >= 0
    ? (enum vms_vm_guest) vm->cfg.policy_guest : w->guest;
  vm->guest_active = 0;
  if (vm->guest_policy == VMS_VM_GUEST_OFF)
    return 0;
  if (vms_component_set_string (c, VMS_VM_ATTR_GUEST_POLICY,
                                vms_vm_guest_name (vm->guest_policy)) == -1)
    return -2;
  o = guest_run (vm, args, GUEST_IDENTIFY_MS, why);
  if (o == NULL || !json_object_object_get_ex (o, "writers", &writers) ||
      !json_object_is_type (writers, json_type_array)) {
    if (o && *why == NULL)
      *why = strdup ("its identify answer lists no writers");
    json_object_put (o);
    CLEANUP_FREE char *side = vms_strdup_printf ("does not answer: %s",
                                                 *why ? *why : "?");
    if (side == NULL || vms_component_set_string (c, VMS_VM_ATTR_GUEST_SIDE, side) == -1)
      return -2;
    return -1;
  }
  /* R5: name, id and components of each guest writer, as it said them. */
  meta = json_object_new_array ();
  n = json_object_array_length (writers);
  for (size_t i = 0; i < n; i++) {
    json_object *wr = json_object_array_get_idx (writers, i);
    json_object *m = json_object_new_object (), *doc = NULL, *wo, *comps;
    const char *file = str_of (wr, "writer"), *out = str_of (wr, "output");
    const char *result = str_of (wr, "result");
    json_object_object_add (m, "writer", json_object_new_string (file ? file : "?"));
    if (result && strcmp (result, "ok") != 0) {
      json_object_object_add (m, "error", json_object_new_string (
                                str_of (wr, "message") ? str_of (wr, "message") : result));
    }
    else if (out && (doc = json_tokener_parse (out)) != NULL &&
             json_object_object_get_ex (doc, "writer", &wo)) {
      const char *nm = str_of (wo, "name"), *id = str_of (wo, "id");
      json_object *names = json_object_new_array ();
      if (nm)
        json_object_object_add (m, "name", json_object_new_string (nm));
      if (id)
        json_object_object_add (m, "id", json_object_new_string (id));
      if (json_object_object_get_ex (doc, "components", &comps) &&
          json_object_is_type (comps, json_type_array))
        for (size_t k = 0; k < json_object_array_length (comps); k++) {
          const char *cn = str_of (json_object_array_get_idx (comps, k), "name");
          if (cn)
            json_object_array_add (names, json_object_new_string (cn));
        }
      json_object_object_add (m, "components", names);
    }
    else
      json_object_object_add (m, "error", json_object_new_string (
                                "identify printed no metadata document"));
    json_object_put (doc);
    json_object_array_add (meta, m);
  }
  json_object_put (o);
  CLEANUP_FREE char *side = vms_strdup_printf ("answers (%zu guest writer%s)",
                                               n, n == 1 ? "" : "s");
  int r = side == NULL ||
    vms_component_set_string (c, VMS_VM_ATTR_GUEST_SIDE, side) == -1 ||
    vms_component_set_string (c, VMS_VM_ATTR_GUEST_WRITERS,
                              json_object_to_json_string_ext (meta, JSON_C_TO_STRING_PLAIN)) == -1
    ? -2 : 0;
  json_object_put (meta);
  vm->guest_active = r == 0;
  vms_debug ("vm writer: %s: guest side %s", vm->name, side ? side : "?");
  return r;
}

int
vm_guest_fell_back_at_identify (struct vm_entry *vm, vms_component *c,
                                const char *why)
{
  note (vm, "tried: fell back to crash-consistent: the guest side does not "
        "answer: %s", why);
  vm->method = VM_METHOD_CRASH_CONSISTENT;
  return vms_component_set_string (c, VMS_VM_ATTR_METHOD,
                                   vm_method_name (vm->method)) == -1 ||
    vms_component_set_string (c, VMS_ATTR_GUEST_PROCESSING, vm->guest_note) == -1
    ? -1 : 0;
}

int
vm_guest_prepare (struct vm_entry *vm, int64_t freeze_budget_ms, char **why)
{
  char fb[32];
  const char *args[] = { "run", "prepare-backup", "--freeze-budget-ms", fb, NULL };
  json_object *o, *writers;

  *why = NULL;
  if (!vm->guest_active)
    return 0;
  snprintf (fb, sizeof fb, "%" PRId64, freeze_budget_ms);
  o = guest_run (vm, args, GUEST_PREPARE_MS, why);
  vm->guest_prepared = 1;       /* abort is due from here on, whatever came */
  if (o == NULL)
    return -1;
  json_object_object_get_ex (o, "writers", &writers);
  *why = take_results (vm, writers);
  json_object_put (o);
  return *why ? -1 : 0;
}

/* The freeze and thaw results the hook kept; the freeze's veto in words. */
char *
vm_guest_read_status (struct vm_entry *vm)
{
  static const char *const args[] = { "status", NULL };
  CLEANUP_FREE char *why = NULL;
  json_object *o, *f, *t, *writers;
  char *veto = NULL;

  if (!vm->guest_active)
    return NULL;
  o = guest_run (vm, args, GUEST_STATUS_MS, &why);
  if (o == NULL) {
    vms_debug ("vm writer: %s: guest status: %s", vm->name, why);
    return vms_strdup_printf ("the guest side's status could not be read: %s",
                              why ? why : "?");
  }
  if (json_object_object_get_ex (o, "freeze", &f) &&
      json_object_object_get_ex (f, "writers", &writers))
    veto = take_results (vm, writers);
  if (json_object_object_get_ex (o, "thaw", &t) &&
      json_object_object_get_ex (t, "writers", &writers))
    free (take_results (vm, writers));
  json_object_put (o);
  return veto;
}

void
vm_guest_fell_back (struct vm_entry *vm, const char *why)
{
  note (vm, "tried: fell back to crash-consistent: %s", why);
}

int
vm_guest_complete (struct vm_entry *vm, char **why)
{
  static const char *const args[] = { "run", "backup-complete", NULL };
  json_object *o, *writers;

  *why = NULL;
  if (!vm->guest_prepared)
    return 0;
  vm->guest_prepared = 0;
  o = guest_run (vm, args, GUEST_COMPLETE_MS, why);
  if (o == NULL)
    return -1;
  json_object_object_get_ex (o, "writers", &writers);
  *why = take_results (vm, writers);
  json_object_put (o);
  vms_debug ("vm writer: %s: guest backup-complete%s%s", vm->name,
             *why ? ": " : " done", *why ? *why : "");
  return *why ? -1 : 0;
}

void
vm_guest_abort (struct vm_entry *vm)
{
  static const char *const args[] = { "run", "abort", NULL };
  CLEANUP_FREE char *why = NULL;
  json_object *o, *writers;

  if (!vm->guest_prepared)
    return;
  vm->guest_prepared = 0;
  o = guest_run (vm, args, GUEST_ABORT_MS, &why);
  if (o == NULL) {
    vms_warn ("vm writer: %s: the guest writers' abort: %s", vm->name, why);
    return;
  }
  json_object_object_get_ex (o, "writers", &writers);
  free (take_results (vm, writers));
  json_object_put (o);
}

/* The component's record of it (R5): every result, and the summary
 * "required: app prepare-backup ok, app freeze ok, …". */
int
vm_guest_record (struct vm_entry *vm, vms_component *c)
{
  CLEANUP_FREE char *summary = NULL;
  size_t n;

  if (vm->guest_policy == VMS_VM_GUEST_OFF)
    return 0;
  if (vm->guest_results &&
      vms_component_set_string (c, VMS_VM_ATTR_GUEST_RESULTS,
                                json_object_to_json_string_ext (
                                  vm->guest_results, JSON_C_TO_STRING_PLAIN)) == -1)
    return -1;
  if (vm->guest_note)
    return vms_component_set_string (c, VMS_ATTR_GUEST_PROCESSING, vm->guest_note);
  n = vm->guest_results ? json_object_array_length (vm->guest_results) : 0;
  summary = vms_strdup_printf ("%s:%s", vms_vm_guest_name (vm->guest_policy),
                               n ? "" : " no guest writers");
  for (size_t i = 0; i < n && summary; i++) {
    json_object *r = json_object_array_get_idx (vm->guest_results, i);
    char *s = vms_strdup_printf ("%s%s %s %s %s", summary, i ? "," : "",
                                 str_of (r, "writer"), str_of (r, "event"),
                                 str_of (r, "result"));
    free (summary);
    summary = s;
  }
  if (summary == NULL)
    return -1;
  return vms_component_set_string (c, VMS_ATTR_GUEST_PROCESSING, summary);
}

void
vm_guest_reset (struct vm_entry *vm)
{
  json_object_put (vm->guest_results);
  vm->guest_results = NULL;
  free (vm->guest_note);
  vm->guest_note = NULL;
  vm->guest_prepared = 0;
  vm->guest_hung = 0;
}

/* ---- vmshadow guest install (issue 17) ---- */

static int
agent_simple (virDomainPtr dom, json_object *req, json_object **ret)
{
  const char *cmd = json_object_to_json_string_ext (req, JSON_C_TO_STRING_PLAIN);
  CLEANUP_FREE char *reply = virDomainQemuAgentCommand (dom, cmd, 30, 0);
  json_object *r, *v;

  json_object_put (req);
  if (reply == NULL) {
    vms_set_error (EIO, "the guest agent: %s", vm_virt_error ());
    return -1;
  }
  if ((r = json_tokener_parse (reply)) == NULL ||
      !json_object_object_get_ex (r, "return", &v)) {
    json_object_put (r);
    vms_set_error (EPROTO, "the guest agent's reply is not understood");
    return -1;
  }
  if (ret)
    *ret = json_object_get (v);
  json_object_put (r);
  return 0;
}

static json_object *
agent_req (const char *execute, json_object *args)
{
  json_object *req = json_object_new_object ();
  json_object_object_add (req, "execute", json_object_new_string (execute));
  if (args)
    json_object_object_add (req, "arguments", args);
  return req;
}

static char *
b64_encode (const unsigned char *in, size_t len)
{
  static const char tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc ((len + 2) / 3 * 4 + 1), *o = out;
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned) in[i] << 16 | (i + 1 < len ? (unsigned) in[i + 1] << 8 : 0) |
      (i + 2 < len ? in[i + 2] : 0);
    *o++ = tab[v >> 18 & 63];
    *o++ = tab[v >> 12 & 63];
    *o++ = i + 1 < len ? tab[v >> 6 & 63] : '=';
    *o++ = i + 2 < len ? tab[v & 63] : '=';
  }
  *o = '\0';
  return out;
}

/* Write the local file program into the guest at path (mode set later). */
static int
push_file (virDomainPtr dom, const char *program, const char *path)
{
  FILE *f = fopen (program, "rb");
  json_object *a, *ret = NULL;
  int64_t handle;
  unsigned char buf[48 * 1024];
  size_t n;
  int r = -1;

  if (f == NULL) {
    vms_set_error (errno, "cannot read %s: %s", program, strerror (errno));
    return -1;
  }
  a = json_object_new_object ();
  json_object_object_add (a, "path", json_object_new_string (path));
  json_object_object_add (a, "mode", json_object_new_string ("w"));
  if (agent_simple (dom, agent_req ("guest-file-open", a), &ret) == -1 ||
      !json_object_is_type (ret, json_type_int)) {
    json_object_put (ret);
    fclose (f);
    if (ret)
      vms_set_error (EPROTO, "guest-file-open gave no handle");
    return -1;
  }
  handle = json_object_get_int64 (ret);
  json_object_put (ret);
  while ((n = fread (buf, 1, sizeof buf, f)) > 0) {
    CLEANUP_FREE char *b64 = b64_encode (buf, n);
    if (b64 == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto close;
    }
    a = json_object_new_object ();
    json_object_object_add (a, "handle", json_object_new_int64 (handle));
    json_object_object_add (a, "buf-b64", json_object_new_string (b64));
    if (agent_simple (dom, agent_req ("guest-file-write", a), NULL) == -1)
      goto close;
  }
  r = ferror (f) ? -1 : 0;
  if (r == -1)
    vms_set_error (EIO, "reading %s failed", program);
 close:
  fclose (f);
  a = json_object_new_object ();
  json_object_object_add (a, "handle", json_object_new_int64 (handle));
  if (agent_simple (dom, agent_req ("guest-file-close", a), NULL) == -1)
    r = -1;
  return r;
}

int
vms_libvirt_guest_install (const char *uri, const char *name,
                           const char *program, char **answer)
{
  virConnectPtr conn;
  virDomainPtr dom;
  struct vm_entry vm;
  CLEANUP_FREE char *why = NULL, *tmp = NULL, *script = NULL;
  json_object *o;
  int r = -1;

  *answer = NULL;
  if (virInitialize () == -1 ||
      (conn = virConnectOpen (uri ? uri : VMS_VM_DEFAULT_URI)) == NULL) {
    vms_set_error (ECONNREFUSED, "cannot connect to libvirt at %s: %s",
                   uri ? uri : VMS_VM_DEFAULT_URI, vm_virt_error ());
    return -1;
  }
  dom = virDomainLookupByName (conn, name);
  if (dom == NULL)
    dom = virDomainLookupByUUIDString (conn, name);
  if (dom == NULL) {
    vms_set_error (ENOENT, "no VM \"%s\" at %s", name, uri ? uri : VMS_VM_DEFAULT_URI);
    goto out;
  }
  if (virDomainIsActive (dom) != 1) {
    vms_set_error (EINVAL, "VM \"%s\" is not running: the guest side is "
                   "installed through its guest agent", name);
    goto out;
  }
  /* Written under a new name, then moved into place by the guest's sh:
   * a half-written program never replaces a working one. */
  tmp = vms_strdup_printf ("%s.vmshadow-new", VMS_VM_GUEST_PROGRAM);
  script = vms_strdup_printf (
    "set -e; chmod 755 %s; mv -f %s %s; mkdir -p /etc/vmshadow/guest-writers.d "
    "/etc/qemu/fsfreeze-hook.d; ln -sfn %s /etc/qemu/fsfreeze-hook.d/50-vmshadow-guest",
    tmp, tmp, VMS_VM_GUEST_PROGRAM, VMS_VM_GUEST_PROGRAM);
  if (tmp == NULL || script == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  if (push_file (dom, program, tmp) == -1)
    goto out;
  {
    json_object *a = json_object_new_object (), *argv = json_object_new_array ();
    json_object *ret = NULL, *pidv;
    json_object_array_add (argv, json_object_new_string ("-c"));
    json_object_array_add (argv, json_object_new_string (script));
    json_object_object_add (a, "path", json_object_new_string ("/bin/sh"));
    json_object_object_add (a, "arg", argv);
    if (agent_simple (dom, agent_req ("guest-exec", a), &ret) == -1)
      goto out;
    if (!json_object_object_get_ex (ret, "pid", &pidv)) {
      json_object_put (ret);
      vms_set_error (EPROTO, "guest-exec gave no pid");
      goto out;
    }
    int64_t pid = json_object_get_int64 (pidv);
    json_object_put (ret);
    for (int i = 0; i < 600; i++) {
      json_object *st = NULL, *ex, *code;
      struct timespec ts = { 0, 50 * 1000 * 1000 };
      a = json_object_new_object ();
      json_object_object_add (a, "pid", json_object_new_int64 (pid));
      if (agent_simple (dom, agent_req ("guest-exec-status", a), &st) == -1)
        goto out;
      if (json_object_object_get_ex (st, "exited", &ex) && json_object_get_boolean (ex)) {
        int c = json_object_object_get_ex (st, "exitcode", &code)
          ? json_object_get_int (code) : -1;
        json_object_put (st);
        if (c != 0) {
          vms_set_error (EIO, "installing in the guest failed (sh exited %d): %s",
                         c, script);
          goto out;
        }
        break;
      }
      json_object_put (st);
      nanosleep (&ts, NULL);
    }
  }
  /* It answers: the same call the backups make. */
  memset (&vm, 0, sizeof vm);
  vm.dom = dom;
  vm.name = (char *) name;
  {
    static const char *const args[] = { "version", NULL };
    o = guest_run (&vm, args, GUEST_STATUS_MS, &why);
  }
  if (o == NULL) {
    vms_set_error (EIO, "installed, but %s does not answer: %s",
                   VMS_VM_GUEST_PROGRAM, why ? why : "?");
    goto out;
  }
  *answer = strdup (json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN));
  json_object_put (o);
  r = 0;
 out:
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return r;
}

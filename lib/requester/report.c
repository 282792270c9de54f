/* The reports of backup and restore runs: names, JSON, freeing. The JSON
 * is the `vmshadow … --json` output (docs/vmshadow.1). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "requester-internal.h"
#include "vmshadow/error.h"

const char *
vms_outcome_name (enum vms_outcome o)
{
  switch (o) {
  case VMS_OUTCOME_SUCCESS: return "success";
  case VMS_OUTCOME_WARNINGS: return "warnings";
  case VMS_OUTCOME_PARTIAL: return "partial";
  case VMS_OUTCOME_FAILURE: return "failure";
  }
  return "unknown";
}

const char *
vms_set_state_name (enum vms_set_state s)
{
  switch (s) {
  case VMS_SET_COMPLETE: return "complete";
  case VMS_SET_STORED_WITH_ERRORS: return "stored-with-errors";
  case VMS_SET_FAILED: return "failed";
  }
  return "unknown";
}

const char *
vms_file_outcome_name (enum vms_file_outcome o)
{
  switch (o) {
  case VMS_FILE_WRITTEN: return "written";
  case VMS_FILE_FAILED: return "failed";
  case VMS_FILE_NOT_WRITTEN: return "not written";
  }
  return "unknown";
}

void
vms_backup_set_frozen (const struct vms_backup_set *set,
                       struct vms_frozen_summary *s)
{
  *s = (struct vms_frozen_summary) { 0, 0, -1, -1 };
  for (size_t i = 0; i < set->nr_components; i++) {
    const struct vms_component_report *t = &set->components[i];
    if (t->frozen_from_us < 0 || t->frozen_until_us < 0)
      continue;
    if (s->nr == 0 || t->frozen_from_us > s->from_us)
      s->from_us = t->frozen_from_us;
    if (s->nr == 0 || t->frozen_until_us < s->until_us)
      s->until_us = t->frozen_until_us;
    s->nr++;
    s->grouped += t->grouped != 0;
  }
}

/* ---- JSON ---- */

static void
add_string (json_object *o, const char *key, const char *value)
{
  if (value)
    json_object_object_add (o, key, json_object_new_string (value));
}

static void
add_int (json_object *o, const char *key, int64_t value)
{
  json_object_object_add (o, key, json_object_new_int64 (value));
}

static char *
json_text (json_object *o)
{
  char *text = NULL;
  if (o) {
    text = strdup (json_object_to_json_string_ext (
                     o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                     JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (o);
  }
  if (text == NULL)
    vms_set_error (ENOMEM, "out of memory writing a report");
  return text;
}

static json_object *
component_json (const struct vms_component_report *t)
{
  json_object *c = json_object_new_object ();
  json_object *excl = json_object_new_array ();

  add_string (c, "writer", t->writer);
  add_string (c, "component", t->component);
  add_string (c, "caption", t->caption);
  add_string (c, "method", t->method);
  if (t->freeze_window_ms >= 0)
    add_int (c, VMS_ATTR_FREEZE_WINDOW_MS, t->freeze_window_ms);
  if (t->downtime_ms >= 0)
    add_int (c, VMS_ATTR_DOWNTIME_MS, t->downtime_ms);
  if (t->frozen_from_us >= 0 && t->frozen_until_us >= 0) {
    add_int (c, VMS_ATTR_FROZEN_FROM_US, t->frozen_from_us);
    add_int (c, VMS_ATTR_FROZEN_UNTIL_US, t->frozen_until_us);
  }
  if (t->method)
    json_object_object_add (c, "grouped", json_object_new_boolean (t->grouped));
  add_string (c, VMS_ATTR_GUEST_PROCESSING, t->guest_processing);
  for (size_t e = 0; e < t->nr_excluded; e++) {
    json_object *x = json_object_new_object ();
    add_string (x, "path", t->excluded[e].path);
    add_string (x, "reason", t->excluded[e].reason);
    json_object_array_add (excl, x);
  }
  json_object_object_add (c, "excluded", excl);
  json_object *cbt = json_object_new_array ();
  for (size_t k = 0; k < t->nr_cbt_wrong; k++) {
    json_object *x = json_object_new_object ();
    add_string (x, "path", t->cbt_wrong[k].path);
    add_int (x, "sampled", (int64_t) t->cbt_wrong[k].sampled);
    add_int (x, "differed", (int64_t) t->cbt_wrong[k].differed);
    json_object_array_add (cbt, x);
  }
  json_object_object_add (c, "cbt_wrong", cbt);
  /* Issue 11: how each disk was read, and why. */
  json_object *reads = json_object_new_array ();
  for (size_t k = 0; k < t->nr_reads; k++) {
    json_object *x = json_object_new_object ();
    add_string (x, "path", t->reads[k].path);
    add_string (x, "how", t->reads[k].how);
    if (t->reads[k].why)
      add_string (x, "why", t->reads[k].why);
    add_int (x, "size", (int64_t) t->reads[k].size);
    add_int (x, "bytes_read", (int64_t) t->reads[k].bytes_read);
    add_int (x, "sampled", (int64_t) t->reads[k].sampled);
    json_object_array_add (reads, x);
  }
  json_object_object_add (c, "reads", reads);
  add_string (c, "type", t->incremental ? "incremental" : "full");
  add_int (c, "files", (int64_t) t->files);
  add_int (c, "size", (int64_t) t->size);
  add_int (c, "bytes_read", (int64_t) t->bytes_read);
  add_int (c, "bytes_stored", (int64_t) t->bytes_stored);
  add_int (c, "elapsed_ms", t->elapsed_ms);
  return c;
}

static json_object *
set_json (const struct vms_backup_set *set)
{
  json_object *out = json_object_new_object ();

  add_string (out, "vm", set->vm);
  add_string (out, "backup_id", set->backup_id);
  add_string (out, "state", vms_set_state_name (set->state));
  if (set->state != VMS_SET_FAILED) {
    json_object *list = json_object_new_array ();
    for (size_t i = 0; i < set->nr_components; i++)
      json_object_array_add (list, component_json (&set->components[i]));
    json_object_object_add (out, "components", list);
    add_int (out, "bytes_read", (int64_t) set->bytes_read);
    add_int (out, "bytes_stored", (int64_t) set->bytes_stored);
    /* Issue 17: did the frozen intervals share an instant? */
    struct vms_frozen_summary fs;
    vms_backup_set_frozen (set, &fs);
    if (fs.nr > 0) {
      json_object *g = json_object_new_object ();
      json_object_object_add (g, "grouped",
                              json_object_new_boolean (fs.grouped == fs.nr));
      add_int (g, "frozen", (int64_t) fs.nr);
      add_int (g, "latest_freeze_us", fs.from_us);
      add_int (g, "earliest_thaw_us", fs.until_us);
      json_object_object_add (g, "common_instant",
                              json_object_new_boolean (fs.from_us < fs.until_us));
      /* > 0: the common frozen interval; < 0: the gap between windows. */
      add_int (g, "common_us", fs.until_us - fs.from_us);
      json_object_object_add (out, "consistency", g);
    }
  }
  if (set->state != VMS_SET_COMPLETE) {
    json_object *writers = json_object_new_array ();
    for (size_t i = 0; i < set->nr_writers; i++) {
      const struct vms_writer_report *w = &set->writers[i];
      json_object *wo = json_object_new_object ();
      add_string (wo, "name", w->name);
      add_string (wo, "state", w->state);
      add_string (wo, "failure", vms_failure_name (w->failure));
      add_string (wo, "message", w->message);
      json_object_array_add (writers, wo);
    }
    json_object_object_add (out, "writers", writers);
  }
  if (set->failure.failed) {
    json_object *fo = json_object_new_object ();
    add_string (fo, "culprit", set->failure.culprit ? set->failure.culprit : "requester");
    json_object_object_add (fo, "provider", json_object_new_boolean (set->failure.is_provider));
    if (set->failure.culprit) {
      add_string (fo, "phase", vms_event_name (set->failure.phase));
      add_string (fo, "kind", vms_failure_name (set->failure.kind));
    }
    add_string (fo, "message", set->failure.message);
    json_object_object_add (out, "failure", fo);
  }
  add_int (out, "elapsed_ms", set->elapsed_ms);
  return out;
}

char *
vms_backup_report_json (const struct vms_backup_report *r)
{
  json_object *out;

  if (r->nr_sets == 1 && !r->each)
    out = set_json (&r->sets[0]);
  else {
    json_object *sets = json_object_new_array ();
    json_object *ok = json_object_new_array (), *bad = json_object_new_array ();
    out = json_object_new_object ();
    for (size_t i = 0; i < r->nr_sets; i++) {
      const struct vms_backup_set *set = &r->sets[i];
      json_object *so = set_json (set);
      if (r->each && set->vm == NULL)
        json_object_object_add (so, "host_applications", json_object_new_boolean (1));
      json_object_array_add (sets, so);
      if (set->vm)
        json_object_array_add (set->state == VMS_SET_FAILED ? bad : ok,
                               json_object_new_string (set->vm));
    }
    json_object_object_add (out, "sets", sets);
    /* Which VMs were stored and which not (why: in their set). */
    json_object_object_add (out, "succeeded", ok);
    json_object_object_add (out, "failed", bad);
  }
  add_string (out, "outcome", vms_outcome_name (r->outcome));
  /* The whole run's time (for one set, the set's own is replaced). */
  add_int (out, "elapsed_ms", r->elapsed_ms);
  return json_text (out);
}

static json_object *
strings_json (char *const *v, size_t n)
{
  json_object *a = json_object_new_array ();
  for (size_t i = 0; i < n; i++)
    json_object_array_add (a, json_object_new_string (v[i]));
  return a;
}

static json_object *
restored_json (const struct vms_restored_component *c, int dry_run)
{
  json_object *v = json_object_new_object ();
  json_object *files = json_object_new_array ();
  int vm = c->kind && strcmp (c->kind, "vm") == 0;

  if (vm)
    add_string (v, "uuid", c->component);
  else {
    add_string (v, "writer_id", c->writer_id);
    add_string (v, "writer", c->writer);
    add_string (v, "component", c->component);
  }
  add_string (v, "name", c->name);
  add_string (v, "status", dry_run ? "planned" : c->ok ? "restored" : "failed");
  /* R6: what the writer was told at PostRestore. */
  add_string (v, "restore_status", vms_restore_status_name (c->status));
  if (vm) {
    json_object_object_add (v, "defined", json_object_new_boolean (c->defined));
    add_string (v, "state", c->state);
    json_object_object_add (v, "resumed", json_object_new_boolean (c->resumed));
  }
  add_string (v, "error", c->error);
  for (size_t k = 0; k < c->nr_files; k++) {
    const struct vms_restored_file *fl = &c->files[k];
    json_object *f = json_object_new_object ();
    add_string (f, "path", fl->path);
    add_string (f, "target", fl->target);
    add_string (f, "format", fl->format);
    add_int (f, "size", (int64_t) fl->size);
    add_string (f, "status", vms_file_outcome_name (fl->outcome));
    add_string (f, "error", fl->error);
    json_object_array_add (files, f);
  }
  json_object_object_add (v, "files", files);
  json_object_object_add (v, "notes", strings_json (c->notes, c->nr_notes));
  json_object *ch = json_object_new_array ();
  for (size_t k = 0; k < c->nr_changes; k++) {
    json_object *o = json_object_new_object ();
    add_string (o, "action", c->changes[k].action);
    add_string (o, "object", c->changes[k].object);
    add_string (o, "detail", c->changes[k].detail);
    json_object_array_add (ch, o);
  }
  json_object_object_add (v, "changes", ch);
  if (vm)
    json_object_object_add (v, "disconnected",
                            strings_json (c->disconnected, c->nr_disconnected));
  return v;
}

char *
vms_restore_report_json (const struct vms_restore_report *r)
{
  json_object *out = json_object_new_object ();
  json_object *vms = json_object_new_array ();
  json_object *others = json_object_new_array ();

  add_string (out, "backup_id", r->backup_id);
  add_string (out, "state", r->dry_run ? "planned"
              : r->outcome == VMS_OUTCOME_SUCCESS ||
              r->outcome == VMS_OUTCOME_WARNINGS ? "complete" : "failed");
  add_string (out, "outcome", vms_outcome_name (r->outcome));
  json_object_object_add (out, "dry_run", json_object_new_boolean (r->dry_run));
  add_string (out, "error", r->error);
  for (size_t i = 0; i < r->nr_components; i++) {
    const struct vms_restored_component *c = &r->components[i];
    json_object_array_add (c->kind && strcmp (c->kind, "vm") == 0 ? vms : others,
                           restored_json (c, r->dry_run));
  }
  json_object_object_add (out, "vms", vms);
  json_object_object_add (out, "components", others);
  add_int (out, "elapsed_ms", r->elapsed_ms);
  if (r->instant) {
    /* restore --instant (issue 16): when the VM ran, how long the move took. */
    json_object *in = json_object_new_object ();
    add_int (in, "running_ms", r->running_ms);
    if (r->agent_ms > 0)
      add_int (in, "agent_ms", r->agent_ms);
    json_object_object_add (in, "moved", json_object_new_boolean (r->moved));
    if (r->moved)
      add_int (in, "move_ms", r->move_ms);
    json_object_object_add (out, "instant", in);
  }
  return json_text (out);
}

/* ---- freeing ---- */

static void
free_strings (char **v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free (v[i]);
  free (v);
}

void
vms_backup_report_free (struct vms_backup_report *r)
{
  if (r == NULL)
    return;
  for (size_t s = 0; s < r->nr_sets; s++) {
    struct vms_backup_set *set = &r->sets[s];
    free (set->vm);
    free (set->backup_id);
    free (set->failure.culprit);
    free (set->failure.message);
    for (size_t i = 0; i < set->nr_writers; i++) {
      free (set->writers[i].name);
      free (set->writers[i].id);
      free (set->writers[i].state);
      free (set->writers[i].message);
    }
    free (set->writers);
    for (size_t i = 0; i < set->nr_components; i++) {
      struct vms_component_report *c = &set->components[i];
      free (c->writer_id);
      free (c->writer);
      free (c->component);
      free (c->caption);
      free (c->method);
      free (c->guest_processing);
      for (size_t e = 0; e < c->nr_excluded; e++) {
        free (c->excluded[e].path);
        free (c->excluded[e].reason);
      }
      free (c->excluded);
      for (size_t k = 0; k < c->nr_cbt_wrong; k++)
        free (c->cbt_wrong[k].path);
      free (c->cbt_wrong);
      for (size_t k = 0; k < c->nr_reads; k++) {
        free (c->reads[k].path);
        free (c->reads[k].how);
        free (c->reads[k].why);
      }
      free (c->reads);
    }
    free (set->components);
  }
  free (r->sets);
  free (r);
}

void
req_restored_components_free (struct vms_restored_component *v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    struct vms_restored_component *c = &v[i];
    free (c->writer_id);
    free (c->writer);
    free (c->component);
    free (c->kind);
    free (c->name);
    free (c->state);
    free (c->error);
    for (size_t k = 0; k < c->nr_files; k++) {
      free (c->files[k].path);
      free (c->files[k].target);
      free (c->files[k].format);
      free (c->files[k].error);
    }
    free (c->files);
    free_strings (c->notes, c->nr_notes);
    free_strings (c->disconnected, c->nr_disconnected);
    for (size_t k = 0; k < c->nr_changes; k++) {
      free (c->changes[k].action);
      free (c->changes[k].object);
      free (c->changes[k].detail);
    }
    free (c->changes);
  }
  free (v);
}

void
vms_restore_report_free (struct vms_restore_report *r)
{
  if (r == NULL)
    return;
  req_restored_components_free (r->components, r->nr_components);
  free (r->backup_id);
  free (r->error);
  free (r);
}

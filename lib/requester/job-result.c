/* The result of a configured job's run (issue 19, docs/configuration.md,
 * "The job's result"): what `vmshadow job run --json` prints and what
 * notifiers get on stdin. One document: the run, one row per VM (and per
 * host application) with its outcome, size and time, and the backup's own
 * report whole. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json.h>

#include "vm-writer.h"
#include "vmshadow/config.h"
#include "vmshadow/error.h"

static const char *
jstr (json_object *o, const char *key)
{
  json_object *v;
  return json_object_object_get_ex (o, key, &v) && json_object_is_type (v, json_type_string)
    ? json_object_get_string (v) : NULL;
}

static int64_t
jint (json_object *o, const char *key)
{
  json_object *v;
  return json_object_object_get_ex (o, key, &v) ? json_object_get_int64 (v) : 0;
}

static void
put_str (json_object *o, const char *key, const char *v)
{
  json_object_object_add (o, key, v ? json_object_new_string (v) : NULL);
}

/* The VM name of a VM writer's component caption "Online\NAME" or
 * "Offline\NAME" (R7); NULL when it is not such a caption. */
static const char *
caption_vm (const char *caption)
{
  const char *bs = caption ? strchr (caption, '\\') : NULL;
  if (bs == NULL)
    return NULL;
  size_t n = (size_t) (bs - caption);
  if ((n == 6 && strncmp (caption, "Online", 6) == 0) ||
      (n == 7 && strncmp (caption, "Offline", 7) == 0))
    return bs + 1;
  return NULL;
}

/* A row of a component the set stored. */
static json_object *
component_row (json_object *set, json_object *c, int is_vm)
{
  json_object *row = json_object_new_object ();
  const char *caption = jstr (c, "caption");

  if (is_vm)
    put_str (row, "vm", caption_vm (caption) ? caption_vm (caption) : jstr (c, "component"));
  put_str (row, "writer", jstr (c, "writer"));
  put_str (row, "component", jstr (c, "component"));
  put_str (row, "caption", caption);
  put_str (row, "state", jstr (set, "state"));
  put_str (row, "backup_id", jstr (set, "backup_id"));
  put_str (row, "method", jstr (c, "method"));
  put_str (row, "type", jstr (c, "type"));
  json_object_object_add (row, "size", json_object_new_int64 (jint (c, "size")));
  json_object_object_add (row, "bytes_read", json_object_new_int64 (jint (c, "bytes_read")));
  json_object_object_add (row, "bytes_stored", json_object_new_int64 (jint (c, "bytes_stored")));
  json_object_object_add (row, "elapsed_ms", json_object_new_int64 (jint (c, "elapsed_ms")));
  put_str (row, "error", NULL);
  return row;
}

/* A row of something a failed set did not store. */
static json_object *
failed_row (json_object *set, const char *vm)
{
  json_object *row = json_object_new_object (), *f;
  const char *msg = json_object_object_get_ex (set, "failure", &f) ? jstr (f, "message") : NULL;

  if (vm)
    put_str (row, "vm", vm);
  put_str (row, "state", "failed");
  put_str (row, "backup_id", NULL);
  json_object_object_add (row, "elapsed_ms", json_object_new_int64 (jint (set, "elapsed_ms")));
  put_str (row, "error", msg ? msg : "the set failed; nothing was stored");
  return row;
}

/* The rows of one consistency set of the backup report. */
static void
set_rows (json_object *set, int single, char *const *selected, json_object *vms,
          json_object *apps, int64_t *read, int64_t *stored)
{
  json_object *comps;
  const char *state = jstr (set, "state");

  *read += jint (set, "bytes_read");
  *stored += jint (set, "bytes_stored");
  if (state && strcmp (state, "failed") != 0 &&
      json_object_object_get_ex (set, "components", &comps)) {
    for (size_t i = 0; i < json_object_array_length (comps); i++) {
      json_object *c = json_object_array_get_idx (comps, i);
      const char *w = jstr (c, "writer");
      int is_vm = w && strcmp (w, VMS_VM_WRITER_NAME) == 0;
      json_object_array_add (is_vm ? vms : apps, component_row (set, c, is_vm));
    }
    return;
  }
  /* Failed: nothing of it was stored. Its VM (each), or every VM the job
   * selected (one set), or, a set of host applications, one row. */
  const char *vm = jstr (set, "vm");
  json_object *ha;
  if (vm)
    json_object_array_add (vms, failed_row (set, vm));
  else if (json_object_object_get_ex (set, "host_applications", &ha))
    json_object_array_add (apps, failed_row (set, NULL));
  else if (single) {
    for (size_t i = 0; selected && selected[i]; i++)
      json_object_array_add (vms, failed_row (set, selected[i]));
    if (selected == NULL || selected[0] == NULL)
      json_object_array_add (apps, failed_row (set, NULL));
  }
}

char *
vms_job_result_json (const struct vms_job_result *in)
{
  static const char *const outcome[] = {
    "success", "failure", "failure", "warnings", "partial",
  };
  json_object *o = json_object_new_object ();
  json_object *vms = json_object_new_array (), *apps = json_object_new_array ();
  json_object *backup = in->backup_report ? json_tokener_parse (in->backup_report) : NULL;
  json_object *sel = NULL, *sets;
  char host[256] = "";
  int64_t read = 0, stored = 0;

  gethostname (host, sizeof host - 1);
  json_object_object_add (o, "format", json_object_new_string ("vmshadow-job-result"));
  json_object_object_add (o, "version", json_object_new_int (1));
  put_str (o, "job", in->job);
  put_str (o, "host", host);
  put_str (o, "repository", in->repository);
  put_str (o, "repository_path", in->repository_path);
  json_object_object_add (o, "started", json_object_new_int64 (in->started));
  json_object_object_add (o, "finished", json_object_new_int64 (in->finished));
  json_object_object_add (o, "duration_s", json_object_new_int64 (in->finished - in->started));
  put_str (o, "outcome", in->exit_code >= 0 && in->exit_code <= 4
           ? outcome[in->exit_code] : "failure");
  json_object_object_add (o, "exit_code", json_object_new_int (in->exit_code));
  put_str (o, "error", in->error);
  if (in->selected) {
    sel = json_object_new_array ();
    for (size_t i = 0; in->selected[i]; i++)
      json_object_array_add (sel, json_object_new_string (in->selected[i]));
  }
  json_object_object_add (o, "selected_vms", sel);
  if (backup && json_object_object_get_ex (backup, "sets", &sets))
    for (size_t i = 0; i < json_object_array_length (sets); i++)
      set_rows (json_object_array_get_idx (sets, i), 0, in->selected, vms, apps,
                &read, &stored);
  else if (backup)
    set_rows (backup, 1, in->selected, vms, apps, &read, &stored);
  json_object_object_add (o, "vms", vms);
  json_object_object_add (o, "host_applications", apps);
  json_object_object_add (o, "bytes_read", json_object_new_int64 (read));
  json_object_object_add (o, "bytes_stored", json_object_new_int64 (stored));
  json_object_object_add (o, "backup", backup);
  if (in->prune_skipped) {
    /* Skipped by the repository's policy (issue 14): not run, not failed. */
    json_object *p = json_object_new_object ();
    json_object_object_add (p, "exit_code", NULL);
    json_object_object_add (p, "skipped", json_object_new_string (in->prune_skipped));
    json_object_object_add (o, "prune", p);
  }
  else if (in->prune_exit_code >= 0) {
    json_object *p = json_object_new_object ();
    json_object_object_add (p, "exit_code", json_object_new_int (in->prune_exit_code));
    json_object_object_add (o, "prune", p);
  }
  else
    json_object_object_add (o, "prune", NULL);
  const char *text = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE);
  char *out = text ? strdup (text) : NULL;
  json_object_put (o);
  if (out == NULL)
    vms_set_error (ENOMEM, "out of memory");
  return out;
}

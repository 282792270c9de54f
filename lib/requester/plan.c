/* vmshadow backup --dry-run (issue 20): what a backup would do, changing
 * nothing. Every writer's Identify (VSS's GatherWriterMetadata) says it:
 * the VM writer reads each domain, asks running guests' agents and applies
 * the capture policy there, and records the outcome as component
 * attributes (writers/libvirt/vm-writer.h) — the same ones a real backup
 * stores. No session is begun: no checkpoint, scratch file, state file or
 * repository is made. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "requester-internal.h"
#include "vm-writer.h"
#include "vmshadow/error.h"

static void
plan_component (struct vms_plan_component *t, const char *writer_id,
                const char *writer, const vms_component *c, int *oom)
{
  size_t nf = vms_component_file_count (c);
  size_t ne = vms_component_excluded_count (c);
  int is_vm = strcmp (writer_id, VMS_VM_WRITER_ID) == 0;

  t->writer_id = req_strdup (writer_id, oom);
  t->writer = req_strdup (writer, oom);
  t->component = req_strdup (vms_component_name (c), oom);
  t->caption = req_strdup (vms_component_caption (c), oom);
  t->method = req_strdup (vms_component_get_string (c, VMS_ATTR_METHOD), oom);
  t->scratch_bytes = -1;
  if (is_vm) {
#define S(field, key) \
    t->field = req_strdup (vms_component_get_string (c, key), oom)
    S (vm_name, VMS_VM_ATTR_VM_NAME);
    S (state, VMS_VM_ATTR_STATE_BEFORE);
    S (method_reason, VMS_VM_ATTR_METHOD_REASON);
    S (policy, VMS_VM_ATTR_POLICY);
    S (policy_source, VMS_VM_ATTR_POLICY_SOURCE);
    S (agent, VMS_VM_ATTR_AGENT);
    S (fallback_reason, VMS_VM_ATTR_FALLBACK_REASON);
    S (scratch_dir, VMS_VM_ATTR_SCRATCH_DIR);
#undef S
    t->scratch_bytes = vms_component_get_int (c, VMS_VM_ATTR_SCRATCH_BYTES, -1);
  }
  t->files = calloc (nf ? nf : 1, sizeof *t->files);
  t->excluded = calloc (ne ? ne : 1, sizeof *t->excluded);
  if (t->files == NULL || t->excluded == NULL) {
    *oom = 1;
    return;
  }
  for (size_t i = 0; i < nf; i++) {
    struct vms_file_info fi;
    if (vms_component_file (c, i, &fi) == -1)
      continue;
    struct vms_plan_file *f = &t->files[t->nr_files++];
    f->path = req_strdup (fi.path, oom);
    f->kind = req_strdup (vms_file_kind_name (fi.kind), oom);
    f->format = req_strdup (fi.format, oom);
  }
  for (size_t i = 0; i < ne; i++) {
    t->excluded[i].path = req_strdup (vms_component_excluded_path (c, i), oom);
    t->excluded[i].reason = req_strdup (vms_component_excluded_reason (c, i),
                                        oom);
  }
  t->nr_excluded = ne;
}

static int
add_error (struct vms_backup_plan *p, const char *writer, const char *msg)
{
  char **e = realloc (p->errors, (p->nr_errors + 1) * sizeof *e);
  char *s;

  if (e == NULL)
    return -1;
  p->errors = e;
  if (asprintf (&s, "%s: %s", writer ? writer : "?",
                msg ? msg : "Identify failed") == -1)
    return -1;
  e[p->nr_errors++] = s;
  return 0;
}

struct vms_backup_plan *
vms_requester_plan (const struct vms_backup_request *rq)
{
  vms_coordinator *own = NULL, *coord = rq->coord;
  struct vms_backup_plan *p = NULL;
  size_t nw, total = 0;
  int oom = 0;

  if (coord == NULL && (coord = own = vms_requester_host (&rq->host)) == NULL)
    return NULL;
  nw = vms_coordinator_writer_count (coord);
  if (nw == 0) {
    vms_set_error (ENOENT, "nothing to back up: no exec writers, and no VMs "
                   "asked for (use --all or name VMs)");
    goto fail;
  }
  /* Identify only: any failure is in the writer's status. */
  (void) vms_coordinator_gather_metadata (coord);
  if ((p = calloc (1, sizeof *p)) == NULL)
    goto oom;
  for (size_t w = 0; w < nw; w++) {
    struct vms_writer_status st;
    if (vms_coordinator_writer_status (coord, w, &st) == 0 && st.metadata)
      total += vms_document_component_count (st.metadata, NULL);
  }
  if ((p->components = calloc (total ? total : 1, sizeof *p->components)) == NULL)
    goto oom;
  for (size_t w = 0; w < nw; w++) {
    struct vms_writer_status st;
    if (vms_coordinator_writer_status (coord, w, &st) == -1)
      continue;
    if (st.state == VMS_WRITER_FAILED || st.metadata == NULL) {
      if (add_error (p, st.name, st.message) == -1)
        goto oom;
      continue;
    }
    for (size_t i = 0; i < vms_document_component_count (st.metadata, NULL); i++) {
      struct vms_plan_component *t = &p->components[p->nr_components++];
      plan_component (t, st.id ? st.id : "", st.name,
                      vms_document_component (st.metadata, NULL, i), &oom);
      /* Writers' figures (an exec writer's among them) saturate. */
      if (t->scratch_bytes > 0 &&
          __builtin_add_overflow (p->scratch_bytes, t->scratch_bytes,
                                  &p->scratch_bytes))
        p->scratch_bytes = INT64_MAX;
    }
  }
  if (oom)
    goto oom;
  vms_coordinator_free (own);
  return p;
 oom:
  vms_set_error (ENOMEM, "out of memory writing the backup plan");
 fail:
  vms_backup_plan_free (p);
  vms_coordinator_free (own);
  return NULL;
}

void
vms_backup_plan_free (struct vms_backup_plan *p)
{
  if (p == NULL)
    return;
  for (size_t i = 0; i < p->nr_components; i++) {
    struct vms_plan_component *c = &p->components[i];
    free (c->writer_id); free (c->writer); free (c->component);
    free (c->caption); free (c->vm_name); free (c->state); free (c->method);
    free (c->method_reason); free (c->policy); free (c->policy_source);
    free (c->agent); free (c->fallback_reason); free (c->scratch_dir);
    for (size_t f = 0; f < c->nr_files; f++) {
      free (c->files[f].path); free (c->files[f].kind);
      free (c->files[f].format);
    }
    free (c->files);
    for (size_t e = 0; e < c->nr_excluded; e++) {
      free (c->excluded[e].path); free (c->excluded[e].reason);
    }
    free (c->excluded);
  }
  free (p->components);
  for (size_t i = 0; i < p->nr_errors; i++)
    free (p->errors[i]);
  free (p->errors);
  free (p);
}

static void
put (json_object *o, const char *key, const char *v)
{
  if (v)
    json_object_object_add (o, key, json_object_new_string (v));
}

char *
vms_backup_plan_json (const struct vms_backup_plan *p)
{
  json_object *o = json_object_new_object ();
  json_object *list = json_object_new_array ();
  json_object *errs = json_object_new_array ();
  char *text;

  json_object_object_add (o, "dry_run", json_object_new_boolean (1));
  for (size_t i = 0; i < p->nr_components; i++) {
    const struct vms_plan_component *c = &p->components[i];
    json_object *co = json_object_new_object ();
    json_object *files = json_object_new_array ();
    json_object *excl = json_object_new_array ();

    put (co, "writer", c->writer);
    put (co, "component", c->component);
    put (co, "caption", c->caption);
    put (co, "vm_name", c->vm_name);
    put (co, "state", c->state);
    put (co, "method", c->method);
    put (co, "method_reason", c->method_reason);
    put (co, "policy", c->policy);
    put (co, "policy_source", c->policy_source);
    put (co, "agent", c->agent);
    put (co, "fallback_reason", c->fallback_reason);
    for (size_t f = 0; f < c->nr_files; f++) {
      json_object *fo = json_object_new_object ();
      put (fo, "path", c->files[f].path);
      put (fo, "kind", c->files[f].kind);
      put (fo, "format", c->files[f].format);
      json_object_array_add (files, fo);
    }
    json_object_object_add (co, "files", files);
    for (size_t e = 0; e < c->nr_excluded; e++) {
      json_object *x = json_object_new_object ();
      put (x, "path", c->excluded[e].path);
      put (x, "reason", c->excluded[e].reason);
      json_object_array_add (excl, x);
    }
    json_object_object_add (co, "excluded", excl);
    if (c->scratch_bytes >= 0)
      json_object_object_add (co, "scratch_bytes",
                              json_object_new_int64 (c->scratch_bytes));
    put (co, "scratch_dir", c->scratch_dir);
    json_object_array_add (list, co);
  }
  json_object_object_add (o, "components", list);
  json_object_object_add (o, "scratch_bytes",
                          json_object_new_int64 (p->scratch_bytes));
  for (size_t i = 0; i < p->nr_errors; i++)
    json_object_array_add (errs, json_object_new_string (p->errors[i]));
  json_object_object_add (o, "errors", errs);
  text = strdup (json_object_to_json_string_ext (
                   o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                   JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (o);
  if (text == NULL)
    vms_set_error (ENOMEM, "out of memory writing the backup plan");
  return text;
}

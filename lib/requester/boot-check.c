/* Boot-verified backups (issue 16, R27; docs/instant-recovery.md "Boot
 * checks"): `vmshadow verify --boot`.
 *
 * For each VM of the backup asked for: every chunk of its files is read
 * and re-hashed (a damaged backup fails here, naming the chunk); then a
 * throw-away copy boots from it — its disks qcow2 overlays over the
 * backup's disks served by nbdkit (as instant recovery runs a VM), a new
 * name and UUID, no network interface at all (so never the original's MAC
 * on the original's network), a transient libvirt domain; its guest agent
 * must answer, and the probe command (sh -c) must exit 0. The copy, its
 * overlays and exports are removed whatever happened (they live in an
 * instant-recovery directory, so `restore --rollback NAME` removes them
 * if vmshadow is killed meanwhile). The result is kept beside the backup
 * as its note "boot-check" (vms_repo_note_put: no manifest is rewritten),
 * which `show` and `list` display.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "interrupt.h"
#include "log.h"
#include "requester-internal.h"
#include "str.h"
#include "vm-writer.h"
#include "vmshadow/error.h"

#define BOOT_NOTE "boot-check"

static int
boot_uuid (char out[37])
{
  uint8_t b[16];
  if (getrandom (b, sizeof b, 0) != (ssize_t) sizeof b) {
    vms_set_error (errno, "cannot make a UUID: %s", strerror (errno));
    return -1;
  }
  b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);
  snprintf (out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
            b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return 0;
}

/* Every chunk of the VM's files, re-hashed. */
static int
boot_verify_data (vms_repo *repo, const vms_manifest *m, const char *uuid)
{
  CLEANUP_FREE void *buf = malloc (VMS_CHUNK_SIZE);

  if (buf == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    if (vms_manifest_file (m, i, &f, &size) == -1)
      return -1;
    if (f.writer_id == NULL || strcasecmp (f.writer_id, VMS_VM_WRITER_ID) != 0 ||
        strcasecmp (f.component, uuid) != 0)
      continue;
    vms_index *idx = vms_manifest_load_index (repo, m, i);
    if (idx == NULL) {
      vms_set_error (vms_get_errno (), "the index of %s is damaged: %s",
                     f.path, vms_get_error ());
      return -1;
    }
    for (uint64_t c = 0; c < vms_index_chunk_count (idx); c++) {
      const struct vms_digest *d = vms_index_get (idx, c);
      if (vms_interrupt_check () == -1) {
        vms_index_free (idx);
        return -1;
      }
      if (vms_digest_is_zero (d))
        continue;
      if (vms_repo_chunk_get (repo, d, buf, vms_index_chunk_len (idx, c), 1) == -1) {
        char hex[65];
        int e = vms_get_errno ();
        vms_digest_hex (d, hex);
        vms_set_error (e, "chunk %s of %s (at offset %" PRIu64 ") is %s: %s",
                       hex, f.path, c * (uint64_t) VMS_CHUNK_SIZE,
                       e == ENOENT ? "missing" : "damaged", vms_get_error ());
        vms_index_free (idx);
        return -1;
      }
    }
    vms_index_free (idx);
  }
  return 0;
}

/* The stored domain XML of the VM (its <uuid>/domain.xml). */
static char *
boot_stored_xml (vms_repo *repo, const vms_manifest *m, const char *uuid)
{
  char seg[64];
  snprintf (seg, sizeof seg, "/%s/", uuid);
  for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    const char *base;
    if (vms_manifest_file (m, i, &f, &size) == -1 || f.kind == VMS_FILE_DISK ||
        strcasecmp (f.component, uuid) != 0 || strstr (f.path, seg) == NULL ||
        (base = strrchr (f.path, '/')) == NULL || strcmp (base, "/domain.xml") != 0)
      continue;
    if (size > (16u << 20)) {
      vms_set_error (EFBIG, "its domain XML is too large (%" PRIu64 " bytes)", size);
      return NULL;
    }
    vms_index *idx = vms_manifest_load_index (repo, m, i);
    char *buf = idx ? calloc (1, size + 1) : NULL;
    if (buf == NULL || vms_repo_read (repo, idx, buf, size, 0) == -1 ||
        memchr (buf, '\0', size)) {
      vms_set_error (vms_get_errno () ? vms_get_errno () : EINVAL, "its domain "
                     "XML cannot be read: %s", vms_get_error () ? vms_get_error ()
                     : "it holds a NUL byte");
      free (buf);
      vms_index_free (idx);
      return NULL;
    }
    vms_index_free (idx);
    return buf;
  }
  vms_set_error (ENOENT, "the backup holds no domain XML of it");
  return NULL;
}

/* Boot one VM's throw-away copy. 0 with r filled, -1 with the error set
 * (why it failed). */
static int
boot_one (vms_repo *repo, const vms_manifest *m,
          const struct vms_boot_check_request *rq, const char *uuid,
          struct vms_boot_checked_vm *r)
{
  CLEANUP_FREE char *xml = NULL, *name = NULL;
  struct req_instant *in;
  const struct req_instant_disk *d;
  size_t n;
  char newuuid[37];
  int rc;

  if (boot_verify_data (repo, m, uuid) == -1 ||
      (xml = boot_stored_xml (repo, m, uuid)) == NULL || boot_uuid (newuuid) == -1)
    return -1;
  if ((name = vms_strdup_printf ("vmshadow-boot-%.8s", newuuid)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  /* An instant-recovery directory: exports and overlays QEMU reaches, and
   * what `restore --rollback NAME` removes if we are killed. */
  if ((in = req_instant_new (vms_repo_path (repo), vms_manifest_backup_id (m),
                             rq->libvirt_uri, name, newuuid)) == NULL)
    return -1;
  for (size_t i = 0; i < vms_manifest_file_count (m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    if (vms_manifest_file (m, i, &f, &size) == -1 || f.kind != VMS_FILE_DISK ||
        f.writer_id == NULL || strcasecmp (f.writer_id, VMS_VM_WRITER_ID) != 0 ||
        strcasecmp (f.component, uuid) != 0)
      continue;
    /* final: never written (a boot check moves nothing). */
    if (req_instant_add_disk (in, uuid, f.path, size, f.format, f.path) == -1)
      goto fail;
  }
  d = req_instant_disks (in, &n);
  if (req_instant_ran (in, 1) == -1)
    goto fail;
  CLEANUP_FREE struct vms_vm_instant_disk *v = calloc (n + 1, sizeof *v);
  if (v == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < n; i++)
    v[i] = (struct vms_vm_instant_disk) { .path = d[i].path, .overlay = d[i].overlay,
                                          .socket = d[i].socket, .final = d[i].final,
                                          .format = d[i].format };
  const struct vms_vm_boot_options bo = {
    .uri = rq->libvirt_uri, .xml = xml, .name = name, .uuid = newuuid,
    .disks = v, .nr_disks = n, .timeout_s = rq->timeout_s, .probe = rq->probe,
  };
  struct vms_vm_boot_result res;
  rc = vms_vm_boot_check (&bo, &res);
  r->agent_ms = res.agent_ms;
  r->probe_ran = res.probe_ran;
  r->probe_status = res.probe_status;
  if (rc == 0 && rq->probe && res.probe_status != 0) {
    vms_set_error (EIO, "the probe '%s' exited with status %d", rq->probe,
                   res.probe_status);
    rc = -1;
  }
  {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = rc == -1 && vms_get_error () ? strdup (vms_get_error ()) : NULL;
    if (req_instant_rollback (in) == -1) {
      if (rc == 0)
        rc = -1;
      else
        vms_warn ("boot check: %s", vms_get_error ());
    }
    else if (rc == -1)
      vms_set_error (e, "%s", msg ? msg : "?");
  }
  req_instant_free (in);
  return rc;
 fail:
  {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = strdup (vms_get_error () ? vms_get_error () : "?");
    req_instant_rollback (in);
    req_instant_free (in);
    vms_set_error (e, "%s", msg ? msg : "out of memory");
  }
  return -1;
}

/* The report's JSON form, the note recorded beside the backup. */
static json_object *
boot_note (const struct vms_boot_check_report *rep)
{
  json_object *o = json_object_new_object (), *vms = json_object_new_array ();
  json_object_object_add (o, "format", json_object_new_string ("vmshadow-boot-check"));
  json_object_object_add (o, "version", json_object_new_int (1));
  json_object_object_add (o, "checked", json_object_new_int64 (rep->checked));
  json_object_object_add (o, "ok", json_object_new_boolean (rep->ok));
  for (size_t i = 0; i < rep->nr_vms; i++) {
    const struct vms_boot_checked_vm *v = &rep->vms[i];
    json_object *j = json_object_new_object ();
    json_object_object_add (j, "uuid", json_object_new_string (v->uuid));
    json_object_object_add (j, "name", v->name ? json_object_new_string (v->name) : NULL);
    json_object_object_add (j, "ok", json_object_new_boolean (v->ok));
    json_object_object_add (j, "agent_ms", v->agent_ms > 0 ? json_object_new_int64 (v->agent_ms) : NULL);
    json_object_object_add (j, "probe", v->probe ? json_object_new_string (v->probe) : NULL);
    json_object_object_add (j, "probe_status", v->probe_ran ? json_object_new_int (v->probe_status) : NULL);
    json_object_object_add (j, "error", v->error ? json_object_new_string (v->error) : NULL);
    json_object_array_add (vms, j);
  }
  json_object_object_add (o, "vms", vms);
  return o;
}

char *
vms_boot_check_report_json (const struct vms_boot_check_report *rep)
{
  json_object *o = boot_note (rep);
  char *text = strdup (json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN));
  json_object_put (o);
  if (text == NULL)
    vms_set_error (ENOMEM, "out of memory");
  return text;
}

/* A member of a note, of the type asked for; 0 when it is missing or of
 * another type. null counts as missing where optional is set. */
static int
note_member (json_object *o, const char *key, json_type type, int optional, json_object **v)
{
  *v = NULL;
  if (!json_object_object_get_ex (o, key, v) || *v == NULL)
    return optional;
  return json_object_is_type (*v, type);
}

static int
note_string (json_object *o, const char *key, int optional, char **out)
{
  json_object *v;
  if (!note_member (o, key, json_type_string, optional, &v))
    return 0;
  if (v == NULL || !json_object_is_type (v, json_type_string))
    return 1;
  return (*out = strdup (json_object_get_string (v))) != NULL;
}

/* The note is data from the repository: every member is checked. */
static int
parse_note (json_object *o, struct vms_boot_check_report *rep)
{
  json_object *v, *vms;
  if (!note_member (o, "format", json_type_string, 0, &v) ||
      strcmp (json_object_get_string (v), "vmshadow-boot-check") != 0 ||
      !note_member (o, "version", json_type_int, 0, &v) || json_object_get_int (v) != 1 ||
      !note_member (o, "checked", json_type_int, 0, &v) ||
      (rep->checked = json_object_get_int64 (v)) < 0 ||
      !note_member (o, "ok", json_type_boolean, 0, &v) ||
      !note_member (o, "vms", json_type_array, 0, &vms))
    return -1;
  rep->ok = json_object_get_boolean (json_object_object_get (o, "ok"));
  size_t n = json_object_array_length (vms);
  if ((rep->vms = calloc (n ? n : 1, sizeof *rep->vms)) == NULL)
    return -1;
  for (size_t i = 0; i < n; i++) {
    json_object *j = json_object_array_get_idx (vms, i);
    /* Counted first, so that a VM refused half-read is freed too. */
    struct vms_boot_checked_vm *vm = &rep->vms[rep->nr_vms++];
    vm->probe_status = -1;
    if (!json_object_is_type (j, json_type_object) ||
        !note_string (j, "uuid", 0, &vm->uuid) || !note_string (j, "name", 1, &vm->name) ||
        !note_string (j, "probe", 1, &vm->probe) || !note_string (j, "error", 1, &vm->error) ||
        !note_member (j, "ok", json_type_boolean, 0, &v))
      return -1;
    vm->ok = json_object_get_boolean (v);
    if (!note_member (j, "agent_ms", json_type_int, 1, &v))
      return -1;
    vm->agent_ms = v ? json_object_get_int64 (v) : 0;
    if (!note_member (j, "probe_status", json_type_int, 1, &v))
      return -1;
    if (v) {
      vm->probe_ran = 1;
      vm->probe_status = json_object_get_int (v);
    }
  }
  return 0;
}

struct vms_boot_check_report *
vms_requester_boot_check_read (vms_repo *repo, const char *backup_id)
{
  CLEANUP_FREE char *text = vms_repo_note_get (repo, backup_id, BOOT_NOTE);
  struct vms_boot_check_report *rep;
  json_object *o;

  if (text == NULL)
    return NULL;
  if ((rep = calloc (1, sizeof *rep)) == NULL || (rep->backup_id = strdup (backup_id)) == NULL) {
    vms_boot_check_report_free (rep);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  rep->recorded = 1;
  o = json_tokener_parse (text);
  if (o == NULL || !json_object_is_type (o, json_type_object) || parse_note (o, rep) == -1) {
    json_object_put (o);
    vms_boot_check_report_free (rep);
    vms_set_error (EINVAL, "the boot check recorded beside backup %s is malformed",
                   backup_id);
    return NULL;
  }
  json_object_put (o);
  return rep;
}

struct vms_boot_check_report *
vms_requester_boot_check (const struct vms_boot_check_request *rq)
{
  vms_repo *repo = vms_repo_open (rq->repo_dir, 0);
  vms_manifest *m = repo ? vms_manifest_open (repo, rq->backup_id) : NULL;
  const vms_document *bcd = m ? vms_manifest_components (m) : NULL;
  struct vms_boot_check_report *rep = NULL;
  size_t nc;

  if (m == NULL) {
    vms_set_error (vms_get_errno (), "cannot check backup %s: %s",
                   rq->backup_id, vms_get_error ());
    goto out;
  }
  nc = bcd ? vms_document_component_count (bcd, VMS_VM_WRITER_ID) : 0;
  if (nc == 0) {
    vms_set_error (ENOENT, "backup %s holds no VM: nothing to boot",
                   rq->backup_id);
    goto out;
  }
  /* Each VM asked for must be there (by name or UUID). */
  for (size_t k = 0; rq->vms && rq->vms[k]; k++) {
    int found = 0;
    char list[1024] = "";
    for (size_t c = 0; c < nc; c++) {
      vms_component *comp = vms_document_component (bcd, VMS_VM_WRITER_ID, c);
      const char *nm = vms_component_get_string (comp, VMS_VM_ATTR_VM_NAME);
      size_t l = strlen (list);
      snprintf (list + l, sizeof list - l, "%s%s", c ? ", " : "",
                nm ? nm : vms_component_name (comp));
      found |= strcasecmp (vms_component_name (comp), rq->vms[k]) == 0 ||
        (nm && strcmp (nm, rq->vms[k]) == 0);
    }
    if (!found) {
      vms_set_error (ENOENT, "VM \"%s\" is not in backup %s; it holds: %s",
                     rq->vms[k], rq->backup_id, list);
      goto out;
    }
  }
  if ((rep = calloc (1, sizeof *rep)) == NULL ||
      (rep->vms = calloc (nc, sizeof *rep->vms)) == NULL ||
      (rep->backup_id = strdup (rq->backup_id)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    vms_boot_check_report_free (rep);
    rep = NULL;
    goto out;
  }
  rep->checked = (int64_t) time (NULL);
  rep->ok = 1;
  for (size_t c = 0; c < nc; c++) {
    vms_component *comp = vms_document_component (bcd, VMS_VM_WRITER_ID, c);
    const char *uuid = vms_component_name (comp);
    const char *nm = vms_component_get_string (comp, VMS_VM_ATTR_VM_NAME);
    int want = rq->vms == NULL;
    for (size_t k = 0; rq->vms && rq->vms[k]; k++)
      want |= strcasecmp (uuid, rq->vms[k]) == 0 || (nm && strcmp (nm, rq->vms[k]) == 0);
    if (!want)
      continue;
    struct vms_boot_checked_vm *v = &rep->vms[rep->nr_vms++];
    v->uuid = strdup (uuid);
    v->name = nm ? strdup (nm) : NULL;
    v->probe = rq->probe ? strdup (rq->probe) : NULL;
    v->probe_status = -1;
    v->ok = boot_one (repo, m, rq, uuid, v) == 0;
    if (!v->ok) {
      v->error = strdup (vms_get_error () ? vms_get_error () : "?");
      rep->ok = 0;
    }
    /* Interrupted: the copy is gone (boot_one cleaned up); an unfinished
     * check proves nothing either way, so nothing is recorded. */
    if (vms_interrupted ()) {
      rep->interrupted = vms_interrupted ();
      goto out;
    }
  }
  /* Recorded beside the backup (a v2 repository needs the writer's
   * handle for the put; the boot itself needed none). */
  vms_manifest_free (m);
  m = NULL;
  vms_repo_close (repo);
  repo = vms_repo_open (rq->repo_dir, VMS_REPO_WRITE);
  json_object *note = boot_note (rep);
  if (repo == NULL ||
      vms_repo_note_put (repo, rq->backup_id, BOOT_NOTE,
                         json_object_to_json_string_ext (note, JSON_C_TO_STRING_PLAIN)) == -1)
    rep->record_error = strdup (vms_get_error () ? vms_get_error () : "?");
  else
    rep->recorded = 1;
  json_object_put (note);
 out:
  vms_manifest_free (m);
  vms_repo_close (repo);
  return rep;
}

void
vms_boot_check_report_free (struct vms_boot_check_report *rep)
{
  if (rep == NULL)
    return;
  for (size_t i = 0; i < rep->nr_vms; i++) {
    free (rep->vms[i].uuid);
    free (rep->vms[i].name);
    free (rep->vms[i].probe);
    free (rep->vms[i].error);
  }
  free (rep->vms);
  free (rep->backup_id);
  free (rep->record_error);
  free (rep);
}

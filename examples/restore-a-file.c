/* restore-a-file: a backup session and a restore session of one plain
 * file, run by the requester of libvmshadow (vmshadow/requester.h,
 * vmshadow(3)), with a writer of our own: the way a backup product links
 * vmshadow.
 *
 *   cc restore-a-file.c $(pkg-config --cflags --libs vmshadow)
 *   ./a.out REPO FILE DIR
 *
 * The writer "example-file" owns FILE (one component, "file"). The host's
 * providers make its point-in-time copy; the requester stores it in REPO
 * (created if missing), then restores the backup into DIR: the file comes
 * back as DIR/FILE's-absolute-path, and the writer is told at PostRestore
 * whether every file was written (R6). Prints what each session reports;
 * exits 1 with vmshadow's message when a session fails.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmshadow/coordinator.h>
#include <vmshadow/error.h>
#include <vmshadow/repo.h>
#include <vmshadow/requester.h>
#include <vmshadow/writer.h>

#define EXAMPLE_WRITER_ID "5b0f9e4c-3d2a-4c1b-9e8f-7a6b5c4d3e2f"

/* Identify: one component, "file", made of the file (data is its path). */
static int
file_identify (void *data, vms_call *call)
{
  vms_component *c = vms_metadata_add_component (vms_call_metadata (call),
                                                 "file", "the example's file");
  if (c == NULL ||
      vms_component_add_file (c, data, VMS_FILE_PLAIN, NULL, NULL) == -1)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE, "%s",
                          vms_get_error ());
  return 0;
}

/* PostRestore: use the file only if it was written back whole (R17). */
static int
file_post_restore (void *data, vms_call *call)
{
  vms_component *c = vms_call_component (call, "file");
  enum vms_restore_status st = c ? vms_component_restore_status (c)
    : VMS_RESTORE_UNSET;

  (void) data;
  printf ("post-restore: file restore status %s\n",
          vms_restore_status_name (st));
  if (st != VMS_RESTORE_ALL)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                          "the file was not restored");
  return 0;
}

static const struct vms_writer file_writer = {
  .api_version = VMS_WRITER_API_VERSION,
  .struct_size = sizeof (struct vms_writer),
  .name = "example-file",
  .id = EXAMPLE_WRITER_ID,
  .identify = file_identify,
  .post_restore = file_post_restore,
};

int
main (int argc, char *argv[])
{
  char file[PATH_MAX], writers[] = "/tmp/restore-a-file-XXXXXX";
  vms_coordinator *coord = NULL;
  vms_repo *repo = NULL;
  struct vms_backup_report *b = NULL;
  struct vms_restore_report *r = NULL;
  int rc = 1;

  if (argc != 4) {
    fprintf (stderr, "usage: restore-a-file REPO FILE DIR\n");
    return 2;
  }
  if (realpath (argv[2], file) == NULL) {
    perror (argv[2]);
    return 1;
  }
  /* The host's providers, and no exec writer: an empty writers directory. */
  if (mkdtemp (writers) == NULL) {
    perror ("mkdtemp");
    return 1;
  }
  coord = vms_requester_host (&(struct vms_host_options) {
      .writers_dir = writers });
  if (coord == NULL ||
      vms_coordinator_add_writer (coord, &file_writer, file) == -1 ||
      (repo = vms_repo_open (argv[1], VMS_REPO_CREATE | VMS_REPO_WRITE)) == NULL)
    goto out;

  /* Backup: Identify → … → the file copied into repo → commit (R2, R12). */
  b = vms_requester_backup (repo, &(struct vms_backup_request) {
      .coord = coord });
  if (b == NULL)
    goto out;
  const struct vms_backup_set *set = &b->sets[0];
  printf ("backup %s: %s, %zu component(s), %llu bytes read\n",
          set->backup_id, vms_set_state_name (set->state), set->nr_components,
          (unsigned long long) set->bytes_read);
  if (set->state == VMS_SET_FAILED) {
    vms_set_error (0, "the backup failed: %s",
                   set->failure.message ? set->failure.message : "?");
    goto out;
  }

  /* Restore: PreRestore → the file written under DIR → PostRestore. */
  const char *components[] = { EXAMPLE_WRITER_ID ":file", NULL };
  r = vms_requester_restore (repo, &(struct vms_restore_request) {
      .backup_id = set->backup_id, .components = components,
      .to = argv[3], .coord = coord });
  if (r == NULL)
    goto out;
  for (size_t i = 0; i < r->nr_components; i++) {
    const struct vms_restored_component *c = &r->components[i];
    printf ("restored %s of %s: %s\n", c->component, c->writer,
            c->ok ? "ok" : c->error ? c->error : "failed");
    for (size_t k = 0; k < c->nr_files; k++)
      printf ("  %s -> %s: %s\n", c->files[k].path, c->files[k].target,
              vms_file_outcome_name (c->files[k].outcome));
  }
  printf ("restore: %s\n", vms_outcome_name (r->outcome));
  rc = r->outcome == VMS_OUTCOME_SUCCESS ? 0 : 1;

 out:
  if (rc != 0 && r == NULL && vms_get_error ())
    fprintf (stderr, "restore-a-file: %s\n", vms_get_error ());
  vms_restore_report_free (r);
  vms_backup_report_free (b);
  vms_repo_close (repo);
  vms_coordinator_free (coord);
  rmdir (writers);
  return rc;
}

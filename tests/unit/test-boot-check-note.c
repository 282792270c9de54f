/* Unit tests of the boot check recorded beside a backup (issue 16, R27):
 * `verify --boot` writes its report as the backup's note "boot-check";
 * show, list and status read it back through
 * vms_requester_boot_check_read, which checks every member because the
 * note comes from the repository like any of its data.
 *
 * Usage: test-boot-check-note [test-name]; output is TAP.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmshadow/document.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"
#include "vmshadow/requester.h"

#define BACKUP "20261203T140000Z-b00c4e"

static char dir[] = "/tmp/test-boot-check-note.XXXXXX";

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void) st; (void) flag; (void) ftw;
  return remove (path);
}

/* A repository holding one committed backup of one small file. */
static int
setup (void **state)
{
  static uint8_t data[4096];
  struct vms_digest d;
  (void) state;
  if (mkdtemp (dir) == NULL)
    return -1;
  vms_repo *r = vms_repo_open (dir, VMS_REPO_CREATE | VMS_REPO_WRITE);
  vms_index *idx = vms_index_new (sizeof data);
  memset (data, 0x5a, sizeof data);
  if (r == NULL || idx == NULL ||
      vms_repo_chunk_put (r, data, sizeof data, &d, NULL) == -1 ||
      vms_index_set (idx, 0, &d) == -1)
    return -1;
  vms_repo_txn *txn = vms_repo_txn_begin (r, BACKUP);
  struct vms_stored_file f = {
    .writer_id = "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00", .component = "web01",
    .path = "/var/lib/libvirt/images/web01.img", .kind = VMS_FILE_DISK,
    .format = "raw", .bytes_read = sizeof data,
  };
  vms_document *bcd = vms_components_new (BACKUP);
  if (txn == NULL || bcd == NULL || vms_repo_txn_add_file (txn, &f, idx) == -1 ||
      vms_repo_txn_commit (txn, bcd, NULL, 0, NULL) == -1)
    return -1;
  vms_document_free (bcd);
  vms_repo_txn_free (txn);
  vms_index_free (idx);
  vms_repo_close (r);
  return 0;
}

static int
teardown (void **state)
{
  (void) state;
  return nftw (dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
put_note (const char *text)
{
  vms_repo *r = vms_repo_open (dir, VMS_REPO_WRITE);
  assert_non_null (r);
  if (vms_repo_note_put (r, BACKUP, "boot-check", text) == -1)
    fail_msg ("note_put: %s", vms_get_error ());
  vms_repo_close (r);
}

static struct vms_boot_check_report *
read_note (void)
{
  vms_repo *r = vms_repo_open (dir, 0);
  assert_non_null (r);
  struct vms_boot_check_report *rep = vms_requester_boot_check_read (r, BACKUP);
  vms_repo_close (r);
  return rep;
}

static void
a_backup_never_checked_has_no_boot_check (void **state)
{
  (void) state;
  assert_null (read_note ());
  assert_int_equal (vms_get_errno (), ENOENT);
}

static void
a_recorded_report_reads_back_member_for_member (void **state)
{
  struct vms_boot_checked_vm vms[2] = {
    { .uuid = (char *) "0f6b1d2e-1111-4a5b-8c9d-0123456789ab", .name = (char *) "web01",
      .ok = 1, .agent_ms = 14200, .probe = (char *) "systemctl is-active nginx",
      .probe_ran = 1, .probe_status = 0 },
    { .uuid = (char *) "0f6b1d2e-2222-4a5b-8c9d-0123456789ab", .name = NULL,
      .ok = 0, .probe_status = -1,
      .error = (char *) "its guest agent did not answer within 300 s" },
  };
  struct vms_boot_check_report rep = {
    .backup_id = (char *) BACKUP, .checked = 1796306400, .ok = 0,
    .nr_vms = 2, .vms = vms,
  };
  (void) state;
  char *text = vms_boot_check_report_json (&rep);
  assert_non_null (text);
  put_note (text);
  free (text);

  struct vms_boot_check_report *got = read_note ();
  if (got == NULL)
    fail_msg ("read: %s", vms_get_error ());
  assert_string_equal (got->backup_id, BACKUP);
  assert_int_equal (got->checked, 1796306400);
  assert_int_equal (got->ok, 0);
  assert_int_equal (got->recorded, 1);
  assert_int_equal (got->nr_vms, 2);
  assert_string_equal (got->vms[0].uuid, vms[0].uuid);
  assert_string_equal (got->vms[0].name, "web01");
  assert_int_equal (got->vms[0].ok, 1);
  assert_int_equal (got->vms[0].agent_ms, 14200);
  assert_string_equal (got->vms[0].probe, vms[0].probe);
  assert_int_equal (got->vms[0].probe_ran, 1);
  assert_int_equal (got->vms[0].probe_status, 0);
  assert_null (got->vms[0].error);
  assert_string_equal (got->vms[1].uuid, vms[1].uuid);
  assert_null (got->vms[1].name);
  assert_int_equal (got->vms[1].ok, 0);
  assert_int_equal (got->vms[1].agent_ms, 0);
  assert_null (got->vms[1].probe);
  assert_int_equal (got->vms[1].probe_ran, 0);
  assert_string_equal (got->vms[1].error, vms[1].error);
  vms_boot_check_report_free (got);
}

/* Each a valid JSON text that is not a boot check: refused, naming the
 * backup, never half read. */
static void
a_malformed_note_is_refused_naming_the_backup (void **state)
{
  static const char *const bad[] = {
    "[]",
    "{}",
    "{\"format\":\"vmshadow-verify\",\"version\":1,\"checked\":1,\"ok\":true,\"vms\":[]}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":2,\"checked\":1,\"ok\":true,\"vms\":[]}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":1,\"checked\":-5,\"ok\":true,\"vms\":[]}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":1,\"checked\":1,\"ok\":\"yes\",\"vms\":[]}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":1,\"checked\":1,\"ok\":true,\"vms\":{}}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":1,\"checked\":1,\"ok\":true,\"vms\":[7]}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":1,\"checked\":1,\"ok\":true,"
    "\"vms\":[{\"uuid\":42,\"ok\":true}]}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":1,\"checked\":1,\"ok\":true,"
    "\"vms\":[{\"uuid\":\"u\",\"ok\":true,\"agent_ms\":\"fast\"}]}",
    "{\"format\":\"vmshadow-boot-check\",\"version\":1,\"checked\":1,\"ok\":true,"
    "\"vms\":[{\"uuid\":\"u\",\"ok\":true},{\"uuid\":\"v\",\"ok\":true,\"error\":[]}]}",
  };
  (void) state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    put_note (bad[i]);
    struct vms_boot_check_report *got = read_note ();
    if (got != NULL)
      fail_msg ("note %zu was read as a boot check: %s", i, bad[i]);
    assert_int_equal (vms_get_errno (), EINVAL);
    assert_non_null (strstr (vms_get_error (), BACKUP));
  }
}

int
main (int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (a_backup_never_checked_has_no_boot_check),
    cmocka_unit_test (a_recorded_report_reads_back_member_for_member),
    cmocka_unit_test (a_malformed_note_is_refused_naming_the_backup),
  };
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests (tests, setup, teardown);
}

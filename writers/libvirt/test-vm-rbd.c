/* Unit tests of the pure parts of vm-rbd.h (issue 11): which disks get an
 * RBD snapshot and diff, the disk at a snapshot as QEMU reads it, the
 * extents merged and written for the requester. The librbd half runs
 * against the lab's Ceph in the VM test (vm-writer-backs-up-every-disk-
 * qemu-opens). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmshadow/error.h"

#include "vm-rbd.h"

static struct vm_disk
rbd_disk (const char *name, const char *format)
{
  static struct vm_disk_host h = { .name = (char *) "192.0.2.10", .port = (char *) "6789" };
  struct vm_disk d = {
    .target = (char *) "vdf", .device = (char *) "disk",
    .source = VM_DISK_NETWORK, .path = (char *) "rbd://192.0.2.10:6789/rbd/web01",
    .format = (char *) format, .protocol = (char *) "rbd",
    .source_name = (char *) name, .nr_hosts = 1, .hosts = &h,
    .auth_user = (char *) "admin", .included = 1,
  };
  return d;
}

static void
only_raw_rbd_disks_that_are_no_snapshot_are_diffed (void **state)
{
  struct vm_disk d = rbd_disk ("rbd/web01", "raw");
  const char *why;

  (void) state;
  assert_int_equal (vm_rbd_disk_eligible (&d, &why), 1);
  d.format = NULL;              /* libvirt's default: raw */
  assert_int_equal (vm_rbd_disk_eligible (&d, &why), 1);
  d.format = (char *) "qcow2";
  assert_int_equal (vm_rbd_disk_eligible (&d, &why), 0);
  assert_non_null (strstr (why, "not raw"));
  d = rbd_disk ("rbd/web01@golden", "raw");
  assert_int_equal (vm_rbd_disk_eligible (&d, &why), 0);
  assert_non_null (strstr (why, "snapshot already"));
  d = rbd_disk ("vol/lun1", "raw");
  d.protocol = (char *) "iscsi";
  assert_int_equal (vm_rbd_disk_eligible (&d, &why), 0);
  assert_string_equal (why, "not an RBD disk");
}

static void
disk_at_a_snapshot_is_read_from_it (void **state)
{
  struct vm_disk d = rbd_disk ("rbd/ns1/web01", "raw"), at;
  char *j;

  (void) state;
  assert_int_equal (vm_rbd_disk_at_snapshot (&d, "vmshadow-20261203-1", &at), 0);
  assert_string_equal (at.source_name, "rbd/ns1/web01@vmshadow-20261203-1");
  j = vm_disk_qemu_json (&at, "vms-secret0");
  assert_non_null (j);
  assert_non_null (strstr (j, "\"namespace\":\"ns1\",\"image\":\"web01\","
                           "\"snapshot\":\"vmshadow-20261203-1\""));
  assert_non_null (strstr (j, "\"read-only\":true"));
  assert_non_null (strstr (j, "\"key-secret\":\"vms-secret0\""));
  free (j);
  free (at.source_name);
  /* The disk itself is untouched. */
  assert_string_equal (d.source_name, "rbd/ns1/web01");
}

static void
extents_are_merged_and_written_one_per_line (void **state)
{
  struct vm_rbd_extent e[] = {
    { 0, 4096 }, { 4096, 4096 }, { 6000, 100 }, { 1 << 20, 0 },
    { 4 << 20, 4 << 20 }, { 6 << 20, 4 << 20 }, { 100 << 20, 512 },
  };
  struct vm_rbd_diff r = { 0 };
  char path[] = "/tmp/test-vm-rbd-XXXXXX", buf[256];
  FILE *f;
  size_t n;
  int fd;

  (void) state;
  n = vm_rbd_merge_extents (e, sizeof e / sizeof e[0]);
  assert_int_equal (n, 3);
  assert_int_equal (e[0].offset, 0);
  assert_int_equal (e[0].length, 8192);
  assert_int_equal (e[1].offset, 4 << 20);
  assert_int_equal (e[1].length, 6 << 20);
  assert_int_equal (e[2].offset, 100 << 20);
  assert_int_equal (e[2].length, 512);

  fd = mkstemp (path);
  assert_true (fd >= 0);
  close (fd);
  r.extents = e;
  r.nr_extents = n;
  assert_int_equal (vm_rbd_write_extents (path, &r), 0);
  f = fopen (path, "r");
  assert_non_null (f);
  n = fread (buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose (f);
  unlink (path);
  assert_string_equal (buf, "0 8192\n4194304 6291456\n104857600 512\n");
  r.nr_extents = 0;             /* nothing changed: an empty list */
  fd = mkstemp (path);
  close (fd);
  assert_int_equal (vm_rbd_write_extents (path, &r), 0);
  f = fopen (path, "r");
  assert_int_equal (fread (buf, 1, sizeof buf, f), 0);
  fclose (f);
  unlink (path);
}

int
main (int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (only_raw_rbd_disks_that_are_no_snapshot_are_diffed),
    cmocka_unit_test (disk_at_a_snapshot_is_read_from_it),
    cmocka_unit_test (extents_are_merged_and_written_one_per_line),
  };
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  cmocka_set_message_output (CM_OUTPUT_TAP);
  return cmocka_run_group_tests (tests, NULL, NULL);
}

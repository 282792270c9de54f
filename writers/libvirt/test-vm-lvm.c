/* Unit tests of the LV-recreation plan (issue 11; vm-lvm.h). The lab's
 * kernel has no device-mapper, so no LV can be made or activated here:
 * LVS_CAPTURED and VGS_CAPTURED are what lvs/vgs 2.03 printed on this
 * host for a VG on a loop device with one thick LV made with activation
 * disabled (global/activation=0: lv_attr "-wi-XX----"); LVS_THIN adds a
 * thin pool and a thin volume in the same format (thin pools cannot be
 * made without device-mapper, so those rows are written, not captured).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmshadow/error.h"

#include "vm-lvm.h"

#define MiB ((uint64_t) 1 << 20)

static const char LVS_CAPTURED[] =
  "  {\n"
  "      \"report\": [\n"
  "          {\n"
  "              \"lv\": [\n"
  "                  {\"lv_name\":\"data\", \"vg_name\":\"vmslabs5d\", \"lv_attr\":\"-wi-XX----\", \"lv_size\":\"16777216\", \"pool_lv\":\"\"}\n"
  "              ]\n"
  "          }\n"
  "      ]\n"
  "  }\n";
static const char VGS_CAPTURED[] =
  "  {\n"
  "      \"report\": [\n"
  "          {\n"
  "              \"vg\": [\n"
  "                  {\"vg_name\":\"vmslabs5d\", \"vg_free\":\"46137344\"}\n"
  "              ]\n"
  "          }\n"
  "      ]\n"
  "  }\n";
static const char LVS_THIN[] =
  "{\"report\": [{\"lv\": ["
  "{\"lv_name\":\"data\", \"vg_name\":\"vmslabs5d\", \"lv_attr\":\"-wi-ao----\", \"lv_size\":\"16777216\", \"pool_lv\":\"\"},"
  "{\"lv_name\":\"pool0\", \"vg_name\":\"vmslabs5d\", \"lv_attr\":\"twi-aotz--\", \"lv_size\":\"33554432\", \"pool_lv\":\"\"},"
  "{\"lv_name\":\"thin1\", \"vg_name\":\"vmslabs5d\", \"lv_attr\":\"Vwi-a-tz--\", \"lv_size\":\"67108864\", \"pool_lv\":\"pool0\"},"
  "{\"lv_name\":\"snap\", \"vg_name\":\"vmslabs5d\", \"lv_attr\":\"swi-a-s---\", \"lv_size\":\"67108864\", \"pool_lv\":\"\"}"
  "]}]}";

static char *
joined (const struct vm_lv_plan *p)
{
  size_t n = 1;
  for (size_t i = 0; p->argv[i]; i++)
    n += strlen (p->argv[i]) + 1;
  char *s = calloc (1, n);
  assert_non_null (s);
  for (size_t i = 0; p->argv[i]; i++) {
    if (i)
      strcat (s, " ");
    strcat (s, p->argv[i]);
  }
  return s;
}

static void
lv_paths_name_the_vg_and_lv (void **state)
{
  char *vg, *lv;

  assert_int_equal (vm_lv_from_path ("/dev/vg0/web01-data", &vg, &lv), 0);
  assert_string_equal (vg, "vg0");
  assert_string_equal (lv, "web01-data");
  free (vg); free (lv);
  assert_int_equal (vm_lv_from_path ("/dev/mapper/my--vg-web01--data", &vg, &lv), 0);
  assert_string_equal (vg, "my-vg");
  assert_string_equal (lv, "web01-data");
  free (vg); free (lv);
  assert_int_equal (vm_lv_from_path ("/dev/loop3", &vg, &lv), -1);
  assert_int_equal (vms_get_errno (), EINVAL);
  assert_int_equal (vm_lv_from_path ("/dev/vg0/a/b", &vg, &lv), -1);
  assert_int_equal (vm_lv_from_path ("/dev/vg0/..", &vg, &lv), -1);
  assert_int_equal (vm_lv_from_path ("/dev/mapper/nodash", &vg, &lv), -1);
}

/* The LV is there: reused when large enough, refused when smaller. */
static void
an_existing_lv_is_reused_only_when_large_enough (void **state)
{
  struct vm_lv_plan p;

  assert_int_equal (vm_lv_plan (LVS_CAPTURED, VGS_CAPTURED, "/dev/vmslabs5d/data",
                                16 * MiB, NULL, &p), 0);
  assert_int_equal (p.action, VM_LV_REUSE);
  assert_int_equal (p.lv_size, 16 * MiB);
  assert_null (p.argv[0]);
  vm_lv_plan_clear (&p);
  assert_int_equal (vm_lv_plan (LVS_CAPTURED, VGS_CAPTURED,
                                "/dev/mapper/vmslabs5d-data", 16 * MiB + 512,
                                NULL, &p), -1);
  assert_int_equal (vms_get_errno (), ENOSPC);
  assert_non_null (strstr (vms_get_error (), "LV vmslabs5d/data holds 16777216 "
                           "bytes, fewer than the 16777728 of the backup"));
  /* a snapshot or a pool is never written over */
  assert_int_equal (vm_lv_plan (LVS_THIN, VGS_CAPTURED, "/dev/vmslabs5d/snap",
                                MiB, NULL, &p), -1);
  assert_non_null (strstr (vms_get_error (), "no plain or thin volume"));
  assert_int_equal (vm_lv_plan (LVS_THIN, VGS_CAPTURED, "/dev/vmslabs5d/thin1",
                                64 * MiB, "pool0", &p), 0);
  assert_int_equal (p.action, VM_LV_REUSE);
  vm_lv_plan_clear (&p);
}

/* Gone: made again in the same VG, thick when there is room, thin in its
 * pool; refused when the VG has no room, the VG or the pool is gone. */
static void
a_gone_lv_is_made_again_or_refused_with_the_reason (void **state)
{
  struct vm_lv_plan p;
  char *s;

  assert_int_equal (vm_lv_plan (LVS_CAPTURED, VGS_CAPTURED, "/dev/vmslabs5d/web01",
                                32 * MiB, NULL, &p), 0);
  assert_int_equal (p.action, VM_LV_CREATE);
  s = joined (&p);
  assert_string_equal (s, "lvcreate --yes --size 33554432b --name web01 vmslabs5d");
  free (s);
  vm_lv_plan_clear (&p);

  assert_int_equal (vm_lv_plan (LVS_CAPTURED, VGS_CAPTURED, "/dev/vmslabs5d/web01",
                                64 * MiB, NULL, &p), -1);
  assert_int_equal (vms_get_errno (), ENOSPC);
  assert_non_null (strstr (vms_get_error (), "volume group vmslabs5d has no room "
                           "for it: 46137344 bytes free, 67108864 needed"));

  assert_int_equal (vm_lv_plan (LVS_THIN, VGS_CAPTURED, "/dev/vmslabs5d/web02",
                                1024 * MiB, "pool0", &p), 0);
  s = joined (&p);
  assert_string_equal (s, "lvcreate --yes --virtualsize 1073741824b --thinpool "
                       "vmslabs5d/pool0 --name web02");
  assert_string_equal (p.pool, "pool0");
  free (s);
  vm_lv_plan_clear (&p);

  assert_int_equal (vm_lv_plan (LVS_CAPTURED, VGS_CAPTURED, "/dev/vmslabs5d/web02",
                                MiB, "pool0", &p), -1);
  assert_int_equal (vms_get_errno (), ENOENT);
  assert_non_null (strstr (vms_get_error (), "pool pool0, which is not a thin pool"));
  assert_int_equal (vm_lv_plan (LVS_CAPTURED, VGS_CAPTURED, "/dev/othervg/web01",
                                MiB, NULL, &p), -1);
  assert_non_null (strstr (vms_get_error (), "volume group othervg does not exist"));
}

static void
output_that_is_no_report_is_refused (void **state)
{
  struct vm_lv_plan p;

  assert_int_equal (vm_lv_plan ("not json", VGS_CAPTURED, "/dev/vg/lv", MiB,
                                NULL, &p), -1);
  assert_non_null (strstr (vms_get_error (), "lvs --reportformat json"));
  assert_int_equal (vm_lv_plan (LVS_CAPTURED, "{\"report\":[{\"lv\":[]}]}",
                                "/dev/vg/lv", MiB, NULL, &p), -1);
  assert_non_null (strstr (vms_get_error (), "report of vg"));
  assert_int_equal (vm_lv_plan ("{\"report\":[{\"lv\":[{\"lv_name\":\"lv\","
                                "\"vg_name\":\"vg\",\"lv_attr\":\"-wi-a-----\","
                                "\"lv_size\":\"12x\"}]}]}", VGS_CAPTURED,
                                "/dev/vg/lv", MiB, NULL, &p), -1);
  assert_non_null (strstr (vms_get_error (), "no size"));
  assert_int_equal (vm_lv_plan (LVS_CAPTURED, VGS_CAPTURED, "/dev/vmslabs5d/x",
                                MiB, "bad/pool", &p), -1);
}

static void
a_thin_lvs_pool_is_found_for_the_backup (void **state)
{
  char *pool = (char *) "unset";

  assert_int_equal (vm_lv_thin_pool (LVS_THIN, "/dev/vmslabs5d/thin1", &pool), 0);
  assert_string_equal (pool, "pool0");
  free (pool);
  /* mapper names double the '-' inside a name */
  assert_int_equal (vm_lv_thin_pool (LVS_THIN, "/dev/mapper/vmslabs5d-thin1",
                                     &pool), 0);
  assert_string_equal (pool, "pool0");
  free (pool);
  /* thick, the pool itself, a snapshot, not listed, no LV path: none */
  const char *none[] = { "/dev/vmslabs5d/data", "/dev/vmslabs5d/pool0",
                         "/dev/vmslabs5d/snap", "/dev/vmslabs5d/gone",
                         "/dev/sdb", "/var/lib/images/a.qcow2" };
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
    pool = (char *) "unset";
    assert_int_equal (vm_lv_thin_pool (LVS_THIN, none[i], &pool), 0);
    assert_null (pool);
  }
  assert_int_equal (vm_lv_thin_pool ("not json", "/dev/vmslabs5d/thin1", &pool), -1);
  assert_null (pool);
  assert_int_equal (vm_lv_thin_pool ("{\"report\":[{\"lv\":[{\"lv_name\":\"t\","
                                     "\"vg_name\":\"vg\",\"lv_attr\":\"Vwi-a-tz--\","
                                     "\"pool_lv\":\"../x\"}]}]}", "/dev/vg/t",
                                     &pool), -1);
  assert_non_null (strstr (vms_get_error (), "no LVM name"));
  assert_null (pool);
}

int
main (int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (lv_paths_name_the_vg_and_lv),
    cmocka_unit_test (an_existing_lv_is_reused_only_when_large_enough),
    cmocka_unit_test (a_gone_lv_is_made_again_or_refused_with_the_reason),
    cmocka_unit_test (output_that_is_no_report_is_refused),
    cmocka_unit_test (a_thin_lvs_pool_is_found_for_the_backup),
  };
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  cmocka_set_message_output (CM_OUTPUT_TAP);
  return cmocka_run_group_tests (tests, NULL, NULL);
}

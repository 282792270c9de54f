/* Unit tests of vm-config.c: what the VM writer makes of a domain's XML
 * (R7: disks, NVRAM, TPM; R13: pass-through and network disks left out with
 * the reason), the method choice of R9, and the backup and checkpoint XML
 * it sends to libvirt. No libvirtd needed.
 *
 * Usage: test-vm-config [test-name]; output is TAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vm-config.h"
#include "vmshadow/error.h"

static const char domain_xml[] =
  "<domain type='kvm'>\n"
  "  <name>web01</name>\n"
  "  <uuid>5b4f2d1e-7a8c-4d6e-9f01-23456789abcd</uuid>\n"
  "  <os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>\n"
  "    <nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram></os>\n"
  "  <devices>\n"
  "    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
  "<source file='/var/lib/libvirt/images/web01.qcow2'/><target dev='vda' bus='virtio'/></disk>\n"
  "    <disk type='file' device='disk'><driver name='qemu' type='raw'/>"
  "<source file='/var/lib/libvirt/images/web01-data.raw'/><target dev='vdb' bus='virtio'/></disk>\n"
  "    <disk type='block' device='disk'><driver name='qemu' type='raw'/>"
  "<source dev='/dev/loop3'/><target dev='vdc' bus='virtio'/></disk>\n"
  "    <disk type='block' device='lun'><source dev='/dev/sdb'/><target dev='sda' bus='scsi'/></disk>\n"
  "    <disk type='network' device='disk'><driver name='qemu' type='raw'/>"
  "<source protocol='iscsi' name='iqn.2024-01.org.example:t/0'><host name='192.0.2.1' port='3260'/></source>"
  "<target dev='vdd' bus='virtio'/></disk>\n"
  "    <disk type='network' device='disk'><source protocol='nbd' name='exp'>"
  "<host transport='unix' socket='/run/x.sock'/></source><target dev='vde' bus='virtio'/></disk>\n"
  "    <disk type='file' device='cdrom'><target dev='sdc' bus='sata'/><readonly/></disk>\n"
  "    <disk type='file' device='cdrom'><source file='/iso/install.iso'/><target dev='sdd' bus='sata'/><readonly/></disk>\n"
  "    <hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host2'/>"
  "<address bus='0' target='1' unit='2'/></source></hostdev>\n"
  "    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\n"
  "  </devices>\n"
  "</domain>\n";

static struct vm_config
parse_sample (void)
{
  struct vm_config cfg;
  assert_int_equal (vm_config_parse (domain_xml, strlen (domain_xml), &cfg), 0);
  return cfg;
}

static void
file_disks_are_included_with_their_format (void **state)
{
  struct vm_config cfg = parse_sample ();
  const struct vm_disk *a = vm_config_disk (&cfg, "vda");
  const struct vm_disk *b = vm_config_disk (&cfg, "vdb");

  assert_string_equal (cfg.name, "web01");
  assert_string_equal (cfg.uuid, "5b4f2d1e-7a8c-4d6e-9f01-23456789abcd");
  assert_non_null (a);
  assert_true (a->included);
  assert_string_equal (a->path, "/var/lib/libvirt/images/web01.qcow2");
  assert_string_equal (a->format, "qcow2");
  assert_true (b->included);
  assert_string_equal (b->format, "raw");
  vm_config_clear (&cfg);
}

static void
pass_through_and_network_disks_are_excluded_with_the_reason (void **state)
{
  struct vm_config cfg = parse_sample ();
  const char *t[] = { "vdc", "sda", "vdd", "vde" };

  for (size_t i = 0; i < 4; i++) {
    const struct vm_disk *d = vm_config_disk (&cfg, t[i]);
    assert_non_null (d);
    assert_false (d->included);
    assert_non_null (strstr (d->reason, "backed up from inside the guest"));
  }
  assert_string_equal (vm_config_disk (&cfg, "vdc")->path, "/dev/loop3");
  assert_non_null (strstr (vm_config_disk (&cfg, "sda")->reason, "LUN"));
  assert_string_equal (vm_config_disk (&cfg, "vdd")->path,
                       "iscsi://192.0.2.1:3260/iqn.2024-01.org.example:t/0");
  assert_string_equal (vm_config_disk (&cfg, "vde")->path,
                       "nbd+unix:///exp?socket=/run/x.sock");
  assert_int_equal (cfg.nr_excluded, 1);
  assert_string_equal (cfg.excluded[0].path, "scsi:scsi_host2:0:1:2");
  assert_non_null (strstr (cfg.excluded[0].reason,
                           "backed up from inside the guest"));
  vm_config_clear (&cfg);
}

static void
empty_cdrom_is_ignored_and_iso_is_excluded (void **state)
{
  struct vm_config cfg = parse_sample ();

  assert_null (vm_config_disk (&cfg, "sdc"));
  assert_false (vm_config_disk (&cfg, "sdd")->included);
  assert_non_null (strstr (vm_config_disk (&cfg, "sdd")->reason, "removable"));
  vm_config_clear (&cfg);
}

static void
nvram_and_tpm_are_found (void **state)
{
  struct vm_config cfg = parse_sample ();

  assert_string_equal (cfg.nvram, "/var/lib/libvirt/qemu/nvram/web01_VARS.fd");
  assert_true (cfg.tpm_emulator);
  vm_config_clear (&cfg);
}

static void
malformed_xml_is_refused (void **state)
{
  struct vm_config cfg;
  const char *bad[] = { "<domain><name>x</name>", "<notdomain/>",
                        "<domain><name>x</name></domain>", "" };

  for (size_t i = 0; i < 4; i++)
    assert_int_equal (vm_config_parse (bad[i], strlen (bad[i]), &cfg), -1);
}

/* ---- R9 ---- */

static struct vm_facts
good_facts (const struct vm_config *cfg)
{
  static const char *const vda[] = { "vda" };
  static struct vm_guest_fs fs[] = {
    { "/", "ext4", vda, 1 },
  };
  struct vm_facts f = {
    .cfg = cfg, .state = VM_STATE_RUNNING, .state_name = "running",
    .agent_ok = 1, .fsinfo_ok = 1, .fs = fs, .nr_fs = 1,
    .scratch_same_fs = 1,
  };
  return f;
}

static void
running_vm_with_agent_and_freezable_fs_goes_online (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = good_facts (&cfg);
  enum vm_method m;
  char *why;

  assert_int_equal (vm_method_choose (&f, VMS_VM_METHOD_AUTO, &m, &why), 0);
  assert_int_equal (m, VM_METHOD_ONLINE);
  free (why);
  vm_config_clear (&cfg);
}

static void
each_r9_failure_falls_back_to_saved_state_and_says_why (void **state)
{
  struct vm_config cfg = parse_sample ();
  static const char *const vfat_disks[] = { "vda" };
  static const char *const span[] = { "vda", "vdc" };
  struct vm_guest_fs vfat[] = { { "/boot/efi", "vfat", vfat_disks, 1 } };
  struct vm_guest_fs spanning[] = { { "/srv", "xfs", span, 2 } };
  struct {
    struct vm_facts f;
    const char *expect;
  } cases[5];
  enum vm_method m;
  char *why;

  for (size_t i = 0; i < 5; i++)
    cases[i].f = good_facts (&cfg);
  cases[0].f.agent_ok = 0;
  cases[0].f.agent_error = "not configured";
  cases[0].expect = "guest agent does not answer (not configured)";
  cases[1].f.state = VM_STATE_PAUSED;
  cases[1].f.state_name = "paused";
  cases[1].expect = "the VM is paused, not running";
  cases[2].f.fs = vfat;
  cases[2].expect = "/boot/efi (vfat) cannot be frozen";
  cases[3].f.fs = spanning;
  cases[3].expect = "guest volume /srv spans disk vdc";
  cases[4].f.scratch_same_fs = 0;
  cases[4].f.scratch_error = "scratch elsewhere";
  cases[4].expect = "scratch elsewhere";
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal (vm_method_choose (&cases[i].f, VMS_VM_METHOD_AUTO, &m,
                                        &why), 0);
    assert_int_equal (m, VM_METHOD_SAVED_STATE);
    if (strstr (why, cases[i].expect) == NULL)
      fail_msg ("case %zu: \"%s\" does not say \"%s\"", i, why,
                cases[i].expect);
    free (why);
  }
  vm_config_clear (&cfg);
}

static void
forced_online_fails_naming_the_vm_and_the_reason (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = good_facts (&cfg);
  enum vm_method m;
  char *why;

  f.agent_ok = 0;
  f.agent_error = "timed out";
  assert_int_equal (vm_method_choose (&f, VMS_VM_METHOD_ONLINE, &m, &why), -1);
  assert_non_null (strstr (why, "vm \"web01\" cannot be backed up online"));
  assert_non_null (strstr (why, "timed out"));
  free (why);
  vm_config_clear (&cfg);
}

static void
stopped_vm_is_offline_whatever_was_asked (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = { .cfg = &cfg, .state = VM_STATE_OFF,
                        .state_name = "shut-off" };
  enum vm_method m;
  char *why;

  for (int want = 0; want < 3; want++) {
    assert_int_equal (vm_method_choose (&f, (enum vms_vm_method) want, &m,
                                        &why), 0);
    assert_int_equal (m, VM_METHOD_OFFLINE);
    free (why);
  }
  vm_config_clear (&cfg);
}

static void
vfat_is_not_freezable_but_ext4_xfs_ntfs_are (void **state)
{
  assert_false (vm_fs_type_freezable ("vfat"));
  assert_false (vm_fs_type_freezable (NULL));
  assert_true (vm_fs_type_freezable ("ext4"));
  assert_true (vm_fs_type_freezable ("xfs"));
  assert_true (vm_fs_type_freezable ("NTFS"));
}

/* ---- XML sent ---- */

static void
backup_xml_names_exports_bitmaps_and_full_disks (void **state)
{
  struct vm_job_disk d[] = {
    { "vda", 1, 1, 1, "/s/vda.qcow2" },
    { "vdb", 1, 0, 0, "/s/vdb.qcow2" },
    { "vdc", 0, 0, 0, NULL },
  };
  char *x = vm_backup_xml ("/run/vmshadow/1/0.sock", "vmshadow-a", d, 3);

  assert_non_null (x);
  assert_non_null (strstr (x, "<incremental>vmshadow-a</incremental>"));
  assert_non_null (strstr (x, "socket='/run/vmshadow/1/0.sock'"));
  assert_non_null (strstr (x, "name='vda' backup='yes' type='file' "
                           "exportname='vda' backupmode='incremental' "
                           "exportbitmap='backup-vda'"));
  assert_non_null (strstr (x, "exportname='vdb' backupmode='full'"));
  assert_non_null (strstr (x, "<disk name='vdc' backup='no'/>"));
  free (x);
  x = vm_backup_xml ("/s'<&", NULL, d, 1);
  assert_non_null (strstr (x, "socket='/s&apos;&lt;&amp;'"));
  assert_null (strstr (x, "incremental"));
  free (x);
}

static void
checkpoint_xml_round_trips_through_the_bitmap_reader (void **state)
{
  struct vm_job_disk d[] = {
    { "vda", 1, 0, 1, "/s/a" }, { "vdb", 1, 0, 0, "/s/b" },
    { "vdc", 1, 0, 1, "/s/c" },
  };
  char *x = vm_checkpoint_xml ("vmshadow-x", "desc", d, 3);
  string_vector t = empty_vector;

  assert_non_null (x);
  assert_int_equal (vm_checkpoint_bitmaps (x, strlen (x), &t), 0);
  assert_int_equal (t.len, 2);
  assert_string_equal (t.ptr[0], "vda");
  assert_string_equal (t.ptr[1], "vdc");
  string_vector_free_all (&t);
  free (x);
}

static void
libvirt_inconsistent_bitmap_message_names_the_disk (void **state)
{
  char *d = vm_inconsistent_disk ("checkpoint inconsistent: missing or broken "
                                  "bitmap 'vmshadow-x' for disk 'vdb'");
  assert_string_equal (d, "vdb");
  free (d);
  assert_null (vm_inconsistent_disk ("some other error"));
}

/* Issue 20: the label libvirt's DAC driver gives QEMU, from a running
 * domain's XML, and what it stands for. */
static void
dac_label_of_a_running_domain_is_read_and_resolved (void **state)
{
  static const char xml[] =
    "<domain type='kvm' id='3'><name>a</name><uuid>u</uuid>"
    "<seclabel type='none' model='none'/>"
    "<seclabel type='dynamic' model='dac' relabel='yes'>"
    "<label>+64055:+107</label><imagelabel>+64055:+108</imagelabel>"
    "</seclabel></domain>";
  struct vm_config cfg;
  unsigned uid = 1, gid = 1;

  assert_int_equal (vm_config_parse (xml, strlen (xml), &cfg), 0);
  assert_string_equal (cfg.dac_label, "+64055:+108");
  assert_int_equal (vm_dac_label_ids (cfg.dac_label, &uid, &gid), 0);
  assert_int_equal (uid, 64055);
  assert_int_equal (gid, 108);
  vm_config_clear (&cfg);

  assert_int_equal (vm_dac_label_ids ("root:root", &uid, &gid), 0);
  assert_int_equal (uid, 0);
  assert_int_equal (gid, 0);
  assert_int_equal (vm_dac_label_ids ("+1:", &uid, &gid), -1);
  assert_int_equal (vm_dac_label_ids ("+x:+1", &uid, &gid), -1);
  assert_int_equal (vm_dac_label_ids ("no-such-user-vms:+1", &uid, &gid), -1);
  assert_int_equal (vm_dac_label_ids ("+1", &uid, &gid), -1);

  /* A stopped domain's inactive XML has no label. */
  struct vm_config plain = parse_sample ();
  assert_null (plain.dac_label);
  vm_config_clear (&plain);
}

#define TEST(name, fn) { name, fn, NULL, NULL, NULL }

/* ---- the domain XML of a copy (issue 20: restore --name) ---- */

static const char clone_src_xml[] =
  "<domain type='kvm'>\n"
  "  <name>web01</name>\n"
  "  <uuid>5b4f2d1e-7a8c-4d6e-9f01-23456789abcd</uuid>\n"
  "  <metadata>\n"
  "    <app:owner xmlns:app='http://example.org/app'>web01 by ops</app:owner>\n"
  "    <app:tag xmlns:app='http://example.org/app' vm='5b4f2d1e-7a8c-4d6e-9f01-23456789abcd'/>\n"
  "    <app:team xmlns:app='http://example.org/app'>ops</app:team>\n"
  "  </metadata>\n"
  "  <os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>\n"
  "    <nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram></os>\n"
  "  <devices>\n"
  "    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
  "<source file='/img/web01.qcow2'/><target dev='vda' bus='virtio'/></disk>\n"
  "    <disk type='block' device='disk'><source dev='/dev/vg/web01-db'/><target dev='vdb' bus='virtio'/></disk>\n"
  "    <disk type='file' device='cdrom'><source file='/iso/install.iso'/><target dev='sdd' bus='sata'/><readonly/></disk>\n"
  "    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/>"
  "<target dev='vnet7'/><model type='virtio'/></interface>\n"
  "    <interface type='bridge'><mac address='52:54:00:aa:bb:cd'/><source bridge='br0'/></interface>\n"
  "    <serial type='file'><source path='/var/log/web01-serial.log'/><target port='0'/></serial>\n"
  "    <console type='pty'><log file='/var/log/libvirt/qemu/console.log'/><target type='serial'/></console>\n"
  "    <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web01.agent'/>"
  "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n"
  "    <channel type='unix'><source mode='bind' path='/run/shared.sock'/>"
  "<target type='virtio' name='org.example.x'/></channel>\n"
  "  </devices>\n"
  "</domain>\n";

static const char *const clone_from[] = {
  "/img/web01.qcow2", "/var/lib/libvirt/qemu/nvram/web01_VARS.fd",
};
static const char *const clone_to[] = {
  "/img/copy-vda.qcow2", "/var/lib/libvirt/qemu/nvram/copy_VARS.fd",
};
static const struct vm_rewrite clone_rw = {
  .name = "copy", .uuid = "99999999-8888-4777-8666-555555555555",
  .new_macs = 1, .from = clone_from, .to = clone_to, .nr_paths = 2,
  .old_name = "web01", .old_uuid = "5b4f2d1e-7a8c-4d6e-9f01-23456789abcd",
};

static void
copy_has_new_identity_macs_and_files (void **state)
{
  string_vector notes = empty_vector;
  char *x = vm_config_rewrite (clone_src_xml, strlen (clone_src_xml), &clone_rw, &notes);
  struct vm_config cfg;

  assert_non_null (x);
  assert_int_equal (vm_config_parse (x, strlen (x), &cfg), 0);
  assert_string_equal (cfg.name, "copy");
  assert_string_equal (cfg.uuid, "99999999-8888-4777-8666-555555555555");
  assert_string_equal (cfg.nvram, "/var/lib/libvirt/qemu/nvram/copy_VARS.fd");
  /* The disk in the backup is the copy's file; the block device (the
   * original's, not in the backup) is gone; the ISO stays. */
  assert_string_equal (vm_config_disk (&cfg, "vda")->path, "/img/copy-vda.qcow2");
  assert_null (vm_config_disk (&cfg, "vdb"));
  assert_non_null (vm_config_disk (&cfg, "sdd"));
  vm_config_clear (&cfg);
  /* New MACs (QEMU's prefix, not the old ones), no fixed vnet device. */
  assert_null (strstr (x, "52:54:00:aa:bb:cc"));
  assert_null (strstr (x, "52:54:00:aa:bb:cd"));
  assert_non_null (strstr (x, "<mac address=\"52:54:00:"));
  assert_null (strstr (x, "vnet7"));
  /* Logs and sockets are the copy's own; the read-only loader is shared. */
  assert_non_null (strstr (x, "/var/log/copy-serial.log"));
  assert_non_null (strstr (x, "/var/log/libvirt/qemu/copy-console.log"));
  assert_non_null (strstr (x, "/var/lib/libvirt/qemu/channel/target/copy.agent"));
  assert_null (strstr (x, "/run/shared.sock"));
  assert_non_null (strstr (x, "/usr/share/OVMF/OVMF_CODE.fd"));
  /* Metadata naming the original is dropped, the rest stays. */
  assert_null (strstr (x, "web01"));
  assert_null (strstr (x, "5b4f2d1e-7a8c-4d6e-9f01-23456789abcd"));
  assert_non_null (strstr (x, ">ops</app:team>"));
  /* What changed is said. */
  int macs = 0;
  for (size_t i = 0; i < notes.len; i++)
    macs += strstr (notes.ptr[i], "new MAC address (was 52:54:00:aa:bb:c") != NULL;
  assert_int_equal (macs, 2);
  string_vector_free_all (&notes);
  free (x);
}

static void
two_copies_get_different_macs (void **state)
{
  char *a = vm_config_rewrite (clone_src_xml, strlen (clone_src_xml), &clone_rw, NULL);
  char *b = vm_config_rewrite (clone_src_xml, strlen (clone_src_xml), &clone_rw, NULL);
  assert_non_null (a);
  assert_non_null (b);
  assert_string_not_equal (strstr (a, "<mac address="), strstr (b, "<mac address="));
  free (a);
  free (b);
}

static void
copy_of_malformed_xml_fails_clearly (void **state)
{
  static const char *const bad[] = {
    "", "<domain", "<domain><name>x</name>", "<network/>", "not xml at all",
    "<domain><name>a</name></domain><domain/>",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_null (vm_config_rewrite (bad[i], strlen (bad[i]), &clone_rw, NULL));
    assert_non_null (strstr (vms_get_error (), "domain XML"));
  }
}

static const struct CMUnitTest tests[] = {
  TEST ("file-disks-are-included-with-their-format",
        file_disks_are_included_with_their_format),
  TEST ("pass-through-and-network-disks-are-excluded-with-the-reason",
        pass_through_and_network_disks_are_excluded_with_the_reason),
  TEST ("empty-cdrom-is-ignored-and-iso-is-excluded",
        empty_cdrom_is_ignored_and_iso_is_excluded),
  TEST ("nvram-and-tpm-are-found", nvram_and_tpm_are_found),
  TEST ("malformed-xml-is-refused", malformed_xml_is_refused),
  TEST ("running-vm-with-agent-and-freezable-fs-goes-online",
        running_vm_with_agent_and_freezable_fs_goes_online),
  TEST ("each-r9-failure-falls-back-to-saved-state-and-says-why",
        each_r9_failure_falls_back_to_saved_state_and_says_why),
  TEST ("forced-online-fails-naming-the-vm-and-the-reason",
        forced_online_fails_naming_the_vm_and_the_reason),
  TEST ("stopped-vm-is-offline-whatever-was-asked",
        stopped_vm_is_offline_whatever_was_asked),
  TEST ("vfat-is-not-freezable-but-ext4-xfs-ntfs-are",
        vfat_is_not_freezable_but_ext4_xfs_ntfs_are),
  TEST ("backup-xml-names-exports-bitmaps-and-full-disks",
        backup_xml_names_exports_bitmaps_and_full_disks),
  TEST ("checkpoint-xml-round-trips-through-the-bitmap-reader",
        checkpoint_xml_round_trips_through_the_bitmap_reader),
  TEST ("libvirt-inconsistent-bitmap-message-names-the-disk",
        libvirt_inconsistent_bitmap_message_names_the_disk),
  TEST ("dac-label-of-a-running-domain-is-read-and-resolved",
        dac_label_of_a_running_domain_is_read_and_resolved),
  TEST ("copy-has-new-identity-macs-and-files",
        copy_has_new_identity_macs_and_files),
  TEST ("two-copies-get-different-macs", two_copies_get_different_macs),
  TEST ("copy-of-malformed-xml-fails-clearly",
        copy_of_malformed_xml_fails_clearly),
};

int
main (int argc, char *argv[])
{
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("vm-config", tests, NULL, NULL);
}

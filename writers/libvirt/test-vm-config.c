/* Unit tests of vm-config.c: what the VM writer makes of a domain's XML
 * (R7: disks, NVRAM, TPM; R13: pass-through and network disks left out with
 * the reason), the method choice of R9, and the backup and checkpoint XML
 * it sends to libvirt. No libvirtd needed.
 *
 * Usage: test-vm-config [test-name]; output is TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* R13 read for KVM (issue 11): QEMU opens block devices and network
 * disks itself, so they are backed up; only SCSI pass-through is left. */
static void
block_and_network_disks_are_included_and_luns_excluded (void **state)
{
  struct vm_config cfg = parse_sample ();
  const char *in[] = { "vdc", "vdd", "vde" };

  for (size_t i = 0; i < 3; i++) {
    const struct vm_disk *d = vm_config_disk (&cfg, in[i]);
    assert_non_null (d);
    assert_true (d->included);
    assert_null (d->reason);
  }
  assert_int_equal (vm_config_disk (&cfg, "vdc")->source, VM_DISK_BLOCK);
  assert_string_equal (vm_config_disk (&cfg, "vdc")->path, "/dev/loop3");
  assert_false (vm_config_disk (&cfg, "sda")->included);
  assert_non_null (strstr (vm_config_disk (&cfg, "sda")->reason,
                           "backed up from inside the guest: pass-through SCSI LUN /dev/sdb"));
  assert_string_equal (vm_config_disk (&cfg, "vdd")->path,
                       "iscsi://192.0.2.1:3260/iqn.2024-01.org.example:t/0");
  assert_string_equal (vm_config_disk (&cfg, "vdd")->protocol, "iscsi");
  assert_string_equal (vm_config_disk (&cfg, "vde")->path,
                       "nbd+unix:///exp?socket=/run/x.sock");
  assert_int_equal (cfg.nr_excluded, 1);
  assert_string_equal (cfg.excluded[0].path, "scsi:scsi_host2:0:1:2");
  assert_non_null (strstr (cfg.excluded[0].reason,
                           "backed up from inside the guest"));
  vm_config_clear (&cfg);
}

static const char devices_xml[] =
  "<domain type='kvm'><name>d</name><uuid>5b4f2d1e-7a8c-4d6e-9f01-23456789abce</uuid><devices>\n"
  "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/lv1'/><target dev='vda'/></disk>\n"
  "<disk type='network' device='lun'><source protocol='iscsi' name='iqn.2024-01.org.example:t/2'><host name='192.0.2.1'/></source><target dev='sda' bus='scsi'/></disk>\n"
  "<disk type='vhostuser' device='disk'><driver name='qemu' type='raw'/><source type='unix' path='/tmp/vhost-blk.sock'><reconnect enabled='yes' timeout='10'/></source><target dev='vdb' bus='virtio'/></disk>\n"
  "<disk type='vhostvdpa' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vhost-vdpa-0'/><target dev='vdc' bus='virtio'/></disk>\n"
  "<disk type='nvme' device='disk'><driver name='qemu' type='raw'/><source type='pci' managed='yes' namespace='1'><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source><target dev='vdd' bus='virtio'/></disk>\n"
  "<disk type='network' device='disk'><source protocol='sheepdog' name='img'><host name='192.0.2.9'/></source><target dev='vde'/></disk>\n"
  "<disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='vms/ns1/img@snap1'><host name='192.0.2.10' port='6789'/><host name='192.0.2.11'/>"
  "<auth username='libvirt'><secret type='ceph' usage='client.libvirt secret'/></auth><config file='/etc/ceph/ceph.conf'/></source><target dev='vdf'/></disk>\n"
  "<disk type='network' device='disk'><driver name='qemu' type='qcow2'/><source protocol='iscsi' name='iqn.2024-01.org.example:t/3'><host name='2001:db8::1' port='3261'/>"
  "<initiator><iqn name='iqn.2024-01.org.example:init'/></initiator></source>"
  "<auth username='u\"s'><secret type='iscsi' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></auth><target dev='vdg'/></disk>\n"
  "<disk type='network' device='disk'><source protocol='nbd' name='e'><host name='192.0.2.3' port='10810'/></source><target dev='vdh'/></disk>\n"
  "<disk type='network' device='disk'><source protocol='nbd' tls='yes' name='e'><host name='192.0.2.3'/></source><target dev='vdi'/></disk>\n"
  "<disk type='network' device='disk'><source protocol='ssh' name='/img'><host name='192.0.2.4'/></source><target dev='vdj'/></disk>\n"
  "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/var/lib/images/part.img'><slices><slice type='storage' offset='1048576' size='67108864'/></slices></source><target dev='vdk'/></disk>\n"
  "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></source></hostdev>\n"
  "<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev>\n"
  "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>\n"
  "<hostdev mode='subsystem' type='scsi_host'><source protocol='vhost' wwpn='naa.5001405df3e54061'/></hostdev>\n"
  "</devices></domain>\n";

static struct vm_config
parse_devices (void)
{
  struct vm_config cfg;
  assert_int_equal (vm_config_parse (devices_xml, strlen (devices_xml), &cfg), 0);
  return cfg;
}

static void
what_bypasses_qemus_block_layer_is_excluded_with_the_reason (void **state)
{
  struct vm_config cfg = parse_devices ();
  const struct { const char *target, *why; } out[] = {
    { "sda", "pass-through SCSI LUN iscsi://192.0.2.1/iqn.2024-01.org.example:t/2" },
    { "vdb", "by a vhost-user process" },
    { "vdc", "by a vDPA device" },
    { "vdd", "user-space driver" },
    { "vde", "protocol \"sheepdog\", which QEMU 7.2 has no block driver for" },
    /* Not past QEMU, but only part of a file: read or restored whole, it
     * would be the wrong bytes. */
    { "vdk", "disk vdk is a slice of /var/lib/images/part.img (<slices>)" },
  };
  const char *hostdevs[] = {
    "pci:0x0000:0x03:0x00.0x1", "usb:0x1234:0xbeef",
    "mdev:c2177883-f1bb-47f0-914d-32a22e3a8804", "vhost-scsi:naa.5001405df3e54061",
  };

  assert_true (vm_config_disk (&cfg, "vda")->included);   /* an LV */
  for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
    const struct vm_disk *d = vm_config_disk (&cfg, out[i].target);
    assert_non_null (d);
    assert_false (d->included);
    assert_non_null (strstr (d->reason, "backed up from inside the guest"));
    assert_non_null (strstr (d->reason, out[i].why));
  }
  for (const char *t = "fghij"; *t; t++) {
    char name[4] = { 'v', 'd', *t, 0 };
    assert_true (vm_config_disk (&cfg, name)->included);
  }
  assert_int_equal (cfg.nr_excluded, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal (cfg.excluded[i].path, hostdevs[i]);
    assert_non_null (strstr (cfg.excluded[i].reason,
                             "backed up from inside the guest: pass-through"));
  }
  vm_config_clear (&cfg);
}

static void
network_disks_become_qemus_block_graph_with_their_secret (void **state)
{
  struct vm_config cfg = parse_devices ();
  struct vm_config s = parse_sample ();
  char *j;

  /* RBD: pool, namespace, image, snapshot, monitors, cephx key secret. */
  j = vm_disk_qemu_json (vm_config_disk (&cfg, "vdf"), "vms-secret0");
  assert_non_null (j);
  assert_string_equal (j, "json:{\"driver\":\"raw\",\"read-only\":true,\"file\":{"
                       "\"driver\":\"rbd\",\"pool\":\"vms\",\"namespace\":\"ns1\","
                       "\"image\":\"img\",\"snapshot\":\"snap1\",\"conf\":\"/etc/ceph/ceph.conf\","
                       "\"server\":[{\"host\":\"192.0.2.10\",\"port\":\"6789\"},"
                       "{\"host\":\"192.0.2.11\",\"port\":\"6789\"}],\"user\":\"libvirt\","
                       "\"auth-client-required\":[\"cephx\"],\"key-secret\":\"vms-secret0\"}}");
  free (j);
  assert_string_equal (vm_config_disk (&cfg, "vdf")->secret_usage, "client.libvirt secret");
  /* iSCSI: IPv6 portal, LUN, initiator, user (escaped) and password secret
   * (<auth> under <disk>, as older libvirt writes it). */
  j = vm_disk_qemu_json (vm_config_disk (&cfg, "vdg"), "vms-secret0");
  assert_non_null (j);
  assert_string_equal (j, "json:{\"driver\":\"qcow2\",\"read-only\":true,\"file\":{"
                       "\"driver\":\"iscsi\",\"transport\":\"tcp\",\"portal\":\"[2001:db8::1]:3261\","
                       "\"target\":\"iqn.2024-01.org.example:t\",\"lun\":3,"
                       "\"initiator-name\":\"iqn.2024-01.org.example:init\","
                       "\"user\":\"u\\\"s\",\"password-secret\":\"vms-secret0\"}}");
  free (j);
  assert_string_equal (vm_config_disk (&cfg, "vdg")->secret_uuid,
                       "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f");
  /* NBD over TCP and over a Unix socket. */
  j = vm_disk_qemu_json (vm_config_disk (&cfg, "vdh"), NULL);
  assert_string_equal (j, "json:{\"driver\":\"raw\",\"read-only\":true,\"file\":{"
                       "\"driver\":\"nbd\",\"server\":{\"type\":\"inet\",\"host\":\"192.0.2.3\","
                       "\"port\":\"10810\"},\"export\":\"e\"}}");
  free (j);
  j = vm_disk_qemu_json (vm_config_disk (&s, "vde"), NULL);
  assert_string_equal (j, "json:{\"driver\":\"raw\",\"read-only\":true,\"file\":{"
                       "\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"/run/x.sock\"},"
                       "\"export\":\"exp\"}}");
  free (j);
  j = vm_disk_qemu_json (vm_config_disk (&s, "vdd"), NULL);
  assert_non_null (strstr (j, "\"portal\":\"192.0.2.1:3260\",\"target\":\"iqn.2024-01.org.example:t\",\"lun\":0}"));
  free (j);
  /* What a stopped VM's disk cannot be read by: said, not guessed. */
  assert_null (vm_disk_qemu_json (vm_config_disk (&cfg, "vdi"), NULL));
  assert_int_equal (vms_get_errno (), ENOTSUP);
  assert_non_null (strstr (vms_get_error (), "TLS"));
  assert_null (vm_disk_qemu_json (vm_config_disk (&cfg, "vdj"), NULL));
  assert_int_equal (vms_get_errno (), ENOTSUP);
  assert_non_null (strstr (vms_get_error (), "\"ssh\""));
  assert_null (vm_disk_qemu_json (vm_config_disk (&cfg, "vda"), NULL));
  vm_config_clear (&cfg);
  vm_config_clear (&s);
}

/* Issue 11, restore into the device: the writable graphs, and the name
 * qemu-img create makes a gone RBD image again with. */
static void
devices_are_written_through_writable_graphs (void **state)
{
  struct vm_config cfg = parse_devices ();
  struct vm_disk d;
  struct vm_disk_host mon[2] = { { .name = (char *) "192.0.2.10", .port = (char *) "6790" },
                                 { .name = (char *) "mon2" } };
  char *j;

  j = vm_disk_qemu_json_writable (vm_config_disk (&cfg, "vdg"), "vms-secret0");
  assert_non_null (j);
  assert_null (strstr (j, "read-only"));
  assert_non_null (strstr (j, "\"password-secret\":\"vms-secret0\""));
  free (j);
  j = vm_block_qemu_json ("/dev/vg0/a\"b");
  assert_string_equal (j, "json:{\"driver\":\"raw\",\"file\":{\"driver\":"
                       "\"host_device\",\"filename\":\"/dev/vg0/a\\\"b\"}}");
  free (j);
  /* A namespace and a snapshot are refused (vdf: vms/ns1/img@snap1). */
  assert_null (vm_rbd_create_name (vm_config_disk (&cfg, "vdf")));
  assert_int_equal (vms_get_errno (), ENOTSUP);
  memset (&d, 0, sizeof d);
  d.target = (char *) "vdb";
  d.path = (char *) "rbd://192.0.2.10:6790/rbd/web01";
  d.source = VM_DISK_NETWORK;
  d.protocol = (char *) "rbd";
  d.source_name = (char *) "rbd/web01";
  d.hosts = mon;
  d.nr_hosts = 2;
  d.auth_user = (char *) "libvirt";
  j = vm_rbd_create_name (&d);
  assert_string_equal (j, "rbd:rbd/web01:id=libvirt:mon_host=192.0.2.10\\:6790;"
                       "mon2\\:6789:auth_supported=cephx");
  free (j);
  /* Names that would need escaping in the legacy syntax are refused. */
  d.source_name = (char *) "rbd/a:b";
  assert_null (vm_rbd_create_name (&d));
  d.source_name = (char *) "rbd/web01";
  mon[1].name = (char *) "mon2:x";
  assert_null (vm_rbd_create_name (&d));
  vm_config_clear (&cfg);
}

static void
malformed_network_sources_are_refused (void **state)
{
  const char *bad[] = {
    "<source protocol='rbd' name='noslash'><host name='h'/></source>",
    "<source protocol='rbd' name='/img'><host name='h'/></source>",
    "<source protocol='rbd' name='a/b/c/d'><host name='h'/></source>",
    "<source protocol='iscsi' name='iqn.x:t/notalun'><host name='h'/></source>",
    "<source protocol='iscsi' name='iqn.x:t/1'/>",
    "<source protocol='nbd' name='e'><host name='h' port='99999'/></source>",
    "<source protocol='nbd' name='e'/>",
  };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char xml[1024];
    struct vm_config cfg;
    snprintf (xml, sizeof xml, "<domain><name>n</name><uuid>u</uuid><devices>"
              "<disk type='network' device='disk'>%s<target dev='vda'/></disk>"
              "</devices></domain>", bad[i]);
    assert_int_equal (vm_config_parse (xml, strlen (xml), &cfg), 0);
    assert_true (cfg.disks[0].included);
    assert_null (vm_disk_qemu_json (&cfg.disks[0], "s"));
    assert_int_equal (vms_get_errno (), EINVAL);
    assert_non_null (strstr (vms_get_error (), "disk vda"));
    vm_config_clear (&cfg);
  }
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

static struct vm_policy
policy (enum vms_vm_method m, enum vms_vm_fallback f)
{
  struct vm_policy p = { .method = m, .fallback = f };
  return p;
}

static void
running_vm_with_agent_and_freezable_fs_goes_online (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = good_facts (&cfg);
  struct vm_policy p = policy (VMS_VM_METHOD_AUTO,
                               VMS_VM_FALLBACK_CRASH_CONSISTENT);
  struct vm_choice c;

  assert_int_equal (vm_method_choose (&f, &p, &c), 0);
  assert_int_equal (c.method, VM_METHOD_ONLINE);
  assert_null (c.fallback_reason);
  vm_choice_clear (&c);
  vm_config_clear (&cfg);
}

/* Each R9 condition that fails makes auto fall back, to the policy's
 * fallback (crash-consistent by default: issue 20), saying why. */
static void
each_r9_failure_falls_back_by_policy_and_says_why (void **state)
{
  struct vm_config cfg = parse_sample ();
  static const char *const vfat_disks[] = { "vda" };
  static const char *const span[] = { "vda", "sda" };
  struct vm_guest_fs vfat[] = { { "/boot/efi", "vfat", vfat_disks, 1 } };
  struct vm_guest_fs spanning[] = { { "/srv", "xfs", span, 2 } };
  static const struct {
    enum vms_vm_fallback fallback;
    enum vm_method method;
  } fallbacks[] = {
    { VMS_VM_FALLBACK_CRASH_CONSISTENT, VM_METHOD_CRASH_CONSISTENT },
    { VMS_VM_FALLBACK_SAVED_STATE, VM_METHOD_SAVED_STATE },
  };
  struct {
    struct vm_facts f;
    const char *expect;
  } cases[5];
  struct vm_choice c;

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
  cases[3].expect = "guest volume /srv spans disk sda";
  cases[4].f.scratch_same_fs = 0;
  cases[4].f.scratch_error = "scratch elsewhere";
  cases[4].expect = "scratch elsewhere";
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < 5; i++) {
      struct vm_policy p = policy (VMS_VM_METHOD_AUTO, fallbacks[k].fallback);
      assert_int_equal (vm_method_choose (&cases[i].f, &p, &c), 0);
      assert_int_equal (c.method, fallbacks[k].method);
      assert_non_null (c.fallback_reason);
      if (strstr (c.fallback_reason, cases[i].expect) == NULL ||
          strstr (c.reason, cases[i].expect) == NULL)
        fail_msg ("case %zu: \"%s\" does not say \"%s\"", i, c.reason,
                  cases[i].expect);
      if (strstr (c.reason, "the fallback set by the options is") == NULL)
        fail_msg ("case %zu: \"%s\" does not name the policy's source", i,
                  c.reason);
      vm_choice_clear (&c);
    }
  vm_config_clear (&cfg);
}

static void
fallback_fail_refuses_naming_the_vm_and_why (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = good_facts (&cfg);
  struct vm_policy p = policy (VMS_VM_METHOD_AUTO, VMS_VM_FALLBACK_FAIL);
  struct vm_choice c;

  f.agent_ok = 0;
  f.agent_error = "no channel";
  assert_int_equal (vm_method_choose (&f, &p, &c), -1);
  assert_non_null (strstr (c.reason, "vm \"web01\" cannot be backed up online"));
  assert_non_null (strstr (c.reason, "fallback is \"fail\""));
  assert_non_null (strstr (c.reason, "no channel"));
  vm_choice_clear (&c);
  /* With R9 holding, the fallback does not matter. */
  f = good_facts (&cfg);
  assert_int_equal (vm_method_choose (&f, &p, &c), 0);
  assert_int_equal (c.method, VM_METHOD_ONLINE);
  vm_choice_clear (&c);
  vm_config_clear (&cfg);
}

static void
forced_online_fails_naming_the_vm_and_the_reason (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = good_facts (&cfg);
  struct vm_policy p = policy (VMS_VM_METHOD_ONLINE,
                               VMS_VM_FALLBACK_SAVED_STATE);
  struct vm_choice c;

  f.agent_ok = 0;
  f.agent_error = "timed out";
  assert_int_equal (vm_method_choose (&f, &p, &c), -1);
  assert_non_null (strstr (c.reason, "vm \"web01\" cannot be backed up online"));
  assert_non_null (strstr (c.reason, "timed out"));
  vm_choice_clear (&c);
  vm_config_clear (&cfg);
}

/* A method named outright needs neither the agent nor R9. */
static void
named_methods_need_no_agent (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = good_facts (&cfg);
  struct vm_policy cc = policy (VMS_VM_METHOD_CRASH_CONSISTENT,
                                VMS_VM_FALLBACK_FAIL);
  struct vm_policy ss = policy (VMS_VM_METHOD_SAVED_STATE,
                                VMS_VM_FALLBACK_FAIL);
  struct vm_choice c;

  f.agent_ok = 0;
  f.scratch_same_fs = 0;
  cc.method_from_metadata = 1;
  assert_int_equal (vm_method_choose (&f, &cc, &c), 0);
  assert_int_equal (c.method, VM_METHOD_CRASH_CONSISTENT);
  assert_non_null (strstr (c.reason, "the domain's vmshadow policy"));
  assert_null (c.fallback_reason);
  vm_choice_clear (&c);
  f.state = VM_STATE_PAUSED;
  assert_int_equal (vm_method_choose (&f, &ss, &c), 0);
  assert_int_equal (c.method, VM_METHOD_SAVED_STATE);
  assert_non_null (strstr (c.reason, "the options"));
  vm_choice_clear (&c);
  vm_config_clear (&cfg);
}

static void
stopped_vm_is_offline_whatever_was_asked (void **state)
{
  struct vm_config cfg = parse_sample ();
  struct vm_facts f = { .cfg = &cfg, .state = VM_STATE_OFF,
                        .state_name = "shut-off" };
  struct vm_choice c;

  for (int want = 0; want < 4; want++)
    for (int fb = 0; fb < 3; fb++) {
      struct vm_policy p = policy ((enum vms_vm_method) want,
                                   (enum vms_vm_fallback) fb);
      assert_int_equal (vm_method_choose (&f, &p, &c), 0);
      assert_int_equal (c.method, VM_METHOD_OFFLINE);
      vm_choice_clear (&c);
    }
  vm_config_clear (&cfg);
}

/* ---- the per-VM policy in <metadata> (issue 20) ---- */

static int
parse_with_metadata (const char *md, struct vm_config *cfg)
{
  char *xml;
  int r;

  assert_true (asprintf (&xml, "<domain type='kvm'><name>db</name>"
                         "<uuid>11111111-2222-3333-4444-555555555555</uuid>"
                         "<metadata>%s</metadata><devices/></domain>",
                         md) != -1);
  r = vm_config_parse (xml, strlen (xml), cfg);
  free (xml);
  return r;
}

static void
policy_metadata_is_read_and_wins_over_the_options (void **state)
{
  struct vm_config cfg;
  struct vm_policy p;

  assert_int_equal (parse_with_metadata (
    "<other:x xmlns:other='https://example.org/x' method='bogus'/>"
    "<vmshadow:policy xmlns:vmshadow='https://vmshadow.org/xmlns/1' "
    "method='saved-state' fallback='fail'/>", &cfg), 0);
  assert_null (cfg.policy_error);
  assert_int_equal (cfg.policy_method, VMS_VM_METHOD_SAVED_STATE);
  assert_int_equal (cfg.policy_fallback, VMS_VM_FALLBACK_FAIL);
  p = vm_policy_for (&cfg, VMS_VM_METHOD_AUTO,
                     VMS_VM_FALLBACK_CRASH_CONSISTENT);
  assert_int_equal (p.method, VMS_VM_METHOD_SAVED_STATE);
  assert_int_equal (p.fallback, VMS_VM_FALLBACK_FAIL);
  assert_true (p.method_from_metadata && p.fallback_from_metadata);
  vm_config_clear (&cfg);

  /* Half a policy: the other half comes from the options. Any prefix. */
  assert_int_equal (parse_with_metadata (
    "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' "
    "fallback='saved-state'/>", &cfg), 0);
  assert_null (cfg.policy_error);
  p = vm_policy_for (&cfg, VMS_VM_METHOD_ONLINE, VMS_VM_FALLBACK_FAIL);
  assert_int_equal (p.method, VMS_VM_METHOD_ONLINE);
  assert_false (p.method_from_metadata);
  assert_int_equal (p.fallback, VMS_VM_FALLBACK_SAVED_STATE);
  vm_config_clear (&cfg);

  /* No policy: the options. */
  assert_int_equal (parse_with_metadata ("", &cfg), 0);
  assert_int_equal (cfg.policy_method, -1);
  assert_int_equal (cfg.policy_fallback, -1);
  p = vm_policy_for (&cfg, VMS_VM_METHOD_CRASH_CONSISTENT,
                     VMS_VM_FALLBACK_SAVED_STATE);
  assert_int_equal (p.method, VMS_VM_METHOD_CRASH_CONSISTENT);
  assert_false (p.method_from_metadata || p.fallback_from_metadata);
  vm_config_clear (&cfg);
}

static void
bad_policy_metadata_is_an_error_not_a_guess (void **state)
{
  static const struct {
    const char *md, *expect;
  } bad[] = {
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' method='pause'/>",
      "method=\"pause\"" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' method='Online'/>",
      "method=\"Online\"" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' fallback='online'/>",
      "fallback=\"online\"" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' method=''/>",
      "method=\"\"" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' methd='online'/>",
      "unknown attribute \"methd\"" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1'/>",
      "neither a method nor a fallback nor guest" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' method='online'>"
      "saved-state</v:policy>", "has content" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' method='online'/>"
      "<w:policy xmlns:w='https://vmshadow.org/xmlns/1' method='online'/>",
      "more than one" },
    { "<v:polcy xmlns:v='https://vmshadow.org/xmlns/1' method='online'/>",
      "element <polcy>" },
    { "<v:policy xmlns:v='https://vmshadow.org/xmlns/1' xmlns:o='urn:o' "
      "o:method='online' method='online'/>", "unknown attribute \"method\"" },
  };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct vm_config cfg;
    assert_int_equal (parse_with_metadata (bad[i].md, &cfg), 0);
    if (cfg.policy_error == NULL || strstr (cfg.policy_error,
                                            bad[i].expect) == NULL)
      fail_msg ("case %zu: error \"%s\" does not say \"%s\"", i,
                cfg.policy_error ? cfg.policy_error : "(none)",
                bad[i].expect);
    vm_config_clear (&cfg);
  }
}

static void
method_and_fallback_names_round_trip (void **state)
{
  for (int m = 0; m < 4; m++)
    assert_int_equal (vms_vm_method_from_name
                      (vms_vm_method_name ((enum vms_vm_method) m)), m);
  for (int f = 0; f < 3; f++)
    assert_int_equal (vms_vm_fallback_from_name
                      (vms_vm_fallback_name ((enum vms_vm_fallback) f)), f);
  assert_int_equal (vms_vm_method_from_name ("crash"), -1);
  assert_int_equal (vms_vm_method_from_name (NULL), -1);
  assert_int_equal (vms_vm_fallback_from_name ("auto"), -1);
  assert_int_equal (vms_vm_fallback_from_name ("online"), -1);
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

/* Issue 15: a qcow2 image's virtual size is read from its header (the
 * scratch files' sizes without libvirt); anything else is refused, so that
 * libvirt is asked. When qemu-img is here, an image it made reads as the
 * size it was made with. */
static void
qcow2_size_is_read_from_the_header_and_anything_else_refused (void **state)
{
  char path[] = "/tmp/vms-test-qcow2-XXXXXX";
  int fd = mkstemp (path);
  unsigned char h[512];
  uint64_t size = 0;
  const uint64_t want = 4ull << 30;
  FILE *p;
  char cmd[256];

  assert_true (fd != -1);
  memset (h, 0, sizeof h);
  memcpy (h, "QFI\xfb", 4);
  h[7] = 3;                                     /* version 3 */
  for (int i = 0; i < 8; i++)
    h[24 + i] = (unsigned char) (want >> (56 - 8 * i));
  assert_int_equal (pwrite (fd, h, sizeof h, 0), (ssize_t) sizeof h);
  assert_int_equal (vm_qcow2_virtual_size (path, &size), 0);
  assert_true (size == want);
  h[7] = 4;                                     /* a version not known */
  assert_int_equal (pwrite (fd, h, sizeof h, 0), (ssize_t) sizeof h);
  assert_int_equal (vm_qcow2_virtual_size (path, &size), -1);
  h[7] = 2;
  h[31] = 1;                                    /* not whole sectors */
  assert_int_equal (pwrite (fd, h, sizeof h, 0), (ssize_t) sizeof h);
  assert_int_equal (vm_qcow2_virtual_size (path, &size), -1);
  h[31] = 0;
  h[24] = 0x20;                                 /* 2^61 + 4 GiB: no */
  assert_int_equal (pwrite (fd, h, sizeof h, 0), (ssize_t) sizeof h);
  assert_int_equal (vm_qcow2_virtual_size (path, &size), -1);
  h[24] = 0;
  assert_int_equal (pwrite (fd, h, sizeof h, 0), (ssize_t) sizeof h);
  size = 0;
  assert_int_equal (vm_qcow2_virtual_size (path, &size), 0);  /* version 2 */
  assert_true (size == want);
  h[0] = 'X';                                   /* not qcow2 (raw) */
  assert_int_equal (pwrite (fd, h, sizeof h, 0), (ssize_t) sizeof h);
  assert_int_equal (vm_qcow2_virtual_size (path, &size), -1);
  assert_int_equal (ftruncate (fd, 16), 0);     /* too short */
  assert_int_equal (vm_qcow2_virtual_size (path, &size), -1);
  close (fd);
  assert_int_equal (vm_qcow2_virtual_size ("/nonexistent/vms.qcow2", &size),
                    -1);
  /* Not opened unless a regular file, not through a symlink: a FIFO
   * would block an open, a device's open can act (a watchdog's). */
  {
    char link[PATH_MAX], fifo[PATH_MAX];
    h[0] = 'Q';
    fd = open (path, O_WRONLY | O_CLOEXEC);
    assert_true (fd >= 0);
    assert_int_equal (pwrite (fd, h, sizeof h, 0), (ssize_t) sizeof h);
    close (fd);
    size = 0;
    assert_int_equal (vm_qcow2_virtual_size (path, &size), 0);
    assert_true (size == want);
    snprintf (link, sizeof link, "%s.link", path);
    snprintf (fifo, sizeof fifo, "%s.fifo", path);
    assert_int_equal (symlink (path, link), 0);
    assert_int_equal (vm_qcow2_virtual_size (link, &size), -1);
    assert_int_equal (mkfifo (fifo, 0600), 0);
    assert_int_equal (vm_qcow2_virtual_size (fifo, &size), -1);
    assert_int_equal (vm_qcow2_virtual_size ("/dev/null", &size), -1);
    unlink (link);
    unlink (fifo);
  }
  snprintf (cmd, sizeof cmd, "qemu-img create -q -f qcow2 %s 16777216 "
            ">/dev/null 2>&1 && echo ok", path);
  if ((p = popen (cmd, "r")) != NULL) {
    char out[8] = "";
    if (fgets (out, sizeof out, p) && strncmp (out, "ok", 2) == 0) {
      assert_int_equal (vm_qcow2_virtual_size (path, &size), 0);
      assert_true (size == 16777216);
    }
    pclose (p);
  }
  unlink (path);
}

/* Issue 18: the XML that redefines a checkpoint libvirt forgot names each
 * kept disk's bitmap and a creation time (libvirt refuses it without),
 * escapes the name, and reads back as the disks with a bitmap. */
static void
redefine_xml_names_each_bitmap_and_a_creation_time (void **state)
{
  struct vm_job_disk d[] = {
    { "vda", 1, 0, 1, NULL }, { "vdb", 1, 0, 0, NULL },
  };
  char *x = vm_checkpoint_redefine_xml ("vmshadow-x", 1796281878LL, d, 2);
  string_vector t = empty_vector;

  assert_non_null (x);
  assert_non_null (strstr (x, "<creationTime>1796281878</creationTime>"));
  assert_non_null (strstr (x, "<disk name='vda' checkpoint='bitmap' "
                           "bitmap='vmshadow-x'/>"));
  assert_non_null (strstr (x, "<disk name='vdb' checkpoint='no'/>"));
  assert_int_equal (vm_checkpoint_bitmaps (x, strlen (x), &t), 0);
  assert_int_equal (t.len, 1);
  assert_string_equal (t.ptr[0], "vda");
  string_vector_free_all (&t);
  free (x);
  x = vm_checkpoint_redefine_xml ("a'<&", 0, d, 1);
  assert_non_null (strstr (x, "bitmap='a&apos;&lt;&amp;'"));
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
copy_renames_only_file_names_not_directories (void **state)
{
  static const char xml[] =
    "<domain><name>a</name><uuid>u-1</uuid><devices>"
    "<serial type='file'><source path='/var/a/a.log'/></serial>"
    "<serial type='file'><source path='/var/log/other.log'/></serial>"
    "</devices></domain>";
  const struct vm_rewrite rw = { .name = "b", .uuid = "u-2", .old_name = "a",
                                 .old_uuid = "u-1" };
  char *x = vm_config_rewrite (xml, strlen (xml), &rw, NULL);
  assert_non_null (x);
  assert_non_null (strstr (x, "path=\"/var/a/b.log\""));
  assert_non_null (strstr (x, "path=\"/var/log/b-other.log\""));
  free (x);
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

/* Issue 19: the <tags> element libvirt gives for VMS_VM_TAGS_NS is read
 * strictly: words of a tag's characters, nothing else. */
static void
tags_are_read_strictly (void **state)
{
  (void) state;
  char **t;
  const char *ok = "<tags xmlns=\"https://vmshadow.org/xmlns/tags/1\">\n"
    "  nightly, db  <!-- x --> prod.eu_1+a\n</tags>";
  assert_int_equal (vms_vm_tags_parse (ok, strlen (ok), &t), 0);
  assert_string_equal (t[0], "nightly");
  assert_string_equal (t[1], "db");
  assert_string_equal (t[2], "prod.eu_1+a");
  assert_null (t[3]);
  for (size_t i = 0; t[i]; i++)
    free (t[i]);
  free (t);
  assert_int_equal (vms_vm_tags_parse ("<tags/>", 7, &t), 0);
  assert_null (t[0]);
  free (t);
  static const struct { const char *xml, *why; } bad[] = {
    { "<tag>a</tag>", "not one element <tags>" },
    { "<tags a='1'>x</tags>", "have an attribute" },
    { "<tags>a<b/></tags>", "have an element inside <tags>" },
    { "<tags>a $(reboot)</tags>", "a word that is not a tag" },
    { "<tags>-a</tags>", "a word that is not a tag" },
    { "<tags>caf\xc3\xa9</tags>", "a word that is not a tag" },
    { "<tags>a", "not well-formed" },
    { "", "not well-formed" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    t = (char **) 1;
    assert_int_equal (vms_vm_tags_parse (bad[i].xml, strlen (bad[i].xml), &t), -1);
    assert_null (t);
    if (strstr (vms_get_error (), bad[i].why) == NULL)
      fail_msg ("%s: %s", bad[i].xml, vms_get_error ());
    /* The owner's bytes are never echoed. */
    assert_null (strstr (vms_get_error (), "reboot"));
  }
  char long_tag[200];
  memset (long_tag, 'a', sizeof long_tag);
  memcpy (long_tag, "<tags>", 6);
  strcpy (long_tag + 6 + VMS_VM_TAG_MAX + 1, "</tags>");
  assert_int_equal (vms_vm_tags_parse (long_tag, strlen (long_tag), &t), -1);
  long_tag[6 + VMS_VM_TAG_MAX] = ' ';
  assert_int_equal (vms_vm_tags_parse (long_tag, strlen (long_tag), &t), 0);
  assert_int_equal (strlen (t[0]), VMS_VM_TAG_MAX);
  free (t[0]);
  free (t);
}

static const struct CMUnitTest tests[] = {
  TEST ("file-disks-are-included-with-their-format",
        file_disks_are_included_with_their_format),
  TEST ("pass-through-and-network-disks-are-excluded-with-the-reason",
        block_and_network_disks_are_included_and_luns_excluded),
    cmocka_unit_test (what_bypasses_qemus_block_layer_is_excluded_with_the_reason),
    cmocka_unit_test (network_disks_become_qemus_block_graph_with_their_secret),
    cmocka_unit_test (malformed_network_sources_are_refused),
    cmocka_unit_test (devices_are_written_through_writable_graphs),
  TEST ("empty-cdrom-is-ignored-and-iso-is-excluded",
        empty_cdrom_is_ignored_and_iso_is_excluded),
  TEST ("nvram-and-tpm-are-found", nvram_and_tpm_are_found),
  TEST ("malformed-xml-is-refused", malformed_xml_is_refused),
  TEST ("running-vm-with-agent-and-freezable-fs-goes-online",
        running_vm_with_agent_and_freezable_fs_goes_online),
  TEST ("each-r9-failure-falls-back-by-policy-and-says-why",
        each_r9_failure_falls_back_by_policy_and_says_why),
  TEST ("fallback-fail-refuses-naming-the-vm-and-why",
        fallback_fail_refuses_naming_the_vm_and_why),
  TEST ("forced-online-fails-naming-the-vm-and-the-reason",
        forced_online_fails_naming_the_vm_and_the_reason),
  TEST ("named-methods-need-no-agent", named_methods_need_no_agent),
  TEST ("stopped-vm-is-offline-whatever-was-asked",
        stopped_vm_is_offline_whatever_was_asked),
  TEST ("policy-metadata-is-read-and-wins-over-the-options",
        policy_metadata_is_read_and_wins_over_the_options),
  TEST ("bad-policy-metadata-is-an-error-not-a-guess",
        bad_policy_metadata_is_an_error_not_a_guess),
  TEST ("method-and-fallback-names-round-trip",
        method_and_fallback_names_round_trip),
  TEST ("vfat-is-not-freezable-but-ext4-xfs-ntfs-are",
        vfat_is_not_freezable_but_ext4_xfs_ntfs_are),
  TEST ("backup-xml-names-exports-bitmaps-and-full-disks",
        backup_xml_names_exports_bitmaps_and_full_disks),
  TEST ("checkpoint-xml-round-trips-through-the-bitmap-reader",
        checkpoint_xml_round_trips_through_the_bitmap_reader),
  TEST ("libvirt-inconsistent-bitmap-message-names-the-disk",
        libvirt_inconsistent_bitmap_message_names_the_disk),
  TEST ("qcow2-size-is-read-from-the-header-and-anything-else-refused",
        qcow2_size_is_read_from_the_header_and_anything_else_refused),
  TEST ("redefine-xml-names-each-bitmap-and-a-creation-time",
        redefine_xml_names_each_bitmap_and_a_creation_time),
  TEST ("dac-label-of-a-running-domain-is-read-and-resolved",
        dac_label_of_a_running_domain_is_read_and_resolved),
  TEST ("copy-has-new-identity-macs-and-files",
        copy_has_new_identity_macs_and_files),
  TEST ("two-copies-get-different-macs", two_copies_get_different_macs),
  TEST ("copy-renames-only-file-names-not-directories",
        copy_renames_only_file_names_not_directories),
  TEST ("copy-of-malformed-xml-fails-clearly",
        copy_of_malformed_xml_fails_clearly),
  TEST ("tags-are-read-strictly", tags_are_read_strictly),
};

int
main (int argc, char *argv[])
{
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("vm-config", tests, NULL, NULL);
}

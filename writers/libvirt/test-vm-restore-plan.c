/* Unit tests of vm-restore-plan.c (issue 20, safe restore): from a VM of a
 * backup, the options and a made-up host (a test double: domains and files
 * listed here, no libvirtd), the plan of every change and every refusal:
 * a VM that exists is replaced only with --replace, a copy (--name) never
 * touches the original, --to never writes over a file (--existing), links
 * only where nothing is.
 *
 * Usage: test-vm-restore-plan [test-name]; output is TAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmshadow/error.h"

#include "vm-restore-plan.h"

#define UUID "5b4f2d1e-7a8c-4d6e-9f01-23456789abcd"
#define OTHER "11111111-2222-4333-8444-555555555555"

/* ---- the made-up host ---- */

static const char *existing_files[16];

static int
fake_exists (void *opaque, const char *path)
{
  (void) opaque;
  for (size_t i = 0; existing_files[i]; i++)
    if (strcmp (existing_files[i], path) == 0)
      return 1;
  return 0;
}

static const char *const web01_paths[] = {
  "/img/web01.qcow2", "/var/lib/libvirt/qemu/nvram/web01_VARS.fd",
};
static const char *const db_paths[] = { "/img/db.qcow2" };

static struct vm_host_domain doms[2];
static struct vm_host host;

/* The host: web01 (running, the backup's UUID) if with_web01, and another
 * VM "db". files: NULL-terminated paths that exist. */
static void
make_host (int with_web01, const char *const *files)
{
  size_t n = 0, k = 0;

  memset (existing_files, 0, sizeof existing_files);
  for (; files && files[k]; k++)
    existing_files[k] = files[k];
  if (with_web01)
    doms[n++] = (struct vm_host_domain) {
      .name = "web01", .uuid = UUID, .active = 1, .persistent = 1,
      .paths = web01_paths, .nr_paths = 2,
    };
  doms[n++] = (struct vm_host_domain) {
    .name = "db", .uuid = OTHER, .active = 1, .persistent = 1,
    .paths = db_paths, .nr_paths = 1,
  };
  host = (struct vm_host) { .doms = doms, .nr_doms = n, .exists = fake_exists };
}

/* ---- a VM of a backup, as vm_restore_new makes it from the documents ---- */

static void
add_file (struct rs_vm *vm, const char *path, int role, const char *dt,
          const char *target)
{
  struct rs_file *f = &vm->files[vm->nr_files++];
  f->path = strdup (path);
  f->role = role;
  f->kind = role == RS_DISK ? VMS_FILE_DISK : VMS_FILE_PLAIN;
  f->disk_target = dt ? strdup (dt) : NULL;
  f->target = target ? strdup (target) : NULL;
}

/* web01 with a disk, NVRAM, TPM state and its domain XML; to and new_name
 * as the options say. */
static struct vm_restore *
make_restore (const char *to, const char *new_name, int replace,
              enum rs_existing existing)
{
  struct vm_restore *r = calloc (1, sizeof *r);
  struct rs_vm *vm;

  assert_non_null (r);
  r->to = to ? strdup (to) : NULL;
  r->new_name = new_name ? strdup (new_name) : NULL;
  r->replace = replace;
  r->existing = existing;
  r->state_dir = strdup ("/var/lib/vmshadow/vm");
  r->stamp = strdup ("1700000000");
  r->vms = calloc (1, sizeof *r->vms);
  r->nr_vms = 1;
  vm = &r->vms[0];
  vm->uuid = strdup (UUID);
  vm->name = strdup ("web01");
  vm->clone = new_name != NULL;
  vm->define_name = strdup (new_name ? new_name : "web01");
  vm->define_uuid = strdup (new_name ? "99999999-8888-4777-8666-555555555555" : UUID);
  vm->method = strdup ("online");
  vm->state_before = strdup ("running");
  assert_int_not_equal (asprintf (&vm->dir, "%s/%s/restore", r->state_dir,
                                  vm->define_uuid), -1);
  vm->files = calloc (4, sizeof *vm->files);
  add_file (vm, "/img/web01.qcow2", RS_DISK, "vda", NULL);
  add_file (vm, "/var/lib/libvirt/qemu/nvram/web01_VARS.fd", RS_OTHER, NULL, NULL);
  add_file (vm, "/var/lib/libvirt/swtpm/" UUID "/tpm2/tpm2-00.permall",
            RS_OTHER, NULL, NULL);
  add_file (vm, "/var/lib/vmshadow/vm/" UUID "/domain.xml", RS_CONFIG, NULL, NULL);
  for (size_t i = 0; i < vm->nr_files; i++) {
    struct rs_file *f = &vm->files[i];
    if (vm->clone)
      f->target = vm_restore_clone_path (r, vm, f);
    else if (f->role == RS_DISK && to)
      assert_int_not_equal (asprintf (&f->target, "%s/web01.qcow2", to), -1);
    else if (f->role == RS_CONFIG)
      assert_int_not_equal (asprintf (&f->target, "%s/domain.xml", vm->dir), -1);
    else
      f->target = strdup (f->path);
    assert_non_null (f->target);
  }
  return r;
}

/* The changes of the plan as "action object" lines. */
static char *
changes (const struct rs_vm *vm)
{
  char *s = strdup (""), *n;
  for (size_t i = 0; i < vm->changes.len; i++) {
    assert_int_not_equal (asprintf (&n, "%s%s %s\n", s, vm->changes.ptr[i].action,
                                    vm->changes.ptr[i].object), -1);
    free (s);
    s = n;
  }
  return s;
}

static int
has_change (const struct rs_vm *vm, const char *action, const char *object)
{
  for (size_t i = 0; i < vm->changes.len; i++)
    if (strcmp (vm->changes.ptr[i].action, action) == 0 &&
        (object == NULL || strcmp (vm->changes.ptr[i].object, object) == 0))
      return 1;
  return 0;
}

/* ---- the tests ---- */

static void
an_existing_vm_is_not_replaced_without_replace (void **state)
{
  struct vm_restore *r = make_restore (NULL, NULL, 0, RS_EXISTING_REFUSE);
  make_host (1, (const char *[]) { "/img/web01.qcow2", NULL });
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "vm \"web01\" (" UUID ") exists"));
  assert_non_null (strstr (vms_get_error (), "--replace"));
  assert_non_null (strstr (vms_get_error (), "--name NEW"));
  assert_int_equal (r->planned, 0);
  vm_restore_free (r);
}

static void
replace_turns_off_undefines_and_writes_over (void **state)
{
  struct vm_restore *r = make_restore (NULL, NULL, 1, RS_EXISTING_REFUSE);
  make_host (1, (const char *[]) { "/img/web01.qcow2", NULL });
  assert_int_equal (vm_restore_plan (r, &host), 0);
  char *s = changes (&r->vms[0]);
  assert_string_equal (s,
    "turn-off vm \"web01\" (" UUID ")\n"
    "undefine vm \"web01\" (" UUID ")\n"
    "overwrite /img/web01.qcow2\n"
    "write /var/lib/libvirt/qemu/nvram/web01_VARS.fd\n"
    "write /var/lib/libvirt/swtpm/" UUID "/tpm2/tpm2-00.permall\n"
    "write /var/lib/vmshadow/vm/" UUID "/restore/domain.xml\n"
    "define vm \"web01\" (" UUID ")\n");
  free (s);
  /* Planned again against a host without the VM: nothing turned off. */
  make_host (0, NULL);
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_false (has_change (&r->vms[0], "turn-off", NULL));
  assert_false (has_change (&r->vms[0], "undefine", NULL));
  assert_true (has_change (&r->vms[0], "write", "/img/web01.qcow2"));
  vm_restore_free (r);
}

static void
a_name_of_another_vm_is_refused (void **state)
{
  struct vm_restore *r = make_restore (NULL, NULL, 1, RS_EXISTING_REFUSE);
  make_host (0, NULL);
  doms[0].name = "web01";       /* "db" is now called web01 */
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "another VM (" OTHER ") has the name \"web01\""));
  vm_restore_free (r);
}

static void
a_file_of_another_vm_is_never_written (void **state)
{
  struct vm_restore *r = make_restore (NULL, NULL, 1, RS_EXISTING_REFUSE);
  free (r->vms[0].files[0].target);
  r->vms[0].files[0].target = strdup ("/img/db.qcow2");
  make_host (0, NULL);
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "/img/db.qcow2 would overwrite a file of vm \"db\""));
  vm_restore_free (r);
}

static void
a_copy_gets_its_own_files_and_leaves_the_original (void **state)
{
  struct vm_restore *r = make_restore (NULL, "copy", 0, RS_EXISTING_REFUSE);
  const struct rs_vm *vm = &r->vms[0];
  make_host (1, (const char *[]) { "/img/web01.qcow2", NULL });
  assert_string_equal (vm->files[0].target, "/img/copy-vda.qcow2");
  assert_string_equal (vm->files[1].target, "/var/lib/libvirt/qemu/nvram/copy_VARS.fd");
  assert_string_equal (vm->files[2].target, "/var/lib/libvirt/swtpm/"
                       "99999999-8888-4777-8666-555555555555/tpm2/tpm2-00.permall");
  assert_string_equal (vm->files[3].target, "/var/lib/vmshadow/vm/"
                       "99999999-8888-4777-8666-555555555555/restore/domain.xml");
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_true (has_change (vm, "untouched", "vm \"web01\" (" UUID ")"));
  assert_false (has_change (vm, "turn-off", NULL));
  assert_false (has_change (vm, "undefine", NULL));
  assert_false (has_change (vm, "overwrite", NULL));
  assert_false (has_change (vm, "link", NULL));
  assert_true (has_change (vm, "define", "vm \"copy\" (99999999-8888-4777-8666-555555555555)"));
  for (size_t i = 0; i < vm->nr_files; i++)
    for (size_t k = 0; k < vm->nr_files; k++)
      assert_string_not_equal (vm->files[i].target, vm->files[k].path);
  vm_restore_free (r);
}

static void
a_copy_plan_names_its_new_macs_and_files (void **state)
{
  struct vm_restore *r = make_restore (NULL, "copy", 0, RS_EXISTING_REFUSE);
  struct rs_vm *vm = &r->vms[0];
  int macs = 0, nvram = 0;

  vm->config_xml = strdup (
    "<domain><name>web01</name><uuid>" UUID "</uuid>"
    "<os><nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram></os><devices>"
    "<disk type='file'><source file='/img/web01.qcow2'/><target dev='vda'/></disk>"
    "<interface type='network'><mac address='52:54:00:01:02:03'/><source network='n'/></interface>"
    "</devices></domain>");
  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), 0);
  for (size_t i = 0; i < vm->changes.len; i++)
    if (strcmp (vm->changes.ptr[i].action, "rewrite") == 0) {
      macs += strstr (vm->changes.ptr[i].detail, "new MAC address (was 52:54:00:01:02:03)") != NULL;
      nvram += strstr (vm->changes.ptr[i].detail, "NVRAM: /var/lib/libvirt/qemu/nvram/copy_VARS.fd") != NULL;
    }
  assert_int_equal (macs, 1);
  assert_int_equal (nvram, 1);
  assert_non_null (vm->copy_xml);
  assert_non_null (strstr (vm->copy_xml, "<name>copy</name>"));
  assert_non_null (strstr (vm->copy_xml, "/img/copy-vda.qcow2"));
  assert_null (strstr (vm->copy_xml, "52:54:00:01:02:03"));
  /* Damaged stored XML: refused, nothing planned. */
  free (vm->config_xml);
  vm->config_xml = strdup ("<domain><name>web01</name>");
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "its stored domain XML cannot be made a copy's"));
  vm_restore_free (r);
}

static void
a_copy_refuses_a_name_that_exists (void **state)
{
  struct vm_restore *r = make_restore (NULL, "db", 0, RS_EXISTING_REFUSE);
  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "a VM of that name exists (" OTHER ")"));
  vm_restore_free (r);
}

static void
a_copy_never_writes_over_a_file_there (void **state)
{
  struct vm_restore *r = make_restore (NULL, "copy", 0, RS_EXISTING_REFUSE);
  make_host (1, (const char *[]) { "/img/copy-vda.qcow2", NULL });
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "/img/copy-vda.qcow2 exists already"));
  assert_non_null (strstr (vms_get_error (), "--existing rename"));
  vm_restore_free (r);
}

static void
to_refuses_a_file_at_a_target_by_default (void **state)
{
  struct vm_restore *r = make_restore ("/new", NULL, 0, RS_EXISTING_REFUSE);
  make_host (0, (const char *[]) { "/new/web01.qcow2", NULL });
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "/new/web01.qcow2 exists already; "
                           "--to never writes over a file"));
  vm_restore_free (r);
}

static void
to_with_existing_rename_keeps_the_file_aside (void **state)
{
  struct vm_restore *r = make_restore ("/new", NULL, 0, RS_EXISTING_RENAME);
  make_host (0, (const char *[]) { "/new/web01.qcow2", NULL });
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_string_equal (r->vms[0].files[0].aside, "/new/web01.qcow2.vmshadow-1700000000");
  assert_true (has_change (&r->vms[0], "keep-aside", "/new/web01.qcow2"));
  assert_true (has_change (&r->vms[0], "write", "/new/web01.qcow2"));
  /* Nothing is at the original path: a link goes there (R19). */
  assert_true (has_change (&r->vms[0], "link", "/img/web01.qcow2"));
  vm_restore_free (r);
}

static void
to_with_existing_keep_writes_beside_the_file (void **state)
{
  struct vm_restore *r = make_restore ("/new", NULL, 0, RS_EXISTING_KEEP);
  make_host (0, (const char *[]) { "/new/web01.qcow2", "/new/web01.restored-1700000000.qcow2",
                                   "/img/web01.qcow2", NULL });
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_string_equal (r->vms[0].files[0].target, "/new/web01.restored-1700000000-2.qcow2");
  assert_null (r->vms[0].files[0].aside);
  assert_true (has_change (&r->vms[0], "keep", "/new/web01.qcow2"));
  /* Planned again (PreRestore does): the same plan. */
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_string_equal (r->vms[0].files[0].target, "/new/web01.restored-1700000000-2.qcow2");
  assert_true (has_change (&r->vms[0], "keep", "/new/web01.qcow2"));
  /* A file at the original path stays: no link, never removed. */
  assert_true (has_change (&r->vms[0], "no-link", "/img/web01.qcow2"));
  assert_false (has_change (&r->vms[0], "link", NULL));
  vm_restore_free (r);
}

/* Issue 11: web01 (replace) with a host block device vdb and an iSCSI
 * LUN vdc besides its file disk, of 1 GiB each in the backup; each device
 * looked at as dev_size says (-1: gone). */
#define BLOCK "/dev/vg0/web01-data"
#define LUN "iscsi://192.0.2.1:3260/iqn.2024-01.org.example:t/1"
#define RBD "rbd://192.0.2.2:6789/rbd/web01-disk"
#define GiB ((uint64_t) 1 << 30)

static struct vm_restore *
make_device_restore (const char *to, const char *name, int write_devices,
                     const char *net, int64_t block_size, int64_t net_size)
{
  struct vm_restore *r = make_restore (to, name, name == NULL,
                                       RS_EXISTING_REFUSE);
  struct rs_vm *vm = &r->vms[0];
  struct rs_file *more = realloc (vm->files, 6 * sizeof *more);
  char *t1 = NULL, *t2 = NULL;

  assert_non_null (more);
  vm->files = more;
  memset (&vm->files[4], 0, 2 * sizeof *more);
  r->write_devices = write_devices;
  if (to) {
    assert_int_not_equal (asprintf (&t1, "%s/web01-vdb.raw", to), -1);
    assert_int_not_equal (asprintf (&t2, "%s/web01-vdc.raw", to), -1);
  }
  add_file (vm, BLOCK, RS_DISK, "vdb", t1 ? t1 : BLOCK);
  add_file (vm, net, RS_DISK, "vdc", t2 ? t2 : net);
  free (t1);
  free (t2);
  for (size_t i = 4; i < 6; i++) {
    struct rs_file *f = &vm->files[i];
    f->device = i == 4 ? RS_DEV_BLOCK : RS_DEV_NETWORK;
    f->format = strdup ("raw");
    f->size = GiB;
    f->dev_probed = !to && !name && write_devices;
    f->dev_size = i == 4 ? block_size : net_size;
  }
  return r;
}

/* Without --write-devices, in place: refused naming each device and the
 * option; a copy (--name) never writes into the original's devices. */
static void
devices_are_written_in_place_only_when_asked (void **state)
{
  struct vm_restore *r = make_device_restore (NULL, NULL, 0, LUN, 2 * GiB, GiB);
  make_host (1, (const char *[]) { BLOCK, NULL });
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "disk vdb is the host block "
                           "device " BLOCK ": restoring it writes"));
  assert_non_null (strstr (vms_get_error (), "disk vdc is the network disk "
                           LUN ": restoring it writes"));
  assert_non_null (strstr (vms_get_error (), "--write-devices"));
  assert_int_equal (r->planned, 0);
  vm_restore_free (r);

  r = make_device_restore (NULL, "web02", 1, LUN, 2 * GiB, GiB);
  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "disk vdb is the host block "
                           "device " BLOCK ", which a copy (--name) never "
                           "writes into"));
  assert_int_equal (r->vms[0].files[4].into, 0);
  vm_restore_free (r);
}

/* With --write-devices: a device at least as large as the backup is
 * written into in place; an RBD image that is gone is made again. */
static void
write_devices_writes_into_them_and_makes_a_gone_rbd_image_again (void **state)
{
  struct vm_restore *r = make_device_restore (NULL, NULL, 1, LUN, 2 * GiB, GiB);
  char *c;

  make_host (1, (const char *[]) { BLOCK, NULL });
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_int_equal (r->vms[0].files[4].into, 1);
  assert_int_equal (r->vms[0].files[5].into, 1);
  assert_true (has_change (&r->vms[0], "write-into", BLOCK));
  assert_true (has_change (&r->vms[0], "write-into", LUN));
  assert_false (has_change (&r->vms[0], "create", LUN));
  vm_restore_free (r);

  r = make_device_restore (NULL, NULL, 1, RBD, GiB, -1);
  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_int_equal (r->vms[0].files[5].recreate, 1);
  assert_int_equal (r->vms[0].files[5].into, 1);
  c = changes (&r->vms[0]);
  assert_non_null (strstr (c, "create " RBD));
  assert_true (strstr (c, "create " RBD) < strstr (c, "write-into " RBD));
  free (c);
  vm_restore_free (r);
}

/* A logical volume that is gone, which the probe found room for (no
 * dev_error), is made again before it is written into; one the probe
 * found no room for is refused with the probe's reason (issue 11). */
static void
a_gone_lv_is_made_again_only_when_the_probe_found_room (void **state)
{
  struct vm_restore *r = make_device_restore (NULL, NULL, 1, LUN, -1, GiB);
  char *c;

  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_int_equal (r->vms[0].files[4].recreate, 1);
  assert_int_equal (r->vms[0].files[4].into, 1);
  c = changes (&r->vms[0]);
  assert_non_null (strstr (c, "create " BLOCK));
  assert_true (strstr (c, "create " BLOCK) < strstr (c, "write-into " BLOCK));
  free (c);
  vm_restore_free (r);

  r = make_device_restore (NULL, NULL, 1, LUN, -1, GiB);
  make_host (1, NULL);
  r->vms[0].files[4].dev_error =
    strdup ("its logical volume is gone and cannot be made again: LV "
            "vg0/web01-data is gone and volume group vg0 has no room for it");
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "disk vdb, the host block device "
                           BLOCK ": its logical volume is gone"));
  assert_int_equal (r->vms[0].files[4].recreate, 0);
  assert_int_equal (r->planned, 0);
  vm_restore_free (r);
}

/* Refused, each by name, before anything changes: a device smaller than
 * the backup, one another defined VM uses, one in use on the host, an
 * iSCSI LUN that is not there, a qcow2 on a device. */
static void
a_small_busy_foreign_or_missing_device_is_refused (void **state)
{
  struct vm_restore *r = make_device_restore (NULL, NULL, 1, LUN,
                                              GiB - 512, -1);
  static const char *const db_devs[] = { LUN };

  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "holds 1073741312 bytes, fewer "
                           "than the 1073741824 of the backup"));
  assert_non_null (strstr (vms_get_error (), "disk vdc, the network disk "
                           LUN ", does not exist"));
  vm_restore_free (r);

  r = make_device_restore (NULL, NULL, 1, LUN, GiB, GiB);
  make_host (1, NULL);
  doms[1].paths = db_devs;      /* "db" uses the LUN */
  r->vms[0].files[4].dev_error = strdup ("it is in use on the host (mounted, "
                                         "or held by another device)");
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "disk vdc, the network disk "
                           LUN ", is used by vm \"db\""));
  assert_non_null (strstr (vms_get_error (), "disk vdb, the host block device "
                           BLOCK ": it is in use on the host"));
  assert_int_equal (r->vms[0].files[5].into, 0);
  vm_restore_free (r);
  doms[1].paths = db_paths;

  r = make_device_restore (NULL, NULL, 1, LUN, GiB, GiB);
  free (r->vms[0].files[4].format);
  r->vms[0].files[4].format = strdup ("qcow2");
  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "has format qcow2"));
  vm_restore_free (r);
}

/* --to: every disk kind becomes a file in DIR; no link is made at a
 * device's path or a URI (R19 is for files). */
static void
to_turns_devices_into_files_without_links (void **state)
{
  struct vm_restore *r = make_device_restore ("/restore", NULL, 0, LUN, -1, -1);

  make_host (1, (const char *[]) { BLOCK, NULL });
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_true (has_change (&r->vms[0], "write", "/restore/web01-vdb.raw"));
  assert_true (has_change (&r->vms[0], "write", "/restore/web01-vdc.raw"));
  assert_false (has_change (&r->vms[0], "link", BLOCK));
  assert_false (has_change (&r->vms[0], "no-link", BLOCK));
  assert_false (has_change (&r->vms[0], "link", LUN));
  assert_true (has_change (&r->vms[0], "link", "/img/web01.qcow2"));
  assert_int_equal (r->vms[0].files[4].into, 0);
  vm_restore_free (r);
}

static void
every_refusal_is_named_at_once (void **state)
{
  struct vm_restore *r = make_restore ("/new", NULL, 0, RS_EXISTING_REFUSE);
  make_host (1, (const char *[]) { "/new/web01.qcow2", NULL });
  assert_int_equal (vm_restore_plan (r, &host), -1);
  assert_non_null (strstr (vms_get_error (), "--replace"));
  assert_non_null (strstr (vms_get_error (), "/new/web01.qcow2 exists already"));
  vm_restore_free (r);
}

/* Issue 11: the pool the VM writer recorded at Identify for a disk that
 * was a thin LV reaches that disk of the restore (so an LV made again is
 * thin); a block disk without one, and a file disk, have none. */
static void
a_thin_lvs_pool_comes_from_the_backup_documents (void **state)
{
  static const char bcd_json[] =
    "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
    " \"backup_id\": \"20240501T120000Z-full\", \"attributes\": {},"
    " \"writers\": [{\"name\": \"vmshadow-libvirt\", \"id\": \"" VMS_VM_WRITER_ID "\","
    "  \"components\": [{\"name\": \"" UUID "\", \"caption\": \"Online\\\\web01\","
    "   \"files\": ["
    "    {\"path\": \"/img/web01.qcow2\", \"kind\": \"disk\", \"format\": \"qcow2\"},"
    "    {\"path\": \"" BLOCK "\", \"kind\": \"disk\", \"format\": \"raw\"},"
    "    {\"path\": \"/dev/vg0/web01-logs\", \"kind\": \"disk\", \"format\": \"raw\"},"
    "    {\"path\": \"/var/lib/vmshadow/vm/" UUID "/domain.xml\", \"kind\": \"plain\"}],"
    "   \"attributes\": {\"vm_name\": \"web01\", \"method\": \"online\","
    "    \"" VMS_VM_ATTR_THIN_POOL_PREFIX BLOCK "\": \"pool0\"}}]}]}";
  vms_document *bcd = vms_document_parse (bcd_json, sizeof bcd_json - 1);
  const struct vms_vm_restore_options o = { .write_devices = 1 };
  struct vm_restore *r;

  if (bcd == NULL)
    fail_msg ("%s", vms_get_error ());
  if ((r = vm_restore_new (&o, bcd, NULL)) == NULL)
    fail_msg ("%s", vms_get_error ());
  assert_int_equal (r->nr_vms, 1);
  assert_int_equal (r->vms[0].nr_files, 4);
  assert_null (r->vms[0].files[0].thin_pool);
  assert_int_equal (r->vms[0].files[1].device, RS_DEV_BLOCK);
  assert_string_equal (r->vms[0].files[1].thin_pool, "pool0");
  assert_int_equal (r->vms[0].files[2].device, RS_DEV_BLOCK);
  assert_null (r->vms[0].files[2].thin_pool);
  vm_restore_free (r);
  vms_document_free (bcd);

  /* The plan says which LV is made again thin, and in which pool. */
  r = make_device_restore (NULL, NULL, 1, LUN, -1, GiB);
  r->vms[0].files[4].thin_pool = strdup ("pool0");
  make_host (1, NULL);
  assert_int_equal (vm_restore_plan (r, &host), 0);
  assert_int_equal (r->vms[0].files[4].recreate, 1);
  assert_true (has_change (&r->vms[0], "create", BLOCK));
  for (size_t i = 0; i < r->vms[0].changes.len; i++)
    if (strcmp (r->vms[0].changes.ptr[i].action, "create") == 0)
      assert_string_equal (r->vms[0].changes.ptr[i].detail, "thin logical "
                           "volume of 1073741824 bytes in pool pool0 (it is "
                           "gone)");
  vm_restore_free (r);
}

int
main (int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (an_existing_vm_is_not_replaced_without_replace),
    cmocka_unit_test (replace_turns_off_undefines_and_writes_over),
    cmocka_unit_test (a_name_of_another_vm_is_refused),
    cmocka_unit_test (a_file_of_another_vm_is_never_written),
    cmocka_unit_test (a_copy_gets_its_own_files_and_leaves_the_original),
    cmocka_unit_test (a_copy_plan_names_its_new_macs_and_files),
    cmocka_unit_test (a_copy_refuses_a_name_that_exists),
    cmocka_unit_test (a_copy_never_writes_over_a_file_there),
    cmocka_unit_test (to_refuses_a_file_at_a_target_by_default),
    cmocka_unit_test (to_with_existing_rename_keeps_the_file_aside),
    cmocka_unit_test (to_with_existing_keep_writes_beside_the_file),
    cmocka_unit_test (every_refusal_is_named_at_once),
    cmocka_unit_test (devices_are_written_in_place_only_when_asked),
    cmocka_unit_test (write_devices_writes_into_them_and_makes_a_gone_rbd_image_again),
    cmocka_unit_test (a_gone_lv_is_made_again_only_when_the_probe_found_room),
    cmocka_unit_test (a_thin_lvs_pool_comes_from_the_backup_documents),
    cmocka_unit_test (a_small_busy_foreign_or_missing_device_is_refused),
    cmocka_unit_test (to_turns_devices_into_files_without_links),
  };
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  cmocka_set_message_output (CM_OUTPUT_TAP);
  return cmocka_run_group_tests (tests, NULL, NULL);
}

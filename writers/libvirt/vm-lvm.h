/* The LV-recreation plan of a restore (issue 11): how a restored disk that
 * was a logical volume gets its LV back. Pure: it reads what
 *   lvs --reportformat json --units b --nosuffix \
 *       -o lv_name,vg_name,lv_attr,lv_size,pool_lv
 *   vgs --reportformat json --units b --nosuffix -o vg_name,vg_free
 * printed on the host now, and says what to do; it runs no LVM command
 * (vm_lvm_run, below, is how its callers run them).
 * The lab's kernel has no device-mapper (no LV can be made there), so the
 * plan is checked by unit tests against captured output (test-vm-lvm.c).
 */
#ifndef VMS_VM_LVM_H
#define VMS_VM_LVM_H

#include <stddef.h>
#include <stdint.h>

enum vm_lv_action {
  VM_LV_REUSE,                  /* the LV is there and large enough */
  VM_LV_CREATE,                 /* made again: argv is the lvcreate */
};

struct vm_lv_plan {
  enum vm_lv_action action;
  char *vg, *lv;                /* from the device path */
  char *pool;                   /* thin pool (CREATE of a thin LV), or NULL */
  uint64_t lv_size;             /* REUSE: its size now */
  /* CREATE: lvcreate and its arguments, NULL-terminated (malloc'd). */
  char *argv[16];
};

/* The VG and LV a device path names: /dev/VG/LV or /dev/mapper/VG-LV
 * ("--" in a mapper name is one '-'). 0, or -1 with EINVAL (no LV path). */
extern int vm_lv_from_path (const char *device, char **vg, char **lv);

/* The plan for the LV at device (a disk of size bytes in the backup; a
 * thin LV of pool thin_pool when not NULL, as it was at backup):
 *   - the LV exists: REUSE when it holds at least size bytes; refused
 *     (ENOSPC) when smaller, (EINVAL) when it is no plain or thin volume
 *     (a pool, a snapshot, …);
 *   - it does not: CREATE in the same VG — a thick LV of size bytes when
 *     the VG has that much free (else ENOSPC, "no room"), a thin LV of
 *     virtual size bytes in thin_pool when that pool exists in the VG
 *     (else ENOENT); the VG must exist (ENOENT).
 * Returns 0 with *p filled, or -1 with the error set naming the LV, the VG
 * and why (the caller adds the VM and the disk). */
extern int vm_lv_plan (const char *lvs_json, const char *vgs_json,
                       const char *device, uint64_t size,
                       const char *thin_pool, struct vm_lv_plan *p);
extern void vm_lv_plan_clear (struct vm_lv_plan *p);

/* The thin pool of the LV at device in an lvs report (-o
 * lv_name,vg_name,lv_attr,pool_lv): recorded at backup so that a restore
 * which makes the LV again makes it thin, in its pool. 0 with *pool its
 * name (malloc'd), or NULL when device is no LV path, the report does not
 * list it or it is no thin volume; -1 with the error set when lvs_json is
 * no lvs report or names a pool LVM would not accept. */
extern int vm_lv_thin_pool (const char *lvs_json, const char *device,
                            char **pool);

/* Runs an LVM command (argv[0] lvs, vgs, lvcreate, dmsetup), its output
 * into *out (malloc'd) when out is not NULL. 0, or -1 with the error set. */
extern int vm_lvm_run (const char *const *argv, char **out);

#endif /* VMS_VM_LVM_H */

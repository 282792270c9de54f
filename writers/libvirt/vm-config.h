/* What the VM writer needs to know of a domain, read from its XML, and the
 * method choice of R9 — both pure functions (no libvirt calls), so that
 * unit tests can drive them with sample XML and made-up facts.
 */
#ifndef VMS_VM_CONFIG_H
#define VMS_VM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "vector.h"
#include "vm-writer.h"

enum vm_disk_source {
  VM_DISK_FILE, VM_DISK_BLOCK, VM_DISK_NETWORK, VM_DISK_VOLUME, VM_DISK_DIR,
  VM_DISK_OTHER,
};

/* One <host> of a network disk's <source>. */
struct vm_disk_host {
  char *name, *port;            /* TCP: host name or address, port or NULL */
  char *socket;                 /* transport='unix': the socket path */
};

struct vm_disk {
  char *target;                 /* "vda" */
  char *device;                 /* "disk", "lun", "cdrom", "floppy" */
  enum vm_disk_source source;
  char *path;                   /* file, device, "pool/volume" or a URI */
  char *format;                 /* <driver type>, or NULL */
  char *pool, *volume;          /* type='volume' only */
  /* type='network' (issue 11): what QEMU is given, as libvirt's XML says
   * it, so that a stopped VM's disk is read by the same protocol. */
  char *protocol;               /* "iscsi", "rbd", "nbd", … */
  char *source_name;            /* <source name>: "iqn…/LUN", "pool/image" */
  size_t nr_hosts;
  struct vm_disk_host *hosts;
  char *auth_user;              /* <auth username> */
  char *secret_type;            /* <auth><secret type usage|uuid> */
  char *secret_usage, *secret_uuid;
  char *initiator;              /* iSCSI <initiator><iqn name> */
  char *rbd_conf;               /* RBD <config file> */
  int tls;                      /* <source tls='yes'> */
  int included;                 /* 1: backed up by the VM writer */
  char *reason;                 /* why not (R13), when !included */
};

/* A device outside <disk> that is left out (a SCSI host device). */
struct vm_excluded {
  char *path;
  char *reason;
};

struct vm_config {
  char *name;
  char *uuid;
  size_t nr_disks;
  struct vm_disk *disks;
  size_t nr_excluded;
  struct vm_excluded *excluded;
  char *nvram;                  /* UEFI variable store, or NULL */
  int tpm_emulator;             /* 1: an swtpm-backed TPM */
  /* The files libvirt gives QEMU are labelled for it by its security
   * drivers (issue 20): the DAC <imagelabel> (else <label>) of a running
   * domain, "+64055:+107" on Debian's stock libvirt; NULL when the domain
   * has none (QEMU as root, or a stopped domain's inactive XML). */
  char *dac_label;
  /* The per-VM policy of <metadata><vmshadow:policy method=… fallback=…/>
   * (namespace VMS_VM_POLICY_NS; issue 20): -1 where it says nothing.
   * policy_error (malloc'd) says what is wrong with a policy element that
   * is not exactly that; the VM is then not backed up. */
  int policy_method;            /* enum vms_vm_method or -1 */
  int policy_fallback;          /* enum vms_vm_fallback or -1 */
  int policy_guest;             /* enum vms_vm_guest or -1 (guest=, issue 17) */
  char *policy_error;
};

/* Parse a domain XML. Disks without a source (an empty CD-ROM) are left
 * out entirely. Included (R13 as read for KVM, issue 11: what QEMU itself
 * opens): file disks, block devices that are not device='lun', pool
 * volumes (resolved by the writer), and network disks of a protocol QEMU
 * has a block driver for (vm_protocol_known). Kept with included=0 and
 * the reason: device='lun' (SCSI pass-through), removable media,
 * vhost-user / vhost-vdpa / NVMe / directory disks, unknown protocols;
 * every <hostdev> goes to cfg->excluded. Returns 0, or -1 with the error
 * set. */
extern int vm_config_parse (const char *xml, size_t len, struct vm_config *cfg);
extern void vm_config_clear (struct vm_config *cfg);
/* The uid and gid a DAC label ("+UID:+GID", or "user:group" names)
 * stands for. Returns 0, or -1 with the error set. */
extern int vm_dac_label_ids (const char *label, unsigned *uid, unsigned *gid);
/* 1 if QEMU 7.2 has a block driver for this network protocol (so that a
 * running VM's backup job reads it), else 0. */
extern int vm_protocol_known (const char *protocol);
/* 1 if vmshadow can read a stopped VM's network disk of this protocol
 * through a read-only qemu-nbd of its own (nbd, iscsi, rbd, and curl's
 * http/https/ftp/ftps), else 0. */
extern int vm_protocol_offline (const char *protocol);
/* The QEMU block graph of a network disk for a read-only export of a
 * stopped VM (issue 11): "json:{…}" with the format driver over the
 * protocol driver, as libvirt would give QEMU. A disk with <auth> names
 * the secret object secret_id (iSCSI password-secret, RBD key-secret).
 * Returns the string (caller frees), or NULL with the error set: ENOTSUP
 * for a protocol or option (TLS) vmshadow cannot read offline, EINVAL for
 * a source it cannot make sense of. */
extern char *vm_disk_qemu_json (const struct vm_disk *d, const char *secret_id);
/* The same, writable (issue 11: restore into the disk itself). */
extern char *vm_disk_qemu_json_writable (const struct vm_disk *d,
                                         const char *secret_id);
/* The writable block graph of a host block device (raw over host_device),
 * the path JSON-escaped. Caller frees; NULL (ENOMEM). */
extern char *vm_block_qemu_json (const char *device);
/* QEMU's legacy "rbd:POOL/IMAGE:id=USER:mon_host=H\\:P;…" name with which
 * qemu-img create makes an RBD disk's image again (issue 11; the key goes
 * in -o password-secret). Only plain names (no ':', '@', '\\' to escape),
 * no namespace, snapshot or config file; else NULL with ENOTSUP. Caller
 * frees. */
extern char *vm_rbd_create_name (const struct vm_disk *d);
/* The disk with this target, or NULL. */
extern const struct vm_disk *vm_config_disk (const struct vm_config *cfg,
                                             const char *target);

/* ---- R9 ---- */

enum vm_method { VM_METHOD_ONLINE, VM_METHOD_SAVED_STATE, VM_METHOD_OFFLINE,
                 VM_METHOD_CRASH_CONSISTENT };
enum vm_run_state { VM_STATE_RUNNING, VM_STATE_PAUSED, VM_STATE_OFF,
                    VM_STATE_OTHER };

struct vm_guest_fs {
  const char *mountpoint;
  const char *type;
  const char *const *disks;     /* disk targets the fs lies on */
  size_t nr_disks;
};

/* What Identify found out about one VM. */
struct vm_facts {
  const struct vm_config *cfg;
  enum vm_run_state state;
  const char *state_name;       /* as libvirt says it, for messages */
  int agent_ok;                 /* guest-ping answered */
  const char *agent_error;      /* why not */
  int fsinfo_ok;                /* guest-get-fsinfo answered */
  const char *fsinfo_error;
  const struct vm_guest_fs *fs;
  size_t nr_fs;
  int scratch_same_fs;          /* state dir on the disks' filesystem */
  const char *scratch_error;    /* why not */
};

/* The policy of one VM: the options', with the domain's metadata winning
 * for what it names. */
struct vm_policy {
  enum vms_vm_method method;
  enum vms_vm_fallback fallback;
  int method_from_metadata, fallback_from_metadata;
};
/* The options' policy overridden by cfg's metadata. */
extern struct vm_policy vm_policy_for (const struct vm_config *cfg,
                                       enum vms_vm_method method,
                                       enum vms_vm_fallback fallback);

/* What the choice was made of, for the component's attributes and the dry
 * run: *method, *reason (malloc'd, in words), and when auto fell back from
 * online *fallback_reason (malloc'd, the R9 conditions that failed). */
struct vm_choice {
  enum vm_method method;
  char *reason;
  char *fallback_reason;
};
extern void vm_choice_clear (struct vm_choice *c);

/* Choose the method for a VM. Returns 0 with *choice filled, or -1 with
 * choice->reason the error when the policy cannot be followed (online
 * forced, or the fallback "fail", and R9 does not hold). A VM that is not
 * running or paused is always offline. */
extern int vm_method_choose (const struct vm_facts *f,
                             const struct vm_policy *policy,
                             struct vm_choice *choice);
extern const char *vm_method_name (enum vm_method m);
/* 1 if guest-fsfreeze freezes this filesystem type for sure. */
extern int vm_fs_type_freezable (const char *type);

/* ---- XML the writer sends ---- */

/* Per disk of a backup job: how it takes part. */
struct vm_job_disk {
  const char *target;
  int backup;                   /* 0: backup='no' */
  int incremental;              /* read only what changed since the parent */
  int bitmap;                   /* checkpoint='bitmap' in the new checkpoint */
  const char *scratch;          /* scratch file (backup only) */
};

/* The virtual size of a qcow2 image from its header, without libvirt
 * (issue 15): 0 and *size, or -1 when path is no qcow2 image this can
 * read (then ask libvirt). */
extern int vm_qcow2_virtual_size (const char *path, uint64_t *size);

/* <domainbackup mode='pull'> with a Unix socket, per disk exportname = the
 * target and, for incremental disks, exportbitmap = "backup-<target>".
 * parent NULL: a full backup. Caller frees. */
extern char *vm_backup_xml (const char *socket, const char *parent,
                            const struct vm_job_disk *disks, size_t n);
/* <domaincheckpoint> naming every disk (bitmap or no). Caller frees. */
extern char *vm_checkpoint_xml (const char *name, const char *description,
                                const struct vm_job_disk *disks, size_t n);
/* The same for libvirt's checkpoint redefine (issue 18): each bitmap disk
 * names its qcow2 bitmap (= the checkpoint's name); libvirt needs a
 * creation time (seconds since the epoch). Caller frees. */
extern char *vm_checkpoint_redefine_xml (const char *name,
                                         long long creation_time,
                                         const struct vm_job_disk *disks,
                                         size_t n);
/* The disk targets a checkpoint XML holds a bitmap for (into *targets,
 * malloc'd strings). Returns 0 or -1 with the error set. */
extern int vm_checkpoint_bitmaps (const char *xml, size_t len,
                                  string_vector *targets);
/* The disk named in a libvirt "missing or broken bitmap 'X' for disk 'vda'"
 * message, or NULL (malloc'd). */
extern char *vm_inconsistent_disk (const char *message);

/* ---- a copy of a domain (issue 20: restore --name) ---- */

struct vm_rewrite {
  const char *name;             /* the copy's <name> */
  const char *uuid;             /* the copy's <uuid> */
  int new_macs;                 /* a new random 52:54:00 MAC per interface */
  /* Files of the original and the copy's (disks, NVRAM, …): a path equal to
   * from[i] (or already to[i]) becomes to[i]. */
  const char *const *from;
  const char *const *to;
  size_t nr_paths;
  /* Other per-VM paths (serial/console log files, unix sockets, a loader
   * that is not read-only, an NVRAM not in the map) get old_uuid, else
   * old_name, replaced by uuid / name. */
  const char *old_name, *old_uuid;
};

/* The domain XML of a copy: name, UUID, MAC addresses; every disk file
 * and NVRAM from the map; log files and sockets made the copy's own; a
 * disk not in the map (a block device, a network disk: the original's)
 * dropped; <metadata> elements naming the original dropped. What changed
 * is appended to notes (may be NULL), one line each. Returns the XML
 * (caller frees), or NULL with the error set (malformed XML, no <domain>,
 * ENOMEM). */
extern char *vm_config_rewrite (const char *xml, size_t len,
                                const struct vm_rewrite *rw,
                                string_vector *notes);

#endif /* VMS_VM_CONFIG_H */

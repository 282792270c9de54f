/* Cluster-managed VMs (issue 18, R22): which domains are Pacemaker
 * ocf:heartbeat:VirtualDomain resources, where they run, and the few CIB
 * changes vmshadow makes around a backup or restore of one — through
 * Pacemaker's own command-line tools (cibadmin, crm_mon, crm_resource,
 * crm_node), run without a shell.
 *
 * No libvirt here: the VM writer (vm-writer.c, vm-restore.c) and the guard
 * process (vmshadow-guard.c, which lifts maintenance and the pin when
 * vmshadow is killed) both link this file. Functions returning int return
 * 0, or -1 with the error set (vmshadow/error.h).
 */
#ifndef VMS_VM_CLUSTER_H
#define VMS_VM_CLUSTER_H

#include <stddef.h>

/* Our location constraint that keeps a resource on its node during a
 * backup is named VM_CLUSTER_PIN_PREFIX + the resource id. */
#define VM_CLUSTER_PIN_PREFIX "vmshadow-pin-"

/* One VirtualDomain resource. */
struct vm_cluster_rsc {
  char *id;                     /* the resource id */
  char *config;                 /* its config file (VirtualDomain's "config") */
  char *hypervisor;             /* its "hypervisor" URI, or NULL */
  char *dom_name, *dom_uuid;    /* of the domain in config (uuid may be NULL) */
  char *node;                   /* the node running it, or NULL: stopped */
  int monitor_scripts;          /* its monitor runs scripts (in the guest) */
  int in_maintenance;           /* meta maintenance=true already */
  char *config_error;           /* why config could not be read, or NULL */
};

struct vm_cluster {
  int up;                       /* a Pacemaker cluster answered */
  char *local_node;             /* this host's node name, when up */
  size_t n;
  struct vm_cluster_rsc *rsc;
};

/* Ask the cluster (if any) for its VirtualDomain resources. No Pacemaker
 * tools, or a CIB that does not answer, is no cluster: 0 with up = 0.
 * -1 only when the CIB answered with something unreadable. */
extern int vm_cluster_scan (struct vm_cluster *c);
extern void vm_cluster_clear (struct vm_cluster *c);

/* The resource whose config names this domain (by UUID when the config has
 * one, else by name), for a libvirt URI; NULL when none. */
extern const struct vm_cluster_rsc *
vm_cluster_find (const struct vm_cluster *c, const char *uri,
                 const char *uuid, const char *name);

/* "pacemaker resource R (VirtualDomain) on node N" or "... stopped" (malloc'd). */
extern char *vm_cluster_describe (const struct vm_cluster_rsc *r);

/* A meta attribute set for a while and put back exactly as it was: when
 * the resource had the attribute, its nvpair (nvpair_id) gets the value
 * and later its old value back; when it had none, a meta_attributes set of
 * our own (VM_CLUSTER_META_PREFIX + name + "-" + resource id) holds it and
 * is deleted afterwards. Nothing else in the CIB changes. */
#define VM_CLUSTER_META_PREFIX "vmshadow-"
struct vm_cluster_meta_prev {
  char *nvpair_id;              /* the resource's own nvpair, or NULL */
  char *value;                  /* its value before */
  int unchanged;                /* it had the wanted value already */
};
/* In two steps (the guard is told prev in between): read what is there,
 * then set it. */
extern int vm_cluster_meta_read (const char *id, const char *name,
                                 const char *value,
                                 struct vm_cluster_meta_prev *prev);
extern int vm_cluster_meta_apply (const char *id, const char *name,
                                  const char *value,
                                  const struct vm_cluster_meta_prev *prev);
extern int vm_cluster_meta_set (const char *id, const char *name,
                                const char *value,
                                struct vm_cluster_meta_prev *prev);
extern int vm_cluster_meta_restore (const char *id, const char *name,
                                    const struct vm_cluster_meta_prev *prev);
extern void vm_cluster_meta_prev_clear (struct vm_cluster_meta_prev *prev);
/* Wait (up to wait_s) until the cluster has no action pending (it has
 * acted on a change: a monitor cancelled, a resource stopped or started). */
extern int vm_cluster_settle (int wait_s);

/* Keep resource id on node: a location constraint of ours banning every
 * other node (-INFINITY, which no move or prefer constraint outweighs), so
 * that the cluster does not migrate the VM during its backup. A migration
 * asked for meanwhile happens once the pin is lifted. */
extern int vm_cluster_pin (const char *id, const char *node);
/* Delete our constraint of resource id (none: nothing to do). */
extern int vm_cluster_unpin (const char *id);

/* Whether resource id runs on node (1), elsewhere or nowhere (0). */
extern int vm_cluster_running_on (const char *id, const char *node);
/* Clean the resource's failure history (crm_resource --cleanup). */
extern int vm_cluster_cleanup (const char *id);

#endif /* VMS_VM_CLUSTER_H */

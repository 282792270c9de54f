/* The guard (issue 5): whatever happens to vmshadow, no guest stays frozen,
 * no VM stays paused, no backup job stays behind. A separate process (or a
 * watchdog with its own deadline) is to be armed before a guest is frozen
 * or paused and disarmed once the VM needs no undoing; it thaws, resumes
 * and ends the job itself when vmshadow dies.
 *
 * Hooks only, for now: the online method calls vm_guard_arm right before
 * the freeze, vm_guard_job_started once libvirt began the job, and
 * end_session_work/vm_online_end_job call vm_guard_disarm.
 */
#include "vm-internal.h"

int
vm_guard_arm (struct vm_writer *w, struct vm_entry *vm)
{
  return 0;
}

void
vm_guard_job_started (struct vm_writer *w, struct vm_entry *vm)
{
}

void
vm_guard_disarm (struct vm_writer *w, struct vm_entry *vm)
{
}

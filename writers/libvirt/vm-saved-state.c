/* The saved-state method (R8) — hooks for the next step of issue 5.
 *
 * A running VM whose guest cannot take part online (R9), and every paused
 * VM, needs this method: during PrepareForSnapshot its vCPUs stop, its
 * memory and device state go to a file (a component file) while its disks
 * are captured, and PostSnapshot returns it to exactly its previous state.
 * Until it is written, such a VM fails PrepareForSnapshot with a message
 * that names it and says so, and the set aborts (R12).
 */
#include <stdio.h>
#include <stdlib.h>

#include "vm-internal.h"

int
saved_state_available (void)
{
  return 0;
}

int
saved_state_prepare (struct vm_writer *w, vms_call *call, struct vm_entry *vm,
                     char **why)
{
  if (asprintf (why, "it needs the saved-state method (%s), which is not "
                "implemented yet (it comes next); make its guest agent "
                "answer and retry, or leave it out of the backup",
                vm->state_before == VM_STATE_PAUSED ? "it is paused"
                : "it cannot be backed up online") == -1)
    *why = NULL;
  return -1;
}

int
saved_state_post_snapshot (struct vm_writer *w, vms_call *call,
                           struct vm_entry *vm, char **why)
{
  return 0;
}

int
saved_state_abort (struct vm_writer *w, struct vm_entry *vm, char **why)
{
  return 0;
}

void
saved_state_end (struct vm_writer *w, struct vm_entry *vm)
{
}

/* vmshadow — exec writers: host applications taking part in backups
 * through executables in a writers directory (docs/exec-writers.md is the
 * protocol). Each executable becomes one writer: Identify runs
 * `EXE identify` and reads its metadata document from stdout; every other
 * event runs `EXE <event>` with the session context as JSON on stdin.
 */
#ifndef VMSHADOW_EXEC_WRITER_H
#define VMSHADOW_EXEC_WRITER_H

#include <stdint.h>

#include "vmshadow/coordinator.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_EXEC_WRITERS_DIR "/etc/vmshadow/writers.d"
#define VMS_EXEC_WRITERS_DIR_ENV "VMSHADOW_WRITERS_DIR"
/* Version of the protocol (the "protocol" field on stdin and the
 * VMSHADOW_PROTOCOL variable). */
#define VMS_EXEC_PROTOCOL_VERSION 1
/* The most an executable may print on stdout (identify or a reply). */
#define VMS_EXEC_MAX_OUTPUT (1024 * 1024)

/* Add one writer per executable regular file of dir, in name order (C
 * locale). Dotfiles, backup and package-manager leftovers (`name~`,
 * `*.dpkg-old`, `*.rpmsave`, …), non-executables and directories are
 * skipped (debug log); files writable by everyone are skipped with a
 * warning. Each writer is named after the executable's basename until its
 * Identify answer names it.
 *
 * dir NULL means $VMSHADOW_WRITERS_DIR if set and non-empty, else
 * /etc/vmshadow/writers.d. The default directory may be missing (no exec
 * writers); a directory that was named (argument or environment) must
 * exist.
 *
 * Returns the number of writers added, or -1 with the error set (writers
 * added before the failure stay in the coordinator). */
extern int vms_exec_writers_load (vms_coordinator *coord, const char *dir);

/* Budgets (R3) given to the exec writers loaded: how long an executable
 * may take. Exec writers cannot change them (a budget is the
 * administrator's, not the application's). */
struct vms_exec_writer_options {
  uint32_t freeze_budget_ms;    /* Freeze → Thaw; 0: 60 s (VMS_DEFAULT_…) */
  uint32_t event_budget_ms;     /* any other event; 0: 600 s */
};

/* vms_exec_writers_load with budgets (opts may be NULL: the defaults). */
extern int vms_exec_writers_load_with (vms_coordinator *coord, const char *dir,
                                       const struct vms_exec_writer_options *opts);

/* Add a single executable (an absolute or relative path) as a writer;
 * opts may be NULL. */
extern int vms_exec_writer_add (vms_coordinator *coord, const char *path,
                                const struct vms_exec_writer_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_EXEC_WRITER_H */

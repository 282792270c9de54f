/* A stop asked for by a signal (SIGTERM, SIGINT, SIGHUP), for the long
 * waits that must clean up before the process ends: a boot check's
 * throw-away VM must not outlive `systemctl stop` or Ctrl-C. The program
 * decides (vms_interrupt_catch); the library's waits only ask
 * (vms_interrupted) and end through their usual clean-up path. */
#ifndef VMSHADOW_INTERRUPT_H
#define VMSHADOW_INTERRUPT_H

/* From now on SIGTERM, SIGINT and SIGHUP are recorded instead of ending
 * the process. */
void vms_interrupt_catch (void);

/* The first such signal received, or 0. */
int vms_interrupted (void);

/* When interrupted: sets the error ("interrupted by SIGTERM") and returns
 * -1; else 0. */
int vms_interrupt_check (void);

#endif

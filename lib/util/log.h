/* Diagnostic logging and monotonic time for every part of vmshadow.
 * Debug messages go to stderr only when VMSHADOW_DEBUG is set (or
 * vms_log_set_debug was called), so a quiet run stays quiet. */
#ifndef VMS_LOG_H
#define VMS_LOG_H

#include <stdint.h>

extern void vms_log_set_debug (int on);
extern int vms_log_debug_enabled (void);
extern void vms_debug (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
extern void vms_warn (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* Milliseconds on the monotonic clock: for deadlines and measured windows. */
extern int64_t vms_now_ms (void);
/* Microseconds on the monotonic clock. */
extern int64_t vms_now_us (void);

#endif /* VMS_LOG_H */

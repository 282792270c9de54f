/* A stop asked for by a signal: see interrupt.h. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "interrupt.h"
#include "vmshadow/error.h"

static volatile sig_atomic_t first_signal;

static void
record (int sig)
{
  if (first_signal == 0)
    first_signal = sig;
}

void
vms_interrupt_catch (void)
{
  /* No SA_RESTART: a sleep or a read ends early, and its loop asks. */
  struct sigaction sa = { .sa_handler = record };
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
}

int
vms_interrupted (void)
{
  return first_signal;
}

int
vms_interrupt_check (void)
{
  int sig = first_signal;
  if (sig == 0)
    return 0;
  vms_set_error (EINTR, "interrupted by SIG%s",
                 sig == SIGTERM ? "TERM" : sig == SIGINT ? "INT" : "HUP");
  return -1;
}

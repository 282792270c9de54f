/* Bulk data buffers on huge pages (bulk-mem.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "bulk-mem.h"

#define BULK_HUGE ((uintptr_t) 2 << 20)

void
vms_bulk_advise (void *p, size_t len)
{
  uintptr_t a = ((uintptr_t) p + BULK_HUGE - 1) & ~(BULK_HUGE - 1);
  uintptr_t b = ((uintptr_t) p + len) & ~(BULK_HUGE - 1);

  if (p && b > a)
    madvise ((void *) a, b - a, MADV_HUGEPAGE);
}

void *
vms_bulk_alloc (size_t len)
{
  void *p = NULL;
  size_t n = len;
  int r;

  /* From 1 MiB on, whole huge pages: the last one would otherwise be
   * faulted in 4 KiB at a time. */
  if (n >= BULK_HUGE / 2 && n <= SIZE_MAX - BULK_HUGE)
    n = (n + BULK_HUGE - 1) & ~(size_t) (BULK_HUGE - 1);
  r = posix_memalign (&p, n >= BULK_HUGE ? BULK_HUGE : 4096, n ? n : 1);
  if (r != 0) {
    errno = r;
    return NULL;
  }
  vms_bulk_advise (p, n);
  return p;
}

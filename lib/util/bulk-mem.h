/* Buffers the data path fills with bulk data (chunk buffers, pack pieces):
 * backed by 2 MiB huge pages where the kernel has them. Touching fresh
 * memory 4 KiB at a time was a large share of an incremental backup's CPU
 * in issue 15's profile (17 MiB of chunk buffers: ~50 ms of page faults on
 * the benchmark machine; a few huge pages: under 1 ms). */
#ifndef VMS_BULK_MEM_H
#define VMS_BULK_MEM_H

#include <stddef.h>

/* len bytes (uninitialized), aligned to 2 MiB and advised to use huge
 * pages; freed with free(3), may be given to realloc(3) (then advise the
 * result again). NULL with errno set. */
extern void *vms_bulk_alloc (size_t len);

/* Advise huge pages for the whole 2 MiB units inside [p, p + len) of
 * memory from malloc(3) or vms_bulk_alloc. Advice only: without huge pages
 * (none free, or turned off) the memory is ordinary. */
extern void vms_bulk_advise (void *p, size_t len);

#endif /* VMS_BULK_MEM_H */

/* Scoped cleanup (GCC/Clang __attribute__((cleanup))), instead of goto
 * ladders. Each macro frees what the variable holds when it goes out of
 * scope; set the variable to NULL (or -1) to hand ownership on. */
#ifndef VMS_CLEANUP_H
#define VMS_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}
#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))

static inline void
cleanup_close (int *fd)
{
  if (*fd >= 0)
    close (*fd);
}
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))

static inline void
cleanup_fclose (FILE **fp)
{
  if (*fp)
    fclose (*fp);
}
#define CLEANUP_FCLOSE __attribute__ ((cleanup (cleanup_fclose)))

/* Scoped cleanup for a handle type of ours or of a library we use, by its
 * destructor (which must accept NULL):
 *
 *   DEFINE_CLEANUP (vms_index, vms_index_free);      (once, in a header)
 *   CLEANUP (vms_index_free) vms_index *idx = NULL;   (in a function)
 */
#define DEFINE_CLEANUP(type, destructor)                                \
  static inline void __attribute__ ((unused))                           \
  cleanup_##destructor (type **p)                                       \
  {                                                                     \
    destructor (*p);                                                    \
  }                                                                     \
  struct cleanup_##destructor##_needs_a_semicolon
#define CLEANUP(destructor) __attribute__ ((cleanup (cleanup_##destructor)))

#endif /* VMS_CLEANUP_H */

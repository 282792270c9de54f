/* Typed growable arrays (after nbdkit's common/utils/vector.h).
 *
 *   DEFINE_VECTOR_TYPE (string_vector, char *);
 *   string_vector v = empty_vector;
 *   if (string_vector_append (&v, s) == -1) ...
 *   string_vector_reset (&v);   // frees the array, not the elements
 */
#ifndef VMS_VECTOR_H
#define VMS_VECTOR_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/error.h"

/* Grow the array behind *ptr so that it holds at least n more elements of
 * itemsize bytes; overflow-checked. Returns 0 or -1 with the error set. */
static inline int
generic_vector_reserve (void **ptr, size_t *cap, size_t len, size_t n,
                        size_t itemsize)
{
  size_t want, newcap, bytes;
  void *p;

  if (__builtin_add_overflow (len, n, &want)) goto overflow;
  if (want <= *cap)
    return 0;
  newcap = *cap ? *cap : 4;
  while (newcap < want)
    if (__builtin_mul_overflow (newcap, 2, &newcap)) goto overflow;
  if (__builtin_mul_overflow (newcap, itemsize, &bytes)) goto overflow;
  p = realloc (*ptr, bytes);
  if (p == NULL) {
    vms_set_error (errno, "out of memory growing an array to %zu items", newcap);
    return -1;
  }
  *ptr = p;
  *cap = newcap;
  return 0;
 overflow:
  vms_set_error (EOVERFLOW, "array size overflow");
  return -1;
}

#define DEFINE_VECTOR_TYPE(name, type)                                  \
  typedef struct { type *ptr; size_t len; size_t cap; } name;           \
  static inline int __attribute__ ((unused))                            \
  name##_reserve (name *v, size_t n)                                    \
  {                                                                     \
    return generic_vector_reserve ((void **) &v->ptr, &v->cap, v->len,  \
                                   n, sizeof (type));                   \
  }                                                                     \
  static inline int __attribute__ ((unused))                            \
  name##_append (name *v, type elem)                                    \
  {                                                                     \
    if (name##_reserve (v, 1) == -1) return -1;                         \
    v->ptr[v->len++] = elem;                                            \
    return 0;                                                           \
  }                                                                     \
  static inline void __attribute__ ((unused))                           \
  name##_remove (name *v, size_t i)                                     \
  {                                                                     \
    memmove (&v->ptr[i], &v->ptr[i + 1], (v->len - i - 1) * sizeof (type)); \
    v->len--;                                                           \
  }                                                                     \
  static inline void __attribute__ ((unused))                           \
  name##_reset (name *v)                                                \
  {                                                                     \
    free (v->ptr);                                                      \
    v->ptr = NULL; v->len = v->cap = 0;                                 \
  }                                                                     \
  struct name##_needs_a_semicolon

#define empty_vector { .ptr = NULL, .len = 0, .cap = 0 }

DEFINE_VECTOR_TYPE (string_vector, char *);

/* Free every string, then the array. */
static inline void __attribute__ ((unused))
string_vector_free_all (string_vector *v)
{
  for (size_t i = 0; i < v->len; i++)
    free (v->ptr[i]);
  string_vector_reset (v);
}

/* Append a copy of s. -1 with errno ENOMEM if memory runs out. */
static inline int __attribute__ ((unused))
string_vector_append_copy (string_vector *v, const char *s)
{
  char *c = strdup (s);

  if (c == NULL || string_vector_append (v, c) == -1) {
    free (c);
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

/* 1 if one of the strings equals s, else 0. */
static inline int __attribute__ ((unused))
string_vector_contains (const string_vector *v, const char *s)
{
  for (size_t i = 0; i < v->len; i++)
    if (strcmp (v->ptr[i], s) == 0)
      return 1;
  return 0;
}

#endif /* VMS_VECTOR_H */

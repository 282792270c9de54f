/* The storage interface's checked wrappers (storage.h): every name is
 * checked here, before any backend sees it, and every backend is called
 * through one wrapper per callback.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage.h"
#include "vector.h"

int
storage_valid_name (const char *name)
{
  size_t comp = 0;

  if (name == NULL || name[0] == '\0' || name[0] == '/' ||
      strnlen (name, STORAGE_NAME_MAX + 1) > STORAGE_NAME_MAX)
    return 0;
  for (const char *p = name; ; p++) {
    char c = *p;
    if (c == '/' || c == '\0') {
      /* The component that ends here: not empty, not "." or "..". */
      if (comp == 0 || comp > STORAGE_COMPONENT_MAX ||
          (comp == 1 && p[-1] == '.') ||
          (comp == 2 && p[-1] == '.' && p[-2] == '.'))
        return 0;
      if (c == '\0')
        break;
      comp = 0;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
          c == '-'))
      return 0;
    comp++;
  }
  return 1;
}

static int
bad_name (void)
{
  errno = EINVAL;
  return -1;
}

int
storage_put (struct storage *s, const char *name, const void *buf, size_t len,
             unsigned flags)
{
  if (!storage_valid_name (name))
    return bad_name ();
  return s->ops->put (s, name, buf, len, flags);
}

int
storage_get (struct storage *s, const char *name, uint64_t offset, size_t len,
             void *buf)
{
  if (!storage_valid_name (name))
    return bad_name ();
  return s->ops->get (s, name, offset, len, buf);
}

int
storage_stat (struct storage *s, const char *name, struct storage_stat *st)
{
  if (!storage_valid_name (name))
    return bad_name ();
  st->retain_until = 0;
  st->now = 0;
  return s->ops->stat (s, name, st);
}

int
storage_list (struct storage *s, const char *prefix, storage_list_fn fn,
              void *opaque)
{
  size_t n = strlen (prefix);

  if (n > 0) {
    /* "dir/" or "dir/name-start": what is before a trailing '/' must be a
     * valid name itself. */
    char buf[STORAGE_NAME_MAX + 2];
    if (n > STORAGE_NAME_MAX)
      return bad_name ();
    memcpy (buf, prefix, n + 1);
    if (buf[n - 1] == '/')
      buf[n - 1] = '\0';
    if (!storage_valid_name (buf))
      return bad_name ();
  }
  return s->ops->list (s, prefix, fn, opaque);
}

int
storage_collect_names (void *opaque, const char *name)
{
  return string_vector_append_copy (opaque, name);
}

int
storage_delete (struct storage *s, const char *name)
{
  if (!storage_valid_name (name))
    return bad_name ();
  return s->ops->del (s, name);
}

int
storage_now (struct storage *s, int64_t *t)
{
  return s->ops->now (s, t);
}

int
storage_sync (struct storage *s)
{
  return s->ops->sync ? s->ops->sync (s) : 0;
}

int
storage_failed_name (struct storage *s, char *buf, size_t size)
{
  struct storage *in = storage_crypt_inner (s);

  if (in->ops->size <= offsetof (struct storage_ops, failed_name) ||
      in->ops->failed_name == NULL)
    return -1;
  return in->ops->failed_name (in, buf, size);
}

int
storage_get_all (struct storage *s, const char *name, size_t max, void **buf,
                 size_t *len)
{
  struct storage_stat st;
  char *b;

  *buf = NULL;
  *len = 0;
  if (storage_stat (s, name, &st) == -1)
    return -1;
  if (st.size > max) {
    *len = st.size > SIZE_MAX ? SIZE_MAX : (size_t) st.size;
    errno = EFBIG;
    return -1;
  }
  b = malloc ((size_t) st.size + 1);
  if (b == NULL)
    return -1;
  if (storage_get (s, name, 0, (size_t) st.size, b) == -1) {
    int e = errno;
    free (b);
    errno = e;
    return -1;
  }
  b[st.size] = '\0';
  *buf = b;
  *len = (size_t) st.size;
  return 0;
}

void
storage_close (struct storage *s)
{
  if (s)
    s->ops->close (s);
}

/* The object-store backends by their --repo form (issue 12: rados:,
 * issue 14: s3://). */
int
storage_remote_spec (const char *repo)
{
  return strncmp (repo, "rados:", 6) == 0 || strncmp (repo, "s3://", 5) == 0;
}

struct storage *
storage_remote_open (const char *repo)
{
  if (strncmp (repo, "s3://", 5) == 0)
    return storage_s3_open (repo + 5);
  return storage_rados_open (repo + 6);
}

static int
is_backend (struct storage *s, const char *name)
{
  return strcmp (storage_crypt_inner (s)->ops->name, name) == 0;
}

int
storage_remote_lock (struct storage *s, const char *name, const char *desc)
{
  /* RADOS has no writer lock (issue 12: session leases instead). */
  if (!is_backend (s, "s3")) {
    errno = ENOTSUP;
    return -1;
  }
  return storage_s3_lock (s, name, desc);
}

int
storage_remote_lock_holder (struct storage *s, const char *name, char *buf,
                            size_t size)
{
  return is_backend (s, "s3") ? storage_s3_lock_holder (s, name, buf, size)
    : -1;
}

struct storage_writer *
storage_writer_open (struct storage *s, const char *name, unsigned flags)
{
  if (!storage_valid_name (name)) {
    errno = EINVAL;
    return NULL;
  }
  /* A backend built before the call existed has a smaller table. */
  if (s->ops->size < offsetof (struct storage_ops, writer_open)
      + sizeof s->ops->writer_open || s->ops->writer_open == NULL) {
    errno = ENOTSUP;
    return NULL;
  }
  return s->ops->writer_open (s, name, flags);
}

int
storage_extend_retention (struct storage *s, const char *name, int64_t *was)
{
  struct storage *in = storage_crypt_inner (s);

  if (was)
    *was = 0;
  if (!storage_valid_name (name))
    return bad_name ();
  /* A backend built before the call existed has a smaller table. */
  if (in->ops->size < offsetof (struct storage_ops, extend_retention)
      + sizeof in->ops->extend_retention || in->ops->extend_retention == NULL) {
    errno = ENOTSUP;
    return -1;
  }
  return in->ops->extend_retention (in, name, was);
}

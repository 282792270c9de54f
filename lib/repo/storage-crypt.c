/* The sealing layer of an encrypted repository (R28;
 * docs/repository-format-v2.md "Encryption"): a storage backend that
 * wraps any other one (local, RADOS, S3) and seals every object it puts
 * in an envelope whose associated data is the repository id and the
 * object's name, and opens (authenticates) every object it gets. So the
 * repository logic above (manifests, file indexes, documents, index
 * segments) stays the same for plain and encrypted repositories, and an
 * object moved to another name, replayed from another backup, cut short
 * or altered fails to open (EKEYREJECTED) instead of being read.
 *
 * Not sealed here: config (a reader must learn it needs a key), keys/
 * (key files, passphrase- or RSA-protected already), sessions/, clock/
 * and gc/ (coordination, read without the key), and packs/, whose blobs
 * and trailer pack.c seals one by one so that one blob stays one ranged
 * read.
 *
 * Without a key (a structure check, or a listing where the owner allowed
 * it) the layer passes lists, stats and deletes through and refuses to
 * get or put a sealed object (ENOKEY).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypt.h"
#include "storage.h"

struct crypt_storage {
  struct storage s;
  struct storage *inner;
  const struct crypt_key *key;  /* NULL: no key */
  char repo_id[65];
};

int
storage_crypt_sealed_name (const char *name)
{
  static const char *const plain[] = {
    "keys/", "packs/", "sessions/", "clock/", "gc/",
  };
  if (strcmp (name, "config") == 0 || strncmp (name, "config-", 7) == 0)
    return 0;
  for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
    if (strncmp (name, plain[i], strlen (plain[i])) == 0)
      return 0;
  return 1;
}

static struct crypt_storage *
cs_of (struct storage *s)
{
  return (struct crypt_storage *) s;
}

static size_t
object_aad (struct crypt_storage *cs, const char *name, char *buf, size_t n)
{
  return crypt_aad (buf, n, cs->repo_id, "object", name);
}

static int
cs_put (struct storage *s, const char *name, const void *buf, size_t len,
        unsigned flags)
{
  struct crypt_storage *cs = cs_of (s);
  char aad[STORAGE_NAME_MAX + 128];

  if (!storage_crypt_sealed_name (name))
    return storage_put (cs->inner, name, buf, len, flags);
  if (cs->key == NULL) {
    errno = ENOKEY;
    return -1;
  }
  uint8_t *env = malloc (len + ENVELOPE_OVERHEAD);
  if (env == NULL)
    return -1;
  if (crypt_seal (cs->key->k_enc, aad, object_aad (cs, name, aad, sizeof aad),
                  buf, len, env) == -1) {
    free (env);
    errno = EIO;
    return -1;
  }
  int r = storage_put (cs->inner, name, env, len + ENVELOPE_OVERHEAD, flags);
  int e = errno;
  free (env);
  errno = e;
  return r;
}

static int
cs_get (struct storage *s, const char *name, uint64_t offset, size_t len,
        void *buf)
{
  struct crypt_storage *cs = cs_of (s);
  struct storage_stat st;
  char aad[STORAGE_NAME_MAX + 128];

  if (!storage_crypt_sealed_name (name))
    return storage_get (cs->inner, name, offset, len, buf);
  if (cs->key == NULL) {
    errno = ENOKEY;
    return -1;
  }
  /* A sealed object is opened whole (its tag covers all of it); a range
   * is cut from the plaintext. */
  if (storage_stat (cs->inner, name, &st) == -1)
    return -1;
  if (st.size > ((uint64_t) 1 << 31)) {
    errno = EFBIG;
    return -1;
  }
  uint8_t *env = malloc (st.size ? (size_t) st.size : 1);
  uint8_t *plain = malloc (st.size ? (size_t) st.size : 1);
  int r = -1, e = 0;
  if (env == NULL || plain == NULL)
    e = ENOMEM;
  else if (storage_get (cs->inner, name, 0, (size_t) st.size, env) == -1)
    e = errno;
  else if (crypt_open (cs->key->k_enc, aad,
                       object_aad (cs, name, aad, sizeof aad), env,
                       (size_t) st.size, plain) == -1)
    e = errno;
  else if (offset + len > st.size - ENVELOPE_OVERHEAD)
    e = EBADMSG;
  else {
    memcpy (buf, plain + offset, len);
    r = 0;
  }
  if (plain)
    OPENSSL_cleanse (plain, (size_t) st.size);
  free (plain);
  free (env);
  errno = e;
  return r;
}

static int
cs_stat (struct storage *s, const char *name, struct storage_stat *st)
{
  struct crypt_storage *cs = cs_of (s);

  if (storage_stat (cs->inner, name, st) == -1)
    return -1;
  /* The plaintext's size; a stub shorter than an envelope reads as
   * empty, and fails to open. */
  if (storage_crypt_sealed_name (name))
    st->size = st->size >= ENVELOPE_OVERHEAD ? st->size - ENVELOPE_OVERHEAD : 0;
  return 0;
}

static int
cs_list (struct storage *s, const char *prefix, storage_list_fn fn,
         void *opaque)
{
  return storage_list (cs_of (s)->inner, prefix, fn, opaque);
}

static int
cs_del (struct storage *s, const char *name)
{
  return storage_delete (cs_of (s)->inner, name);
}

static int
cs_now (struct storage *s, int64_t *t)
{
  return storage_now (cs_of (s)->inner, t);
}

static int
cs_sync (struct storage *s)
{
  return storage_sync (cs_of (s)->inner);
}

static void
cs_close (struct storage *s)
{
  struct crypt_storage *cs = cs_of (s);
  storage_close (cs->inner);
  free (cs);
}

/* Packs are not sealed here (pack.c seals their blobs): their writers are
 * the inner backend's. A sealed object is put whole. */
static struct storage_writer *
cs_writer_open (struct storage *s, const char *name, unsigned flags)
{
  if (storage_crypt_sealed_name (name)) {
    errno = ENOTSUP;
    return NULL;
  }
  return storage_writer_open (cs_of (s)->inner, name, flags);
}

static const struct storage_ops crypt_ops = {
  .size = sizeof (struct storage_ops),
  .name = "crypt",
  .put = cs_put,
  .get = cs_get,
  .stat = cs_stat,
  .list = cs_list,
  .del = cs_del,
  .now = cs_now,
  .sync = cs_sync,
  .close = cs_close,
  .writer_open = cs_writer_open,
};

struct storage *
storage_crypt_wrap (struct storage *inner, const struct crypt_key *key,
                    const char *repo_id)
{
  struct crypt_storage *cs = calloc (1, sizeof *cs);

  if (cs == NULL) {
    storage_close (inner);
    return NULL;
  }
  cs->s.ops = &crypt_ops;
  cs->inner = inner;
  cs->key = key;
  strncpy (cs->repo_id, repo_id, sizeof cs->repo_id - 1);
  return &cs->s;
}

struct storage *
storage_crypt_inner (struct storage *s)
{
  return s && s->ops == &crypt_ops ? cs_of (s)->inner : s;
}

/* Encryption of version 2 repositories (R28; docs/encryption.md and
 * docs/repository-format-v2.md "Encryption"): the key hierarchy (one
 * 256-bit master secret, HKDF-SHA-256 to K_enc, K_id and K_name), keyed
 * chunk ids (HMAC-SHA-256 under K_id), and the envelope that seals every
 * stored object and every blob with AES-256-GCM, its identity bound in as
 * associated data. Pure functions of bytes and keys: where keys live and
 * how a passphrase opens them is key.c's; which objects are sealed is
 * storage-crypt.c's and pack.c's.
 *
 * OpenSSL 3 (EVP): AES-NI and SHA-NI where the CPU has them. Algorithms
 * are fetched once; each thread keeps its GCM and HMAC contexts (below).
 * scrypt (a passphrase's key) is libsodium's: the same function (RFC
 * 7914) at about two thirds of OpenSSL's CPU time here (its Salsa20/8 in
 * SSE2 where OpenSSL's is portable C; issue 13, docs/encryption.md
 * "Cost"), which is the fixed cost every command on an encrypted
 * repository pays once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sodium.h>

#include "crypt.h"
#include "vmshadow/error.h"

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *gcm;
static EVP_MAC *hmac;
static EVP_KDF *hkdf;
static pthread_key_t tls_key;
static int tls_ok;

/* Per thread: a GCM context whose key schedule is kept while the key
 * stays the same (each envelope then sets only its nonce), and an HMAC
 * context keyed once, copied for each id. */
struct crypt_tls {
  EVP_CIPHER_CTX *c;
  int c_dir;                    /* 1 encrypt, 0 decrypt, -1 unset */
  uint8_t c_key[CRYPT_KEY_LEN];
  EVP_MAC_CTX *m;
  uint8_t m_key[CRYPT_KEY_LEN];
};

static void
tls_free (void *p)
{
  struct crypt_tls *t = p;
  if (t == NULL)
    return;
  EVP_CIPHER_CTX_free (t->c);
  EVP_MAC_CTX_free (t->m);
  OPENSSL_cleanse (t, sizeof *t);
  free (t);
}

static void
algs_init (void)
{
  gcm = EVP_CIPHER_fetch (NULL, "AES-256-GCM", NULL);
  hmac = EVP_MAC_fetch (NULL, "HMAC", NULL);
  hkdf = EVP_KDF_fetch (NULL, "HKDF", NULL);
  tls_ok = pthread_key_create (&tls_key, tls_free) == 0;
}

static int
algs (void)
{
  pthread_once (&algs_once, algs_init);
  if (gcm == NULL || hmac == NULL || hkdf == NULL || !tls_ok) {
    vms_set_error (ENOSYS, "OpenSSL lacks AES-256-GCM, HMAC or HKDF");
    return -1;
  }
  return 0;
}

static struct crypt_tls *
tls (void)
{
  struct crypt_tls *t = pthread_getspecific (tls_key);
  if (t)
    return t;
  if ((t = calloc (1, sizeof *t)) == NULL ||
      pthread_setspecific (tls_key, t) != 0) {
    free (t);
    return NULL;
  }
  t->c_dir = -1;
  return t;
}

/* This thread's GCM context set up for key and direction, with the
 * nonce iv. */
static EVP_CIPHER_CTX *
gcm_ctx (const uint8_t key[CRYPT_KEY_LEN], int encrypt, const uint8_t *iv)
{
  struct crypt_tls *t = tls ();
  if (t == NULL)
    return NULL;
  if (t->c == NULL && (t->c = EVP_CIPHER_CTX_new ()) == NULL)
    return NULL;
  int same = t->c_dir == encrypt && memcmp (t->c_key, key, CRYPT_KEY_LEN) == 0;
  int ok = encrypt
    ? EVP_EncryptInit_ex2 (t->c, same ? NULL : gcm, same ? NULL : key, iv,
                           NULL)
    : EVP_DecryptInit_ex2 (t->c, same ? NULL : gcm, same ? NULL : key, iv,
                           NULL);
  if (ok != 1) {
    t->c_dir = -1;
    return NULL;
  }
  t->c_dir = encrypt;
  memcpy (t->c_key, key, CRYPT_KEY_LEN);
  return t->c;
}

/* HKDF-SHA-256(ikm, salt, info) -> out (32 bytes); no salt: saltlen 0. */
static int
derive_salted (const uint8_t *ikm, size_t ikmlen, const uint8_t *salt,
               size_t saltlen, const char *info, uint8_t out[CRYPT_KEY_LEN])
{
  EVP_KDF_CTX *ctx = EVP_KDF_CTX_new (hkdf);
  OSSL_PARAM p[5], *q = p;
  int ok;

  if (ctx == NULL)
    return -1;
  *q++ = OSSL_PARAM_construct_utf8_string (OSSL_KDF_PARAM_DIGEST,
                                           (char *) "SHA256", 0);
  *q++ = OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_KEY,
                                            (void *) ikm, ikmlen);
  if (saltlen)
    *q++ = OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_SALT,
                                              (void *) salt, saltlen);
  *q++ = OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_INFO,
                                            (void *) info, strlen (info));
  *q = OSSL_PARAM_construct_end ();
  ok = EVP_KDF_derive (ctx, out, CRYPT_KEY_LEN, p) == 1;
  EVP_KDF_CTX_free (ctx);
  return ok ? 0 : -1;
}

/* HKDF-SHA-256(master, info) -> out (32 bytes). */
static int
derive (const uint8_t master[CRYPT_KEY_LEN], const char *info,
        uint8_t out[CRYPT_KEY_LEN])
{
  return derive_salted (master, CRYPT_KEY_LEN, NULL, 0, info, out);
}

int
crypt_hkdf (const uint8_t *ikm, size_t ikmlen, const uint8_t *salt,
            size_t saltlen, const char *info, uint8_t out[CRYPT_KEY_LEN])
{
  if (algs () == -1)
    return -1;
  if (derive_salted (ikm, ikmlen, salt, saltlen, info, out) == -1) {
    vms_set_error (EIO, "HKDF-SHA-256 failed (OpenSSL)");
    return -1;
  }
  return 0;
}

int
crypt_mac (const uint8_t key[CRYPT_KEY_LEN], const void *data, size_t len,
           uint8_t out[32])
{
  EVP_MAC_CTX *ctx = NULL;
  OSSL_PARAM p[2];
  size_t outl = 0;
  int ok;
  struct crypt_tls *t;

  if (algs () == -1)
    return -1;
  if ((t = tls ()) == NULL) {
    vms_set_error (ENOMEM, "out of memory for HMAC");
    return -1;
  }
  /* The keyed template once per key and thread; a copy per message. */
  if (t->m == NULL || memcmp (t->m_key, key, CRYPT_KEY_LEN) != 0) {
    EVP_MAC_CTX_free (t->m);
    if ((t->m = EVP_MAC_CTX_new (hmac)) == NULL) {
      vms_set_error (ENOMEM, "out of memory for HMAC");
      return -1;
    }
    p[0] = OSSL_PARAM_construct_utf8_string (OSSL_MAC_PARAM_DIGEST,
                                             (char *) "SHA256", 0);
    p[1] = OSSL_PARAM_construct_end ();
    if (EVP_MAC_init (t->m, key, CRYPT_KEY_LEN, p) != 1) {
      EVP_MAC_CTX_free (t->m);
      t->m = NULL;
      vms_set_error (EIO, "HMAC-SHA-256 failed (OpenSSL)");
      return -1;
    }
    memcpy (t->m_key, key, CRYPT_KEY_LEN);
  }
  ok = (ctx = EVP_MAC_CTX_dup (t->m)) != NULL &&
    EVP_MAC_update (ctx, data, len) == 1 &&
    EVP_MAC_final (ctx, out, &outl, 32) == 1 && outl == 32;
  EVP_MAC_CTX_free (ctx);
  if (!ok) {
    vms_set_error (EIO, "HMAC-SHA-256 failed (OpenSSL)");
    return -1;
  }
  return 0;
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void
sodium_setup (void)
{
  sodium_ok = sodium_init () >= 0;
}

int
crypt_scrypt (const char *pass, size_t passlen, const uint8_t *salt,
              size_t saltlen, unsigned log2_n, unsigned r, unsigned p,
              uint8_t *out, size_t outlen)
{
  pthread_once (&sodium_once, sodium_setup);
  if (!sodium_ok) {
    vms_set_error (ENOSYS, "libsodium cannot be initialised");
    return -1;
  }
  if (log2_n < 1 || log2_n > 30 || r == 0 || p == 0 ||
      (uint64_t) r * p >= (uint64_t) 1 << 30) {
    vms_set_error (EINVAL, "scrypt parameters N = 2^%u, r = %u, p = %u are "
                   "out of range", log2_n, r, p);
    return -1;
  }
  /* Its working memory (128 * r * N bytes) is mapped for the call and
   * unmapped after it. */
  if (crypto_pwhash_scryptsalsa208sha256_ll ((const uint8_t *) pass, passlen,
                                             salt, saltlen,
                                             (uint64_t) 1 << log2_n, r, p,
                                             out, outlen) != 0) {
    vms_set_error (ENOMEM, "scrypt failed (out of memory? it needs %llu MiB)",
                   (unsigned long long) ((128ull * r << log2_n) >> 20));
    return -1;
  }
  return 0;
}

void
crypt_forget (void)
{
  pthread_once (&algs_once, algs_init);
  struct crypt_tls *t = tls_ok ? pthread_getspecific (tls_key) : NULL;
  if (t) {
    pthread_setspecific (tls_key, NULL);
    tls_free (t);
  }
}

int
crypt_key_derive (struct crypt_key *k)
{
  if (algs () == -1)
    return -1;
  if (derive (k->master, "vmshadow v2 K_enc", k->k_enc) == -1 ||
      derive (k->master, "vmshadow v2 K_id", k->k_id) == -1 ||
      derive (k->master, "vmshadow v2 K_name", k->k_name) == -1) {
    vms_set_error (EIO, "HKDF-SHA-256 failed (OpenSSL)");
    return -1;
  }
  uint8_t fp[32];
  if (crypt_mac (k->k_id, "fingerprint", 11, fp) == -1)
    return -1;
  memcpy (k->fingerprint, fp, CRYPT_FP_LEN);
  crypt_hex (k->fingerprint, CRYPT_FP_LEN, k->fingerprint_hex);
  return 0;
}

void
crypt_key_wipe (struct crypt_key *k)
{
  if (k)
    OPENSSL_cleanse (k, sizeof *k);
}

void
crypt_hex (const uint8_t *b, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

int
crypt_unhex (const char *s, uint8_t *out, size_t n)
{
  if (s == NULL || strlen (s) != 2 * n)
    return -1;
  for (size_t i = 0; i < 2 * n; i++) {
    char c = s[i];
    int v = c >= '0' && c <= '9' ? c - '0'
      : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0)
      return -1;
    if (i % 2 == 0)
      out[i / 2] = (uint8_t) (v << 4);
    else
      out[i / 2] |= (uint8_t) v;
  }
  return 0;
}

int
crypt_unhex_member (json_object *o, const char *field, uint8_t *out, size_t n)
{
  json_object *v;
  return json_object_object_get_ex (o, field, &v) &&
    json_object_is_type (v, json_type_string) &&
    crypt_unhex (json_object_get_string (v), out, n) == 0 ? 0 : -1;
}

size_t
crypt_aad (char *buf, size_t size, const char *repo_id, const char *kind,
           const char *name)
{
  /* Three fields each ended by a NUL, so no two identities make the same
   * bytes. */
  int n = snprintf (buf, size, "vmshadow-envelope-1%c%s%c%s%c%s", 0,
                    repo_id, 0, kind, 0, name);
  if (n < 0 || (size_t) n >= size)
    return 0;
  return (size_t) n;
}

int
crypt_seal (const uint8_t key[CRYPT_KEY_LEN], const void *aad, size_t aadlen,
            const void *in, size_t n, uint8_t *out)
{
  EVP_CIPHER_CTX *ctx;
  int l1 = 0, l2 = 0, ok;

  if (algs () == -1)
    return -1;
  if (n > (size_t) 1 << 30) {
    vms_set_error (EFBIG, "an object of %zu bytes is too large to seal", n);
    return -1;
  }
  memcpy (out, ENVELOPE_MAGIC, 4);
  out[4] = ENVELOPE_VERSION;
  if (RAND_bytes (out + 5, ENVELOPE_NONCE_LEN) != 1) {
    vms_set_error (EIO, "cannot get random bytes for a nonce (OpenSSL)");
    return -1;
  }
  /* in may be out + ENVELOPE_HEADER_LEN (sealed in place). */
  ok = (ctx = gcm_ctx (key, 1, out + 5)) != NULL &&
    (aadlen == 0 ||
     EVP_EncryptUpdate (ctx, NULL, &l1, aad, (int) aadlen) == 1) &&
    EVP_EncryptUpdate (ctx, out + ENVELOPE_HEADER_LEN, &l1, in, (int) n) == 1
    && EVP_EncryptFinal_ex (ctx, out + ENVELOPE_HEADER_LEN + l1, &l2) == 1 &&
    (size_t) (l1 + l2) == n &&
    EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_GET_TAG, ENVELOPE_TAG_LEN,
                         out + ENVELOPE_HEADER_LEN + n) == 1;
  if (!ok) {
    vms_set_error (EIO, "AES-256-GCM failed (OpenSSL)");
    return -1;
  }
  return 0;
}

int
crypt_envelope_check (const uint8_t *in, size_t n)
{
  if (n < ENVELOPE_OVERHEAD || memcmp (in, ENVELOPE_MAGIC, 4) != 0 ||
      in[4] != ENVELOPE_VERSION) {
    errno = EKEYREJECTED;
    return -1;
  }
  return 0;
}

const char *
crypt_envelope_problem (const uint8_t *in, size_t n)
{
  if (n < ENVELOPE_OVERHEAD)
    return "truncated: shorter than an envelope";
  if (memcmp (in, ENVELOPE_MAGIC, 4) != 0)
    return "not an envelope (bad magic)";
  if (in[4] != ENVELOPE_VERSION)
    return "an envelope of an unknown version";
  return NULL;
}

int
crypt_open (const uint8_t key[CRYPT_KEY_LEN], const void *aad, size_t aadlen,
            const uint8_t *in, size_t n, uint8_t *out)
{
  EVP_CIPHER_CTX *ctx;
  int l1 = 0, l2 = 0, ok;
  uint8_t tag[ENVELOPE_TAG_LEN];

  if (crypt_envelope_check (in, n) == -1)
    return -1;
  if (algs () == -1)
    return -1;
  if (n - ENVELOPE_OVERHEAD > (size_t) 1 << 30) {
    errno = EFBIG;
    return -1;
  }
  size_t clen = n - ENVELOPE_OVERHEAD;
  memcpy (tag, in + ENVELOPE_HEADER_LEN + clen, ENVELOPE_TAG_LEN);
  ok = (ctx = gcm_ctx (key, 0, in + 5)) != NULL &&
    (aadlen == 0 ||
     EVP_DecryptUpdate (ctx, NULL, &l1, aad, (int) aadlen) == 1) &&
    EVP_DecryptUpdate (ctx, out, &l1, in + ENVELOPE_HEADER_LEN,
                       (int) clen) == 1 &&
    EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_TAG, ENVELOPE_TAG_LEN,
                         tag) == 1 &&
    EVP_DecryptFinal_ex (ctx, out + l1, &l2) == 1;
  if (!ok) {
    /* Nothing of a failed open is ever used. */
    OPENSSL_cleanse (out, clen);
    errno = EKEYREJECTED;
    return -1;
  }
  return 0;
}

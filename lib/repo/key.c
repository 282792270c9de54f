/* Key files of encrypted repositories (include/vmshadow/key.h,
 * docs/encryption.md "Keys"): a JSON file per key in the key directory,
 * named by the key's fingerprint, holding the master secret sealed under
 * a passphrase (scrypt, then AES-256-GCM) and optionally wrapped for an
 * organisation's master key (RSA-OAEP, or X25519 with HKDF and
 * AES-256-GCM); the paper form; and this process's cache
 * of unlocked keys, so that a command that opens a repository several
 * times asks (and runs scrypt) once.
 *
 * A key file may come from elsewhere (a repository's keys/, another
 * host): key_file_parse checks every field before use
 * (tests/fuzz/repo/fuzz-keyfile.c), and key_paper_parse names any line a
 * person mistyped.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "cleanup.h"
#include "crypt.h"
#include "fs-util.h"
#include "repo-internal.h"
#include "vmshadow/error.h"
#include "vmshadow/key.h"

#define KEY_FILE_FORMAT "vmshadow-key"
#define KEY_FILE_VERSION 1
#define KEY_FILE_MAX 65536
/* scrypt N = 2^17, r = 8, p = 1: 128 MiB, about half a second here
 * (docs/repository-format-v2.md). $VMSHADOW_SCRYPT_LOG2N (14 to 22)
 * changes N for new key files: tests use 14 to stay fast. */
#define SCRYPT_LOG2N 17
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_LOG2N_MIN 10
#define SCRYPT_LOG2N_MAX 22
#define RSA_MIN_BITS 2048
#define X25519_WRAP_INFO "vmshadow x25519 key wrap 1"
#define X25519_WRAP_LEN (CRYPT_KEY_LEN + ENVELOPE_OVERHEAD)

/* ---- passphrases ---- */

static vms_passphrase_fn passphrase_fn;
static void *passphrase_opaque;

void
vms_set_passphrase_fn (vms_passphrase_fn fn, void *opaque)
{
  passphrase_fn = fn;
  passphrase_opaque = opaque;
}

static int
get_passphrase (int purpose, const char *fp, char *buf, size_t size)
{
  buf[0] = '\0';
  if (passphrase_fn) {
    if (passphrase_fn (passphrase_opaque, purpose, fp, buf, size) == -1)
      return -1;
  }
  else {
    const char *e = NULL;
    if (purpose == VMS_PASSPHRASE_NEW)
      e = getenv (VMS_NEW_PASSPHRASE_ENV);
    if (e == NULL || *e == '\0')
      e = getenv (VMS_PASSPHRASE_ENV);
    if (e == NULL || *e == '\0') {
      vms_set_error (ENOKEY, "key %s needs a%s passphrase: set %s (or give "
                     "one on a terminal or with --passphrase-fd)", fp,
                     purpose == VMS_PASSPHRASE_NEW ? " new" : "",
                     VMS_PASSPHRASE_ENV);
      return -1;
    }
    if (strlen (e) >= size) {
      vms_set_error (E2BIG, "the passphrase is longer than %zu bytes",
                     size - 1);
      return -1;
    }
    memcpy (buf, e, strlen (e) + 1);
  }
  if (purpose == VMS_PASSPHRASE_NEW && strlen (buf) < VMS_PASSPHRASE_MIN) {
    OPENSSL_cleanse (buf, size);
    vms_set_error (EINVAL, "a new passphrase must have at least %d "
                   "characters", VMS_PASSPHRASE_MIN);
    return -1;
  }
  return 0;
}

/* ---- the key directory ---- */

static const char *
key_dir (void)
{
  const char *d = getenv (VMS_KEY_DIR_ENV);
  return d && *d ? d : VMS_KEY_DEFAULT_DIR;
}

char *
vms_key_path (const char *fp)
{
  char *p;
  if (asprintf (&p, "%s/%s.key", key_dir (), fp) == -1) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return p;
}

static int
valid_fp (const char *fp)
{
  uint8_t b[CRYPT_FP_LEN];
  if (crypt_unhex (fp, b, CRYPT_FP_LEN) == -1) {
    vms_set_error (EINVAL, "\"%s\" is not a key fingerprint (32 lower-case "
                   "hex digits)", fp);
    return -1;
  }
  return 0;
}

/* The key directory's fd; create: make it (0700; parents 0755) if
 * missing. The last component is never a followed link. */
static int
open_key_dir (int create)
{
  const char *d = key_dir ();
  int fd = open (d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

  if (fd == -1 && errno == ENOENT && create) {
    CLEANUP_FREE char *p = strdup (d);
    if (p == NULL)
      return -1;
    for (char *s = p + 1; *s; s++)
      if (*s == '/') {
        *s = '\0';
        if (mkdir (p, 0755) == -1 && errno != EEXIST)
          goto fail;
        *s = '/';
      }
    if (mkdir (d, 0700) == -1 && errno != EEXIST)
      goto fail;
    fd = open (d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd == -1)
    goto fail;
  if (create && fchmod (fd, 0700) == -1) {
    close (fd);
    goto fail;
  }
  return fd;
 fail:
  vms_set_error (errno, "key directory %s: %s", d, repo_errstr (errno));
  return -1;
}

/* Write key file fp atomically: a temp file (0600, fsynced), renamed over
 * the name (replace) or only if the name is free. */
static int
write_key_file (const char *fp, const char *text, int replace)
{
  char name[64], tmp[96];
  int dfd = open_key_dir (1);

  if (dfd == -1)
    return -1;
  snprintf (name, sizeof name, "%s.key", fp);
  snprintf (tmp, sizeof tmp, ".%s.key.tmp-%d", fp, (int) getpid ());
  unlinkat (dfd, tmp, 0);
  if (repo_write_new_file (dfd, tmp, text, strlen (text)) == -1)
    goto fail;
  if (replace ? renameat (dfd, tmp, dfd, name) == -1
      : renameat2 (dfd, tmp, dfd, name, RENAME_NOREPLACE) == -1)
    goto fail;
  if (fsync (dfd) == -1)
    goto fail;
  close (dfd);
  return 0;
 fail:
  {
    int e = errno;
    unlinkat (dfd, tmp, 0);
    close (dfd);
    if (e == EEXIST)
      vms_set_error (EEXIST, "key %s is in %s already; nothing changed", fp,
                     key_dir ());
    else
      vms_set_error (e, "cannot write key file %s/%s: %s", key_dir (), name,
                     repo_errstr (e));
  }
  return -1;
}

/* ---- key file text ---- */

void
key_file_clear (struct key_file *kf)
{
  free (kf->wrapped);
  OPENSSL_cleanse (kf, sizeof *kf);
}

static int
get_uint (json_object *o, const char *field, unsigned lo, unsigned hi,
          unsigned *out)
{
  json_object *v;
  if (!json_object_object_get_ex (o, field, &v) ||
      !json_object_is_type (v, json_type_int) ||
      json_object_get_int64 (v) < lo || json_object_get_int64 (v) > hi)
    return -1;
  *out = (unsigned) json_object_get_int64 (v);
  return 0;
}

int
key_file_parse (const char *text, size_t len, const char *what,
                struct key_file *kf)
{
  json_object *root = NULL, *v, *kdf, *rec;
  struct json_tokener *tok;
  const char *bad = NULL;

  memset (kf, 0, sizeof *kf);
  if (len > KEY_FILE_MAX || memchr (text, '\0', len)) {
    vms_set_error (EBADMSG, "%s is not a key file (%s)", what,
                   len > KEY_FILE_MAX ? "too large" : "binary");
    return -1;
  }
  if ((tok = json_tokener_new_ex (8)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  root = json_tokener_parse_ex (tok, text, (int) len);
  if (root && json_tokener_get_parse_end (tok) < len) {
    /* Only white space may follow the one value. */
    for (size_t i = json_tokener_get_parse_end (tok); i < len; i++)
      if (!isspace ((unsigned char) text[i]))
        bad = "more than one JSON value";
  }
  json_tokener_free (tok);
  if (bad == NULL && (root == NULL ||
                      !json_object_is_type (root, json_type_object)))
    bad = "not a JSON object";
  if (bad)
    goto fail;
  if (!json_object_object_get_ex (root, "format", &v) ||
      !json_object_is_type (v, json_type_string) ||
      strcmp (json_object_get_string (v), KEY_FILE_FORMAT) != 0) {
    bad = "no \"format\": \"" KEY_FILE_FORMAT "\"";
    goto fail;
  }
  unsigned version;
  if (get_uint (root, "version", 1, 1000, &version) == -1 ||
      version != KEY_FILE_VERSION) {
    bad = "a version this vmshadow does not read (it reads 1)";
    goto fail;
  }
  if (crypt_unhex_member (root, "fingerprint", kf->fingerprint, CRYPT_FP_LEN) == -1) {
    bad = "no valid \"fingerprint\"";
    goto fail;
  }
  if (json_object_object_get_ex (root, "created", &v) &&
      json_object_is_type (v, json_type_int))
    kf->created = json_object_get_int64 (v);
  if (json_object_object_get_ex (root, "kdf", &kdf) && kdf &&
      json_object_object_get_ex (root, "sealed", &v)) {
    if (!json_object_is_type (kdf, json_type_object) ||
        !json_object_object_get_ex (kdf, "name", &v) ||
        !json_object_is_type (v, json_type_string) ||
        strcmp (json_object_get_string (v), "scrypt") != 0 ||
        get_uint (kdf, "log2_n", SCRYPT_LOG2N_MIN, SCRYPT_LOG2N_MAX,
                  &kf->log2_n) == -1 ||
        get_uint (kdf, "r", 1, 32, &kf->r) == -1 ||
        get_uint (kdf, "p", 1, 16, &kf->p) == -1 ||
        crypt_unhex_member (kdf, "salt", kf->salt, sizeof kf->salt) == -1 ||
        /* scrypt's memory: 128 * r * N bytes, at most 1 GiB. */
        ((uint64_t) 128 * kf->r << kf->log2_n) > ((uint64_t) 1 << 30)) {
      bad = "a \"kdf\" that is not scrypt with sound parameters";
      goto fail;
    }
    if (crypt_unhex_member (root, "sealed", kf->sealed, sizeof kf->sealed) == -1) {
      bad = "no valid \"sealed\" secret";
      goto fail;
    }
    kf->has_sealed = 1;
  }
  if (json_object_object_get_ex (root, "recovery", &rec) && rec) {
    json_object *w;
    const char *ws, *method = NULL;
    size_t wl = 0;
    if (json_object_is_type (rec, json_type_object) &&
        json_object_object_get_ex (rec, "method", &v) &&
        json_object_is_type (v, json_type_string))
      method = json_object_get_string (v);
    kf->x25519 = method && strcmp (method, "x25519-hkdf-sha256-aes256gcm") == 0;
    if (method == NULL ||
        (!kf->x25519 && strcmp (method, "rsa-oaep-sha256") != 0) ||
        crypt_unhex_member (rec, "public_key_sha256", kf->recovery_key_sha256, 32) == -1
        || (kf->x25519 &&
            crypt_unhex_member (rec, "ephemeral", kf->ephemeral, 32) == -1) ||
        !json_object_object_get_ex (rec, "wrapped", &w) ||
        !json_object_is_type (w, json_type_string) ||
        (wl = strlen (ws = json_object_get_string (w))) % 2 ||
        (kf->x25519 ? wl != 2 * X25519_WRAP_LEN
         : wl < 2 * 256 || wl > 2 * 2048)) {
      bad = "a \"recovery\" that is neither an RSA-OAEP nor an X25519 wrap";
      goto fail;
    }
    if ((kf->wrapped = malloc (wl / 2)) == NULL) {
      json_object_put (root);
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    kf->wrapped_len = wl / 2;
    if (crypt_unhex (ws, kf->wrapped, wl / 2) == -1) {
      bad = "a \"recovery\" that is neither an RSA-OAEP nor an X25519 wrap";
      goto fail;
    }
    kf->has_recovery = 1;
  }
  if (!kf->has_sealed && !kf->has_recovery) {
    bad = "neither a passphrase-sealed secret nor a recovery wrap";
    goto fail;
  }
  json_object_put (root);
  return 0;
 fail:
  json_object_put (root);
  key_file_clear (kf);
  vms_set_error (EBADMSG, "%s is not a usable key file: %s", what, bad);
  return -1;
}

char *
key_file_format (const struct key_file *kf)
{
  char fp[33], salt[65], sealed[2 * sizeof kf->sealed + 1], rk[65], eph[65];
  CLEANUP_FREE char *wrapped = NULL, *kdf = NULL, *rec = NULL;
  char *out = NULL;

  crypt_hex (kf->fingerprint, CRYPT_FP_LEN, fp);
  if (kf->has_sealed) {
    crypt_hex (kf->salt, sizeof kf->salt, salt);
    crypt_hex (kf->sealed, sizeof kf->sealed, sealed);
    if (asprintf (&kdf, ",\n  \"kdf\": { \"name\": \"scrypt\", \"log2_n\": %u, "
                  "\"r\": %u, \"p\": %u,\n           \"salt\": \"%s\" },\n"
                  "  \"sealed\": \"%s\"", kf->log2_n, kf->r, kf->p, salt,
                  sealed) == -1)
      kdf = NULL;
  }
  if (kf->has_recovery) {
    wrapped = malloc (2 * kf->wrapped_len + 1);
    if (wrapped) {
      crypt_hex (kf->wrapped, kf->wrapped_len, wrapped);
      crypt_hex (kf->recovery_key_sha256, 32, rk);
      crypt_hex (kf->ephemeral, 32, eph);
      if (kf->x25519
          ? asprintf (&rec, ",\n  \"recovery\": { \"method\": "
                      "\"x25519-hkdf-sha256-aes256gcm\", \"public_key_sha256\": "
                      "\"%s\",\n    \"ephemeral\": \"%s\",\n    \"wrapped\": "
                      "\"%s\" }", rk, eph, wrapped) == -1
          : asprintf (&rec, ",\n  \"recovery\": { \"method\": \"rsa-oaep-sha256\", "
                      "\"public_key_sha256\": \"%s\",\n    \"wrapped\": \"%s\" }",
                      rk, wrapped) == -1)
        rec = NULL;
    }
  }
  if ((kf->has_sealed && kdf == NULL) || (kf->has_recovery && rec == NULL) ||
      asprintf (&out, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n"
                "  \"fingerprint\": \"%s\",\n  \"created\": %" PRId64 "%s%s\n}\n",
                KEY_FILE_FORMAT, KEY_FILE_VERSION, fp, kf->created,
                kdf ? kdf : "", rec ? rec : "") == -1) {
    if (kdf) OPENSSL_cleanse (kdf, strlen (kdf));
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (kdf) OPENSSL_cleanse (kdf, strlen (kdf));
  return out;
}

/* ---- sealing the secret under a passphrase ---- */

static size_t
key_aad (const uint8_t fp[CRYPT_FP_LEN], char *buf, size_t size)
{
  char h[33];
  crypt_hex (fp, CRYPT_FP_LEN, h);
  int n = snprintf (buf, size, "vmshadow-key-1%c%s", 0, h);
  return (size_t) n;
}

static int
scrypt_kek (const char *pass, const struct key_file *kf,
            uint8_t kek[CRYPT_KEY_LEN])
{
  return crypt_scrypt (pass, strlen (pass), kf->salt, sizeof kf->salt,
                       kf->log2_n, kf->r, kf->p, kek, CRYPT_KEY_LEN);
}

/* Seal k's master secret in kf under a passphrase (new salt). */
static int
seal_secret (const struct crypt_key *k, const char *pass, struct key_file *kf)
{
  uint8_t kek[CRYPT_KEY_LEN];
  char aad[64];
  const char *e = getenv ("VMSHADOW_SCRYPT_LOG2N");
  int r = -1;

  kf->log2_n = SCRYPT_LOG2N;
  if (e && *e) {
    long l = strtol (e, NULL, 10);
    if (l < 14 || l > SCRYPT_LOG2N_MAX) {
      vms_set_error (EINVAL, "VMSHADOW_SCRYPT_LOG2N=%s is not from 14 to %d",
                     e, SCRYPT_LOG2N_MAX);
      return -1;
    }
    kf->log2_n = (unsigned) l;
  }
  kf->r = SCRYPT_R;
  kf->p = SCRYPT_P;
  if (RAND_bytes (kf->salt, sizeof kf->salt) != 1) {
    vms_set_error (EIO, "cannot get random bytes (OpenSSL)");
    return -1;
  }
  if (scrypt_kek (pass, kf, kek) == 0 &&
      crypt_seal (kek, aad, key_aad (k->fingerprint, aad, sizeof aad),
                  k->master, CRYPT_KEY_LEN, kf->sealed) == 0) {
    kf->has_sealed = 1;
    r = 0;
  }
  OPENSSL_cleanse (kek, sizeof kek);
  crypt_forget ();
  return r;
}

/* Open kf's sealed secret with a passphrase into k (derived, and checked
 * against the fingerprint). */
static int
open_secret (const struct key_file *kf, const char *pass, const char *what,
             struct crypt_key *k)
{
  uint8_t kek[CRYPT_KEY_LEN];
  char aad[64], fp[33];
  int r;

  crypt_hex (kf->fingerprint, CRYPT_FP_LEN, fp);
  if (scrypt_kek (pass, kf, kek) == -1)
    return -1;
  r = crypt_open (kek, aad, key_aad (kf->fingerprint, aad, sizeof aad),
                  kf->sealed, sizeof kf->sealed, k->master);
  OPENSSL_cleanse (kek, sizeof kek);
  crypt_forget ();
  if (r == -1) {
    vms_set_error (EKEYREJECTED, "wrong passphrase for key %s (%s could not "
                   "be opened with it)", fp, what);
    return -1;
  }
  if (crypt_key_derive (k) == -1)
    return -1;
  if (memcmp (k->fingerprint, kf->fingerprint, CRYPT_FP_LEN) != 0) {
    crypt_key_wipe (k);
    vms_set_error (EBADMSG, "%s is corrupt: its secret does not have the "
                   "fingerprint %s it claims", what, fp);
    return -1;
  }
  return 0;
}

/* ---- recovery wrap for a master key: RSA-OAEP, or X25519 ----
 *
 * X25519: a new X25519 key pair per wrap (its public half, "ephemeral",
 * is stored); the wrap key is HKDF-SHA-256 of the shared secret with the
 * salt ephemeral || master public key and info X25519_WRAP_INFO; the
 * secret is sealed with it in an envelope (AES-256-GCM, associated data
 * the key's identity, as for the passphrase seal). Only the holder of the
 * master private key computes the same shared secret. */

static EVP_PKEY *
read_pem (const char *path, int private)
{
  FILE *f = fopen (path, "re");
  EVP_PKEY *pk = NULL;

  if (f == NULL) {
    vms_set_error (errno, "cannot open %s: %s", path, strerror (errno));
    return NULL;
  }
  pk = private ? PEM_read_PrivateKey (f, NULL, NULL, NULL)
    : PEM_read_PUBKEY (f, NULL, NULL, NULL);
  fclose (f);
  if (pk == NULL || !(EVP_PKEY_is_a (pk, "X25519") ||
                      (EVP_PKEY_is_a (pk, "RSA") &&
                       EVP_PKEY_get_bits (pk) >= RSA_MIN_BITS))) {
    EVP_PKEY_free (pk);
    vms_set_error (EINVAL, "%s is neither an X25519 %s key nor an RSA one of "
                   "%d bits or more in PEM form", path,
                   private ? "private" : "public", RSA_MIN_BITS);
    return NULL;
  }
  return pk;
}

static int
pubkey_sha256 (EVP_PKEY *pk, uint8_t out[32])
{
  unsigned char *der = NULL;
  int n = i2d_PUBKEY (pk, &der);
  unsigned int mdlen;
  int ok = n > 0 && EVP_Digest (der, (size_t) n, out, &mdlen, EVP_sha256 (),
                                NULL) == 1;
  OPENSSL_free (der);
  return ok ? 0 : -1;
}

static EVP_PKEY_CTX *
oaep_ctx (EVP_PKEY *pk, int encrypt)
{
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey (NULL, pk, NULL);
  if (c == NULL ||
      (encrypt ? EVP_PKEY_encrypt_init (c) : EVP_PKEY_decrypt_init (c)) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding (c, RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md (c, EVP_sha256 ()) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md (c, EVP_sha256 ()) != 1) {
    EVP_PKEY_CTX_free (c);
    return NULL;
  }
  return c;
}

/* The X25519 wrap key of own (a private key) and peer (a public key);
 * eph and master: the raw public keys of the wrap's key pair and of the
 * master key (the salt). */
static int
x25519_kek (EVP_PKEY *own, EVP_PKEY *peer, const uint8_t eph[32],
            const uint8_t master[32], uint8_t kek[CRYPT_KEY_LEN])
{
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey (NULL, own, NULL);
  uint8_t shared[32], salt[64];
  size_t sl = sizeof shared;
  int r = -1;

  if (c && EVP_PKEY_derive_init (c) == 1 &&
      EVP_PKEY_derive_set_peer (c, peer) == 1 &&
      /* OpenSSL refuses an all-zero shared secret (a low-order point). */
      EVP_PKEY_derive (c, shared, &sl) == 1 && sl == sizeof shared) {
    memcpy (salt, eph, 32);
    memcpy (salt + 32, master, 32);
    r = crypt_hkdf (shared, sizeof shared, salt, sizeof salt,
                    X25519_WRAP_INFO, kek);
  }
  OPENSSL_cleanse (shared, sizeof shared);
  EVP_PKEY_CTX_free (c);
  return r;
}

static int
raw_public (EVP_PKEY *pk, uint8_t out[32])
{
  size_t n = 32;
  return EVP_PKEY_get_raw_public_key (pk, out, &n) == 1 && n == 32 ? 0 : -1;
}

static int
wrap_x25519 (const struct crypt_key *k, EVP_PKEY *master, const char *pem,
             struct key_file *kf)
{
  EVP_PKEY *eph = EVP_PKEY_Q_keygen (NULL, NULL, "X25519");
  uint8_t mpub[32], kek[CRYPT_KEY_LEN];
  char aad[64];
  int r = -1;

  if (eph == NULL || raw_public (eph, kf->ephemeral) == -1 ||
      raw_public (master, mpub) == -1 ||
      pubkey_sha256 (master, kf->recovery_key_sha256) == -1 ||
      x25519_kek (eph, master, kf->ephemeral, mpub, kek) == -1 ||
      (kf->wrapped = malloc (X25519_WRAP_LEN)) == NULL ||
      crypt_seal (kek, aad, key_aad (k->fingerprint, aad, sizeof aad),
                  k->master, CRYPT_KEY_LEN, kf->wrapped) == -1)
    vms_set_error (EIO, "cannot wrap the key for master key %s (OpenSSL)", pem);
  else {
    kf->wrapped_len = X25519_WRAP_LEN;
    kf->x25519 = 1;
    kf->has_recovery = 1;
    r = 0;
  }
  OPENSSL_cleanse (kek, sizeof kek);
  crypt_forget ();
  EVP_PKEY_free (eph);          /* its private half is never kept */
  return r;
}

static int
wrap_secret (const struct crypt_key *k, const char *pem, struct key_file *kf)
{
  EVP_PKEY *pk = read_pem (pem, 0);
  EVP_PKEY_CTX *c = NULL;
  size_t outl = 0;
  int r = -1;

  if (pk == NULL)
    return -1;
  if (EVP_PKEY_is_a (pk, "X25519")) {
    r = wrap_x25519 (k, pk, pem, kf);
    EVP_PKEY_free (pk);
    return r;
  }
  if ((c = oaep_ctx (pk, 1)) == NULL ||
      pubkey_sha256 (pk, kf->recovery_key_sha256) == -1 ||
      EVP_PKEY_encrypt (c, NULL, &outl, k->master, CRYPT_KEY_LEN) != 1 ||
      (kf->wrapped = malloc (outl)) == NULL ||
      EVP_PKEY_encrypt (c, kf->wrapped, &outl, k->master, CRYPT_KEY_LEN) != 1)
    vms_set_error (EIO, "cannot wrap the key for master key %s (OpenSSL)", pem);
  else {
    kf->wrapped_len = outl;
    kf->has_recovery = 1;
    r = 0;
  }
  EVP_PKEY_CTX_free (c);
  EVP_PKEY_free (pk);
  return r;
}

static int
unwrap_secret (const struct key_file *kf, const char *pem, const char *what,
               struct crypt_key *k)
{
  EVP_PKEY *pk = read_pem (pem, 1);
  EVP_PKEY_CTX *c = NULL;
  uint8_t sum[32], out[512];
  size_t outl = sizeof out;
  char fp[33];
  int r = -1;

  crypt_hex (kf->fingerprint, CRYPT_FP_LEN, fp);
  if (pk == NULL)
    return -1;
  if (!kf->has_recovery)
    vms_set_error (EINVAL, "%s has no recovery wrap for a master key", what);
  else if (pubkey_sha256 (pk, sum) == -1 ||
           memcmp (sum, kf->recovery_key_sha256, 32) != 0)
    vms_set_error (EKEYREJECTED, "%s was wrapped for another master key "
                   "than %s", what, pem);
  else if (kf->x25519 != EVP_PKEY_is_a (pk, "X25519"))
    vms_set_error (EKEYREJECTED, "%s was wrapped for an %s master key; %s is "
                   "not one", what, kf->x25519 ? "X25519" : "RSA", pem);
  else {
    int opened;
    if (kf->x25519) {
      EVP_PKEY *eph = EVP_PKEY_new_raw_public_key (EVP_PKEY_X25519, NULL,
                                                   kf->ephemeral, 32);
      uint8_t mpub[32], kek[CRYPT_KEY_LEN];
      char aad[64];
      opened = eph && raw_public (pk, mpub) == 0 &&
        x25519_kek (pk, eph, kf->ephemeral, mpub, kek) == 0 &&
        kf->wrapped_len == X25519_WRAP_LEN &&
        crypt_open (kek, aad, key_aad (kf->fingerprint, aad, sizeof aad),
                    kf->wrapped, kf->wrapped_len, out) == 0;
      OPENSSL_cleanse (kek, sizeof kek);
      crypt_forget ();
      EVP_PKEY_free (eph);
    }
    else
      opened = (c = oaep_ctx (pk, 0)) != NULL && kf->wrapped_len <= sizeof out &&
        EVP_PKEY_decrypt (c, out, &outl, kf->wrapped, kf->wrapped_len) == 1 &&
        outl == CRYPT_KEY_LEN;
    /* Either wrap gives the secret; its fingerprint proves it is this key's. */
    if (!opened)
      vms_set_error (EKEYREJECTED, "%s: the recovery wrap does not open with "
                     "%s", what, pem);
    else {
      memcpy (k->master, out, CRYPT_KEY_LEN);
      if (crypt_key_derive (k) == 0) {
        if (memcmp (k->fingerprint, kf->fingerprint, CRYPT_FP_LEN) == 0)
          r = 0;
        else
          vms_set_error (EBADMSG, "%s is corrupt: its recovered secret does "
                         "not have the fingerprint %s it claims", what, fp);
      }
    }
  }
  OPENSSL_cleanse (out, sizeof out);
  EVP_PKEY_CTX_free (c);
  EVP_PKEY_free (pk);
  if (r == -1)
    crypt_key_wipe (k);
  return r;
}

/* ---- the cache of unlocked keys ---- */

#define KEY_CACHE 16
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct crypt_key *cache[KEY_CACHE];

static const struct crypt_key *
cache_find (const char *fp)
{
  const struct crypt_key *k = NULL;
  pthread_mutex_lock (&cache_lock);
  for (size_t i = 0; i < KEY_CACHE && cache[i]; i++)
    if (strcmp (cache[i]->fingerprint_hex, fp) == 0)
      k = cache[i];
  pthread_mutex_unlock (&cache_lock);
  return k;
}

static const struct crypt_key *
cache_add (const struct crypt_key *k)
{
  const struct crypt_key *have = cache_find (k->fingerprint_hex);
  if (have)
    return have;
  struct crypt_key *c = OPENSSL_secure_malloc (sizeof *c);
  if (c == NULL)
    c = malloc (sizeof *c);
  if (c == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  *c = *k;
  pthread_mutex_lock (&cache_lock);
  size_t i = 0;
  while (i < KEY_CACHE - 1 && cache[i])
    i++;
  if (cache[i]) {
    /* Full: the oldest goes (the caller's borrowed pointers stay valid:
     * keys are never freed). */
    memmove (cache, cache + 1, (KEY_CACHE - 1) * sizeof *cache);
  }
  cache[i] = c;
  pthread_mutex_unlock (&cache_lock);
  return c;
}

/* ---- reading key files ---- */

static int
read_key_file (const char *fp, struct key_file *kf, char *what, size_t wsize)
{
  char name[64];
  CLEANUP_FREE char *text = NULL;
  size_t len;
  int dfd;

  if (valid_fp (fp) == -1)
    return -1;
  snprintf (what, wsize, "key file %s/%s.key", key_dir (), fp);
  snprintf (name, sizeof name, "%s.key", fp);
  if ((dfd = open_key_dir (0)) == -1) {
    if (vms_get_errno () == ENOENT)
      vms_set_error (ENOKEY, "no key %s here: %s does not exist (import the "
                     "key: vmshadow key import)", fp, key_dir ());
    return -1;
  }
  int r = repo_read_file (dfd, name, KEY_FILE_MAX, &text, &len);
  int e = errno;
  close (dfd);
  if (r == -1) {
    if (e == ENOENT)
      vms_set_error (ENOKEY, "no key %s here: no %s (import the key: vmshadow "
                     "key import)", fp, what + 9);
    else
      vms_set_error (e, "cannot read %s: %s", what, repo_errstr (e));
    return -1;
  }
  r = key_file_parse (text, len, what, kf);
  OPENSSL_cleanse (text, len);
  if (r == -1)
    return -1;
  char got[33];
  crypt_hex (kf->fingerprint, CRYPT_FP_LEN, got);
  if (strcmp (got, fp) != 0) {
    key_file_clear (kf);
    vms_set_error (EBADMSG, "%s holds key %s, not the key its name says",
                   what, got);
    return -1;
  }
  return 0;
}

/* Unlock kf with a passphrase asked for fp. */
static int
unlock_file (const struct key_file *kf, const char *fp, const char *what,
             struct crypt_key *k)
{
  char pass[VMS_PASSPHRASE_MAX + 1];
  int r;

  if (!kf->has_sealed) {
    vms_set_error (ENOKEY, "%s holds no passphrase-sealed secret (a recovery "
                   "copy: import it with the master key, vmshadow key import "
                   "--master-key)", what);
    return -1;
  }
  if (get_passphrase (VMS_PASSPHRASE_UNLOCK, fp, pass, sizeof pass) == -1)
    return -1;
  r = open_secret (kf, pass, what, k);
  OPENSSL_cleanse (pass, sizeof pass);
  return r;
}

/* The handoff's text: "<fp>:<secret hex>\n". */
#define HANDOFF_LEN (32 + 1 + 2 * CRYPT_KEY_LEN + 1)

int
vms_key_receive (int fd)
{
  char buf[HANDOFF_LEN + 1];
  size_t got = 0;
  struct crypt_key k = { 0 };
  int r = -1;

  /* All of it (the writer closed its end: end of file follows), and no
   * more than a handoff holds. */
  for (;;) {
    ssize_t n = read (fd, buf + got, sizeof buf - got);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      vms_set_error (errno, "cannot read the key handed over on file "
                     "descriptor %d: %s", fd, strerror (errno));
      goto out;
    }
    if (n == 0)
      break;
    got += (size_t) n;
    if (got == sizeof buf)
      break;
  }
  if (got == HANDOFF_LEN && buf[HANDOFF_LEN - 1] == '\n')
    buf[HANDOFF_LEN - 1] = '\0';
  if (got != HANDOFF_LEN || buf[32] != ':' || buf[HANDOFF_LEN - 1] != '\0' ||
      crypt_unhex (buf + 33, k.master, CRYPT_KEY_LEN) == -1) {
    vms_set_error (EINVAL, "file descriptor %d does not hold a key handed "
                   "over by vmshadow (%zu bytes)", fd, got);
    goto out;
  }
  buf[32] = '\0';
  if (crypt_key_derive (&k) == -1)
    goto out;
  if (strcmp (k.fingerprint_hex, buf) != 0)
    vms_set_error (EKEYREJECTED, "the key handed over on file descriptor %d "
                   "is not key %.32s", fd, buf);
  else if (cache_add (&k) != NULL)
    r = 0;
 out:
  crypt_key_wipe (&k);
  OPENSSL_cleanse (buf, sizeof buf);
  return r;
}

int
key_handoff_fd (const char *fp)
{
  const struct crypt_key *c = cache_find (fp);
  char buf[HANDOFF_LEN + 1];
  int p[2];

  if (c == NULL) {
    vms_set_error (ENOKEY, "key %s is not unlocked in this process", fp);
    return -1;
  }
  /* Both ends close-on-exec: the one program it is for gets the read end
   * by a dup2 of its own (vms_spawn's pass_fd). A pipe holds 4 KiB or
   * more: the write cannot block, and the text lives in the kernel only
   * until the reader takes it or the last read end closes. */
  if (pipe2 (p, O_CLOEXEC) == -1) {
    vms_set_error (errno, "cannot make a pipe: %s", strerror (errno));
    return -1;
  }
  memcpy (buf, c->fingerprint_hex, 32);
  buf[32] = ':';
  crypt_hex (c->master, CRYPT_KEY_LEN, buf + 33);
  buf[HANDOFF_LEN - 1] = '\n';
  ssize_t n = write (p[1], buf, HANDOFF_LEN);
  int saved = errno;
  OPENSSL_cleanse (buf, sizeof buf);
  close (p[1]);
  if (n != HANDOFF_LEN) {
    vms_set_error (n == -1 ? saved : EIO, "cannot write the key into a pipe: %s",
                   n == -1 ? strerror (saved) : "short write");
    close (p[0]);
    return -1;
  }
  return p[0];
}

const struct crypt_key *
key_unlock (const char *fp)
{
  const struct crypt_key *c = cache_find (fp);
  struct key_file kf;
  struct crypt_key k;
  char what[4200];

  if (c)
    return c;
  if (read_key_file (fp, &kf, what, sizeof what) == -1)
    return NULL;
  int r = unlock_file (&kf, fp, what, &k);
  key_file_clear (&kf);
  if (r == -1)
    return NULL;
  c = cache_add (&k);
  crypt_key_wipe (&k);
  return c;
}

/* Seal k under a new passphrase (and wrap it for pem) and write its file. */
static int
store_new (const struct crypt_key *k, const char *pem, int replace)
{
  struct key_file kf = { 0 };
  char pass[VMS_PASSPHRASE_MAX + 1];
  int r = -1;

  memcpy (kf.fingerprint, k->fingerprint, CRYPT_FP_LEN);
  kf.created = (int64_t) time (NULL);
  if (get_passphrase (VMS_PASSPHRASE_NEW, k->fingerprint_hex, pass,
                      sizeof pass) == -1)
    return -1;
  if (seal_secret (k, pass, &kf) == 0 &&
      (pem == NULL || wrap_secret (k, pem, &kf) == 0)) {
    char *text = key_file_format (&kf);
    if (text) {
      r = write_key_file (k->fingerprint_hex, text, replace);
      free (text);
    }
  }
  OPENSSL_cleanse (pass, sizeof pass);
  key_file_clear (&kf);
  return r;
}

const struct crypt_key *
key_new (const char *master_public_key)
{
  struct crypt_key k;
  const struct crypt_key *c = NULL;

  if (RAND_priv_bytes (k.master, CRYPT_KEY_LEN) != 1) {
    vms_set_error (EIO, "cannot get random bytes for a key (OpenSSL)");
    return NULL;
  }
  if (crypt_key_derive (&k) == 0 && store_new (&k, master_public_key, 0) == 0)
    c = cache_add (&k);
  crypt_key_wipe (&k);
  return c;
}

void
key_discard (const char *fp)
{
  char name[64];
  int e = vms_get_errno ();
  char *msg = vms_get_error () ? strdup (vms_get_error ()) : NULL;
  int dfd = open_key_dir (0);

  if (dfd >= 0) {
    snprintf (name, sizeof name, "%s.key", fp);
    unlinkat (dfd, name, 0);
    fsync (dfd);
    close (dfd);
  }
  if (msg) {
    vms_set_error (e, "%s", msg);
    free (msg);
  }
}

char *
key_recovery_copy (const char *fp)
{
  struct key_file kf;
  char what[4200];
  char *text = NULL;

  if (read_key_file (fp, &kf, what, sizeof what) == -1)
    return NULL;
  if (kf.has_recovery) {
    kf.has_sealed = 0;
    text = key_file_format (&kf);
  }
  else
    vms_clear_error ();
  key_file_clear (&kf);
  return text;
}

/* ---- the public calls ---- */

int
vms_key_create (const char *master_public_key, char fingerprint[33])
{
  const struct crypt_key *k = key_new (master_public_key);
  if (k == NULL)
    return -1;
  memcpy (fingerprint, k->fingerprint_hex, 33);
  return 0;
}

int
vms_key_info (const char *fp, struct vms_key_info *info)
{
  struct key_file kf;
  char what[4200];

  memset (info, 0, sizeof *info);
  if (read_key_file (fp, &kf, what, sizeof what) == -1)
    return -1;
  crypt_hex (kf.fingerprint, CRYPT_FP_LEN, info->fingerprint);
  info->created = kf.created;
  info->scrypt_log2_n = kf.log2_n;
  info->scrypt_r = kf.r;
  info->scrypt_p = kf.p;
  info->has_passphrase = kf.has_sealed;
  info->has_recovery = kf.has_recovery;
  if (kf.has_recovery) {
    crypt_hex (kf.recovery_key_sha256, 32, info->recovery_key_sha256);
    snprintf (info->recovery_method, sizeof info->recovery_method, "%s",
              kf.x25519 ? "x25519-hkdf-sha256-aes256gcm" : "rsa-oaep-sha256");
  }
  key_file_clear (&kf);
  return 0;
}

int
vms_key_change_passphrase (const char *fp)
{
  struct key_file kf;
  struct crypt_key k;
  char what[4200], pass[VMS_PASSPHRASE_MAX + 1];
  int r = -1;

  if (read_key_file (fp, &kf, what, sizeof what) == -1)
    return -1;
  if (unlock_file (&kf, fp, what, &k) == 0) {
    if (get_passphrase (VMS_PASSPHRASE_NEW, fp, pass, sizeof pass) == 0) {
      /* The recovery wrap, if any, stays as it is. */
      if (seal_secret (&k, pass, &kf) == 0) {
        kf.created = kf.created ? kf.created : (int64_t) time (NULL);
        char *text = key_file_format (&kf);
        if (text) {
          r = write_key_file (fp, text, 1);
          free (text);
        }
      }
      OPENSSL_cleanse (pass, sizeof pass);
    }
    crypt_key_wipe (&k);
  }
  key_file_clear (&kf);
  return r;
}

/* ---- paper ---- */

#define PAPER_HEADER "vmshadow paper key, version 1"
#define PAPER_LINES 4
#define PAPER_BYTES_PER_LINE 8

/* The checksum of paper line n (1-based) holding 8 bytes: 2 bytes of
 * SHA-256 over the line number and the bytes. */
static void
paper_sum (unsigned n, const uint8_t *b, uint8_t sum[2])
{
  uint8_t in[1 + PAPER_BYTES_PER_LINE], md[32];
  unsigned int mdlen;

  in[0] = (uint8_t) n;
  memcpy (in + 1, b, PAPER_BYTES_PER_LINE);
  EVP_Digest (in, sizeof in, md, &mdlen, EVP_sha256 (), NULL);
  sum[0] = md[0];
  sum[1] = md[1];
}

char *
vms_key_export_paper (const char *fp)
{
  const struct crypt_key *k = key_unlock (fp);
  char *out = NULL;
  size_t size = 1024;

  if (k == NULL || (out = malloc (size)) == NULL) {
    if (k)
      vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  int n = snprintf (out, size, "%s\nfingerprint %s\n", PAPER_HEADER,
                    k->fingerprint_hex);
  for (unsigned l = 0; l < PAPER_LINES; l++) {
    const uint8_t *b = k->master + l * PAPER_BYTES_PER_LINE;
    uint8_t sum[2];
    char h[17];
    paper_sum (l + 1, b, sum);
    crypt_hex (b, PAPER_BYTES_PER_LINE, h);
    n += snprintf (out + n, size - (size_t) n,
                   "%u: %.4s %.4s %.4s %.4s  %02x%02x\n", l + 1, h, h + 4,
                   h + 8, h + 12, sum[0], sum[1]);
    OPENSSL_cleanse (h, sizeof h);
  }
  return out;
}

/* The hex digits of s (spaces dropped, lower-cased), at most max. */
static size_t
squeeze_hex (const char *s, const char *end, char *out, size_t max)
{
  size_t n = 0;
  for (; s < end; s++) {
    if (isspace ((unsigned char) *s))
      continue;
    if (n == max)
      return max + 1;
    out[n++] = (char) tolower ((unsigned char) *s);
  }
  out[n] = '\0';
  return n;
}

int
key_paper_parse (const char *text, uint8_t master[CRYPT_KEY_LEN],
                 uint8_t fingerprint[CRYPT_FP_LEN])
{
  int have_fp = 0;
  unsigned seen = 0;
  const char *p = text;

  while (*p) {
    const char *nl = strchr (p, '\n');
    const char *end = nl ? nl : p + strlen (p);
    const char *s = p;
    char hex[64];
    while (s < end && isspace ((unsigned char) *s))
      s++;
    if (s == end || strncasecmp (s, PAPER_HEADER, strlen (PAPER_HEADER)) == 0)
      ;
    else if (strncasecmp (s, "fingerprint", 11) == 0) {
      if (squeeze_hex (s + 11, end, hex, 32) != 32 ||
          crypt_unhex (hex, fingerprint, CRYPT_FP_LEN) == -1) {
        vms_set_error (EBADMSG, "paper key: the fingerprint line is not 32 hex "
                       "digits");
        return -1;
      }
      have_fp = 1;
    }
    else if (*s >= '1' && *s <= '0' + PAPER_LINES && s + 1 < end &&
             s[1] == ':') {
      unsigned l = (unsigned) (*s - '0');
      uint8_t b[PAPER_BYTES_PER_LINE + 2], sum[2];
      if (squeeze_hex (s + 2, end, hex, 20) != 20 ||
          crypt_unhex (hex, b, sizeof b) == -1) {
        vms_set_error (EBADMSG, "paper key: line %u does not hold 16 hex "
                       "digits and a 4-digit checksum", l);
        return -1;
      }
      paper_sum (l, b, sum);
      if (memcmp (sum, b + PAPER_BYTES_PER_LINE, 2) != 0) {
        OPENSSL_cleanse (b, sizeof b);
        vms_set_error (EBADMSG, "paper key: line %u does not match its "
                       "checksum (a typing error in that line?)", l);
        return -1;
      }
      memcpy (master + (l - 1) * PAPER_BYTES_PER_LINE, b,
              PAPER_BYTES_PER_LINE);
      OPENSSL_cleanse (b, sizeof b);
      seen |= 1u << l;
    }
    else {
      int n = (int) (end - s) < 40 ? (int) (end - s) : 40;
      vms_set_error (EBADMSG, "paper key: a line that is not part of one "
                     "(at \"%.*s\")", n, s);
      return -1;
    }
    p = nl ? nl + 1 : end;
  }
  for (unsigned l = 1; l <= PAPER_LINES; l++)
    if (!(seen & (1u << l))) {
      vms_set_error (EBADMSG, "paper key: line %u is missing", l);
      return -1;
    }
  if (!have_fp) {
    vms_set_error (EBADMSG, "paper key: the fingerprint line is missing");
    return -1;
  }
  return 0;
}

int
vms_key_import_paper (const char *text, char fingerprint[33])
{
  struct crypt_key k;
  uint8_t fp[CRYPT_FP_LEN];
  int r = -1;

  if (key_paper_parse (text, k.master, fp) == -1)
    return -1;
  if (crypt_key_derive (&k) == 0) {
    if (memcmp (fp, k.fingerprint, CRYPT_FP_LEN) != 0) {
      char h[33];
      crypt_hex (fp, CRYPT_FP_LEN, h);
      vms_set_error (EBADMSG, "paper key: the secret has fingerprint %s, the "
                     "paper says %s (every line matched its checksum: lines "
                     "from two different keys?)", k.fingerprint_hex, h);
    }
    else if (store_new (&k, NULL, 0) == 0) {
      memcpy (fingerprint, k.fingerprint_hex, 33);
      r = cache_add (&k) ? 0 : -1;
    }
  }
  crypt_key_wipe (&k);
  return r;
}

int
vms_key_import (const char *text, size_t len, const char *master_private_key,
                char fingerprint[33])
{
  struct key_file kf;
  struct crypt_key k;
  int r = -1;

  if (key_file_parse (text, len, "the key file to import", &kf) == -1)
    return -1;
  crypt_hex (kf.fingerprint, CRYPT_FP_LEN, fingerprint);
  if (master_private_key) {
    if (unwrap_secret (&kf, master_private_key, "the key file to import",
                       &k) == 0) {
      r = store_new (&k, NULL, 0);
      if (r == 0 && cache_add (&k) == NULL)
        r = -1;
      crypt_key_wipe (&k);
    }
  }
  else if (!kf.has_sealed)
    vms_set_error (EINVAL, "the key file to import holds only a recovery wrap: "
                   "give the master key's private key (--master-key)");
  else {
    char *out = key_file_format (&kf);
    if (out) {
      r = write_key_file (fingerprint, out, 0);
      free (out);
    }
  }
  key_file_clear (&kf);
  return r;
}

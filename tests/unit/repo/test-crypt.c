/* Unit tests of the encryption of version 2 repositories (issue 13, R28;
 * lib/repo/crypt.c, storage-crypt.c): the key hierarchy against values
 * computed independently from the spec (RFC 5869 HKDF and HMAC-SHA-256 in
 * Python, docs/repository-format-v2.md "Encryption"), the envelope (every
 * altered byte, a wrong identity, a cut are refused, and nothing is
 * returned), and the sealing layer: it keeps the storage contract
 * (storage-contract.c) over the local backend, stores no plaintext, and
 * an object moved to another name does not open; and scrypt (libsodium's
 * since issue 13's profile) gives RFC 7914's vectors and, for key files'
 * parameters, exactly what OpenSSL's gave, with which the key files
 * already on hosts were made.
 *
 * Usage: test-crypt; output is TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "crypt.h"
#include "storage-contract.h"

static struct crypt_key test_key;
static char workdir[64];

static void
key_init (void)
{
  for (int i = 0; i < CRYPT_KEY_LEN; i++)
    test_key.master[i] = (uint8_t) i;
  assert_int_equal (crypt_key_derive (&test_key), 0);
}

/* The fingerprint and a chunk id of the master secret 00 01 .. 1f, as
 * Python's hmac/hashlib compute them from the spec (HKDF-SHA-256 without
 * salt, info "vmshadow v2 K_id"). */
static void
keys_derive_as_the_spec_says (void **state)
{
  uint8_t id[32];
  char h[65];

  key_init ();
  assert_string_equal (test_key.fingerprint_hex,
                       "76d5cf81feb164c5819dc8cee6d6448a");
  assert_int_equal (crypt_mac (test_key.k_id, "abc", 3, id), 0);
  crypt_hex (id, 32, h);
  assert_string_equal (h, "198f80401634a98f1b84da5a13a2021d279f46cbd29e226eaff8ff51e0cc8b23");
  /* The three keys differ. */
  assert_memory_not_equal (test_key.k_enc, test_key.k_id, CRYPT_KEY_LEN);
  assert_memory_not_equal (test_key.k_id, test_key.k_name, CRYPT_KEY_LEN);
}

static void
an_envelope_opens_only_whole_and_for_its_identity (void **state)
{
  char msg[1000], aad[256], other[256];
  uint8_t env[sizeof msg + ENVELOPE_OVERHEAD], out[sizeof msg];
  size_t n = sizeof msg;

  key_init ();
  for (size_t i = 0; i < n; i++)
    msg[i] = (char) ('a' + i % 26);
  size_t al = crypt_aad (aad, sizeof aad, "repo-1", "object", "backups/b/manifest");
  size_t ol = crypt_aad (other, sizeof other, "repo-1", "object", "backups/c/manifest");
  assert_true (al > 0 && ol > 0);
  assert_int_equal (crypt_seal (test_key.k_enc, aad, al, msg, n, env), 0);
  assert_memory_equal (env, ENVELOPE_MAGIC, 4);
  assert_null (memmem (env, sizeof env, "abcdefghij", 10));
  assert_int_equal (crypt_open (test_key.k_enc, aad, al, env, sizeof env, out), 0);
  assert_memory_equal (out, msg, n);

  /* Another name, another repository, another kind. */
  assert_int_equal (crypt_open (test_key.k_enc, other, ol, env, sizeof env, out), -1);
  assert_int_equal (errno, EKEYREJECTED);
  ol = crypt_aad (other, sizeof other, "repo-2", "object", "backups/b/manifest");
  assert_int_equal (crypt_open (test_key.k_enc, other, ol, env, sizeof env, out), -1);
  ol = crypt_aad (other, sizeof other, "repo-1", "blob", "backups/b/manifest");
  assert_int_equal (crypt_open (test_key.k_enc, other, ol, env, sizeof env, out), -1);
  /* Another key. */
  assert_int_equal (crypt_open (test_key.k_id, aad, al, env, sizeof env, out), -1);
  /* Every byte altered, one at a time (XOR, so it always changes): never
   * opens, and what was written to out is wiped. */
  for (size_t i = 0; i < sizeof env; i++) {
    env[i] ^= 0x01;
    memset (out, 'x', sizeof out);
    assert_int_equal (crypt_open (test_key.k_enc, aad, al, env, sizeof env, out), -1);
    assert_int_equal (errno, EKEYREJECTED);
    assert_null (memmem (out, sizeof out, "abcdefghij", 10));
    env[i] ^= 0x01;
  }
  /* Cut short, at every length. */
  for (size_t len = 0; len < sizeof env; len += 7)
    assert_int_equal (crypt_open (test_key.k_enc, aad, al, env, len, out), -1);
  assert_non_null (crypt_envelope_problem (env, 10));
  assert_null (crypt_envelope_problem (env, sizeof env));
  /* Sealing twice never gives the same bytes (random nonces). */
  uint8_t env2[sizeof env];
  assert_int_equal (crypt_seal (test_key.k_enc, aad, al, msg, n, env2), 0);
  assert_memory_not_equal (env, env2, sizeof env);
  /* In place: the plaintext already where the ciphertext goes. */
  memcpy (env2 + ENVELOPE_HEADER_LEN, msg, n);
  assert_int_equal (crypt_seal (test_key.k_enc, aad, al, env2 + ENVELOPE_HEADER_LEN,
                                n, env2), 0);
  assert_int_equal (crypt_open (test_key.k_enc, aad, al, env2, sizeof env2, out), 0);
  assert_memory_equal (out, msg, n);
}

static void
identities_never_run_together (void **state)
{
  char a[256], b[256];
  /* "x" + "y/z" and "x/y" + "z" must not give the same bytes. */
  size_t la = crypt_aad (a, sizeof a, "r", "object", "ab");
  size_t lb = crypt_aad (b, sizeof b, "r", "objecta", "b");
  assert_true (la != lb || memcmp (a, b, la) != 0);
}

/* ---- the sealing layer ---- */

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path) == -1 && errno != ENOENT ? -1 : 0;
}

static struct storage *
sealed_open_fresh (void)
{
  char repo[128];

  key_init ();
  snprintf (workdir, sizeof workdir, "crypt-test-XXXXXX");
  if (mkdtemp (workdir) == NULL)
    return NULL;
  snprintf (repo, sizeof repo, "%s/repo", workdir);
  if (mkdir (repo, 0700) == -1)
    return NULL;
  int fd = open (repo, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct storage *s = fd >= 0 ? storage_local_open (fd, repo, 1) : NULL;
  if (fd >= 0)
    close (fd);
  return s ? storage_crypt_wrap (s, &test_key, "0123456789abcdef0123456789abcdef")
    : NULL;
}

static void
sealed_destroy (struct storage *s)
{
  storage_close (s);
  nftw (workdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
file_of (const char *name, size_t *len)
{
  char p[256];
  snprintf (p, sizeof p, "%s/repo/%s", workdir, name);
  FILE *f = fopen (p, "rb");
  if (f == NULL)
    return NULL;
  char *b = malloc (1 << 16);
  *len = fread (b, 1, 1 << 16, f);
  fclose (f);
  return b;
}

static void
sealed_objects_hold_no_plaintext_and_stay_where_they_were_put (void **state)
{
  struct storage *s = sealed_open_fresh ();
  const char *text = "the manifest of backup b: disk web01.qcow2";
  size_t len;
  void *buf;

  assert_non_null (s);
  assert_int_equal (storage_put (s, "backups/b/manifest", text, strlen (text), 0), 0);
  assert_int_equal (storage_put (s, "config", "{}", 2, 0), 0);
  char *raw = file_of ("backups/b/manifest", &len);
  assert_non_null (raw);
  assert_int_equal (len, strlen (text) + ENVELOPE_OVERHEAD);
  assert_null (memmem (raw, len, "web01", 5));
  free (raw);
  raw = file_of ("config", &len);        /* never sealed */
  assert_int_equal (len, 2);
  free (raw);

  /* Moved to another name: refused, named EKEYREJECTED. */
  struct storage *inner = storage_crypt_inner (s);
  assert_int_equal (storage_get_all (inner, "backups/b/manifest", 1 << 20, &buf, &len), 0);
  assert_int_equal (storage_put (inner, "backups/c/manifest", buf, len, 0), 0);
  free (buf);
  assert_int_equal (storage_get_all (s, "backups/c/manifest", 1 << 20, &buf, &len), -1);
  assert_int_equal (errno, EKEYREJECTED);

  /* Without the key: listed, not read, not written. */
  struct storage *nokey = storage_crypt_wrap (storage_crypt_inner (s), NULL,
                                              "0123456789abcdef0123456789abcdef");
  assert_int_equal (storage_get_all (nokey, "backups/b/manifest", 1 << 20, &buf, &len), -1);
  assert_int_equal (errno, ENOKEY);
  assert_int_equal (storage_put (nokey, "backups/d/manifest", "x", 1, 0), -1);
  assert_int_equal (errno, ENOKEY);
  free (nokey);                 /* not closed: it shares s's backend */
  sealed_destroy (s);
}

/* RFC 7914 section 12, and OpenSSL's EVP_PBE_scrypt (which made every key
 * file before issue 13's profile) for the parameters key files use: the
 * same bytes, so those files open as they did (R28). */
static void
scrypt_is_rfc_7914_and_opens_existing_key_files (void **state)
{
  uint8_t out[64], ref[64];
  char h[129];

  assert_int_equal (crypt_scrypt ("password", 8, (const uint8_t *) "NaCl", 4,
                                  10, 8, 16, out, 64), 0);
  crypt_hex (out, 64, h);
  assert_string_equal (h, "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830"
                       "e77376634b3731622eaf30d92e22a3886ff109279d9830dac727"
                       "afb94a83ee6d8360cbdfa2cc0640");
  assert_int_equal (crypt_scrypt ("pleaseletmein", 13,
                                  (const uint8_t *) "SodiumChloride", 14, 14,
                                  8, 1, out, 64), 0);
  crypt_hex (out, 64, h);
  assert_string_equal (h, "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3e"
                       "a9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e"
                       "85dc0d651e40dfcf017b45575887");

  /* A key file's: a 32-byte salt, r = 8, p = 1; N = 2^14 (tests) and 2^17
   * (production); passphrases with bytes above 127. */
  const char *pass[] = { "bench-passphrase-13", "pässphrase wïth ütf-8 !" };
  uint8_t salt[32];
  for (int i = 0; i < 32; i++)
    salt[i] = (uint8_t) (i * 37 + 11);
  for (int i = 0; i < 2; i++) {
    unsigned log2_n = i == 0 ? 14 : 17;
    uint64_t n = (uint64_t) 1 << log2_n;
    assert_int_equal (crypt_scrypt (pass[i], strlen (pass[i]), salt, 32,
                                    log2_n, 8, 1, out, 32), 0);
    assert_int_equal (EVP_PBE_scrypt (pass[i], strlen (pass[i]), salt, 32, n,
                                      8, 1, 128 * 8 * (n + 3) + (1 << 20),
                                      ref, 32), 1);
    assert_memory_equal (out, ref, 32);
  }
  /* Parameters no key file may have are refused, not run. */
  assert_int_equal (crypt_scrypt ("x", 1, salt, 32, 0, 8, 1, out, 32), -1);
  assert_int_equal (crypt_scrypt ("x", 1, salt, 32, 14, 0, 1, out, 32), -1);
}

int
main (int argc, char **argv)
{
  const struct CMUnitTest own[] = {
    cmocka_unit_test (keys_derive_as_the_spec_says),
    cmocka_unit_test (an_envelope_opens_only_whole_and_for_its_identity),
    cmocka_unit_test (identities_never_run_together),
    cmocka_unit_test (sealed_objects_hold_no_plaintext_and_stay_where_they_were_put),
    cmocka_unit_test (scrypt_is_rfc_7914_and_opens_existing_key_files),
  };

  storage_contract.open = sealed_open_fresh;
  storage_contract.destroy = sealed_destroy;
  return storage_contract_run ("crypt", own, sizeof own / sizeof own[0],
                               argc, argv);
}

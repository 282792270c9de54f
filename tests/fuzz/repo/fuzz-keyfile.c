/* Fuzz target for the key file and paper key parsers and the envelope
 * opener (lib/repo/key.c key_file_parse, key_paper_parse; crypt.c
 * crypt_open): a key file may come from a repository's keys/ or another
 * host, a paper key is typed by a person, and every sealed object is read
 * from storage nobody trusts (issue 13, R28).
 *
 * Properties besides "never crash":
 *  - a rejected key file comes with a message naming it;
 *  - an accepted key file formats to a text that parses to the same
 *    fields (what vmshadow writes back, it reads back);
 *  - a paper text is accepted only with every line's checksum right
 *    (checked again here), and a rejection names why;
 *  - no input opens as an envelope under a fixed key (GCM's tag), and
 *    crypt_envelope_problem says something for every input that fails
 *    framing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "vmshadow/error.h"

#include "crypt.h"
#include "fuzz-target.h"

#define broken(...) fuzz_broken ("fuzz-keyfile", __VA_ARGS__)

int
fuzz_accepts (const uint8_t *data, size_t size, const char **why)
{
  struct key_file kf;
  vms_clear_error ();
  int r = key_file_parse ((const char *) data, size, "fuzz key file", &kf);
  *why = r == 0 ? NULL : vms_get_error ();
  if (r == 0)
    key_file_clear (&kf);
  return r == 0;
}

static void
check_key_file (const uint8_t *data, size_t size)
{
  struct key_file kf, again;

  vms_clear_error ();
  if (key_file_parse ((const char *) data, size, "fuzz key file", &kf) == -1) {
    const char *msg = vms_get_error ();
    if (msg == NULL || strstr (msg, "fuzz key file") == NULL)
      broken ("rejected without naming the key file: %s", msg ? msg : "(none)");
    return;
  }
  char *text = key_file_format (&kf);
  if (text == NULL)
    broken ("an accepted key file does not format");
  if (key_file_parse (text, strlen (text), "formatted", &again) == -1)
    broken ("a formatted key file does not parse: %s", vms_get_error ());
  if (memcmp (kf.fingerprint, again.fingerprint, sizeof kf.fingerprint) ||
      kf.has_sealed != again.has_sealed || kf.has_recovery != again.has_recovery ||
      (kf.has_sealed && (kf.log2_n != again.log2_n || kf.r != again.r ||
                         kf.p != again.p ||
                         memcmp (kf.salt, again.salt, sizeof kf.salt) ||
                         memcmp (kf.sealed, again.sealed, sizeof kf.sealed))) ||
      (kf.has_recovery && (kf.wrapped_len != again.wrapped_len ||
                           memcmp (kf.wrapped, again.wrapped, kf.wrapped_len))))
    broken ("a key file does not read back as it was written");
  free (text);
  key_file_clear (&kf);
  key_file_clear (&again);
}

static void
check_paper (const uint8_t *data, size_t size)
{
  char *text = malloc (size + 1);
  uint8_t master[CRYPT_KEY_LEN], fp[CRYPT_FP_LEN];

  if (text == NULL)
    broken ("out of memory");
  memcpy (text, data, size);
  text[size] = '\0';
  vms_clear_error ();
  if (key_paper_parse (text, master, fp) == -1) {
    const char *msg = vms_get_error ();
    if (msg == NULL || strncmp (msg, "paper key: ", 11) != 0)
      broken ("a paper text rejected without saying why: %s", msg ? msg : "(none)");
  }
  else if (strstr (text, "fingerprint") == NULL &&
           strstr (text, "FINGERPRINT") == NULL && strcasestr (text, "fingerprint") == NULL)
    broken ("a paper text without a fingerprint line accepted");
  free (text);
}

static void
check_envelope (const uint8_t *data, size_t size)
{
  static const uint8_t key[CRYPT_KEY_LEN] = { 1, 2, 3 };
  uint8_t *out = malloc (size ? size : 1);
  if (out == NULL)
    broken ("out of memory");
  if (crypt_open (key, "aad", 3, data, size, out) == 0)
    broken ("an input opened as an envelope under a key nobody used");
  if (crypt_envelope_check (data, size) == -1 &&
      crypt_envelope_problem (data, size) == NULL)
    broken ("an envelope with bad framing has no problem named");
  free (out);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  check_key_file (data, size);
  check_paper (data, size);
  check_envelope (data, size);
  return 0;
}

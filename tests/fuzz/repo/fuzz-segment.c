/* Fuzz target for index segment parsing (lib/repo/pack.c segment_check):
 * segments are read from a version 2 repository and tell every read where
 * a chunk is.
 *
 * Properties besides "never crash":
 *  - a rejection always comes with a message naming the segment;
 *  - an accepted segment is canonical: building a segment from its
 *    entries gives back exactly the input bytes (sorted, reserved bytes
 *    zero, nothing after the checksum);
 *  - every accepted entry is in range (form, lengths, offset).
 * Each input is also tried with its last 32 bytes replaced by the right
 * SHA-256, so that the fuzzer reaches what is checked after the checksum.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#include "repo-internal.h"
#include "fuzz-target.h"

#define broken(...) fuzz_broken ("fuzz-segment", __VA_ARGS__)

int
fuzz_accepts (const uint8_t *data, size_t size, const char **why)
{
  vms_clear_error ();
  int64_t n = segment_check (data, size, "fuzz segment");
  *why = n >= 0 ? NULL : vms_get_error ();
  return n >= 0;
}

static void check (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  check (data, size);
  if (size >= SEGMENT_HEADER_SIZE + VMS_DIGEST_LEN) {
    uint8_t *fixed = malloc (size);
    unsigned int n;
    if (fixed == NULL)
      broken ("out of memory");
    memcpy (fixed, data, size);
    if (!EVP_Digest (fixed, size - VMS_DIGEST_LEN,
                     fixed + size - VMS_DIGEST_LEN, &n, EVP_sha256 (), NULL))
      broken ("SHA-256 failed");
    check (fixed, size);
    free (fixed);
  }
  return 0;
}

static uint32_t
le32 (const uint8_t *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
    (uint32_t) p[3] << 24;
}

static void
check (const uint8_t *data, size_t size)
{
  vms_clear_error ();
  int64_t n = segment_check (data, size, "fuzz segment");
  if (n < 0) {
    const char *msg = vms_get_error ();
    if (msg == NULL || strstr (msg, "fuzz segment") == NULL)
      broken ("rejected without a message naming the segment: %s",
              msg ? msg : "(none)");
    return;
  }
  size_t bytes = (size_t) n * SEGMENT_ENTRY_SIZE;
  uint8_t *entries = malloc (bytes ? bytes : 1);
  if (entries == NULL)
    broken ("out of memory");
  memcpy (entries, data + SEGMENT_HEADER_SIZE, bytes);
  for (int64_t i = 0; i < n; i++) {
    const uint8_t *e = entries + i * SEGMENT_ENTRY_SIZE;
    uint32_t slen = le32 (e + 52), plen = le32 (e + 56);
    if (e[60] > 1 || plen == 0 || plen > VMS_CHUNK_SIZE || slen == 0 ||
        le32 (e + 48) < PACK_HEADER_SIZE || (e[60] == 0 && slen != plen) ||
        (e[60] == 1 && slen >= plen))
      broken ("entry %lld accepted out of range", (long long) i);
  }
  void *out;
  size_t len;
  if (segment_build (entries, (size_t) n, &out, &len) == -1)
    broken ("an accepted segment does not build: %s", vms_get_error ());
  if (len != size || memcmp (out, data, size) != 0)
    broken ("an accepted segment is not canonical (%zu bytes in, %zu out)",
            size, len);
  free (out);
  free (entries);
}

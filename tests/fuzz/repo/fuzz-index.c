/* Fuzz target for index parsing (lib/repo/index.c index_parse): index files
 * are read from the repository and drive every read of a stored file.
 *
 * Properties besides "never crash":
 *  - a rejection always comes with a message naming the index;
 *  - an accepted index is canonical: serialising it gives back exactly the
 *    input bytes (so no two files mean the same index, and nothing after
 *    the checksum is ignored);
 *  - its chunks cover exactly its size.
 * Random bytes almost never end in a valid checksum, so each input is also
 * tried with its last 32 bytes replaced by the right one: that lets the
 * fuzzer reach everything after the checksum test.
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

#define broken(...) fuzz_broken ("fuzz-index", __VA_ARGS__)

int
fuzz_accepts (const uint8_t *data, size_t size, const char **why)
{
  vms_clear_error ();
  vms_index *idx = index_parse (data, size, "fuzz index");
  *why = idx ? NULL : vms_get_error ();
  vms_index_free (idx);
  return idx != NULL;
}

static void check (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  check (data, size);
  if (size >= INDEX_HEADER_SIZE + VMS_DIGEST_LEN) {
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

static void
check (const uint8_t *data, size_t size)
{
  vms_clear_error ();
  vms_index *idx = index_parse (data, size, "fuzz index");
  if (idx == NULL) {
    const char *msg = vms_get_error ();
    if (msg == NULL || strstr (msg, "fuzz index") == NULL)
      broken ("rejected without a message naming the index: %s",
              msg ? msg : "(none)");
    return;
  }
  uint64_t total = 0, n = vms_index_chunk_count (idx);
  for (uint64_t c = 0; c < n; c++) {
    size_t len = vms_index_chunk_len (idx, c);
    if (len == 0 || len > VMS_CHUNK_SIZE || vms_index_get (idx, c) == NULL)
      broken ("chunk %llu has length %zu", (unsigned long long) c, len);
    total += len;
  }
  if (total != vms_index_size (idx) || vms_index_get (idx, n) != NULL)
    broken ("chunks cover %llu bytes of %llu", (unsigned long long) total,
            (unsigned long long) vms_index_size (idx));
  void *buf;
  size_t len;
  if (index_serialize (idx, &buf, &len) == -1)
    broken ("an accepted index does not serialise: %s", vms_get_error ());
  if (len != size || memcmp (buf, data, size) != 0)
    broken ("an accepted index is not canonical (%zu bytes in, %zu out)",
            size, len);
  free (buf);
  vms_index_free (idx);
}

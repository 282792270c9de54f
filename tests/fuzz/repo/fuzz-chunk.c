/* Fuzz target for the chunk file parser (lib/repo/chunk-store.c
 * chunk_store_parse_header, then chunk_store_unpack as a read does): a
 * zstd chunk file is read from the repository, and its header says how
 * much to read and to decompress into a chunk-sized buffer. The input is
 * the whole chunk file.
 *
 * Properties besides "never crash":
 *  - a rejection always comes with a message naming the chunk, as corrupt;
 *  - an accepted header describes exactly this file (header plus payload),
 *    with a length from 1 to VMS_CHUNK_SIZE and a payload smaller than it,
 *    and is accepted again when its length is expected, refused when
 *    another is;
 *  - an accepted file decompresses to exactly its length or is rejected.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#include "repo-internal.h"
#include "fuzz-target.h"

static const struct vms_digest fuzz_digest = { .b = { 0xfe, 0xed } };

#define broken(...) fuzz_broken ("fuzz-chunk", __VA_ARGS__)

static void
check_rejection (void)
{
  const char *msg = vms_get_error ();
  if (msg == NULL || strstr (msg, "chunk feed") == NULL ||
      strstr (msg, "corrupt") == NULL || vms_get_errno () != EBADMSG)
    broken ("rejected without a message naming the chunk as corrupt: %s",
            msg ? msg : "(none)");
}

/* The file's header as read_form reads it: zeros past a short file. */
static void
header_of (const uint8_t *data, size_t size, uint8_t h[CHUNK_HEADER_SIZE])
{
  memset (h, 0, CHUNK_HEADER_SIZE);
  if (size >= CHUNK_HEADER_SIZE)
    memcpy (h, data, CHUNK_HEADER_SIZE);
}

/* Header bytes 8..11: the uncompressed length. */
static size_t
header_length (const uint8_t h[CHUNK_HEADER_SIZE])
{
  return (size_t) h[8] | (size_t) h[9] << 8 | (size_t) h[10] << 16 |
    (size_t) h[11] << 24;
}

int
fuzz_accepts (const uint8_t *data, size_t size, const char **why)
{
  uint8_t h[CHUNK_HEADER_SIZE];
  uint32_t payload;
  static uint8_t out[VMS_CHUNK_SIZE];

  header_of (data, size, h);
  vms_clear_error ();
  if (chunk_store_parse_header (h, size, 0, 0, &fuzz_digest, &payload) == -1 ||
      chunk_store_unpack (data + CHUNK_HEADER_SIZE, payload, out,
                          header_length (h), &fuzz_digest) == -1) {
    *why = vms_get_error ();
    return 0;
  }
  *why = NULL;
  return 1;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t h[CHUNK_HEADER_SIZE];
  uint32_t payload = 0;
  static uint8_t out[VMS_CHUNK_SIZE];

  header_of (data, size, h);
  vms_clear_error ();
  if (chunk_store_parse_header (h, size, 0, 0, &fuzz_digest, &payload) == -1) {
    check_rejection ();
    return 0;
  }
  size_t length = header_length (h);
  if (length == 0 || length > VMS_CHUNK_SIZE || payload == 0 ||
      payload >= length || (uint64_t) payload + CHUNK_HEADER_SIZE != size ||
      memcmp (data, CHUNK_MAGIC, 4) != 0)
    broken ("accepted a header that does not describe the file: length %zu, "
            "payload %u, file %zu bytes", length, payload, size);
  uint32_t again;
  if (chunk_store_parse_header (h, size, 1, length, &fuzz_digest, &again) == -1
      || again != payload)
    broken ("refused with its own length expected: %s", vms_get_error ());
  vms_clear_error ();
  if (chunk_store_parse_header (h, size, 1, length - 1, &fuzz_digest,
                                &again) == 0)
    broken ("accepted with another length (%zu) expected", length - 1);
  check_rejection ();

  vms_clear_error ();
  memset (out, 0xa5, length);
  if (chunk_store_unpack (data + CHUNK_HEADER_SIZE, payload, out, length,
                          &fuzz_digest) == -1)
    check_rejection ();
  return 0;
}

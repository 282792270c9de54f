/* tests/vm/nbd-probe.c — look into an NBD export the way vmshadow will:
 * with libnbd, over a Unix socket.  The vm suite uses it to check what a
 * libvirt pull-mode backup job exports (issue 3).
 *
 *   nbd-probe SOCKET EXPORT size
 *       print the export's size in bytes
 *   nbd-probe SOCKET EXPORT read OFFSET LENGTH
 *       write those bytes to stdout (pipe into sha256sum to compare)
 *   nbd-probe SOCKET EXPORT pattern SEED OFFSET LENGTH
 *       check that the range holds lab/guest/bin/vmslab-pattern's pattern;
 *       exit 1 naming the first sector that does not
 *   nbd-probe SOCKET EXPORT zero OFFSET LENGTH
 *       check that the range reads as zeros
 *   nbd-probe SOCKET EXPORT extents CONTEXT
 *       print "OFFSET LENGTH FLAGS" for the whole export from block status
 *       in CONTEXT (e.g. base:allocation), adjacent equal extents merged
 *   nbd-probe SOCKET EXPORT dirty CONTEXT
 *       print "OFFSET LENGTH" of the extents whose flag bit 0 is set (for
 *       qemu:dirty-bitmap:* that is "dirty"), merged
 *
 * Exit status: 0 success, 1 check failed or NBD error, 2 usage.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#define SECTOR 512
#define CHUNK (4u * 1024 * 1024)      /* bytes per pread */
#define STATUS_SPAN (1ull << 30)      /* bytes per block-status request */

static const char *progname = "nbd-probe";

_Noreturn static void
usage (void)
{
  fprintf (stderr,
           "usage: %s SOCKET EXPORT size\n"
           "       %s SOCKET EXPORT read OFFSET LENGTH\n"
           "       %s SOCKET EXPORT pattern SEED OFFSET LENGTH\n"
           "       %s SOCKET EXPORT zero OFFSET LENGTH\n"
           "       %s SOCKET EXPORT extents CONTEXT\n"
           "       %s SOCKET EXPORT dirty CONTEXT\n",
           progname, progname, progname, progname, progname, progname);
  exit (2);
}

static uint64_t
parse_u64 (const char *what, const char *s)
{
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull (s, &end, 0);
  if (errno || end == s || *end != '\0' || s[0] == '-') {
    fprintf (stderr, "%s: %s '%s' is not a number\n", progname, what, s);
    exit (2);
  }
  return v;
}

_Noreturn static void
nbd_die (const char *what)
{
  fprintf (stderr, "%s: %s: %s\n", progname, what, nbd_get_error ());
  exit (1);
}

/* Check that OFFSET + LENGTH stays inside an export of SIZE bytes. */
static void
check_range (uint64_t offset, uint64_t length, uint64_t size)
{
  if (offset > size || length > size - offset) {
    fprintf (stderr, "%s: range %" PRIu64 "+%" PRIu64
             " is beyond the export's end (%" PRIu64 " bytes)\n",
             progname, offset, length, size);
    exit (1);
  }
}

/* Fill SECTOR bytes at BUF with the pattern of sector number S. */
static void
pattern_sector (char *buf, const char *seed, uint64_t s)
{
  int n = snprintf (buf, SECTOR, "vmslab-pattern seed=%s sector=%" PRIu64,
                    seed, s);
  if (n < 0 || n > SECTOR - 1)
    n = SECTOR - 1;
  memset (buf + n, ' ', SECTOR - 1 - (size_t) n);
  buf[SECTOR - 1] = '\n';
}

/* Read [offset, offset+length) in chunks; call CHECK on each chunk. */
typedef int (*chunk_fn) (const char *buf, uint64_t offset, size_t len,
                         void *opaque);

static void
read_range (struct nbd_handle *nbd, uint64_t offset, uint64_t length,
            chunk_fn fn, void *opaque)
{
  char *buf = malloc (CHUNK);
  if (!buf) {
    perror ("malloc");
    exit (1);
  }
  while (length > 0) {
    size_t n = length < CHUNK ? (size_t) length : CHUNK;
    if (nbd_pread (nbd, buf, n, offset, 0) == -1)
      nbd_die ("pread");
    if (fn (buf, offset, n, opaque) == -1)
      exit (1);
    offset += n;
    length -= n;
  }
  free (buf);
}

static int
write_chunk (const char *buf, uint64_t offset, size_t len, void *opaque)
{
  (void) offset; (void) opaque;
  if (fwrite (buf, 1, len, stdout) != len) {
    perror ("write to stdout");
    return -1;
  }
  return 0;
}

static int
zero_chunk (const char *buf, uint64_t offset, size_t len, void *opaque)
{
  (void) opaque;
  for (size_t i = 0; i < len; i++)
    if (buf[i] != 0) {
      fprintf (stderr, "%s: byte %" PRIu64 " is not zero\n",
               progname, offset + i);
      return -1;
    }
  return 0;
}

static int
pattern_chunk (const char *buf, uint64_t offset, size_t len, void *opaque)
{
  const char *seed = opaque;
  char want[SECTOR];

  for (size_t i = 0; i + SECTOR <= len; i += SECTOR) {
    uint64_t s = (offset + i) / SECTOR;
    pattern_sector (want, seed, s);
    if (memcmp (buf + i, want, SECTOR) != 0) {
      char got[64];
      size_t k;
      for (k = 0; k < sizeof got - 1 && buf[i + k] >= ' ' && buf[i + k] < 127; k++)
        got[k] = buf[i + k];
      got[k] = '\0';
      fprintf (stderr, "%s: sector %" PRIu64 " (byte %" PRIu64
               ") does not hold pattern seed=%s; it starts with \"%s\"\n",
               progname, s, offset + i, seed, got);
      return -1;
    }
  }
  return 0;
}

/* Block status: merge extents of one context as they arrive. */
struct extents {
  const char *context;
  bool dirty_only;
  uint64_t next;        /* where the server's answers have reached */
  bool have;            /* a pending merged extent */
  uint64_t start, len;
  uint32_t flags;
};

static void
extents_flush (struct extents *x)
{
  if (!x->have)
    return;
  if (x->dirty_only) {
    if (x->flags & 1)
      printf ("%" PRIu64 " %" PRIu64 "\n", x->start, x->len);
  }
  else
    printf ("%" PRIu64 " %" PRIu64 " %" PRIu32 "\n", x->start, x->len,
            x->flags);
  x->have = false;
}

static void
extents_add (struct extents *x, uint64_t start, uint64_t len, uint32_t flags)
{
  if (x->dirty_only)
    flags &= 1;
  if (x->have && x->flags == flags && x->start + x->len == start) {
    x->len += len;
    return;
  }
  extents_flush (x);
  x->have = true;
  x->start = start;
  x->len = len;
  x->flags = flags;
}

static int
extent_cb (void *opaque, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct extents *x = opaque;
  (void) error;

  if (strcmp (metacontext, x->context) != 0)
    return 0;
  for (size_t i = 0; i + 1 < nr_entries; i += 2) {
    extents_add (x, offset, entries[i], entries[i + 1]);
    offset += entries[i];
  }
  x->next = offset;
  return 0;
}

static void
block_status (struct nbd_handle *nbd, const char *context, uint64_t size,
              bool dirty_only)
{
  struct extents x = { .context = context, .dirty_only = dirty_only };
  uint64_t offset = 0;

  switch (nbd_can_meta_context (nbd, context)) {
  case -1: nbd_die ("can_meta_context");
  case 0:
    fprintf (stderr, "%s: the server does not offer block status context %s\n",
             progname, context);
    exit (1);
  default: break;
  }

  while (offset < size) {
    uint64_t count = size - offset < STATUS_SPAN ? size - offset : STATUS_SPAN;
    x.next = offset;
    if (nbd_block_status (nbd, count, offset,
                          (nbd_extent_callback) { .callback = extent_cb,
                                                  .user_data = &x },
                          0) == -1)
      nbd_die ("block_status");
    if (x.next <= offset) {
      fprintf (stderr, "%s: block status for %s made no progress at %" PRIu64
               "\n", progname, context, offset);
      exit (1);
    }
    offset = x.next < size ? x.next : size;
  }
  extents_flush (&x);
}

int
main (int argc, char *argv[])
{
  struct nbd_handle *nbd;
  const char *sock, *export, *cmd;
  int64_t ssize;
  uint64_t size;

  if (argc < 4)
    usage ();
  sock = argv[1];
  export = argv[2];
  cmd = argv[3];

  nbd = nbd_create ();
  if (nbd == NULL)
    nbd_die ("nbd_create");
  if (nbd_set_export_name (nbd, export) == -1)
    nbd_die ("set_export_name");
  if ((strcmp (cmd, "extents") == 0 || strcmp (cmd, "dirty") == 0) && argc == 5)
    if (nbd_add_meta_context (nbd, argv[4]) == -1)
      nbd_die ("add_meta_context");
  if (nbd_connect_unix (nbd, sock) == -1)
    nbd_die (sock);
  ssize = nbd_get_size (nbd);
  if (ssize == -1)
    nbd_die ("get_size");
  size = (uint64_t) ssize;

  if (strcmp (cmd, "size") == 0 && argc == 4)
    printf ("%" PRIu64 "\n", size);
  else if (strcmp (cmd, "read") == 0 && argc == 6) {
    uint64_t off = parse_u64 ("OFFSET", argv[4]);
    uint64_t len = parse_u64 ("LENGTH", argv[5]);
    check_range (off, len, size);
    read_range (nbd, off, len, write_chunk, NULL);
  }
  else if (strcmp (cmd, "zero") == 0 && argc == 6) {
    uint64_t off = parse_u64 ("OFFSET", argv[4]);
    uint64_t len = parse_u64 ("LENGTH", argv[5]);
    check_range (off, len, size);
    read_range (nbd, off, len, zero_chunk, NULL);
  }
  else if (strcmp (cmd, "pattern") == 0 && argc == 7) {
    uint64_t off = parse_u64 ("OFFSET", argv[5]);
    uint64_t len = parse_u64 ("LENGTH", argv[6]);
    if (off % SECTOR || len % SECTOR) {
      fprintf (stderr, "%s: OFFSET and LENGTH must be multiples of %d\n",
               progname, SECTOR);
      exit (2);
    }
    check_range (off, len, size);
    read_range (nbd, off, len, pattern_chunk, argv[4]);
  }
  else if (strcmp (cmd, "extents") == 0 && argc == 5)
    block_status (nbd, argv[4], size, false);
  else if (strcmp (cmd, "dirty") == 0 && argc == 5)
    block_status (nbd, argv[4], size, true);
  else
    usage ();

  if (fflush (stdout) == EOF) {
    perror ("stdout");
    exit (1);
  }
  if (nbd_shutdown (nbd, 0) == -1)
    nbd_die ("shutdown");
  nbd_close (nbd);
  return 0;
}

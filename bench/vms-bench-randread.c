/* vms-bench-randread: random 4 KiB reads from an NBD export, timed one by
 * one (the driver of bench/serve.sh).
 *
 *   vms-bench-randread URI COUNT SPAN-BYTES SEED
 *
 * Reads COUNT blocks at 4 KiB-aligned offsets drawn from [0, SPAN) with a
 * fixed seed (the same offsets for the same seed), one request at a time,
 * and prints the median, mean and 99th percentile latency in microseconds. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <libnbd.h>

static int
cmp (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

int
main (int argc, char *argv[])
{
  struct nbd_handle *h;
  char buf[4096];
  double *us, sum = 0;
  uint64_t span, x;
  long n;

  if (argc != 5) {
    fprintf (stderr, "usage: vms-bench-randread URI COUNT SPAN-BYTES SEED\n");
    return 2;
  }
  n = atol (argv[2]);
  span = strtoull (argv[3], NULL, 10) / 4096;
  x = strtoull (argv[4], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
  if (n <= 0 || span == 0 || (us = calloc ((size_t) n, sizeof *us)) == NULL)
    return 2;
  h = nbd_create ();
  if (h == NULL || nbd_connect_uri (h, argv[1]) == -1) {
    fprintf (stderr, "vms-bench-randread: %s\n", nbd_get_error ());
    return 1;
  }
  for (long i = 0; i < n; i++) {
    struct timespec t0, t1;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    uint64_t off = (x * 0x2545F4914F6CDD1Dull % span) * 4096;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    if (nbd_pread (h, buf, sizeof buf, off, 0) == -1) {
      fprintf (stderr, "vms-bench-randread: read at %" PRIu64 ": %s\n", off,
               nbd_get_error ());
      return 1;
    }
    clock_gettime (CLOCK_MONOTONIC, &t1);
    us[i] = (double) (t1.tv_sec - t0.tv_sec) * 1e6 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e3;
    sum += us[i];
  }
  nbd_shutdown (h, 0);
  nbd_close (h);
  qsort (us, (size_t) n, sizeof *us, cmp);
  printf ("median_us=%.0f\nmean_us=%.0f\np99_us=%.0f\n", us[n / 2], sum / (double) n,
          us[(size_t) ((double) n * 0.99)]);
  free (us);
  return 0;
}

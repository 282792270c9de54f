/* Replays a fuzz corpus through the fuzz target without libFuzzer, so the
 * ordinary test run (meson test --suite fuzz) keeps every input found so far
 * passing, with or without sanitizers.
 *
 * Usage: fuzz-replay FILE-OR-DIRECTORY...; output is TAP, one line per
 * input. A property the target checks aborts the run. Two name prefixes
 * add an expectation: "ok-" inputs must be accepted by vms_document_parse,
 * "bad-" inputs must be rejected (the corpus keeps both kinds honest).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vmshadow/document.h"
#include "vmshadow/error.h"

#include "fuzz-document.h"

static unsigned nr_inputs;
static unsigned nr_failed;

/* The whole file in a buffer of exactly its size (no terminator), so that
 * a sanitizer sees any read past the end. */
static char *
read_input (const char *path, size_t *len)
{
  FILE *fp = fopen (path, "rb");
  struct stat st;
  char *buf;

  if (fp == NULL || fstat (fileno (fp), &st) == -1) {
    fprintf (stderr, "fuzz-replay: %s: %s\n", path, strerror (errno));
    exit (EXIT_FAILURE);
  }
  *len = (size_t) st.st_size;
  buf = malloc (*len ? *len : 1);
  if (buf == NULL || fread (buf, 1, *len, fp) != *len) {
    fprintf (stderr, "fuzz-replay: cannot read %s\n", path);
    exit (EXIT_FAILURE);
  }
  fclose (fp);
  return buf;
}

static void
replay_file (const char *path, const char *name)
{
  size_t len;
  char *buf = read_input (path, &len);
  const char *why = NULL;

  LLVMFuzzerTestOneInput ((const uint8_t *) buf, len);

  int want_ok = strncmp (name, "ok-", 3) == 0;
  int want_bad = strncmp (name, "bad-", 4) == 0;
  if (want_ok || want_bad) {
    vms_document *doc = vms_document_parse (buf, len);
    if (want_ok && doc == NULL)
      why = vms_get_error ();
    else if (want_bad && doc != NULL)
      why = "accepted, but the name says it is malformed";
    else if (want_bad)
      printf ("# %s: %s\n", name, vms_get_error ());
    vms_document_free (doc);
  }
  nr_inputs++;
  if (why) {
    nr_failed++;
    printf ("not ok %u - %s\n# %s\n", nr_inputs, path, why);
  }
  else
    printf ("ok %u - %s\n", nr_inputs, path);
  free (buf);
}

static int
is_input (const struct dirent *e)
{
  return e->d_name[0] != '.';
}

static void
replay (const char *path)
{
  struct stat st;
  struct dirent **names;
  int n;

  if (stat (path, &st) == -1) {
    fprintf (stderr, "fuzz-replay: %s: %s\n", path, strerror (errno));
    exit (EXIT_FAILURE);
  }
  if (!S_ISDIR (st.st_mode)) {
    const char *slash = strrchr (path, '/');
    replay_file (path, slash ? slash + 1 : path);
    return;
  }
  n = scandir (path, &names, is_input, alphasort);
  if (n == -1) {
    fprintf (stderr, "fuzz-replay: %s: %s\n", path, strerror (errno));
    exit (EXIT_FAILURE);
  }
  for (int i = 0; i < n; i++) {
    char *p;
    if (asprintf (&p, "%s/%s", path, names[i]->d_name) == -1) {
      fprintf (stderr, "fuzz-replay: out of memory\n");
      exit (EXIT_FAILURE);
    }
    replay_file (p, names[i]->d_name);
    free (p);
    free (names[i]);
  }
  free (names);
}

int
main (int argc, char *argv[])
{
  if (argc < 2) {
    fprintf (stderr, "usage: fuzz-replay FILE-OR-DIRECTORY...\n");
    return EXIT_FAILURE;
  }
  for (int i = 1; i < argc; i++)
    replay (argv[i]);
  printf ("1..%u\n", nr_inputs);
  if (nr_inputs == 0) {
    printf ("# no inputs found\n");
    return EXIT_FAILURE;
  }
  return nr_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

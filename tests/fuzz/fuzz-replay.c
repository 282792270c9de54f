/* Replays a corpus through one fuzz target (fuzz-target.h) without
 * libFuzzer, so the ordinary test run (meson test --suite fuzz) keeps every
 * input found so far passing, with or without sanitizers. A property the
 * target checks aborts the run. "ok-" inputs must be accepted by the
 * parser, "bad-" inputs rejected (the corpus keeps both kinds honest).
 *
 * Usage: fuzz-TARGET-replay FILE-OR-DIRECTORY...; output is TAP.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz-target.h"

static unsigned nr_inputs;
static unsigned nr_failed;

/* The whole file in a buffer of exactly its size, so that a sanitizer sees
 * any read past the end. */
static uint8_t *
read_input (const char *path, size_t *len)
{
  FILE *fp = fopen (path, "rb");
  struct stat st;
  uint8_t *buf;

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
  uint8_t *buf = read_input (path, &len);
  const char *why = NULL, *msg;

  LLVMFuzzerTestOneInput (buf, len);
  int accepted = fuzz_accepts (buf, len, &msg);
  if (strncmp (name, "ok-", 3) == 0 && !accepted)
    why = msg;
  else if (strncmp (name, "bad-", 4) == 0) {
    if (accepted)
      why = "accepted, but the name says it is malformed";
    else
      printf ("# %s: %s\n", name, msg);
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
    fprintf (stderr, "usage: fuzz-repo-replay FILE-OR-DIRECTORY...\n");
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

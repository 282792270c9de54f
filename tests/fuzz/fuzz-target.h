/* The fuzz targets of tests/fuzz/repo: each defines the libFuzzer entry
 * point, and fuzz_accepts, which the corpus replay (fuzz-repo-replay.c)
 * uses to hold "ok-" inputs to being accepted and "bad-" ones to being
 * rejected. A failed property aborts. */
#ifndef VMS_FUZZ_TARGET_H
#define VMS_FUZZ_TARGET_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
/* 1 if the parser accepts the input, 0 (with the message in *why, borrowed)
 * if it rejects it. */
extern int fuzz_accepts (const uint8_t *data, size_t size, const char **why);

/* A property of the input does not hold: say which, as target (the fuzz
 * target's name), and abort so that libFuzzer and the replay stop there.
 * Each target defines broken(...) as this with its name. */
static inline void __attribute__ ((noreturn, format (printf, 2, 3)))
fuzz_broken (const char *target, const char *fmt, ...)
{
  va_list ap;
  fprintf (stderr, "%s: ", target);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n");
  abort ();
}

#endif /* VMS_FUZZ_TARGET_H */

/* The fuzz targets of tests/fuzz/repo: each defines the libFuzzer entry
 * point, and fuzz_accepts, which the corpus replay (fuzz-repo-replay.c)
 * uses to hold "ok-" inputs to being accepted and "bad-" ones to being
 * rejected. A failed property aborts. */
#ifndef VMS_FUZZ_TARGET_H
#define VMS_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
/* 1 if the parser accepts the input, 0 (with the message in *why, borrowed)
 * if it rejects it. */
extern int fuzz_accepts (const uint8_t *data, size_t size, const char **why);

#endif /* VMS_FUZZ_TARGET_H */

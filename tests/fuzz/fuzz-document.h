/* The libFuzzer entry point of fuzz-document.c, also called by the corpus
 * replay program (fuzz-replay.c). Aborts when a property fails. */
#ifndef VMS_FUZZ_DOCUMENT_H
#define VMS_FUZZ_DOCUMENT_H

#include <stddef.h>
#include <stdint.h>

extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#endif /* VMS_FUZZ_DOCUMENT_H */

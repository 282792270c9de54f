/* vmshadow — what marks a declaration as part of the public API.
 *
 * libvmshadow.so is built with hidden symbol visibility: only what a
 * public header declares with VMS_API is exported, so the library's
 * internals (lib/util and the like) are no part of its ABI.
 */
#ifndef VMSHADOW_API_H
#define VMSHADOW_API_H

#if defined (__GNUC__) || defined (__clang__)
#define VMS_API __attribute__ ((visibility ("default")))
#else
#define VMS_API
#endif

#endif /* VMSHADOW_API_H */

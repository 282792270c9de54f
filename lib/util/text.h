/* Text that comes from outside vmshadow — writer output, guest data, a
 * repository's documents — on its way in and out (docs/security.md):
 * checked as UTF-8 where it enters, escaped where it reaches a terminal.
 * The one place for both, so that every caller gets the same rules. */
#ifndef VMS_TEXT_H
#define VMS_TEXT_H

#include <stddef.h>

/* 1 if s[0..len) is well-formed UTF-8 (RFC 3629: shortest forms only, no
 * surrogates, nothing above U+10FFFF; NUL bytes are not allowed either),
 * else 0 with *bad (when not NULL) the offset of the first byte that is
 * not. */
extern int vms_utf8_valid (const char *s, size_t len, size_t *bad);

/* Keep '\n' as it is (a message of several lines); otherwise it is
 * escaped like every other control character. */
#define VMS_ESCAPE_KEEP_NEWLINE 1u

/* s as text that is safe to print on a terminal: C0 controls (ESC among
 * them) and DEL written as \xNN (\t, \n and \r as \t, \n, \r), the C1
 * controls U+0080–U+009F (a one-character CSI among them) as \u00NN, every byte that is not part of well-formed UTF-8 as
 * \xNN, and a backslash as \\ so that the escaped text says exactly what
 * the bytes were. The result is always valid UTF-8. NULL is taken as "".
 * Returns a new string (the caller frees it), or NULL with the error set
 * when out of memory. */
extern char *vms_term_escape (const char *s, unsigned flags);

#endif /* VMS_TEXT_H */

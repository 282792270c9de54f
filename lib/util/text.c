/* UTF-8 validation and terminal escaping (text.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "vmshadow/error.h"

/* The length of the well-formed UTF-8 sequence at s (at most n bytes
 * available), or 0 if there is none there. */
static size_t
utf8_sequence (const unsigned char *s, size_t n, uint32_t *cp)
{
  unsigned char c = s[0];
  size_t len;
  uint32_t v, min;

  if (c < 0x80) {
    *cp = c;
    return c ? 1 : 0;
  }
  if (c >= 0xc2 && c <= 0xdf) { len = 2; v = c & 0x1f; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; v = c & 0x0f; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; v = c & 0x07; min = 0x10000; }
  else
    return 0;
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    v = (v << 6) | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return len;
}

int
vms_utf8_valid (const char *s, size_t len, size_t *bad)
{
  const unsigned char *u = (const unsigned char *) s;
  size_t i = 0;
  uint32_t cp;

  while (i < len) {
    size_t n = utf8_sequence (u + i, len - i, &cp);
    if (n == 0) {
      if (bad)
        *bad = i;
      return 0;
    }
    i += n;
  }
  return 1;
}

char *
vms_term_escape (const char *s, unsigned flags)
{
  const unsigned char *u = (const unsigned char *) (s ? s : "");
  size_t len = strlen ((const char *) u);
  /* At worst every byte becomes four ("\xNN"; a C1 control is two bytes
   * and becomes six, "\u0080"). */
  char *out = malloc (len * 4 + 1);
  size_t o = 0;
  uint32_t cp;

  if (out == NULL) {
    vms_set_error (errno, "out of memory escaping text");
    return NULL;
  }
  for (size_t i = 0; i < len; ) {
    size_t n = utf8_sequence (u + i, len - i, &cp);
    if (n == 0) {                       /* not UTF-8: the byte, escaped */
      o += (size_t) sprintf (out + o, "\\x%02x", u[i]);
      i++;
      continue;
    }
    if (cp == '\n' && (flags & VMS_ESCAPE_KEEP_NEWLINE))
      out[o++] = '\n';
    else if (cp == '\n' || cp == '\t' || cp == '\r' || cp == '\\') {
      out[o++] = '\\';
      out[o++] = cp == '\n' ? 'n' : cp == '\t' ? 't' : cp == '\r' ? 'r' : '\\';
    }
    else if (cp < 0x20 || cp == 0x7f)
      o += (size_t) sprintf (out + o, "\\x%02x", (unsigned) cp);
    else if (cp >= 0x80 && cp <= 0x9f)  /* C1, e.g. U+009B, a one-char CSI */
      o += (size_t) sprintf (out + o, "\\u%04x", (unsigned) cp);
    else {
      memcpy (out + o, u + i, n);
      o += n;
    }
    i += n;
  }
  out[o] = '\0';
  return out;
}

/* Unit tests of the text helpers (lib/util/text.h): UTF-8 validation where
 * writer and guest text enters, escaping where it reaches a terminal
 * (issue 9, item 7).
 *
 * Usage: test-text [test-name]; output is TAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "text.h"

#define TEST(name, fn) { name, fn, NULL, NULL, NULL }

static int
valid (const char *s)
{
  return vms_utf8_valid (s, strlen (s), NULL);
}

static void
utf8_accepts_every_length_of_sequence_and_the_limits (void **state)
{
  assert_true (valid (""));
  assert_true (valid ("plain ascii"));
  assert_true (valid ("\xc2\x80 \xdf\xbf"));             /* U+0080, U+07FF */
  assert_true (valid ("\xe0\xa0\x80 \xef\xbf\xbf"));     /* U+0800, U+FFFF */
  assert_true (valid ("\xed\x9f\xbf \xee\x80\x80"));     /* around surrogates */
  assert_true (valid ("\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf")); /* U+10000, U+10FFFF */
}

static void
utf8_rejects_overlong_forms_surrogates_and_truncation (void **state)
{
  size_t bad = 99;
  assert_false (vms_utf8_valid ("ab\xc0\xaf", 4, &bad));  /* overlong '/' */
  assert_int_equal (bad, 2);
  assert_false (valid ("\xe0\x80\xaf"));                  /* overlong */
  assert_false (valid ("\xf0\x80\x80\xaf"));              /* overlong */
  assert_false (valid ("\xed\xa0\x80"));                  /* U+D800 */
  assert_false (valid ("\xed\xbf\xbf"));                  /* U+DFFF */
  assert_false (valid ("\xf4\x90\x80\x80"));              /* above U+10FFFF */
  assert_false (valid ("\xf5\x80\x80\x80"));
  assert_false (valid ("\xff"));
  assert_false (valid ("\x80"));                          /* lone continuation */
  assert_false (valid ("x\xe2\x82"));                     /* cut short */
  assert_false (vms_utf8_valid ("a\0b", 3, &bad));        /* NUL */
  assert_int_equal (bad, 1);
}

static void
escape_check (const char *in, unsigned flags, const char *expect)
{
  char *out = vms_term_escape (in, flags);
  assert_non_null (out);
  assert_string_equal (out, expect);
  assert_true (valid (out));
  free (out);
}

static void
escape_defuses_ansi_osc_and_c1_controls (void **state)
{
  escape_check ("\x1b[31mred\x1b[0m", 0, "\\x1b[31mred\\x1b[0m");
  escape_check ("\x1b]0;owned\x07", 0, "\\x1b]0;owned\\x07");   /* OSC title */
  escape_check ("a\xc2\x9b" "2J", 0, "a\\u009b2J");                /* C1 CSI */
  escape_check ("del\x7f", 0, "del\\x7f");
  escape_check ("back\rspace\b", 0, "back\\rspace\\x08");
}

static void
escape_keeps_printable_utf8_and_marks_bad_bytes (void **state)
{
  escape_check ("caf\xc3\xa9 \xe2\x82\xac /var/lib", 0, "caf\xc3\xa9 \xe2\x82\xac /var/lib");
  escape_check ("a\xff" "b\xc3", 0, "a\\xffb\\xc3");
  escape_check ("C:\\dir", 0, "C:\\\\dir");
  escape_check (NULL, 0, "");
}

static void
escape_keeps_newlines_only_when_asked (void **state)
{
  escape_check ("one\ntwo\tthree", 0, "one\\ntwo\\tthree");
  escape_check ("one\ntwo\tthree", VMS_ESCAPE_KEEP_NEWLINE, "one\ntwo\\tthree");
}

static void
escape_of_the_worst_input_fits (void **state)
{
  /* Every byte a C1 control's first byte alone, or every pair a C1
   * control: the longest outputs per input byte. */
  char in[1001];
  memset (in, 0xc2, 1000);
  in[1000] = '\0';
  char *out = vms_term_escape (in, 0);
  assert_int_equal (strlen (out), 4000);
  free (out);
  for (int i = 0; i < 1000; i += 2) {
    in[i] = (char) 0xc2;
    in[i + 1] = (char) 0x85;
  }
  out = vms_term_escape (in, 0);
  assert_int_equal (strlen (out), 3000);
  free (out);
}

static const struct CMUnitTest tests[] = {
  TEST ("utf8-accepts-every-length-of-sequence-and-the-limits",
        utf8_accepts_every_length_of_sequence_and_the_limits),
  TEST ("utf8-rejects-overlong-forms-surrogates-and-truncation",
        utf8_rejects_overlong_forms_surrogates_and_truncation),
  TEST ("escape-defuses-ansi-osc-and-c1-controls",
        escape_defuses_ansi_osc_and_c1_controls),
  TEST ("escape-keeps-printable-utf8-and-marks-bad-bytes",
        escape_keeps_printable_utf8_and_marks_bad_bytes),
  TEST ("escape-keeps-newlines-only-when-asked",
        escape_keeps_newlines_only_when_asked),
  TEST ("escape-of-the-worst-input-fits", escape_of_the_worst_input_fits),
};

int
main (int argc, char *argv[])
{
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("text", tests, NULL, NULL);
}

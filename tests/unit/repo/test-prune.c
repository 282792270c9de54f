/* Unit tests of prune's selection (prune_select in lib/repo/prune.c): which
 * backups a keep policy keeps, and why, on synthetic times in UTC. The
 * rules are restic's and borg's: the N newest; the newest backup of each of
 * the N newest days (ISO weeks, months) that have backups.
 *
 * Usage: test-prune [test-name]; output is TAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "vmshadow/repo.h"

#include "repo-internal.h"

#define HOUR 3600
#define DAY (24 * HOUR)
/* Monday 2024-01-01 00:00:00 UTC */
#define T0 ((int64_t) 1704067200)

static struct prune_item items[64];
static char names[64][32];
static size_t nr;

static void
add (int64_t t)
{
  snprintf (names[nr], sizeof names[nr], "b%02zu", nr);
  items[nr] = (struct prune_item) { .id = names[nr], .time = t };
  nr++;
}

static int
reset (void **state)
{
  nr = 0;
  return 0;
}

static void
select_with (struct vms_prune_policy p)
{
  assert_int_equal (prune_select (items, nr, &p), 0);
}

/* The kept items as a string "b03 b05", oldest first (items are added in
 * time order). */
static const char *
kept (void)
{
  static char buf[512];
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < nr; i++)
    if (items[i].reasons)
      off += (size_t) snprintf (buf + off, sizeof buf - off, "%s%s",
                                off ? " " : "", items[i].id);
  return buf;
}

static void
keep_last_keeps_the_newest (void **state)
{
  for (int i = 0; i < 5; i++)
    add (T0 + i * HOUR);
  select_with ((struct vms_prune_policy) { .keep_last = 2 });
  assert_string_equal (kept (), "b03 b04");
  assert_int_equal (items[4].reasons, PRUNE_LAST);
  select_with ((struct vms_prune_policy) { .keep_last = 99 });
  assert_string_equal (kept (), "b00 b01 b02 b03 b04");
}

/* Two backups committed within one second: the later one (by the
 * manifest's created_nsec) is the newest, though the ids' random suffixes
 * order them the other way. */
static void
keep_last_orders_one_seconds_backups_by_their_nanoseconds (void **state)
{
  add (T0);
  add (T0 + HOUR);
  items[1].id = "zz-earlier";
  items[1].nsec = 100000000;
  add (T0 + HOUR);
  items[2].id = "aa-later";
  items[2].nsec = 900000000;
  select_with ((struct vms_prune_policy) { .keep_last = 1 });
  assert_string_equal (kept (), "aa-later");
}

static void
keep_daily_keeps_the_newest_of_each_day_with_backups (void **state)
{
  add (T0 + 1 * HOUR);          /* day 0 */
  add (T0 + 20 * HOUR);         /* day 0, newest */
  add (T0 + 2 * DAY + HOUR);    /* day 2 (day 1 has none) */
  add (T0 + 5 * DAY + HOUR);    /* day 5 */
  add (T0 + 5 * DAY + 2 * HOUR);/* day 5, newest */
  select_with ((struct vms_prune_policy) { .keep_daily = 2 });
  assert_string_equal (kept (), "b02 b04");
  select_with ((struct vms_prune_policy) { .keep_daily = 3 });
  assert_string_equal (kept (), "b01 b02 b04");
  assert_int_equal (items[1].reasons, PRUNE_DAILY);
}

static void
keep_weekly_uses_iso_weeks (void **state)
{
  add (T0);                     /* Mon 2024-01-01, week 1 */
  add (T0 + 6 * DAY);           /* Sun 2024-01-07, week 1, newest */
  add (T0 + 7 * DAY);           /* Mon 2024-01-08, week 2 */
  add (T0 + 8 * DAY);           /* Tue, week 2, newest */
  add (T0 + 30 * DAY);          /* week 5 */
  select_with ((struct vms_prune_policy) { .keep_weekly = 2 });
  assert_string_equal (kept (), "b03 b04");
  select_with ((struct vms_prune_policy) { .keep_weekly = 5 });
  assert_string_equal (kept (), "b01 b03 b04");
}

static void
keep_monthly_keeps_the_newest_of_each_month (void **state)
{
  add (T0);                     /* January */
  add (T0 + 30 * DAY);          /* Jan 31, newest of January */
  add (T0 + 31 * DAY);          /* Feb 1 */
  add (T0 + 70 * DAY);          /* March */
  add (T0 + 366 * DAY + DAY);   /* January 2025 */
  select_with ((struct vms_prune_policy) { .keep_monthly = 3 });
  assert_string_equal (kept (), "b02 b03 b04");
  select_with ((struct vms_prune_policy) { .keep_monthly = 12 });
  assert_string_equal (kept (), "b01 b02 b03 b04");
}

static void
rules_combine_and_reasons_are_named (void **state)
{
  for (int d = 0; d < 10; d++) {
    add (T0 + d * DAY + HOUR);
    add (T0 + d * DAY + 2 * HOUR);
  }
  select_with ((struct vms_prune_policy) { .keep_last = 1, .keep_daily = 3,
                                           .keep_weekly = 2 });
  /* last: b19; daily: b19 b17 b15; weekly: b19 (week 2), b13 (week 1). */
  assert_string_equal (kept (), "b13 b15 b17 b19");
  char buf[64];
  assert_string_equal (prune_reasons_text (items[19].reasons, buf, sizeof buf),
                       "last, daily, weekly");
  assert_string_equal (prune_reasons_text (items[13].reasons, buf, sizeof buf),
                       "weekly");
}

static void
ties_in_time_are_broken_by_id (void **state)
{
  add (T0);
  add (T0);
  add (T0);
  select_with ((struct vms_prune_policy) { .keep_last = 1 });
  assert_string_equal (kept (), "b02");
}

static void
order_of_input_does_not_matter (void **state)
{
  add (T0 + 3 * DAY);
  add (T0);
  add (T0 + DAY);
  select_with ((struct vms_prune_policy) { .keep_daily = 2 });
  assert_string_equal (kept (), "b00 b02");
}

/* Issue 20: the rules run per component (per VM). */
static const char *const vm_a[] = { "vm/a" }, *const vm_b[] = { "vm/b" };
static const char *const vm_ab[] = { "vm/a", "vm/b" };

static void
add_holding (int64_t t, const char *const *keys, size_t nr_keys)
{
  add (t);
  items[nr - 1].keys = keys;
  items[nr - 1].nr_keys = nr_keys;
}

static void
keep_last_counts_per_vm_so_a_weekly_vm_keeps_its_backups (void **state)
{
  /* VM a backed up daily for 21 days, VM b weekly (days 0, 7, 14). */
  for (int d = 0; d < 21; d++) {
    add_holding (T0 + d * DAY + HOUR, vm_a, 1);
    if (d % 7 == 0)
      add_holding (T0 + d * DAY + 2 * HOUR, vm_b, 1);
  }
  /* b00 a0, b01 b0, b02..b07 a1..a6, b08 a7, b09 b7, …, b16 a14, b17 b14,
   * b18..b23 a15..a20. Per repository, keep-last 2 would keep b22 b23 and
   * delete every backup of b; per VM it keeps the two newest of each. */
  select_with ((struct vms_prune_policy) { .keep_last = 2 });
  assert_string_equal (kept (), "b09 b17 b22 b23");
  select_with ((struct vms_prune_policy) { .keep_last = 3 });
  assert_string_equal (kept (), "b01 b09 b17 b21 b22 b23");
  assert_int_equal (items[1].reasons, PRUNE_LAST);
  /* keep-daily 2: a's two newest days, and b's two newest days with a
   * backup of b (days 7 and 14). */
  select_with ((struct vms_prune_policy) { .keep_daily = 2 });
  assert_string_equal (kept (), "b09 b17 b22 b23");
}

static void
a_backup_of_several_vms_is_kept_if_any_of_them_needs_it (void **state)
{
  add_holding (T0, vm_ab, 2);          /* b00: both (an --all run) */
  add_holding (T0 + DAY, vm_a, 1);     /* b01 */
  add_holding (T0 + 2 * DAY, vm_a, 1); /* b02 */
  add (T0 + 3 * DAY);                  /* b03: no components */
  add (T0 + 4 * DAY);                  /* b04: no components */
  select_with ((struct vms_prune_policy) { .keep_last = 1 });
  /* b00 is b's newest; b02 a's; b04 the newest of those holding none. */
  assert_string_equal (kept (), "b00 b02 b04");
  select_with ((struct vms_prune_policy) { .keep_last = 2 });
  assert_string_equal (kept (), "b00 b01 b02 b03 b04");
}

static void
empty_list_keeps_nothing_and_does_not_fail (void **state)
{
  select_with ((struct vms_prune_policy) { .keep_last = 3 });
  assert_string_equal (kept (), "");
}

int
main (int argc, char *argv[])
{
  /* Days, weeks and months are local time: make them UTC for the test. */
  setenv ("TZ", "UTC", 1);
  tzset ();
  const struct CMUnitTest tests[] = {
#define T(name, f) { name, f, reset, NULL, NULL }
    T ("keep-last-keeps-the-newest", keep_last_keeps_the_newest),
    T ("keep-last-orders-one-seconds-backups-by-their-nanoseconds",
       keep_last_orders_one_seconds_backups_by_their_nanoseconds),
    T ("keep-daily-keeps-the-newest-of-each-day-with-backups",
       keep_daily_keeps_the_newest_of_each_day_with_backups),
    T ("keep-weekly-uses-iso-weeks", keep_weekly_uses_iso_weeks),
    T ("keep-monthly-keeps-the-newest-of-each-month",
       keep_monthly_keeps_the_newest_of_each_month),
    T ("rules-combine-and-reasons-are-named", rules_combine_and_reasons_are_named),
    T ("ties-in-time-are-broken-by-id", ties_in_time_are_broken_by_id),
    T ("order-of-input-does-not-matter", order_of_input_does_not_matter),
    T ("keep-last-counts-per-vm-so-a-weekly-vm-keeps-its-backups",
       keep_last_counts_per_vm_so_a_weekly_vm_keeps_its_backups),
    T ("a-backup-of-several-vms-is-kept-if-any-of-them-needs-it",
       a_backup_of_several_vms_is_kept_if_any_of_them_needs_it),
    T ("empty-list-keeps-nothing-and-does-not-fail",
       empty_list_keeps_nothing_and_does_not_fail),
#undef T
  };
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("prune", tests, NULL, NULL);
}

/* Fuzz target for the stored domain XML a restore reads (issue 9): the XML
 * comes from the repository, which vmshadow does not trust, and restore
 * parses it with vm_config_parse (vm-config.h) to learn the VM's name,
 * UUID, disks and NVRAM before it writes anything.
 *
 * Besides "never crash, never leak", it holds the parser to what its
 * callers rely on, for every accepted XML:
 *  - name and UUID are there; every disk has a target and a device, and is
 *    found again by vm_config_disk; an included disk has a path and no
 *    reason, a left-out one has its reason (R13);
 *  - every string it returns is UTF-8 (they go into documents, which
 *    refuse anything else: docs/documents.md);
 *  - parsing is deterministic: the same input gives the same result, and
 *    a rejected one the same message whatever was parsed before it.
 * And restore --name's copy (vm_config_rewrite, issue 20): it fails with a
 * message where the parse fails, and for every accepted XML gives XML that
 * parses again with the copy's name and UUID, and whose every included
 * disk is one of the copy's files (never the original's).
 * The same input is also read as a VM's <tags> (issue 19; check_tags).
 * A failed property aborts, so libFuzzer and the replay program
 * (fuzz-replay.c) both report it as a crash with the input.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "vm-config.h"
#include "vmshadow/error.h"

#include "fuzz-target.h"

#define broken(...) fuzz_broken ("fuzz-domain-xml", __VA_ARGS__)

static void
check_text (const char *what, const char *s, int required)
{
  if (s == NULL) {
    if (required)
      broken ("an accepted domain XML has no %s", what);
    return;
  }
  if (!vms_utf8_valid (s, strlen (s), NULL))
    broken ("%s is not UTF-8", what);
}

static int
same (const char *a, const char *b)
{
  return a == b || (a && b && strcmp (a, b) == 0);
}

static void
check_config (const struct vm_config *cfg)
{
  check_text ("name", cfg->name, 1);
  check_text ("uuid", cfg->uuid, 1);
  check_text ("nvram", cfg->nvram, 0);
  for (size_t i = 0; i < cfg->nr_disks; i++) {
    const struct vm_disk *d = &cfg->disks[i];
    check_text ("disk target", d->target, 1);
    check_text ("disk device", d->device, 1);
    check_text ("disk path", d->path, 1);
    check_text ("disk format", d->format, 0);
    check_text ("disk pool", d->pool, 0);
    check_text ("disk volume", d->volume, 0);
    if (d->included ? d->reason != NULL : d->reason == NULL)
      broken ("disk %s: included=%d with reason %s", d->target, d->included,
              d->reason ? d->reason : "(none)");
    check_text ("disk reason", d->reason, 0);
    const struct vm_disk *found = vm_config_disk (cfg, d->target);
    if (found == NULL || strcmp (found->target, d->target) != 0)
      broken ("disk %s is not found by its target", d->target);
  }
  for (size_t i = 0; i < cfg->nr_excluded; i++) {
    check_text ("excluded path", cfg->excluded[i].path, 1);
    check_text ("excluded reason", cfg->excluded[i].reason, 1);
  }
}

static void
check_same (const struct vm_config *a, const struct vm_config *b)
{
  if (!same (a->name, b->name) || !same (a->uuid, b->uuid) ||
      !same (a->nvram, b->nvram) || a->nr_disks != b->nr_disks ||
      a->nr_excluded != b->nr_excluded || a->tpm_emulator != b->tpm_emulator)
    broken ("a second parse of the same XML differs");
  for (size_t i = 0; i < a->nr_disks; i++)
    if (!same (a->disks[i].target, b->disks[i].target) ||
        !same (a->disks[i].path, b->disks[i].path) ||
        a->disks[i].included != b->disks[i].included)
      broken ("a second parse differs at disk %zu", i);
}

/* The copy of an accepted XML (issue 20). */
static void
check_copy (const uint8_t *data, size_t size, const struct vm_config *cfg)
{
  const char **from = calloc (cfg->nr_disks + 1, sizeof *from);
  char **to = calloc (cfg->nr_disks + 1, sizeof *to);
  struct vm_config copy;
  size_t n = 0;
  char *x;

  if (from == NULL || to == NULL)
    broken ("out of memory");
  for (size_t i = 0; i < cfg->nr_disks; i++)
    if (cfg->disks[i].included && cfg->disks[i].source == VM_DISK_FILE) {
      from[n] = cfg->disks[i].path;
      if (asprintf (&to[n++], "/copy/d%zu", i) == -1)
        broken ("out of memory");
    }
  const struct vm_rewrite rw = {
    .name = "copy", .uuid = "99999999-8888-4777-8666-555555555555",
    .new_macs = 1, .from = from, .to = (const char *const *) to, .nr_paths = n,
    .old_name = cfg->name, .old_uuid = cfg->uuid,
  };
  x = vm_config_rewrite ((const char *) data, size, &rw, NULL);
  if (x == NULL)
    broken ("the copy of an accepted XML fails: %s", vms_get_error ());
  if (vm_config_parse (x, strlen (x), &copy) == -1)
    broken ("the copy does not parse: %s", vms_get_error ());
  if (strcmp (copy.name, "copy") != 0 ||
      strcmp (copy.uuid, "99999999-8888-4777-8666-555555555555") != 0)
    broken ("the copy is \"%s\" (%s)", copy.name, copy.uuid);
  for (size_t i = 0; i < copy.nr_disks; i++) {
    int ours = 0;
    if (!copy.disks[i].included)
      continue;
    for (size_t k = 0; k < n; k++)
      ours |= strcmp (copy.disks[i].path, to[k]) == 0;
    if (!ours)
      broken ("the copy's disk %s is %s, not one of its own files",
              copy.disks[i].target, copy.disks[i].path);
  }
  vm_config_clear (&copy);
  free (x);
  for (size_t k = 0; k < n; k++)
    free (to[k]);
  free (to);
  free (from);
}

int
fuzz_accepts (const uint8_t *data, size_t size, const char **why)
{
  struct vm_config cfg;
  if (vm_config_parse ((const char *) data, size, &cfg) == -1) {
    *why = vms_get_error ();
    return 0;
  }
  vm_config_clear (&cfg);
  return 1;
}

/* Issue 19: a VM's tags (its metadata, the VM owner's text) through
 * vms_vm_tags_parse: accepted, every tag is one vms_vm_tag_valid takes (so
 * nothing else can reach a job's selection or a message); rejected, a
 * message and no list. */
static void
check_tags (const uint8_t *data, size_t size)
{
  char **tags = (char **) &tags;

  vms_clear_error ();
  if (vms_vm_tags_parse ((const char *) data, size, &tags) == -1) {
    if (tags != NULL)
      broken ("rejected tags left a list");
    if (vms_get_error () == NULL || *vms_get_error () == '\0')
      broken ("rejected tags have no error message");
    return;
  }
  if (tags == NULL)
    broken ("accepted tags gave no list");
  for (size_t i = 0; tags[i]; i++) {
    if (!vms_vm_tag_valid (tags[i]))
      broken ("an accepted tag is not a tag");
    free (tags[i]);
  }
  free (tags);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct vm_config cfg, again;

  check_tags (data, size);
  vms_clear_error ();
  if (vm_config_parse ((const char *) data, size, &cfg) == -1) {
    const char *e = vms_get_error ();
    if (e == NULL || *e == '\0')
      broken ("a rejected domain XML has no error message");
    /* A rejected parse leaves nothing to free, and clearing it is safe. */
    vm_config_clear (&cfg);
    /* The message is this input's, whatever was parsed before it: the
     * same after two parses that fail in two other ways. */
    static const char *const other[] = {
      "<domain><name>&#27;</name></domain>", "<domain></niamod>",
    };
    char *seen[2];
    for (int k = 0; k < 2; k++) {
      if (vm_config_parse (other[k], strlen (other[k]), &again) == 0)
        broken ("\"%s\" accepted", other[k]);
      if (vm_config_parse ((const char *) data, size, &again) == 0)
        broken ("the same XML rejected once, accepted the next time");
      if ((seen[k] = strdup (vms_get_error ())) == NULL)
        broken ("out of memory");
    }
    if (strcmp (seen[0], seen[1]) != 0)
      broken ("the error depends on the parse before: \"%s\", then \"%s\"",
              seen[0], seen[1]);
    free (seen[0]);
    free (seen[1]);
    static const struct vm_rewrite rw = { .name = "copy", .uuid = "u" };
    if (vm_config_rewrite ((const char *) data, size, &rw, NULL) != NULL)
      broken ("a rejected domain XML has a copy");
    if (vms_get_error () == NULL || *vms_get_error () == '\0')
      broken ("a rejected copy has no error message");
    return 0;
  }
  check_config (&cfg);
  if (vm_config_parse ((const char *) data, size, &again) == -1)
    broken ("a second parse of an accepted XML fails: %s", vms_get_error ());
  check_same (&cfg, &again);
  check_copy (data, size, &cfg);
  vm_config_clear (&again);
  vm_config_clear (&cfg);
  return 0;
}

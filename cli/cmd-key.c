/* vmshadow key: the keys of encrypted repositories (R28,
 * docs/encryption.md), and where the command's passphrases come from: a
 * file descriptor (--passphrase-fd N, one line per passphrase), the
 * environment (VMSHADOW_PASSPHRASE, VMSHADOW_NEW_PASSPHRASE: for timers),
 * or the terminal (echo off; a new one asked twice). Never argv. The work
 * is lib/repo's (vmshadow/key.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "vmshadow/error.h"
#include "vmshadow/key.h"

/* ---- passphrases ---- */

static int passphrase_fd = -1;
/* $VMSHADOW_PASSPHRASE and $VMSHADOW_NEW_PASSPHRASE, taken out of the
 * environment at start: no child (exec writers, qemu-nbd, hooks) inherits
 * them. */
static char env_pass[VMS_PASSPHRASE_MAX + 2], env_new_pass[VMS_PASSPHRASE_MAX + 2];

/* Move variable name's value into buf (empty if unset or too long: then
 * it is refused when used), then unset it and wipe it where it was. */
static void
take_env (const char *name, char *buf, size_t size)
{
  char *v = getenv (name);
  if (v == NULL)
    return;
  size_t n = strlen (v);
  if (n < size - 1)
    memcpy (buf, v, n + 1);
  else
    snprintf (buf, size, "%c", 1);      /* too long: said when used */
  char *whole = v - strlen (name) - 1;
  size_t wn = strlen (whole);
  unsetenv (name);
  memset (whole, 0, wn);
}

/* One line from fd, byte by byte (nothing read past it stays buffered
 * here: the next passphrase is the next line). */
static int
read_line (int fd, char *buf, size_t size, const char *from)
{
  size_t n = 0;
  for (;;) {
    char c;
    ssize_t r = read (fd, &c, 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      vms_set_error (errno, "cannot read a passphrase from %s: %s", from,
                     strerror (errno));
      return -1;
    }
    if (r == 0 || c == '\n')
      break;
    if (n + 1 >= size) {
      vms_set_error (E2BIG, "the passphrase from %s is longer than %zu bytes",
                     from, size - 1);
      return -1;
    }
    buf[n++] = c;
  }
  buf[n] = '\0';
  if (n == 0) {
    vms_set_error (ENOKEY, "no passphrase from %s (an empty line or end of "
                   "input)", from);
    return -1;
  }
  return 0;
}

static int
tty_ask (int tty, const char *prompt, char *buf, size_t size)
{
  struct termios old, quiet;
  int r;

  if (write (tty, prompt, strlen (prompt)) < 0 ||
      tcgetattr (tty, &old) == -1) {
    vms_set_error (errno, "cannot ask for a passphrase on the terminal: %s",
                   strerror (errno));
    return -1;
  }
  quiet = old;
  quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
  quiet.c_lflag |= ICANON;
  tcsetattr (tty, TCSAFLUSH, &quiet);
  r = read_line (tty, buf, size, "the terminal");
  tcsetattr (tty, TCSAFLUSH, &old);
  if (write (tty, "\n", 1) < 0) { /* only cosmetic */ }
  return r;
}

static int
cli_passphrase (void *opaque, int purpose, const char *fp, char *buf,
                size_t size)
{
  (void) opaque;
  if (passphrase_fd >= 0) {
    char from[64];
    snprintf (from, sizeof from, "file descriptor %d", passphrase_fd);
    return read_line (passphrase_fd, buf, size, from);
  }
  const char *e = purpose == VMS_PASSPHRASE_NEW ? env_new_pass : "";
  if (*e == '\0')
    e = env_pass;
  if (*e) {
    if (strlen (e) >= size || *e == 1) {
      vms_set_error (E2BIG, "%s is longer than %zu bytes", VMS_PASSPHRASE_ENV,
                     size - 1);
      return -1;
    }
    memcpy (buf, e, strlen (e) + 1);
    return 0;
  }
  int tty = open ("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (tty == -1) {
    vms_set_error (ENOKEY, "key %s needs a%s passphrase and there is no "
                   "terminal to ask: give it with --passphrase-fd N or %s",
                   fp, purpose == VMS_PASSPHRASE_NEW ? " new" : "",
                   VMS_PASSPHRASE_ENV);
    return -1;
  }
  char prompt[160];
  int r;
  if (purpose == VMS_PASSPHRASE_NEW) {
    char again[VMS_PASSPHRASE_MAX + 1];
    snprintf (prompt, sizeof prompt, "New passphrase for key %s: ", fp);
    r = tty_ask (tty, prompt, buf, size);
    if (r == 0 && (r = tty_ask (tty, "The same again: ", again,
                                sizeof again)) == 0 && strcmp (buf, again)) {
      vms_set_error (EINVAL, "the two passphrases differ; nothing changed");
      r = -1;
    }
    memset (again, 0, sizeof again);
  }
  else {
    snprintf (prompt, sizeof prompt, "Passphrase for key %s: ", fp);
    r = tty_ask (tty, prompt, buf, size);
  }
  close (tty);
  return r;
}

void
cli_passphrase_setup (int fd)
{
  passphrase_fd = fd;
  take_env (VMS_PASSPHRASE_ENV, env_pass, sizeof env_pass);
  take_env (VMS_NEW_PASSPHRASE_ENV, env_new_pass, sizeof env_new_pass);
  vms_set_passphrase_fn (cli_passphrase, NULL);
}

/* ---- vmshadow key ---- */

/* The key the command is about: its argument, else the repository's. */
static int
which_key (const struct options *opts, int argc, char **argv, char fp[33])
{
  if (argc >= 1) {
    snprintf (fp, 33, "%s", argv[0]);
    return 0;
  }
  vms_repo *repo = vms_repo_open (opts->repo_dir, VMS_REPO_NO_KEY);
  if (repo == NULL)
    return -1;
  const char *f = vms_repo_key_fingerprint (repo);
  if (f == NULL) {
    vms_set_error (EINVAL, "repository %s is not encrypted: it has no key",
                   vms_repo_path (repo));
    vms_repo_close (repo);
    return -1;
  }
  snprintf (fp, 33, "%s", f);
  vms_repo_close (repo);
  return 0;
}

static int
key_show (const struct options *opts, int argc, char **argv)
{
  char fp[33];
  struct vms_key_info info;

  if (which_key (opts, argc, argv, fp) == -1)
    return cli_fail ("key show");
  CLEANUP_FREE char *path = vms_key_path (fp);
  int have = vms_key_info (fp, &info) == 0;
  if (!have && vms_get_errno () != ENOKEY)
    return cli_fail ("key show");
  if (opts->json) {
    json_object *o = json_object_new_object ();
    json_object_object_add (o, "fingerprint", json_object_new_string (fp));
    json_object_object_add (o, "key_file", json_object_new_string (path ? path : ""));
    json_object_object_add (o, "present", json_object_new_boolean (have));
    if (have) {
      json_object_object_add (o, "created", json_object_new_int64 (info.created));
      json_object_object_add (o, "passphrase", json_object_new_boolean (info.has_passphrase));
      if (info.has_passphrase)
        json_object_object_add (o, "scrypt_log2_n", json_object_new_int ((int) info.scrypt_log2_n));
      json_object_object_add (o, "recovery_key_sha256", info.has_recovery
                              ? json_object_new_string (info.recovery_key_sha256) : NULL);
      json_object_object_add (o, "recovery_method", info.has_recovery
                              ? json_object_new_string (info.recovery_method) : NULL);
    }
    cli_print_json (o);
    return EXIT_SUCCESS;
  }
  printf ("Key %s\n", fp);
  printf ("  key file:  %s%s\n", path ? cli_text (path) : "?",
          have ? "" : " (not on this host: import it with 'vmshadow key import')");
  if (have) {
    if (info.has_passphrase)
      printf ("  sealed:    with a passphrase (scrypt N=2^%u, r=%u, p=%u)\n",
              info.scrypt_log2_n, info.scrypt_r, info.scrypt_p);
    if (info.has_recovery)
      printf ("  recovery:  wrapped (%s) for the master key whose public key "
              "has SHA-256 %s\n", info.recovery_method, info.recovery_key_sha256);
  }
  return EXIT_SUCCESS;
}

static char *
read_all (const char *path, size_t *len)
{
  FILE *f = strcmp (path, "-") == 0 ? stdin : fopen (path, "re");
  char *buf = NULL;
  size_t cap = 0, n = 0;

  if (f == NULL) {
    vms_set_error (errno, "cannot open %s: %s", path, strerror (errno));
    return NULL;
  }
  for (;;) {
    if (n + 4096 > cap) {
      if (cap > (1u << 20)) {
        vms_set_error (EFBIG, "%s is too large for a key", path);
        goto fail;
      }
      char *nb = realloc (buf, cap = cap ? cap * 2 : 8192);
      if (nb == NULL)
        goto fail;
      buf = nb;
    }
    size_t r = fread (buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0)
      break;
  }
  if (ferror (f)) {
    vms_set_error (EIO, "cannot read %s", path);
    goto fail;
  }
  buf[n] = '\0';
  if (f != stdin)
    fclose (f);
  *len = n;
  return buf;
 fail:
  if (f != stdin)
    fclose (f);
  free (buf);
  return NULL;
}

int
cmd_key (const struct options *opts, int argc, char **argv)
{
  char fp[33];
  const char *usage = "create | show [FP] | change-passphrase [FP] | "
    "export --paper [FP] | import [--paper] [FILE]";

  if (argc < 1)
    return cli_error ("key", EXIT_USAGE, "usage: vmshadow key %s", usage);
  const char *sub = argv[0];
  argc--, argv++;
  if (argc > 1)
    return cli_error ("key", EXIT_USAGE, "usage: vmshadow key %s", usage);
  if ((opts->given & OPT_PAPER) && strcmp (sub, "export") != 0 &&
      strcmp (sub, "import") != 0)
    return cli_error ("key", EXIT_USAGE, "--paper is for key export and key "
                      "import");
  if (strcmp (sub, "show") == 0)
    return key_show (opts, argc, argv);
  if (strcmp (sub, "create") == 0) {
    if (argc)
      return cli_error ("key", EXIT_USAGE, "key create takes no argument");
    if (vms_key_create (opts->master_key, fp) == -1)
      return cli_fail ("key create");
    CLEANUP_FREE char *path = vms_key_path (fp);
    if (opts->json) {
      json_object *o = json_object_new_object ();
      json_object_object_add (o, "fingerprint", json_object_new_string (fp));
      json_object_object_add (o, "key_file", json_object_new_string (path ? path : ""));
      cli_print_json (o);
    }
    else
      printf ("Created key %s in %s.\nPrint it now and keep the paper "
              "safe: vmshadow key export --paper %s\n", fp,
              path ? cli_text (path) : "?", fp);
    return EXIT_SUCCESS;
  }
  if (strcmp (sub, "change-passphrase") == 0) {
    if (which_key (opts, argc, argv, fp) == -1 ||
        vms_key_change_passphrase (fp) == -1)
      return cli_fail ("key change-passphrase");
    if (!opts->json)
      printf ("Key %s has a new passphrase.\n", fp);
    return EXIT_SUCCESS;
  }
  if (strcmp (sub, "export") == 0) {
    if (!(opts->given & OPT_PAPER))
      return cli_error ("key", EXIT_USAGE, "key export needs --paper (the "
                        "key file itself can simply be copied)");
    if (which_key (opts, argc, argv, fp) == -1)
      return cli_fail ("key export");
    char *text = vms_key_export_paper (fp);
    if (text == NULL)
      return cli_fail ("key export");
    fputs (text, stdout);
    memset (text, 0, strlen (text));
    free (text);
    return EXIT_SUCCESS;
  }
  if (strcmp (sub, "import") == 0) {
    size_t len = 0;
    char *text = NULL;
    int r;
    if (argc == 0 && !(opts->given & OPT_PAPER) && opts->master_key) {
      /* The repository's recovery copy, opened with the master key. */
      vms_repo *repo = vms_repo_open (opts->repo_dir, VMS_REPO_NO_KEY);
      if (repo == NULL || (text = vms_repo_recovery_key (repo, &len)) == NULL) {
        vms_repo_close (repo);
        return cli_fail ("key import");
      }
      vms_repo_close (repo);
    }
    else if ((text = read_all (argc ? argv[0] : "-", &len)) == NULL)
      return cli_fail ("key import");
    if (opts->given & OPT_PAPER)
      r = vms_key_import_paper (text, fp);
    else
      r = vms_key_import (text, len, opts->master_key, fp);
    memset (text, 0, len);
    free (text);
    if (r == -1)
      return cli_fail ("key import");
    if (opts->json) {
      json_object *o = json_object_new_object ();
      json_object_object_add (o, "fingerprint", json_object_new_string (fp));
      cli_print_json (o);
    }
    else
      printf ("Imported key %s.\n", fp);
    return EXIT_SUCCESS;
  }
  return cli_error ("key", EXIT_USAGE, "unknown key command '%s'; usage: "
                    "vmshadow key %s", sub, usage);
}

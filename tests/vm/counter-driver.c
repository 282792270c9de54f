/* counter-driver — the host half of the consistency group test's counter
 * (tests/vm/consistency-group-*.sh, issue 17). A test tool, not part of
 * vmshadow.
 *
 *   counter-driver LOG SOCKET...
 *
 * Each SOCKET is the host end of a guest's virtio-serial port
 * "vmslab.counter" (tests/vm/counter-guest.sh runs on the other end). The
 * driver sends "tick N" to every guest; each guest writes N to a file on
 * its data disk and answers "ack N"; tick N+1 goes out only once every
 * guest acked N, and at most every 10 ms. So at any instant the guests'
 * files hold N or N+1 — the lockstep of an application spread over VMs.
 *
 * The application quiesces for a freeze the way guest writers do: the
 * guest's fsfreeze hook asks its counter to "pause"; the driver stops
 * ticking, answers "paused" once every guest acked the current tick (so
 * all files hold the same N), and ticks again only when every paused guest
 * said "resume" (its thaw hook). While one guest is paused the driver sends
 * "poll" every 10 ms so the others notice their own hooks.
 *
 * If every guest is frozen before any thaws (a consistency group), no tick
 * happens between the first freeze and the last thaw, and every backup
 * holds the same N. If one guest thaws before another freezes, ticks go on
 * in between and the later guest's backup holds a larger N.
 *
 * LOG gets one line per event: "<µs since the epoch> <event> <guest> <N>";
 * the line "state N" is rewritten in LOG.state after every tick. Runs until
 * SIGTERM or SIGINT (exit 0), or exits 1 when a guest's port closes.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_GUESTS 8

struct guest {
  int fd;
  char buf[256];
  size_t len;
  uint64_t acked;
  int paused, pause_pending;
};

static volatile sig_atomic_t stop;
static FILE *log_fp;
static char *state_path;

static void
on_signal (int sig)
{
  (void) sig;
  stop = 1;
}

static int64_t
now_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
event (const char *what, int g, uint64_t n)
{
  fprintf (log_fp, "%" PRId64 " %s %d %" PRIu64 "\n", now_us (), what, g, n);
  fflush (log_fp);
}

static void
send_line (struct guest *g, const char *line)
{
  size_t len = strlen (line), off = 0;
  while (off < len) {
    ssize_t r = write (g->fd, line + off, len - off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      fprintf (stderr, "counter-driver: write: %s\n", strerror (errno));
      exit (1);
    }
    off += (size_t) r;
  }
}

static void
write_state (uint64_t n)
{
  char tmp[4096];
  FILE *f;
  snprintf (tmp, sizeof tmp, "%s.tmp", state_path);
  if ((f = fopen (tmp, "w")) == NULL)
    return;
  fprintf (f, "%" PRIu64 "\n", n);
  fclose (f);
  rename (tmp, state_path);
}

static int
connect_to (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen (path) >= sizeof sa.sun_path) {
    fprintf (stderr, "counter-driver: socket path too long: %s\n", path);
    exit (2);
  }
  strcpy (sa.sun_path, path);
  for (int i = 0; i < 200; i++) {
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      break;
    if (connect (fd, (struct sockaddr *) &sa, sizeof sa) == 0)
      return fd;
    close (fd);
    usleep (50000);
  }
  fprintf (stderr, "counter-driver: cannot connect to %s: %s\n", path,
           strerror (errno));
  exit (1);
}

int
main (int argc, char **argv)
{
  struct guest gs[MAX_GUESTS];
  struct pollfd pf[MAX_GUESTS];
  int n = argc - 2;
  uint64_t tick = 0;
  int64_t last = 0;
  char path[4096];

  if (argc < 3 || n > MAX_GUESTS) {
    fprintf (stderr, "usage: counter-driver LOG SOCKET... (at most %d)\n",
             MAX_GUESTS);
    return 2;
  }
  if ((log_fp = fopen (argv[1], "a")) == NULL) {
    perror (argv[1]);
    return 1;
  }
  snprintf (path, sizeof path, "%s.state", argv[1]);
  state_path = path;
  signal (SIGTERM, on_signal);
  signal (SIGINT, on_signal);
  signal (SIGPIPE, SIG_IGN);
  memset (gs, 0, sizeof gs);
  for (int i = 0; i < n; i++) {
    gs[i].fd = connect_to (argv[i + 2]);
    pf[i] = (struct pollfd) { .fd = gs[i].fd, .events = POLLIN };
  }
  write_state (0);
  while (!stop) {
    int any_paused = 0, complete = 1;
    int64_t t = now_us ();

    for (int i = 0; i < n; i++) {
      any_paused |= gs[i].paused;
      complete &= gs[i].acked == tick;
    }
    for (int i = 0; i < n && complete; i++)
      if (gs[i].pause_pending) {
        send_line (&gs[i], "paused\n");
        gs[i].pause_pending = 0;
        event ("paused", i, tick);
      }
    if (t - last >= 10000) {
      if (any_paused) {
        for (int i = 0; i < n; i++)
          send_line (&gs[i], "poll\n");
        last = t;
      }
      else if (complete) {
        char line[64];
        tick++;
        snprintf (line, sizeof line, "tick %" PRIu64 "\n", tick);
        for (int i = 0; i < n; i++)
          send_line (&gs[i], line);
        last = t;
        write_state (tick);
      }
    }
    if (poll (pf, (nfds_t) n, 5) < 0) {
      if (errno == EINTR)
        continue;
      perror ("poll");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      struct guest *g = &gs[i];
      ssize_t r;
      char *nl;
      if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      r = read (g->fd, g->buf + g->len, sizeof g->buf - 1 - g->len);
      if (r <= 0) {
        fprintf (stderr, "counter-driver: guest %d closed its port\n", i);
        event ("closed", i, tick);
        return 1;
      }
      g->len += (size_t) r;
      g->buf[g->len] = '\0';
      while ((nl = strchr (g->buf, '\n')) != NULL) {
        unsigned long long v;
        *nl = '\0';
        if (sscanf (g->buf, "ack %llu", &v) == 1)
          g->acked = v;
        else if (strcmp (g->buf, "pause") == 0) {
          g->paused = g->pause_pending = 1;
          event ("pause", i, tick);
        }
        else if (strcmp (g->buf, "resume") == 0) {
          g->paused = g->pause_pending = 0;
          event ("resume", i, tick);
        }
        size_t used = (size_t) (nl + 1 - g->buf);
        memmove (g->buf, g->buf + used, g->len - used + 1);
        g->len -= used;
      }
      if (g->len == sizeof g->buf - 1)
        g->len = 0;             /* a line that long is noise */
    }
  }
  event ("stop", -1, tick);
  return 0;
}

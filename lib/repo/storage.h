/* The storage interface of lib/repo (docs/repository-format.md "Version 2",
 * "The storage interface"): named immutable objects, the only thing the
 * version 2 repository logic (packs, index segments, manifests, gc) asks
 * of where it lives. A backend is one struct of callbacks with a size
 * field; the repository calls it only through the storage_* wrappers
 * below, which check every name first (storage_valid_name), so a backend
 * never sees a name that did not pass that check.
 *
 * Every call returns 0 (or the value said) or -1 with errno set and no
 * message: the caller knows what the object is and says so (as the
 * helpers of repo-fs.c). errno: ENOENT absent, EEXIST an exclusive put
 * found the name taken, EINVAL a bad name, EBADMSG an object shorter than
 * the range asked, ELOOP a link where an object should be (never
 * followed), others as the system says (ENOSPC, EIO, EACCES, ...).
 */
#ifndef VMS_REPO_STORAGE_H
#define VMS_REPO_STORAGE_H

#include <stddef.h>
#include <stdint.h>

/* Names: 1..STORAGE_NAME_MAX bytes of A-Z a-z 0-9 / . _ : -, no leading
 * or trailing '/', no "//", no "." or ".." component, no component longer
 * than STORAGE_COMPONENT_MAX (a file name on a local file system). */
#define STORAGE_NAME_MAX 256
#define STORAGE_COMPONENT_MAX 255

enum {
  /* Fail with EEXIST if the name exists (manifests, leases, the config). */
  STORAGE_PUT_EXCLUSIVE = 1,
  /* Durable only after the next storage_sync, not when put returns
   * (packs and segments: one flush before the manifest, as v1 does for
   * chunks). Whole or absent all the same. */
  STORAGE_PUT_LAZY = 2,
  /* Never under the backend's retention, whatever its name (gc's
   * compacted index segments: they index only packs whose own retention
   * has ended; issue 14). */
  STORAGE_PUT_NO_RETAIN = 4,
};

struct storage_stat {
  uint64_t size;
  int64_t mtime;                /* the store's clock, Unix seconds */
  /* Object Lock (S3, issue 14): the object's retain-until date, 0 when it
   * has none (every other backend). storage_stat zeroes it first. */
  int64_t retain_until;
  /* The store's clock when it answered (S3's Date), 0 when unknown. */
  int64_t now;
};

/* Called once per name by list; a non-zero return stops the listing and
 * is list's return value. */
typedef int (*storage_list_fn) (void *opaque, const char *name);

struct storage;

struct storage_ops {
  size_t size;                  /* sizeof (struct storage_ops) */
  const char *name;             /* "local", "rados", ... */
  /* The object appears whole or not at all; a put over an existing name
   * without STORAGE_PUT_EXCLUSIVE replaces it whole (only the writer of
   * a name ever does that: names are unique to their writer). Durable
   * when it returns. */
  int (*put) (struct storage *s, const char *name, const void *buf,
              size_t len, unsigned flags);
  /* len bytes from offset into buf: EBADMSG if the object ends before. */
  int (*get) (struct storage *s, const char *name, uint64_t offset,
              size_t len, void *buf);
  int (*stat) (struct storage *s, const char *name, struct storage_stat *st);
  /* Every object whose name starts with prefix ("" for all), in any order. */
  int (*list) (struct storage *s, const char *prefix, storage_list_fn fn,
               void *opaque);
  /* An absent name is success. */
  int (*del) (struct storage *s, const char *name);
  /* The store's clock (Unix seconds). */
  int (*now) (struct storage *s, int64_t *t);
  /* Make every STORAGE_PUT_LAZY put so far durable. NULL: every put is
   * durable when it returns. */
  int (*sync) (struct storage *s);
  void (*close) (struct storage *s);
  /* The name of the object whose put failed when the last put or sync
   * failed on an earlier STORAGE_PUT_LAZY put still in flight (a backend
   * that writes lazily in the background: RADOS); 0, or -1 when the
   * failure was the call's own. NULL: failures are always the call's
   * own. */
  int (*failed_name) (struct storage *s, char *buf, size_t size);
  /* Optional (NULL: not offered): an object written in order, a piece at
   * a time, that appears whole at commit or not at all, as a put with the
   * same flags would make it; until then it can be read back (pread) by
   * its writer. So a pack need not be held whole in memory (issue 15:
   * peak memory). open fails with ENOTSUP when the backend cannot do it
   * for that name. commit and abort free the writer, also on failure. */
  struct storage_writer *(*writer_open) (struct storage *s, const char *name,
                                         unsigned flags);
  /* Optional (NULL: the store keeps no retention, as local and RADOS):
   * make the retention of object name last at least until the date this
   * session's puts carry (S3 Object Lock, issue 14, R29; never shortened).
   * 1 when lengthened, 0 when it lasted that long already or this session
   * retains nothing (or not that name); *was (may be NULL) its date
   * before, 0 for none. -1 with errno (ENOENT gone, EACCES refused). */
  int (*extend_retention) (struct storage *s, const char *name, int64_t *was);
};

/* A writer of writer_open: its own calls (a wrapping backend may hand out
 * the writer of the backend it wraps). */
struct storage_writer {
  int (*append) (struct storage_writer *w, const void *buf, size_t len);
  int (*read) (struct storage_writer *w, uint64_t offset, size_t len,
               void *buf);
  int (*commit) (struct storage_writer *w);
  void (*abort) (struct storage_writer *w);
};

struct storage {
  const struct storage_ops *ops;
};

/* 1 if name is a valid object name (above), else 0. */
extern int storage_valid_name (const char *name);

/* The checked wrappers: EINVAL for a bad name, without calling the
 * backend. */
extern int storage_put (struct storage *s, const char *name, const void *buf,
                        size_t len, unsigned flags);
extern int storage_get (struct storage *s, const char *name, uint64_t offset,
                        size_t len, void *buf);
extern int storage_stat (struct storage *s, const char *name,
                         struct storage_stat *st);
/* prefix may be "" (everything) or must be a valid name followed by an
 * optional '/'. */
extern int storage_list (struct storage *s, const char *prefix,
                         storage_list_fn fn, void *opaque);
/* A storage_list_fn that appends a copy of every name to the
 * string_vector (vector.h) that opaque points to. */
extern int storage_collect_names (void *opaque, const char *name);
extern int storage_delete (struct storage *s, const char *name);
extern int storage_now (struct storage *s, int64_t *t);
extern int storage_sync (struct storage *s);
/* After a storage_put or storage_sync that failed: 0 and the name of the
 * object that failed in buf when it was another one than the call's (an
 * earlier lazy put finishing in the background), else -1. Accepts a
 * sealing layer (asks the backend under it). */
extern int storage_failed_name (struct storage *s, char *buf, size_t size);
/* A whole object of at most max bytes in a new buffer (NUL-terminated for
 * convenience): EFBIG when larger (then *len holds its size). */
extern int storage_get_all (struct storage *s, const char *name, size_t max,
                            void **buf, size_t *len);
/* Accepts NULL. */
extern void storage_close (struct storage *s);
/* storage_ops.extend_retention through any sealing layer (names are not
 * sealed): -1 with ENOTSUP when the backend keeps no retention. The lock
 * extension of reused packs (pack.c) calls it. */
extern int storage_extend_retention (struct storage *s, const char *name,
                                     int64_t *was);
/* An object written in pieces (storage_ops.writer_open): NULL with errno
 * (ENOTSUP when the backend does not offer it, EINVAL for a bad name). */
extern struct storage_writer *storage_writer_open (struct storage *s,
                                                   const char *name,
                                                   unsigned flags);

/* ---- backends ---- */

/* The local directory backend: every object is a file under the directory
 * dirfd (which it dups; the caller keeps its own), reached one component
 * at a time without following any link; puts go through tmp/ (made when
 * writable), fsync, and rename (renameat2 RENAME_NOREPLACE for exclusive
 * puts), then an fsync of the directory; a lazy put skips both fsyncs,
 * and sync is one syncfs(2). Names whose first component is
 * "tmp" or "lock" are reserved to the backend and the repository's writer
 * lock (EINVAL), and never listed. NULL with the error set. */
extern struct storage *storage_local_open (int dirfd, const char *path,
                                           int writable);

/* The Ceph RADOS backend (storage-rados.c, librados): spec is
 * "POOL[/NAMESPACE]" (the part after "rados:"); the client is configured
 * by $VMSHADOW_RADOS_CONF, $VMSHADOW_RADOS_ID and $VMSHADOW_RADOS_KEYRING
 * (else librados's defaults: $CEPH_CONF, client.admin). Exclusive puts are
 * one write op with create(LIBRADOS_CREATE_EXCLUSIVE); a lazy put is
 * asynchronous (up to $VMSHADOW_RADOS_WRITE_AHEAD MiB in flight; an object
 * outside packs/ becomes visible only after every earlier lazy put is) and
 * sync waits for them all; every other put is durable when it returns;
 * sequential ranged reads of packs/ objects are read ahead
 * ($VMSHADOW_RADOS_READ_AHEAD MiB, default 16); the objects "lock" (the writer lock
 * of earlier builds) and "clock/..." are never listed. NULL with the error
 * set (ENOTSUP in a build without librados). */
extern struct storage *storage_rados_open (const char *spec);

/* The S3 backend (storage-s3.c, libcurl with CURLOPT_AWS_SIGV4; issue
 * 14): spec is "BUCKET[/PREFIX]" (the part after "s3://"); endpoint,
 * region, addressing and credentials from $VMSHADOW_S3_*, $AWS_*, the
 * file $VMSHADOW_S3_CONFIG (default /etc/vmshadow/s3.conf) or the AWS
 * shared credentials file (storage-s3.c says the order). Opening lists
 * the prefix once, so a missing bucket, bad credentials or an unreachable
 * endpoint fail here, named. Exclusive puts are If-None-Match: *; every
 * put is durable when it returns (no sync); the objects "lock" and
 * "clock/..." are the backend's and never listed. NULL with the error
 * set. */
extern struct storage *storage_s3_open (const char *spec);
/* The repository's writer lock on S3 (until its leases; RADOS has none
 * since issue 12's leases): the object
 * name, put exclusively, its Last-Modified renewed every 10 s by a thread
 * until storage_close (which deletes it); one not renewed for 60 s by the
 * store's clock is taken over (deleted and put again). Weaker than RADOS's:
 * two clients taking over the same stale lock at the same second can both
 * succeed. -1 with EBUSY when held, ENOTSUP for another backend. */
extern int storage_s3_lock (struct storage *s, const char *name,
                            const char *desc);
extern int storage_s3_lock_holder (struct storage *s, const char *name,
                                   char *buf, size_t size);
/* Immutability (issue 14, R29; docs/repository-format.md "Immutability"):
 * the objects of backups (storage_s3_protected_name: packs/, index/,
 * backups/, keys/, config) are put from now on with Object Lock mode
 * ("GOVERNANCE" or "COMPLIANCE") and a retain-until date of the store's
 * clock now + days (days 0: no retention), after checking that the bucket
 * has Object Lock enabled (ENOTSUP, message set, if not); a delete of a
 * protected object first reads its retention and is refused (EPERM) while
 * it lasts, else deletes that version for good (a versioned bucket would
 * otherwise keep it under a delete marker). append_only: puts of
 * protected names are exclusive and their deletes refused (EPERM), on
 * any bucket. -1 with the error set; ENOTSUP for another backend. */
extern int storage_s3_protect (struct storage *s, const char *mode,
                               unsigned days, int append_only);
extern int storage_s3_protected_name (const char *name);
/* A repository on an object store, by its --repo form: "rados:POOL[/NS]"
 * or "s3://BUCKET[/PREFIX]" (storage_remote_spec says which strings are
 * one). The writer lock and its holder on S3 (ENOTSUP on RADOS). */
extern int storage_remote_spec (const char *repo);
extern struct storage *storage_remote_open (const char *repo);
extern int storage_remote_lock (struct storage *s, const char *name,
                                const char *desc);
extern int storage_remote_lock_holder (struct storage *s, const char *name,
                                       char *buf, size_t size);

/* The sealing layer of an encrypted repository (storage-crypt.c): wraps
 * inner (and closes it with itself); every object but config, keys/,
 * packs/, sessions/, clock/ and gc/ is sealed on put and authenticated on
 * get, its name and repo_id bound in (EKEYREJECTED when it fails). key
 * NULL: sealed objects can be listed, stat'ed and deleted but not read or
 * written (ENOKEY). NULL on out of memory. */
struct crypt_key;
extern struct storage *storage_crypt_wrap (struct storage *inner,
                                           const struct crypt_key *key,
                                           const char *repo_id);
/* 1 if the layer seals object name. */
extern int storage_crypt_sealed_name (const char *name);
/* The backend under the layer (s itself if s is no sealing layer). */
extern struct storage *storage_crypt_inner (struct storage *s);

#endif /* VMS_REPO_STORAGE_H */

/* lib/repo internals shared by its files, and by the unit tests and fuzz
 * targets of tests/{unit,fuzz}/repo (which reach the pure parsers and the
 * prune selection through this header). docs/repository-format.md is the
 * on-disk spec that these functions implement.
 */
#ifndef VMS_REPO_INTERNAL_H
#define VMS_REPO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "vmshadow/repo.h"

/* Scoped cleanup of the repository's handles. */
DEFINE_CLEANUP (vms_index, vms_index_free);
DEFINE_CLEANUP (vms_manifest, vms_manifest_free);

#define REPO_CONFIG_FORMAT "vmshadow-repository"
#define MANIFEST_FORMAT "vmshadow-backup-manifest"
#define MANIFEST_VERSION 1
#define MAX_MANIFEST_BYTES (64u << 20)
#define MAX_MANIFEST_FILES 65536
#define MAX_MANIFEST_CREATED INT64_C(253402300799)  /* 9999-12-31T23:59:59Z */
#define MAX_MANIFEST_METADATA 4096
#define MAX_MANIFEST_STRING 4096
#define MAX_BACKUP_ID_LEN 128
/* 2^50 bytes (1 PiB): far beyond any disk this is for, and a cap that keeps
 * every size computation far from overflow. */
#define MAX_FILE_SIZE ((uint64_t) 1 << 50)

/* The chunk size is a power of two from 4 KiB to 4 MiB: chunk boundaries
 * then line up with the power-of-two granularities of dirty bitmaps and
 * qcow2 clusters, the index of a MAX_FILE_SIZE file has at most 2^38
 * entries, and a chunk's length fits its header field. */
_Static_assert ((VMS_CHUNK_SIZE & (VMS_CHUNK_SIZE - 1)) == 0
                && VMS_CHUNK_SIZE >= 4096 && VMS_CHUNK_SIZE <= (4u << 20),
                "VMS_CHUNK_SIZE must be a power of two from 4 KiB to 4 MiB");
/* The largest index file: header, one digest per chunk of a MAX_FILE_SIZE
 * file, checksum. */
#define MAX_INDEX_BYTES \
  (INDEX_HEADER_SIZE + (MAX_FILE_SIZE / VMS_CHUNK_SIZE + 1) * VMS_DIGEST_LEN \
   + VMS_DIGEST_LEN)

/* A chunk is stored in one of two forms, told apart by its file name
 * (docs/repository-format.md "Chunks"): raw, chunks/ab/<hex>, whose bytes
 * are the content and nothing else; or zstd, chunks/ab/<hex>.zst, a
 * CHUNK_HEADER_SIZE-byte header and a zstd frame. */
enum chunk_form { CHUNK_FORM_RAW = 0, CHUNK_FORM_ZSTD = 1 };
#define CHUNK_ZSTD_SUFFIX ".zst"
/* "ab/" + 64 hex digits + ".zst" + NUL */
#define CHUNK_NAME_MAX 72
#define CHUNK_MAGIC "VMSC"
#define CHUNK_VERSION 1
#define CHUNK_HEADER_SIZE 16
#define CHUNK_COMPRESSION_ZSTD 1        /* the only value of header byte 5 */

#define INDEX_MAGIC "VMSINDEX"
#define INDEX_VERSION 1
#define INDEX_HEADER_SIZE 32

struct vms_repo {
  char *path;
  /* The repository directory and its subdirectories, opened once by
   * vms_repo_open without following links: every path in the repository
   * is reached from these (vms_open_beneath), so a symbolic link planted
   * in the repository never leads outside it (docs/security.md). */
  int dirfd;
  int chunks_fd;                /* chunks/ */
  int backups_fd;               /* backups/ */
  int tmp_fd;                   /* tmp/; -1 without VMS_REPO_WRITE */
  /* chunks/00 .. chunks/ff, opened on first use (chunk_store_dir), -1
   * until then; set once with an atomic compare-and-swap. */
  int chunk_dirs[256];
  int lock_fd;                  /* the lock file, held; -1 without VMS_REPO_WRITE */
  unsigned flags;
  uint32_t chunk_size;
  char id[65];                  /* repository id from config */
  unsigned txn_counter;         /* names of this process's temp dirs */
  /* Format version 2 (docs/repository-format.md "Version 2"): the
   * repository's objects, through the storage interface (chunks_fd and
   * backups_fd stay -1), and its packs and index. */
  int version;                  /* 1 or 2, from the config */
  uint32_t pack_size;           /* v2: target bytes per pack */
  struct storage *store;        /* v2 */
  struct repo_packs *packs;     /* v2: pack.c's state, made on first use */
  /* Encryption (v2, R28; docs/encryption.md): the config's "encryption".
   * key is the unlocked key (crypt.h), NULL when opened with
   * VMS_REPO_NO_KEY; store is then the sealing layer over the backend. */
  int encrypted;
  int hide_ids;                 /* backup ids hidden in object names */
  char key_fp[33];              /* the key's fingerprint (hex) */
  const struct crypt_key *key;  /* borrowed from key.c's cache */
  size_t blob_overhead;         /* bytes an envelope adds to a blob: 0 or 33 */
  /* A repository on an object store (rados:POOL[/NS], issue 12;
   * s3://BUCKET[/PREFIX], issue 14): no directory (dirfd and the other
   * fds stay -1); session leases (always version 2), and on S3 also its
   * writer lock (store_locked). */
  int remote;
  int store_locked;
  /* v2 opened with VMS_REPO_WRITE: this process's session lease
   * (lease.c; no repository-wide lock, issue 12). */
  struct repo_lease *session;
  /* Called as each pack of this process is put (pack.c): stored 0 just
   * before (-1 fails the put, error set), 1 once stored, before its
   * segment. sync records its packs with it (pack_adopt). */
  int (*pack_put_hook) (vms_repo *repo, const uint8_t id[16], int stored,
                        void *opaque);
  void *pack_put_opaque;
  /* Immutability (issue 14, R29; docs/repository-format.md
   * "Immutability"): the config's "retention" (days 0: none; mode
   * "GOVERNANCE" or "COMPLIANCE") and "append_only"; admin: opened with
   * VMS_REPO_ADMIN (prune and gc of an append-only repository). What the
   * last prune or gc kept because it is still retained. */
  unsigned retention_days;
  char retention_mode[16];
  int append_only;
  int admin;
  uint64_t kept_objects, kept_bytes;
  int64_t kept_until;
};

/* repo.c: note an object kept because it is retained until until. */
extern void repo_note_kept (vms_repo *repo, uint64_t size, int64_t until);
/* repo.c: fails (EPERM, message) when repo is append-only and was not
 * opened with VMS_REPO_ADMIN: what (prune, gc) deletes. */
extern int repo_need_delete (vms_repo *repo, const char *what);

/* The format version a repository is created with: VMS_REPO_FORMAT_2 in
 * the flags, else $VMSHADOW_REPO_FORMAT ("1" or "2"), else 2. */
#define REPO_FORMAT_ENV "VMSHADOW_REPO_FORMAT"
/* 30 MiB: a pack (with its trailer) stays under 32 MiB, glibc's largest
 * mmap threshold, so that the buffers librados and the OSD allocate for it
 * are reused from the heap instead of being mapped, faulted in page by
 * page and unmapped for every pack; on the lab's OSD 32 MiB writes cost
 * 1.95-2.5 CPU-s/GiB and 30 MiB ones 1.5-1.8 (rados bench, issue 12,
 * docs/repository-format.md "Measurements"). 35 packs per GiB: 1 TiB is
 * about 70 000 objects with the segments. */
#define PACK_SIZE_DEFAULT (30u << 20)
#define PACK_SIZE_MIN (1u << 20)
#define PACK_SIZE_MAX (1u << 30)
#define PACK_MAGIC "VMSPACK2"
/* The pack format version new packs get. A reader takes both: version 1's
 * tail holds the SHA-256 of every byte before it, version 2's (issue 15)
 * their XXH3-128 and 16 zero bytes (pack_check_whole). */
#define PACK_VERSION 2
#define PACK_VERSION_SHA256 1
#define PACK_HEADER_SIZE 16
#define PACK_TAIL_SIZE 48
#define PACK_FLAG_ENCRYPTED 1u
#define SEGMENT_MAGIC "VMSIDX2S"
#define SEGMENT_VERSION 1
#define SEGMENT_HEADER_SIZE 16
#define SEGMENT_ENTRY_SIZE 64
/* v2 file indexes: v1's format, index version 2. */
#define INDEX_VERSION_2 2

/* ---- repo-fs.c: file helpers. They return -1 with errno set and no
 * message: callers know what the file is and say so. ---- */

/* 1 if name is a valid backup id: 1..128 bytes of [A-Za-z0-9._:-], not
 * starting with '.' ("." and ".." included). Index and document names in a
 * manifest are held to the same rule. */
extern int repo_valid_name (const char *name);
/* vms_fs_errstr: strerror, but "no space left on device" and friends in
 * lower case, for messages that put it mid-sentence, and a refused link or
 * FIFO said as such. */
extern const char *repo_errstr (int errnum);
/* mkdirat with exactly mode 0700 whatever the umask; EEXIST is success. */
extern int repo_mkdirat (int dirfd, const char *name);
/* Create name (must not exist) with exactly 0600, write buf, fsync, close. */
extern int repo_write_new_file (int dirfd, const char *name,
                                const void *buf, size_t len);
/* Read a whole regular file (through vms_open_beneath: name may have
 * directories, none a link, and a FIFO is refused) of at most max
 * bytes into a new buffer (NUL-terminated for convenience). errno EFBIG
 * when larger; *len_out then holds the size. */
extern int repo_read_file (int dirfd, const char *name, size_t max,
                           char **buf, size_t *len_out);
extern int repo_fsync_dir (int dirfd, const char *name);
/* The pid a temp name starts with ("1234.…" or ".tmp-1234-…"), or 0. */
extern pid_t repo_temp_pid (const char *name);

/* ---- chunk-store.c ---- */

/* Check that chunk d exists, in either form, and is sound for a chunk of
 * len bytes (len 0: any length) as far as can be told without reading it:
 * a raw file's size, a zstd file's header and size. 0, or -1 with errno
 * ENOENT (missing) or EBADMSG (corrupt) and a message "chunk HEX is ..."
 * with no context. */
extern int chunk_store_check (vms_repo *repo, const struct vms_digest *d,
                              size_t len);
/* vms_repo_chunk_get without the repository in the message; verify
 * CHUNK_REDERIVE also re-derives an encrypted repository's keyed id from
 * the opened content (verify --deep: it proves what the host that wrote
 * the chunk hashed is what it sealed, which GCM cannot). */
#define CHUNK_REDERIVE 2
extern int chunk_store_read (vms_repo *repo, const struct vms_digest *d,
                             void *buf, size_t len, int verify);
/* verify of a version 2 repository a pack at a time (verify.c): chunk d
 * of len bytes found at loc, checked as chunk_store_check would against
 * its pack's size (pack_size; UINT64_MAX when the blob was read) and,
 * with blob (its stored bytes, read by the caller) not NULL, read into
 * buf as chunk_store_read with CHUNK_REDERIVE would. 0, or -1 with the
 * same messages as those. */
struct pack_loc;
extern int chunk_store_check_at (vms_repo *repo, const struct vms_digest *d,
                                 size_t len, const struct pack_loc *loc,
                                 uint64_t pack_size, const uint8_t *blob,
                                 void *buf);
/* The verified content of chunk d (len bytes) in a buffer of this thread,
 * valid until its next call: successive small reads of one chunk (random
 * reads by offset) read and hash it once. NULL with the error set. */
extern const uint8_t *chunk_store_read_cached (vms_repo *repo,
                                               const struct vms_digest *d,
                                               size_t len);
/* The header h (CHUNK_HEADER_SIZE bytes; zeros past a shorter file) of a
 * zstd chunk file of file_size bytes: magic, version, compression, and a
 * length (1..VMS_CHUNK_SIZE, equal to expect with check_len) and payload
 * size (less than the length, and the rest of the file). 0 with *payload
 * set, or -1 with EBADMSG and "chunk HEX is corrupt (why)", HEX naming d.
 * Untrusted input: tests/fuzz/repo/fuzz-chunk.c. */
extern int chunk_store_parse_header (const uint8_t *h, uint64_t file_size,
                                     int check_len, size_t expect,
                                     const struct vms_digest *d,
                                     uint32_t *payload);
/* Decompress the n-byte zstd payload of chunk d into buf, which it must
 * fill exactly (len bytes): 0, or -1 with EBADMSG ("chunk HEX is
 * corrupt"). */
extern int chunk_store_unpack (const uint8_t *payload, size_t n, void *buf,
                               size_t len, const struct vms_digest *d);
/* A chunk file name, "<64 hex digits>" or "<64 hex digits>.zst": its
 * form (and d), or -1 if name is no chunk's (a temp file, anything else). */
extern int chunk_store_parse_name (const char *name, struct vms_digest *d);

/* A set of digests, each with a small value (verify: the check result). */
struct digest_set_entry {
  struct vms_digest d;
  int used;
  int value;
};
struct digest_set {
  struct digest_set_entry *e;
  size_t cap, len;
};
/* The entry of d, added (used set, value 0) if absent; *added says which.
 * NULL on out of memory (error set). */
extern struct digest_set_entry *digest_set_add (struct digest_set *s,
                                                const struct vms_digest *d,
                                                int *added);
extern int digest_set_contains (const struct digest_set *s,
                                const struct vms_digest *d);
extern void digest_set_free (struct digest_set *s);

/* ---- index.c ---- */

/* The index file image of idx (header, digests, trailing SHA-256). */
extern int index_serialize (const vms_index *idx, void **buf, size_t *len);
/* Parse an index file image; what names it in errors ("backup B: index 3").
 * Untrusted input: every size is checked before use. */
extern vms_index *index_parse (const void *buf, size_t len, const char *what);
/* The same for a given index version (INDEX_VERSION, or INDEX_VERSION_2
 * in a version 2 repository). */
extern int index_serialize_version (const vms_index *idx, uint32_t version,
                                    void **buf, size_t *len);
extern vms_index *index_parse_version (const void *buf, size_t len,
                                       uint32_t version, const char *what);

/* ---- manifest.c ---- */

struct manifest_file {
  char *writer_id, *component, *path, *format, *checkpoint;
  enum vms_file_kind kind;
  uint64_t size, bytes_read, bytes_stored;
  char *index;                  /* file name in indexes/ */
};

/* Parse manifest text. backup_id: the name of the directory it was read
 * from (the manifest must agree), or NULL to take the id it names. */
extern vms_manifest *manifest_parse (const char *text, size_t len,
                                     const char *backup_id);
/* The same for a manifest of a version 2 repository (version 2). */
extern vms_manifest *manifest_parse_version (const char *text, size_t len,
                                             const char *backup_id,
                                             int version);
/* The manifest as JSON text (newline-terminated); caller frees. */
extern char *manifest_format (const vms_manifest *m);
/* Read backups/<id>/manifest.json without loading its documents. */
extern vms_manifest *manifest_load (vms_repo *repo, const char *backup_id);
/* The nanoseconds of vms_manifest_time's second (0 in older manifests). */
extern int32_t manifest_time_nsec (const vms_manifest *m);
extern const struct manifest_file *manifest_file_at (const vms_manifest *m,
                                                     size_t i);
extern size_t manifest_metadata_expected (const vms_manifest *m);
extern int manifest_has_components (const vms_manifest *m);

/* Write backup m (opened from a version 1 repository, with its documents)
 * into the version 2 view v2 of the same directory: its file indexes idx
 * (one per file) as index version 2, its documents, a sync, then its
 * manifest ("version": 2, same id, time and attributes). A manifest that
 * is there already (an interrupted upgrade) is left as it is. */
extern int manifest_store_v2 (vms_repo *v2, vms_manifest *m,
                              vms_index *const *idx);

/* ---- repo.c ---- */

/* v2: put this process's session lease (repo->session). */
extern int repo_start_session (vms_repo *repo);
/* Fails with EBADF and a message unless the writer lock is held. */
extern int repo_need_write (vms_repo *repo, const char *what);
struct repo_backup {
  char *id;
  int64_t time;
  int32_t nsec;                 /* of that second: orders one second's */
  char *error;                  /* the manifest could not be read: why */
};
/* Every directory in backups/ with a valid name, oldest first (by the
 * manifest's time, then id); unreadable manifests first, with error set. */
extern int repo_list_backups (vms_repo *repo, struct repo_backup **out,
                              size_t *nr);
extern void repo_backups_free (struct repo_backup *b, size_t nr);

/* ---- little-endian numbers, as every on-disk format here stores them ---- */

static inline void
repo_put_le32 (uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t) (v >> (8 * i));
}

static inline void
repo_put_le64 (uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t) (v >> (8 * i));
}

static inline uint32_t
repo_get_le32 (const uint8_t *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
    (uint32_t) p[3] << 24;
}

static inline uint64_t
repo_get_le64 (const uint8_t *p)
{
  return (uint64_t) repo_get_le32 (p) | (uint64_t) repo_get_le32 (p + 4) << 32;
}

/* chunk-store.c: a chunk's id: SHA-256 of its content, or HMAC-SHA-256
 * under K_id in an encrypted repository (R28). -1 with the error set. */
extern int repo_chunk_id (vms_repo *repo, const void *data, size_t len,
                          struct vms_digest *d);
/* repo.c: "backups/<id>", or "backups/<HMAC-SHA-256(K_name, id) hex>"
 * where the repository hides backup ids, into buf (STORAGE_NAME_MAX + 1).
 * -1 (ENOKEY) when ids are hidden and the repository has no key. */
extern int repo_backup_dir (vms_repo *repo, const char *id, char *buf,
                            size_t size);
/* chunk-store.c: SHA-256 of data into out (OpenSSL); -1 with the error
 * set if OpenSSL fails. */
extern int repo_sha256 (const void *data, size_t len, uint8_t out[VMS_DIGEST_LEN]);

/* prune.c: one formatted line to report (may be NULL). */
extern void repo_say (vms_repo_report_fn report, void *opaque, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* ---- pack.c: version 2's packs and repository index ---- */

/* Where a chunk lives: its pack, the blob's offset and stored length, its
 * plaintext length and form (CHUNK_FORM_RAW: the blob is the content;
 * CHUNK_FORM_ZSTD: one zstd frame). */
struct pack_loc {
  uint8_t pack_id[16];
  uint32_t offset, slen, plen;
  uint8_t form;
};
/* Look chunk d up in the repository index (loaded on first use): 1 and
 * *loc when there, 0 when not, -1 with the error set. */
extern int pack_lookup (vms_repo *repo, const struct vms_digest *d,
                        struct pack_loc *loc);
/* The same for a writer about to reference d without storing it (rule 2
 * of "Concurrency"): 0 when d is only in condemned packs. */
extern int pack_lookup_dedup (vms_repo *repo, const struct vms_digest *d,
                              struct pack_loc *loc);
/* Append a blob to this process's open pack unless d is indexed already
 * (*stored 0 then); a full pack is put, then its index segment. */
extern int pack_add_blob (vms_repo *repo, const struct vms_digest *d, int form,
                          const void *blob, size_t slen, size_t plen,
                          uint64_t *stored);
/* The slen bytes of the blob at loc into buf (from the open pack when it
 * is still in memory). -1 with errno ENOENT (pack missing), EBADMSG (pack
 * shorter than the index says) or another, and no message. */
extern int pack_read_blob (vms_repo *repo, const struct pack_loc *loc,
                           void *buf);
/* Load the repository index again (a pack named by the loaded one is
 * gone: a gc repacked it meanwhile). Not while this process has chunks
 * not yet put (then 0 and nothing changes). */
extern int pack_reload (vms_repo *repo);
/* Load the repository index unless loaded (vms_repo_prepare_store). */
extern int pack_preload (vms_repo *repo);
/* Put the open pack and its segment (a commit does, before its
 * manifest); fails if any pack of this process failed to be stored. */
extern int pack_flush (vms_repo *repo);
/* Lock extension (issue 14, R29), in a repository with a retention (else
 * both do nothing): note the packs whose chunks file index idx names;
 * then, before the manifest, extend the Object Lock retention of every
 * noted pack an older session put, of the index segments naming them, of
 * the config and of keys/ to this session's date (storage_extend_retention;
 * *extended: how many were extended), the notes cleared. -1 with the
 * error set (naming backup_id, "not committed"). */
extern int pack_note_used (vms_repo *repo, const vms_index *idx);
extern int pack_extend_used (vms_repo *repo, const char *backup_id,
                             uint64_t *extended);
/* Check a whole pack of len bytes at b (untrusted): its magic, a pack
 * format version this build reads (pack_check_version) and its tail's
 * checksum (version 1: SHA-256; 2: XXH3-128, then 16 reserved bytes that
 * must be zero). Bit rot, a cut or a lost write, not an attacker: GCM tags
 * and chunk ids are what authenticate. 0 when sound; else -1 and, in why,
 * what is wrong as words that follow "pack NAME " ("is corrupt (checksum
 * mismatch: damaged or cut short)"). The trailer's place is not checked. */
extern int pack_check_whole (const uint8_t *b, size_t len, char *why,
                             size_t size);
/* 0 if this build reads pack format version; else -1 and, in why, words
 * that follow "pack NAME " and say so. */
extern int pack_check_version (uint32_t version, char *why, size_t size);
/* "packs/ab/<32 hex>" for a pack id. */
extern void pack_object_name (const uint8_t id[16], char name[64]);
/* gc of a version 2 repository (docs/repository-format.md "Version 2",
 * "Concurrency"): under gc/lease, phase 1 (mark with mark, repack mostly
 * dead packs, condemn packs without a live chunk older than grace_seconds
 * by the store's clock) and phase 2 (for condemned lists whose sessions
 * have all ended: mark again, delete what no live chunk needs, compact
 * the index), then remove the objects of backups without a manifest that
 * no running session can be writing. */
extern int pack_gc (vms_repo *repo,
                    int (*mark) (vms_repo *, struct digest_set *),
                    int64_t grace_seconds, uint64_t *removed, uint64_t *freed);
extern void pack_state_free (vms_repo *repo);
/* Pack id, put by an earlier session of this host that died before the
 * segment naming it (sync, docs/repository-format.md "Sync"): unless
 * some segment names it or it is condemned, read it whole, check its
 * tail, trailer and every blob against its id, and put a segment naming
 * the chunks the index lacks, which this process then deduplicates
 * against. 1 adopted (*chunks: how many), 0 not (gone, named already,
 * condemned, nothing missing; *why says which), -1 with the error set
 * (unreadable, or not a sound pack: then it is left for gc). */
extern int pack_adopt (vms_repo *repo, const uint8_t id[16], uint64_t *chunks,
                       const char **why);
/* An index segment image of n entries (SEGMENT_ENTRY_SIZE bytes each,
 * sorted in place): header, entries, SHA-256. */
extern int segment_build (uint8_t *entries, size_t n, void **out, size_t *len);
/* Check a segment image (untrusted input; tests/fuzz/repo/fuzz-segment.c):
 * the number of its entries, or -1 with EBADMSG and a message naming it
 * (name). */
extern int64_t segment_check (const uint8_t *b, size_t len, const char *name);

/* ---- lease.c: leases of format version 2 (rule 1 of "Concurrency") ---- */

#define LEASE_SECONDS_ENV "VMSHADOW_LEASE_SECONDS"
#define LEASE_TTL_DEFAULT 1800u         /* 30 minutes, renewed every 5 */
#define LEASE_TTL_MIN 6u
#define LEASE_TTL_MAX 86400u
struct repo_lease;
/* $VMSHADOW_LEASE_SECONDS if valid, else LEASE_TTL_DEFAULT. */
extern unsigned lease_ttl_default (void);
/* Put a lease and start renewing it: name NULL for a new session lease
 * sessions/<32 hex>, else that name, put exclusively (EBUSY when it is
 * held). NULL with the error set. */
extern struct repo_lease *lease_take (vms_repo *repo, const char *name);
extern const char *lease_id (const struct repo_lease *l);
/* 0 while the holder may trust its lease; else -1 (ETIMEDOUT, error set)
 * from then on. */
extern int lease_ok (struct repo_lease *l);
/* Stop renewing and delete the lease. Accepts NULL. */
extern void lease_release (struct repo_lease *l);
struct lease_info {
  int64_t mtime, created;       /* store times; created INT64_MIN: unknown */
  unsigned ttl;
  int expired;                  /* by now, the store's clock */
  int pid;
  char host[64];
};
/* A lease object as gc sees it; -1 with errno ENOENT when it is gone. */
extern int lease_read (vms_repo *repo, const char *name, int64_t now,
                       struct lease_info *info);

/* ---- prune.c ---- */

enum {
  PRUNE_LAST = 1, PRUNE_DAILY = 2, PRUNE_WEEKLY = 4, PRUNE_MONTHLY = 8,
};
struct prune_item {
  const char *id;
  int64_t time;                 /* Unix seconds */
  int32_t nsec;                 /* and nanoseconds: orders one second's */
  /* The components the backup holds ("<writer-id>/<component>": per VM,
   * issue 20); backups without any form one group of their own. */
  const char *const *keys;
  size_t nr_keys;
  unsigned reasons;             /* out: PRUNE_* bits; 0 means remove */
};
/* The pure selection of vms_repo_prune: sets reasons of every item (in any
 * order). The rules run once per component, over the backups that hold
 * it: a backup is kept if, for any component it holds, it is among that
 * component's keep_last newest backups, or the newest of one of the
 * newest keep_daily days (keep_weekly ISO weeks, keep_monthly months) that
 * have a backup of that component. */
extern int prune_select (struct prune_item *items, size_t n,
                         const struct vms_prune_policy *policy);
/* "last, daily" for the reasons bits, into buf. */
extern const char *prune_reasons_text (unsigned reasons, char *buf, size_t len);

#endif /* VMS_REPO_INTERNAL_H */

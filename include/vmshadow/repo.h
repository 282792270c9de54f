/* vmshadow — the repository: where backups land (DESIGN.md "Repository",
 * docs/repository-format.md is the on-disk spec).
 *
 * A repository is a local directory of content-addressed chunks
 * (VMS_CHUNK_SIZE, 128 KiB; SHA-256, zstd or raw, all-zero chunks never
 * stored) and of committed
 * backups. A backup is a manifest, the backup components document and the
 * writer metadata documents (R5), and one index per stored file (chunk
 * number → digest or zero). Every backup is a full by reference: an
 * incremental reuses its parent's index and replaces only changed chunks,
 * so any backup restores alone.
 *
 * A backup becomes visible only when vms_repo_txn_commit returns 0. In
 * format version 1, one writer at a time (a lock file); in version 2 any
 * number of backups, prunes and one gc at a time, each writer under a
 * session lease (docs/repository-format.md "Concurrency"). Readers need
 * neither.
 */
#ifndef VMSHADOW_REPO_H
#define VMSHADOW_REPO_H

#include "vmshadow/api.h"

#include <stddef.h>
#include <stdint.h>

#include "vmshadow/document.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The format version a repository is created with by default; this
 * vmshadow reads and writes versions 1 and 2 (docs/repository-format.md),
 * each repository in the version its config gives. */
#define VMS_REPO_FORMAT_VERSION 2
#define VMS_REPO_FORMAT_LATEST 2
/* Bytes per chunk: a power of two from 4 KiB to 4 MiB. The repository's
 * config, every manifest and every index record it, and a build refuses a
 * repository made with another size (docs/repository-format.md says why
 * 128 KiB, with the measurements). */
#define VMS_CHUNK_SIZE (128u << 10)    /* 128 KiB */
#define VMS_DIGEST_LEN 32
#define VMS_REPO_DIR_ENV "VMSHADOW_REPO"
#define VMS_REPO_DEFAULT_DIR "/var/lib/vmshadow/repo"

struct vms_digest {
  uint8_t b[VMS_DIGEST_LEN];
};

typedef struct vms_repo vms_repo;
typedef struct vms_repo_txn vms_repo_txn;     /* a backup being written */
typedef struct vms_index vms_index;           /* one stored file's index */
typedef struct vms_manifest vms_manifest;     /* a committed backup */

/* ---- opening ---- */

enum {
  VMS_REPO_CREATE = 1,          /* make the repository if it is not there */
  VMS_REPO_WRITE = 2,           /* take the writer lock (backup, prune, gc) */
  /* With VMS_REPO_CREATE: a new repository is format version 2 (packs).
   * Without it, $VMSHADOW_REPO_FORMAT ("1" or "2") decides, else
   * VMS_REPO_FORMAT_VERSION (2). */
  VMS_REPO_FORMAT_2 = 4,
  /* An encrypted repository opened without its key (R28): what can be
   * done without it is listing backups (only where the owner chose
   * visible ids) and vms_repo_verify's structure check. */
  VMS_REPO_NO_KEY = 8,
  /* The admin's prune and gc of an append-only repository (issue 14):
   * this host holds credentials that may delete. */
  VMS_REPO_ADMIN = 16,
};

/* dir NULL: $VMSHADOW_REPO, else /var/lib/vmshadow/repo. Directories are
 * created 0700, files 0600. With VMS_REPO_WRITE, fails at once (EBUSY, with
 * the holder's pid) if another process holds the lock. */
extern VMS_API vms_repo *vms_repo_open (const char *dir, unsigned flags);
extern VMS_API void vms_repo_close (vms_repo *repo);
/* Borrowed. */
extern VMS_API const char *vms_repo_path (const vms_repo *repo);
/* The repository's format version (1 or 2), from its config. */
extern VMS_API int vms_repo_format_version (const vms_repo *repo);

/* ---- encryption (R28, docs/encryption.md; keys: vmshadow/key.h) ----
 *
 * vms_repo_open of an encrypted repository unlocks the key its config
 * names (its key file, a passphrase) unless VMS_REPO_NO_KEY is given;
 * without the key file it fails with ENOKEY. */

/* The fingerprint of the repository's key (32 hex digits), or NULL for a
 * plain repository. Borrowed. */
extern VMS_API const char *vms_repo_key_fingerprint (const vms_repo *repo);
/* 1 if the repository is plain or its key is unlocked, 0 if encrypted and
 * opened with VMS_REPO_NO_KEY. */
extern VMS_API int vms_repo_has_key (const vms_repo *repo);
/* 1 if an encrypted repository's object names hide its backup ids (then
 * nothing can be listed without the key). */
extern VMS_API int vms_repo_backup_ids_hidden (const vms_repo *repo);

struct vms_repo_encryption {
  /* An existing key (its fingerprint) in the key directory, or NULL to
   * make a new key (vms_key_create: a new passphrase is asked). */
  const char *key_fingerprint;
  /* With a new key: an RSA public key (PEM file) that also wraps it, or
   * NULL. The repository then holds the wrapped copy in keys/<fp>. */
  const char *master_public_key;
  /* Backup ids readable in object names, so that they (and the store's
   * times) can be listed without the key. Default (0): hidden. */
  int visible_backup_ids;
};
/* For a program this process starts that opens the same repository
 * (nbdkit-vmshadow-plugin's keyfd=N, for vms_repo_export_open): the read
 * end of a pipe holding the unlocked key, never the environment or argv
 * (R28). Pass it to that program alone as an inherited descriptor and
 * close it here; the program calls vms_key_receive on it before
 * vms_repo_open. O_CLOEXEC. -1 with the error set (EINVAL: the repository
 * is not encrypted; ENOKEY: it was opened without its key). */
extern VMS_API int vms_repo_key_handoff (vms_repo *repo);
/* The repository's copy of its key file (keys/<fingerprint>: the
 * recovery wrap for a master key, no passphrase-sealed secret), for
 * vms_key_import; NULL with the error set (ENOENT: none). */
extern VMS_API char *vms_repo_recovery_key (vms_repo *repo, size_t *len);
/* Create an encrypted format version 2 repository in dir (a new or empty
 * directory, as vms_repo_open with VMS_REPO_CREATE), opened for writing. */
extern VMS_API vms_repo *vms_repo_init_encrypted (const char *dir,
                                                  const struct vms_repo_encryption *e);

/* ---- chunks (thread-safe) ---- */

/* Store one chunk (len ≤ VMS_CHUNK_SIZE) unless a chunk with the same
 * content is there. Needs VMS_REPO_WRITE (EBADF otherwise). Fills *digest; *stored_bytes (may be NULL) gets the
 * bytes written to disk (0 when it was already there). An all-zero chunk is
 * never stored: its digest is the all-zero digest (vms_digest_is_zero). */
extern VMS_API int vms_repo_chunk_put (vms_repo *repo, const void *data, size_t len,
                                       struct vms_digest *digest,
                                       uint64_t *stored_bytes);
/* Read a chunk into buf (len is its expected length); with verify, prove
 * that the content is the chunk's and fail (EBADMSG) if not: in a plain
 * repository by re-hashing it, in an encrypted one by AES-256-GCM, which
 * opens a blob only for the chunk id and repository it was sealed for
 * (R28; docs/encryption.md "Why a restore does not re-derive chunk ids").
 * A missing chunk fails with ENOENT, a damaged one with EBADMSG. The
 * all-zero digest reads as zeros. */
extern VMS_API int vms_repo_chunk_get (vms_repo *repo, const struct vms_digest *digest,
                                       void *buf, size_t len, int verify);
extern VMS_API int vms_repo_chunk_exists (vms_repo *repo, const struct vms_digest *digest);

extern VMS_API int vms_digest_is_zero (const struct vms_digest *digest);
/* 64 hex digits + NUL. */
extern VMS_API void vms_digest_hex (const struct vms_digest *digest, char out[65]);

/* ---- indexes ---- */

/* An index for a file of size bytes: ceil(size / VMS_CHUNK_SIZE) entries,
 * all zero at first. */
extern VMS_API vms_index *vms_index_new (uint64_t size);
extern VMS_API vms_index *vms_index_copy (const vms_index *idx);
extern VMS_API void vms_index_free (vms_index *idx);
extern VMS_API uint64_t vms_index_size (const vms_index *idx);
extern VMS_API uint64_t vms_index_chunk_count (const vms_index *idx);
/* Change the file size (an incremental of a disk that grew or shrank);
 * new chunks are zero. A chunk whose length changes (the old or new last
 * chunk when it is partial) is reset to zero too: its stored content no
 * longer fits, so the caller must read it from the source again. */
extern VMS_API int vms_index_resize (vms_index *idx, uint64_t size);
extern VMS_API int vms_index_set (vms_index *idx, uint64_t chunk, const struct vms_digest *d);
extern VMS_API const struct vms_digest *vms_index_get (const vms_index *idx, uint64_t chunk);
/* Bytes of chunk i (the last one may be short). */
extern VMS_API size_t vms_index_chunk_len (const vms_index *idx, uint64_t chunk);
/* Random read by offset through the index (instant recovery, extract). */
extern VMS_API int vms_repo_read (vms_repo *repo, const vms_index *idx, void *buf,
                                  size_t count, uint64_t offset);

/* ---- writing a backup ---- */

/* Load now what storing chunks needs (format 2: the table of stored
 * chunks, read from every index segment), which the first chunk stored
 * would load otherwise — e.g. while a snapshot is being taken (issue 15).
 * Needs VMS_REPO_WRITE; not to be called while another thread uses repo.
 * 0, or -1 with the error set. */
extern VMS_API int vms_repo_prepare_store (vms_repo *repo);

/* Needs VMS_REPO_WRITE. backup_id: 1 to 128 characters of
 * [A-Za-z0-9._:-], not starting with '.' (EINVAL otherwise); EEXIST if a
 * backup of that id exists. */
extern VMS_API vms_repo_txn *vms_repo_txn_begin (vms_repo *repo, const char *backup_id);

/* What one stored file was: its place in the backup and its statistics. */
struct vms_stored_file {
  const char *writer_id;
  const char *component;
  const char *path;             /* the file's original path */
  enum vms_file_kind kind;
  const char *format;           /* original image format, or NULL */
  uint64_t bytes_read;          /* read from the source */
  uint64_t bytes_stored;        /* new chunk bytes written */
  /* The checkpoint the next incremental of this file may start from: its
   * component's VMS_ATTR_CHECKPOINT at this backup (writer.h), or NULL. */
  const char *checkpoint;
};

extern VMS_API int vms_repo_txn_add_file (vms_repo_txn *txn,
                                          const struct vms_stored_file *file,
                                          const vms_index *idx);
/* Write the documents and the manifest, and make the backup visible
 * atomically (temp dir, fsync, rename). components may be NULL (then
 * vms_manifest_components returns NULL). attrs_json: extra
 * manifest attributes as a JSON object text, or NULL (vms_manifest_attrs).
 * The manifest's time is the time of the commit. */
extern VMS_API int vms_repo_txn_commit (vms_repo_txn *txn, const vms_document *components,
                                        const vms_document *const *metadata,
                                        size_t nr_metadata, const char *attrs_json);
/* Drop an uncommitted backup (its chunks stay until gc). Accepts NULL;
 * after commit it only frees. */
extern VMS_API void vms_repo_txn_free (vms_repo_txn *txn);

/* ---- reading backups ---- */

/* Committed backup IDs, oldest first (by commit time, then id; backups whose
 * manifest cannot be read come first). Caller frees each and the array. */
extern VMS_API int vms_repo_list (vms_repo *repo, char ***ids, size_t *nr_ids);
extern VMS_API vms_manifest *vms_manifest_open (vms_repo *repo, const char *backup_id);
/* The checkpoint catalogue: the newest checkpoint recorded for a file
 * (path) or for the whole component (path NULL: the newest any file of it
 * recorded that is not the file's own, VMS_ATTR_FILE_CHECKPOINT_PREFIX,
 * issue 11), with the backup that recorded it (backup_id may be NULL). Both malloc'd. Returns 1 when found,
 * 0 when none is (both set to NULL), -1 with the error set. */
extern VMS_API int vms_repo_last_checkpoint (vms_repo *repo, const char *writer_id,
                                             const char *component, const char *path,
                                             char **checkpoint, char **backup_id);
extern VMS_API void vms_manifest_free (vms_manifest *m);
extern VMS_API const char *vms_manifest_backup_id (const vms_manifest *m);
extern VMS_API int64_t vms_manifest_time (const vms_manifest *m);       /* Unix seconds */
extern VMS_API const vms_document *vms_manifest_components (const vms_manifest *m);
extern VMS_API size_t vms_manifest_metadata_count (const vms_manifest *m);
extern VMS_API const vms_document *vms_manifest_metadata (const vms_manifest *m, size_t i);
/* Extra top-level attributes given at commit, as JSON object text ("{}"
 * when none). Borrowed: valid until the next call on m or its free. */
extern VMS_API const char *vms_manifest_attrs (const vms_manifest *m);
/* The configured job that made the backup (attribute "job", issue 19)
 * when it is a string, else NULL. Borrowed, like vms_manifest_attrs. */
extern VMS_API const char *vms_manifest_job (const vms_manifest *m);
extern VMS_API size_t vms_manifest_file_count (const vms_manifest *m);
/* Strings borrowed from the manifest. */
extern VMS_API int vms_manifest_file (const vms_manifest *m, size_t i,
                                      struct vms_stored_file *file, uint64_t *size);
/* Find a file by component and original path; -1 if absent. */
extern VMS_API int vms_manifest_find_file (const vms_manifest *m, const char *component,
                                           const char *path);
extern VMS_API vms_index *vms_manifest_load_index (vms_repo *repo, const vms_manifest *m,
                                                   size_t i);

/* One stored file named as an administrator knows it: a VM (name or UUID,
 * as the VM writer records them) and its disk target ("vda"), or a
 * component and a file path. Without disk or file, the component's only
 * file. Exactly one of vm and component; at most one of disk and file. */
struct vms_file_selector {
  const char *vm, *disk;
  const char *component, *file;
};
/* The file's number in m, or -1 with the error set, naming what the
 * backup has instead. */
extern VMS_API int vms_manifest_select_file (const vms_manifest *m,
                                             const struct vms_file_selector *sel);
/* 1 if backup m holds the VM vm (its name or UUID, as the VM writer
 * records them: a component named by the UUID with "vm_name"), else 0
 * (sync --vm, issue 14). */
extern VMS_API int vms_manifest_holds_vm (const vms_manifest *m,
                                          const char *vm);
/* Every stored disk of a VM of m (name or UUID, as in vms_file_selector),
 * for a tool that needs them all at once (file-level restore, R26: a
 * volume group may span disks). *disks (caller frees) gets their file
 * numbers and targets ("vda"; borrowed from m), ordered by target (vda,
 * vdb, …, vdz, vdaa). Returns how many (at least 1), or -1 with the error
 * set: no such VM (naming the VMs the backup has), or a VM without a
 * stored disk. */
struct vms_vm_disk {
  size_t file;
  const char *target;
};
extern VMS_API int vms_manifest_vm_disks (const vms_manifest *m, const char *vm,
                                          struct vms_vm_disk **disks);

/* ---- maintenance ---- */


/* Notes (issue 16): a small JSON document kept beside a committed backup,
 * added after the commit without rewriting its manifest (the result of
 * `verify --boot`). name: 1 to 32 of [a-z0-9-]. Version 1: the file
 * backups/<id>/note-<name>.json, replaced atomically; version 2: the
 * object backups/<id>/note-<name>. Deleted with the backup by prune. Put
 * needs VMS_REPO_WRITE for a version 2 repository; text must be valid
 * JSON of at most 64 KiB. Get returns it (caller frees) or NULL with
 * errno ENOENT when the backup has no such note. */
#define VMS_REPO_NOTE_MAX (64 * 1024)
extern VMS_API int vms_repo_note_put (vms_repo *repo, const char *backup_id,
                                      const char *name, const char *text);
extern VMS_API char *vms_repo_note_get (vms_repo *repo, const char *backup_id,
                                        const char *name);

/* Check every backup (or one): manifests and indexes parse, every chunk
 * exists; with deep, every chunk is read and re-hashed (and, encrypted,
 * authenticated). An encrypted repository opened without its key gets a
 * structure check instead: every pack's tail checksum and framing, every
 * sealed object's envelope framing; its report ends with a line saying
 * that contents were not authenticated (deep is refused: EINVAL). Problems are
 * reported through report (one line each, naming backup, component, file
 * and offset); returns the number of problems, or -1 on error. */
typedef void (*vms_repo_report_fn) (void *opaque, const char *line);
extern VMS_API int vms_repo_verify (vms_repo *repo, const char *backup_id, int deep,
                                    vms_repo_report_fn report, void *opaque);
/* The same, checking only a random percent (1 to 100) of the distinct
 * chunks, a different sample each call (manifests, documents and indexes
 * are always checked): a repository too large to read whole in one go is
 * covered, on average, by 100 / percent runs. */
extern VMS_API int vms_repo_verify_sample (vms_repo *repo, const char *backup_id,
                                           int deep, unsigned percent,
                                           vms_repo_report_fn report,
                                           void *opaque);

/* A verify that can be resumed (issue 12; docs/repository-format.md
 * "Resuming a verify"): version 2 with its key records its progress on
 * the host, in state_dirfd's verify/<repository id>.json (written aside
 * and renamed, at most every save_ms and after the last pack; removed
 * when the verify ends): the selection (backup, deep, percent, the
 * sample's key), a hash of the chunks to check and where they are, the
 * last pack (in pack id order) all of whose chunks were checked, and the
 * bad chunks found so far. With resume, a recorded verify of the same
 * selection over the same chunks continues: its packs checked already are
 * not read again, the bad chunks it found are reported again (marked
 * "found before the interruption"). A record of another selection is
 * refused (EINVAL); a repository that changed since (other chunks or
 * places: a backup committed or pruned, gc) or no record starts from the
 * beginning, saying so in note. Another verify of the repository on this
 * host holding the record: resume fails (EWOULDBLOCK), without resume
 * nothing is recorded (note says so); likewise a state directory that
 * cannot be written. Version 1 and the keyless structure check record
 * nothing and refuse resume (EINVAL). */
struct vms_verify_run {
  /* in */
  int state_dirfd;              /* the host's state directory; -1: none */
  const char *state_dir;        /* its name, for messages */
  int resume;                   /* 1: resume (refused when it cannot be);
                                   2: resume a record of the same selection
                                   if there is one, else start (a job) */
  unsigned save_ms;             /* progress saved at most this often (0: each pack) */
  void (*saved) (void *opaque, uint64_t packs_done);  /* after each save */
  void *opaque;                 /* saved's */
  /* out */
  int resumed;                  /* continued a recorded verify */
  uint64_t packs;               /* packs holding chunks to check */
  uint64_t packs_before;        /* of them, checked by the interrupted run(s) */
  uint64_t packs_checked;       /* of them, checked by this run */
  uint64_t bad_before;          /* bad chunks the interrupted run(s) found */
  int unreachable;              /* 1: it stopped, the repository's storage
                                   out of reach (errno ETIMEDOUT,
                                   ECONNREFUSED, ...): no damage counted,
                                   its record kept for a resume */
  char note[512];               /* what became of the record, or "" */
};
extern VMS_API int vms_repo_verify_run (vms_repo *repo, const char *backup_id,
                                        int deep, unsigned percent,
                                        struct vms_verify_run *run,
                                        vms_repo_report_fn report,
                                        void *opaque);

/* Move a version 1 repository to version 2 (docs/repository-format.md
 * "Upgrade"); needs VMS_REPO_WRITE. Every chunk a backup references is
 * read, checked and packed; every backup is written again as version 2
 * (same id, time, files, documents); then the config is replaced (the
 * switch), then version 1's files are deleted. Chunks no backup references
 * are not carried over. If any backup or chunk cannot be read it stops
 * and the repository stays version 1 (what it packed is reused by the next
 * run); interrupted, it resumes where it stopped when run again. Each
 * backup done is reported ("upgraded ID"). On success repo is a version 2
 * handle. Returns the number of backups, or -1. */
extern VMS_API int vms_repo_upgrade (vms_repo *repo, vms_repo_report_fn report,
                                     void *opaque);

/* Copy backups from src to dst (issue 14; any two backends; dst opened
 * with VMS_REPO_WRITE, format version 2, backup ids not hidden): the
 * backups named (all when nr_backup_ids is 0) that dst lacks, oldest
 * first, sending only the chunks dst lacks (not even reading them from
 * src when both name chunks alike: both plain or the same key), each
 * checked on arrival; a backup appears in dst only when whole, with its
 * id and time; interrupted, a rerun sends only what is still missing.
 * state_dirfd (the host's state directory, or -1): where the packs put
 * are recorded, so that a rerun adopts one stored just before a kill
 * rather than sending its chunks again. Reports "synced ID (N bytes
 * stored)", "present ID" and "adopted PACK (N chunks) ...". 0 or -1 with
 * the error set. */
struct vms_sync_stats {
  uint64_t backups_synced, backups_present;
  uint64_t chunks_sent, chunks_present;  /* present: not even read */
  uint64_t bytes_read, bytes_stored;     /* of the chunks sent */
  uint64_t packs_adopted, chunks_adopted;
  uint64_t source_reads;        /* reads of chunks from src: a run of
                                   chunks close together in a pack is one */
};
extern VMS_API int vms_repo_sync (vms_repo *src, vms_repo *dst,
                                  char *const *backup_ids, size_t nr_backup_ids,
                                  int state_dirfd,
                                  vms_repo_report_fn report, void *opaque,
                                  struct vms_sync_stats *st);

struct vms_prune_policy {
  unsigned keep_last, keep_daily, keep_weekly, keep_monthly;
  /* NULL: every backup. Else only the backups a configured job of this
   * name made (their manifest's attrs "job", issue 19) are counted and
   * may be removed; every other backup is kept. */
  const char *job;
};
/* Delete the backups the policy does not keep; with dry_run only report.
 * The rules run per component (per VM; issue 20), not per repository: a
 * backup is kept if it is among the newest N backups (or the newest of one
 * of the newest N days, weeks, months) of any component it holds, so a VM
 * backed up weekly keeps its N newest backups beside a daily one. Backups
 * holding no file form one group. A manifest that cannot be read keeps its
 * backup.
 * Needs VMS_REPO_WRITE. Each kept/removed backup is reported as
 * "keep ID (reasons)" / "remove ID". Returns the number removed. */
extern VMS_API int vms_repo_prune (vms_repo *repo, const struct vms_prune_policy *policy,
                                   int dry_run, vms_repo_report_fn report, void *opaque);
/* Delete chunks no committed backup references and leftovers of
 * interrupted backups older than grace_seconds. Needs VMS_REPO_WRITE. */
extern VMS_API int vms_repo_gc (vms_repo *repo, int64_t grace_seconds,
                                uint64_t *chunks_removed, uint64_t *bytes_freed);

/* Immutability (issue 14, R29): the repository's retention (days 0: none;
 * mode "GOVERNANCE" or "COMPLIANCE", else NULL) and append-only mark, from
 * its config. A new repository gets them from $VMSHADOW_REPO_RETENTION_DAYS,
 * $VMSHADOW_REPO_RETENTION_MODE (governance|compliance) and
 * $VMSHADOW_REPO_APPEND_ONLY=1 (init --retention-days, --retention-mode,
 * --append-only set them); retention needs an S3 bucket with Object Lock. */
extern VMS_API void vms_repo_protection (const vms_repo *repo, unsigned *days,
                                         const char **mode, int *append_only);
/* What the last vms_repo_prune or vms_repo_gc on repo left because it is
 * still retained: objects, their bytes, and the latest retain-until date
 * among them (Unix seconds; 0 when nothing was kept). */
extern VMS_API void vms_repo_kept_locked (const vms_repo *repo,
                                          uint64_t *objects, uint64_t *bytes,
                                          int64_t *until);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_REPO_H */

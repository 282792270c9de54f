/* vmshadow — the documents of a backup (R5).
 *
 * Two kinds, both versioned JSON (docs/documents.md is the spec):
 *  - a writer metadata document: what one writer returns from Identify —
 *    its name and ID and its components, each with the files it consists of
 *    and the files it deliberately leaves out (with the reason);
 *  - the backup components document: what a backup session captured —
 *    per writer, its state and the components that were backed up, with
 *    whatever the writer added to them until PostSnapshot ended, and on
 *    restore the file restore status of each component (R6).
 *
 * A restore is driven only by these documents, so they are parsed as
 * untrusted input: vms_document_parse checks the whole structure, and every
 * accessor may then rely on it.
 *
 * Handles (vms_component *) are borrowed from their document and stay
 * valid until the document is freed.
 */
#ifndef VMSHADOW_DOCUMENT_H
#define VMSHADOW_DOCUMENT_H

#include "vmshadow/api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_METADATA_FORMAT   "vmshadow-writer-metadata"
#define VMS_COMPONENTS_FORMAT "vmshadow-backup-components"
#define VMS_DOCUMENT_VERSION  1

enum vms_document_kind {
  VMS_DOC_METADATA,       /* writer metadata document */
  VMS_DOC_COMPONENTS,     /* backup components document */
};

/* What a component file is; decides which provider and reader handle it. */
enum vms_file_kind {
  VMS_FILE_PLAIN,         /* a file read as bytes: config, saved state, NVRAM */
  VMS_FILE_DISK,          /* a disk image, read block-wise (maybe over NBD) */
};

/* R6: what the requester managed to write back for one component. */
enum vms_restore_status {
  VMS_RESTORE_UNSET,      /* not said yet: PostRestore treats it as NONE */
  VMS_RESTORE_ALL,        /* every file written */
  VMS_RESTORE_NONE,       /* nothing written */
  VMS_RESTORE_FAILED,     /* some files written, some not */
};

typedef struct vms_document vms_document;
typedef struct vms_component vms_component;

/* One file of a component (borrowed strings). */
struct vms_file_info {
  const char *path;       /* absolute path on the host */
  enum vms_file_kind kind;
  const char *format;     /* image format ("raw", "qcow2") or NULL */
  const char *provider;   /* provider the writer asks for, or NULL */
};

/* A new, empty metadata document for a writer. */
extern VMS_API vms_document *vms_metadata_new (const char *writer_name,
                                               const char *writer_id);
/* A new, empty backup components document for a backup. */
extern VMS_API vms_document *vms_components_new (const char *backup_id);

/* Parse a document of either kind from untrusted bytes (need not be
 * NUL-terminated). Returns NULL with the error set on anything malformed:
 * the message names the field that is wrong. */
extern VMS_API vms_document *vms_document_parse (const char *text, size_t len);
/* Read and parse a document file. */
extern VMS_API vms_document *vms_document_load (const char *path);
/* The document as JSON text (pretty-printed, newline-terminated); caller
 * frees. */
extern VMS_API char *vms_document_format (const vms_document *doc);
/* Write the document to path, crash-safely (temp file, fsync, rename). */
extern VMS_API int vms_document_save (const vms_document *doc, const char *path);
extern VMS_API vms_document *vms_document_copy (const vms_document *doc);
/* Replace the content of dst by a copy of src (both of one kind): how a
 * writer that gets its metadata as text (an exec writer) fills the
 * document Identify hands it. Handles into dst become invalid. */
extern VMS_API int vms_document_replace (vms_document *dst, const vms_document *src);
extern VMS_API void vms_document_free (vms_document *doc);

extern VMS_API enum vms_document_kind vms_document_kind (const vms_document *doc);

/* Metadata documents: the writer (borrowed). */
extern VMS_API const char *vms_metadata_writer_name (const vms_document *md);
extern VMS_API const char *vms_metadata_writer_id (const vms_document *md);

/* Backup components documents. */
extern VMS_API const char *vms_components_backup_id (const vms_document *bcd);
/* Number of writers recorded, and each writer's name and id (borrowed). */
extern VMS_API size_t vms_components_writer_count (const vms_document *bcd);
extern VMS_API const char *vms_components_writer_name (const vms_document *bcd, size_t i);
extern VMS_API const char *vms_components_writer_id (const vms_document *bcd, size_t i);
/* A top-level attribute of the backup (e.g. "type": "full"); value is a
 * JSON text. */
extern VMS_API int vms_components_set_attr_json (vms_document *bcd, const char *key,
                                                 const char *json);

/* Components. In a metadata document writer_id is ignored (pass NULL);
 * in a backup components document it picks the writer. */
extern VMS_API size_t vms_document_component_count (const vms_document *doc,
                                                     const char *writer_id);
extern VMS_API vms_component *vms_document_component (const vms_document *doc,
                                                      const char *writer_id,
                                                      size_t i);
extern VMS_API vms_component *vms_document_find_component (const vms_document *doc,
                                                           const char *writer_id,
                                                           const char *name);

/* Add a component to a metadata document. Fails if the name is taken. */
extern VMS_API vms_component *vms_metadata_add_component (vms_document *md,
                                                          const char *name,
                                                          const char *caption);

extern VMS_API const char *vms_component_name (const vms_component *c);
/* The component as JSON text (its files, excluded files, attributes and
 * restore status), for writers that hand it on; caller frees. */
extern VMS_API char *vms_component_format (const vms_component *c);
extern VMS_API const char *vms_component_caption (const vms_component *c);

extern VMS_API int vms_component_add_file (vms_component *c, const char *path,
                                           enum vms_file_kind kind,
                                           const char *format, const char *provider);
extern VMS_API size_t vms_component_file_count (const vms_component *c);
extern VMS_API int vms_component_file (const vms_component *c, size_t i,
                                       struct vms_file_info *info);

/* A file the component leaves out on purpose, with the reason (R13). */
extern VMS_API int vms_component_add_excluded (vms_component *c, const char *path,
                                               const char *reason);
extern VMS_API size_t vms_component_excluded_count (const vms_component *c);
extern VMS_API const char *vms_component_excluded_path (const vms_component *c, size_t i);
extern VMS_API const char *vms_component_excluded_reason (const vms_component *c, size_t i);

/* Writer-defined attributes of a component ("method", "freeze_window_ms"…).
 * Getters return NULL / the default when the key is absent or of another
 * type. In a session's backup components document the setters fail once
 * PostSnapshot has ended (R5). */
extern VMS_API int vms_component_set_string (vms_component *c, const char *key,
                                             const char *value);
extern VMS_API int vms_component_set_int (vms_component *c, const char *key,
                                          int64_t value);
extern VMS_API const char *vms_component_get_string (const vms_component *c,
                                                     const char *key);
extern VMS_API int64_t vms_component_get_int (const vms_component *c, const char *key,
                                              int64_t dflt);

/* R6, in backup components documents. */
extern VMS_API enum vms_restore_status vms_component_restore_status (const vms_component *c);
extern VMS_API const char *vms_restore_status_name (enum vms_restore_status s);

extern VMS_API const char *vms_file_kind_name (enum vms_file_kind k);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_DOCUMENT_H */

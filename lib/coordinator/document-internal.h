/* What the coordinator may do to documents that writers may not: build the
 * backup components document, seal it after PostSnapshot (R5), record
 * restore statuses and writer results. */
#ifndef VMS_DOCUMENT_INTERNAL_H
#define VMS_DOCUMENT_INTERNAL_H

#include "vmshadow/document.h"

/* Add a writer to a backup components document. */
extern int document_components_add_writer (vms_document *bcd,
                                           const char *name, const char *id);
/* Copy a component of a metadata document into the writer's part of a
 * backup components document. */
extern vms_component *document_components_add_copy (vms_document *bcd,
                                                    const char *writer_id,
                                                    const vms_component *from);
/* Once sealed, component setters fail. */
extern void document_seal (vms_document *doc, int sealed);
extern void document_component_set_restore_status (vms_component *c,
                                                   enum vms_restore_status st);
/* Record how a writer ended the session (state name, failure, message). */
extern void document_components_set_writer_result (vms_document *bcd,
                                                   const char *writer_id,
                                                   const char *state,
                                                   const char *failure,
                                                   const char *message);



#endif /* VMS_DOCUMENT_INTERNAL_H */

/* Walking and editing libxml2 trees of domain XML: the few helpers the VM
 * writer's parsing (vm-config.c), restore (vm-restore.c) and instant
 * recovery (vm-instant.c) all need, written once. */
#ifndef VMSHADOW_VM_XML_H
#define VMSHADOW_VM_XML_H

#include <libxml/tree.h>

/* The first child element of n called name, or NULL (n may be NULL). */
extern xmlNode *xml_child (const xmlNode *n, const char *name);

/* The value of n's attribute name (malloc'd), or NULL if it has none. */
extern char *xml_attr (const xmlNode *n, const char *name);

/* Unlink and free every child element of n called name. */
extern void xml_drop_children (xmlNode *n, const char *name);

/* xml (len bytes, at most 64 MiB) parsed without network access, or
 * NULL with the error set, naming it what. */
extern xmlDoc *xml_read (const char *xml, size_t len, const char *what);

/* As xml_read, and its root (*root) must be <domain>. */
extern xmlDoc *xml_read_domain (const char *xml, size_t len, const char *what,
                                xmlNode **root);

/* doc as text (malloc'd), or NULL with ENOMEM in vmshadow's error. */
extern char *xml_doc_text (xmlDoc *doc);

#endif

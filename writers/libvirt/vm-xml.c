/* Helpers over libxml2 trees of domain XML (vm-xml.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlerror.h>

#include "vm-xml.h"
#include "vmshadow/error.h"

#define XML_MAX_BYTES (64 * 1024 * 1024)

xmlNode *
xml_child (const xmlNode *n, const char *name)
{
  for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE
        && strcmp ((const char *) c->name, name) == 0)
      return c;
  return NULL;
}

char *
xml_attr (const xmlNode *n, const char *name)
{
  xmlChar *v = n ? xmlGetProp (n, (const xmlChar *) name) : NULL;
  char *s = v ? strdup ((const char *) v) : NULL;

  xmlFree (v);
  return s;
}

void
xml_drop_children (xmlNode *n, const char *name)
{
  xmlNode *c;

  while ((c = xml_child (n, name)) != NULL) {
    xmlUnlinkNode (c);
    xmlFreeNode (c);
  }
}

char *
xml_doc_text (xmlDoc *doc)
{
  xmlChar *out = NULL;
  int len = 0;
  char *s = NULL;

  xmlDocDumpMemory (doc, &out, &len);
  if (out == NULL || (s = strdup ((const char *) out)) == NULL)
    vms_set_error (ENOMEM, "out of memory");
  xmlFree (out);
  return s;
}

xmlDoc *
xml_read (const char *xml, size_t len, const char *what)
{
  xmlDoc *doc;

  if (len > XML_MAX_BYTES) {
    vms_set_error (EFBIG, "%s is larger than %d bytes", what,
                   XML_MAX_BYTES);
    return NULL;
  }
  /* libxml2 keeps its last error until the next one: without the reset a
   * parse that fails with no error of its own (empty input) was reported
   * with the previous parse's message (found by the domain XML fuzz
   * corpus, issue 9). */
  xmlResetLastError ();
  doc = xmlReadMemory (xml, (int) len, NULL, NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR |
                       XML_PARSE_NOWARNING);
  if (doc == NULL) {
    const xmlError *e = xmlGetLastError ();
    const char *m = e && e->message ? e->message : "";
    /* Its first line: libxml2 ends messages with a newline and may add a
     * second line of raw input bytes. */
    vms_set_error (EINVAL, "%s is not well-formed XML%s%.*s", what,
                   *m ? ": " : "", (int) strcspn (m, "\n"), m);
  }
  return doc;
}

xmlDoc *
xml_read_domain (const char *xml, size_t len, const char *what,
                 xmlNode **root)
{
  xmlDoc *doc = xml_read (xml, len, what);

  if (doc == NULL)
    return NULL;
  *root = xmlDocGetRootElement (doc);
  if (*root == NULL || xmlStrcmp ((*root)->name, BAD_CAST "domain") != 0) {
    vms_set_error (EINVAL, "%s is not a <domain>", what);
    xmlFreeDoc (doc);
    return NULL;
  }
  return doc;
}

/* Helpers over libxml2 trees of domain XML (vm-xml.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vm-xml.h"
#include "vmshadow/error.h"

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

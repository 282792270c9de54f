/* Helpers over libxml2 trees of domain XML (vm-xml.h). */
#include <stdlib.h>
#include <string.h>

#include "vm-xml.h"

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

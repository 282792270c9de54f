/* Cluster-managed VMs (issue 18, R22): Pacemaker's CIB through its own
 * tools. See vm-cluster.h for the contract.
 *
 * Everything read from the CIB and from a resource's config file is
 * checked before use: resource ids must be XML IDs (they go into XPath
 * and XML we hand to cibadmin), values are escaped in the XML we write,
 * config files are read as regular files of bounded size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "log.h"
#include "str.h"
#include "subprocess.h"
#include "vm-cluster.h"

#define CLUSTER_TOOL_MS 30000           /* one cibadmin/crm_* call */
#define CLUSTER_CONFIG_MAX (1 << 20)    /* a domain XML file */

/* Run a Pacemaker tool. Returns its exit status (0 success), or -1 with the
 * error set when it could not run or was killed. *out (optional) gets its
 * stdout (malloc'd). */
static int
cluster_run (const char *const *argv, char **out, int quiet)
{
  struct vms_subprocess_options o = { .argv = argv,
                                      .timeout_ms = CLUSTER_TOOL_MS };
  struct vms_subprocess_result res = { 0 };
  char how[128], tail[512];
  int r;

  if (out)
    *out = NULL;
  if (vms_subprocess_run (&o, &res) == -1)
    return -1;
  if (!res.exited) {
    vms_set_error (EIO, "%s: %s", argv[0],
                   vms_subprocess_describe (&res, how, sizeof how));
    vms_subprocess_result_reset (&res);
    return -1;
  }
  r = res.exit_status;
  if (r != 0 && !quiet)
    vms_set_error (EIO, "%s %s: %s: %s", argv[0], argv[1] ? argv[1] : "",
                   vms_subprocess_describe (&res, how, sizeof how),
                   vms_subprocess_error_tail (&res, 2, tail, sizeof tail));
  if (out) {
    *out = res.out;
    res.out = NULL;
  }
  vms_subprocess_result_reset (&res);
  return r;
}

/* An XML ID as Pacemaker makes them: safe inside XPath and XML quotes. */
static int
cluster_id_ok (const char *s)
{
  if (s == NULL || *s == '\0' || strlen (s) > 200)
    return 0;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.' ||
          *p == ':'))
      return 0;
  return 1;
}

static int
cluster_check_id (const char *id)
{
  if (cluster_id_ok (id))
    return 0;
  vms_set_error (EINVAL, "not a Pacemaker resource id: \"%s\"", id ? id : "");
  return -1;
}

/* s escaped for an XML attribute value in single or double quotes. */
static char *
xml_escape (const char *s)
{
  size_t n = 1;
  char *r, *q;

  for (const char *p = s; *p; p++)
    n += 6;
  if ((r = q = malloc (n)) == NULL)
    return NULL;
  for (const char *p = s; *p; p++)
    switch (*p) {
    case '&': q = stpcpy (q, "&amp;"); break;
    case '<': q = stpcpy (q, "&lt;"); break;
    case '>': q = stpcpy (q, "&gt;"); break;
    case '"': q = stpcpy (q, "&quot;"); break;
    case '\'': q = stpcpy (q, "&apos;"); break;
    default: *q++ = *p;
    }
  *q = '\0';
  return r;
}

static xmlDocPtr
parse_xml (const char *text)
{
  return xmlReadMemory (text, (int) strlen (text), NULL, NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR |
                        XML_PARSE_NOWARNING);
}

/* The string value of an XPath expression relative to node (malloc'd), or
 * NULL when empty. */
static char *
xpath_string (xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr)
{
  xmlXPathObjectPtr o;
  char *r = NULL;

  ctx->node = node;
  o = xmlXPathEvalExpression ((const xmlChar *) expr, ctx);
  if (o) {
    xmlChar *s = xmlXPathCastToString (o);
    if (s && *s)
      r = strdup ((const char *) s);
    xmlFree (s);
    xmlXPathFreeObject (o);
  }
  return r;
}

/* The domain's name and UUID from a VirtualDomain config file. */
static void
read_config (struct vm_cluster_rsc *r)
{
  CLEANUP_CLOSE int fd = -1;
  CLEANUP_FREE char *buf = NULL;
  struct stat st;
  ssize_t got;
  xmlDocPtr doc;
  xmlXPathContextPtr ctx;

  if (r->config == NULL || r->config[0] != '/') {
    r->config_error = vms_strdup_printf ("its config \"%s\" is no absolute path",
                                        r->config ? r->config : "");
    return;
  }
  fd = open (r->config, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd == -1 || fstat (fd, &st) == -1 || !S_ISREG (st.st_mode) ||
      st.st_size > CLUSTER_CONFIG_MAX) {
    r->config_error = vms_strdup_printf ("cannot read its config %s: %s",
                                        r->config, fd == -1 ? strerror (errno)
                                        : "not a regular file of at most 1 MiB");
    return;
  }
  if ((buf = malloc ((size_t) st.st_size + 1)) == NULL)
    return;
  got = pread (fd, buf, (size_t) st.st_size, 0);
  if (got < 0) {
    r->config_error = vms_strdup_printf ("cannot read its config %s: %s",
                                        r->config, strerror (errno));
    return;
  }
  buf[got] = '\0';
  doc = parse_xml (buf);
  if (doc == NULL) {
    r->config_error = vms_strdup_printf ("its config %s is not XML",
                                        r->config);
    return;
  }
  ctx = xmlXPathNewContext (doc);
  if (ctx) {
    r->dom_name = xpath_string (ctx, xmlDocGetRootElement (doc),
                                "normalize-space(/domain/name)");
    r->dom_uuid = xpath_string (ctx, xmlDocGetRootElement (doc),
                                "normalize-space(/domain/uuid)");
    xmlXPathFreeContext (ctx);
  }
  xmlFreeDoc (doc);
  if (r->dom_name == NULL)
    r->config_error = vms_strdup_printf ("its config %s names no domain",
                                        r->config);
}

void
vm_cluster_clear (struct vm_cluster *c)
{
  for (size_t i = 0; i < c->n; i++) {
    struct vm_cluster_rsc *r = &c->rsc[i];
    free (r->id); free (r->config); free (r->hypervisor);
    free (r->dom_name); free (r->dom_uuid); free (r->node);
    free (r->config_error);
  }
  free (c->rsc);
  free (c->local_node);
  memset (c, 0, sizeof *c);
}

/* Where each resource runs: crm_mon's XML status. */
static void
read_nodes (struct vm_cluster *c)
{
  const char *argv[] = { "crm_mon", "--one-shot", "--output-as=xml",
                         "--inactive", NULL };
  CLEANUP_FREE char *out = NULL;
  xmlDocPtr doc;
  xmlXPathContextPtr ctx;

  if (cluster_run (argv, &out, 1) != 0 || out == NULL ||
      (doc = parse_xml (out)) == NULL)
    return;
  ctx = xmlXPathNewContext (doc);
  for (size_t i = 0; ctx && i < c->n; i++) {
    CLEANUP_FREE char *expr = NULL;
    /* (ids are checked XML IDs: safe inside the quotes) */
    expr = vms_strdup_printf ("string(//resources//resource[@id='%s']"
                              "[@active='true']/node/@name)", c->rsc[i].id);
    if (expr)
      c->rsc[i].node = xpath_string (ctx, xmlDocGetRootElement (doc), expr);
  }
  xmlXPathFreeContext (ctx);
  xmlFreeDoc (doc);
}

/* Whether a local CIB may answer cibadmin: 0 only when none can — no
 * CIB_* variable sends cibadmin elsewhere (a file, a shadow, a remote
 * CIB) and no abstract socket of the CIB manager (pacemaker-based,
 * through libqb: cib_ro, cib_rw, cib_shm) listens in our network
 * namespace, which is where cibadmin would connect. Issue 15: cibadmin
 * takes 20-200 ms to find that no cluster runs; reading /proc/net/unix
 * takes well under 1 ms. Anything unclear says 1 and cibadmin is asked,
 * as before: no /proc, or libqb told to use socket files, which a
 * process in another network namespace (a unit with PrivateNetwork=)
 * reaches but does not see in its /proc/net/unix. */
static int
cib_may_answer (void)
{
  static const char *const vars[] = { "CIB_file", "CIB_shadow", "CIB_port",
                                      "CIB_server" };
  CLEANUP_FCLOSE FILE *f = NULL;
  CLEANUP_FREE char *line = NULL;
  size_t cap = 0;

  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv (vars[i]))
      return 1;
  if (access ("/etc/libqb/force-filesystem-sockets", F_OK) == 0)
    return 1;
  if ((f = fopen ("/proc/self/net/unix", "re")) == NULL)
    return 1;
  /* "Num RefCount Protocol Flags Type St Inode Path": a listener has
   * __SO_ACCEPTCON (0x10000) in Flags; the kernel shows an abstract
   * name's NUL bytes as '@' (libqb binds the whole sun_path, so its names
   * are "@cib_rw@@@...": the padding is cut). */
  while (getline (&line, &cap, f) != -1) {
    unsigned long flags;
    char path[256];
    const char *name;
    size_t len;

    if (sscanf (line, "%*s %*s %*s %lx %*s %*s %*s %255s", &flags, path) != 2
        || !(flags & 0x10000))
      continue;
    for (len = strlen (path); len > 1 && path[len - 1] == '@'; len--)
      path[len - 1] = '\0';
    name = strrchr (path, '/');
    name = name ? name + 1 : path[0] == '@' ? path + 1 : path;
    if (strcmp (name, "cib_ro") == 0 || strcmp (name, "cib_rw") == 0 ||
        strcmp (name, "cib_shm") == 0)
      return 1;
  }
  return ferror (f) ? 1 : 0;
}

/* This host's node name, for the resources found (malloc'd; NULL when
 * crm_node does not say). */
static char *
local_node_name (void)
{
  const char *argv[] = { "crm_node", "--name", NULL };
  char *node = NULL;

  if (cluster_run (argv, &node, 1) != 0 || node == NULL) {
    free (node);
    return NULL;
  }
  node[strcspn (node, "\n")] = '\0';
  if (*node == '\0') {
    free (node);
    return NULL;
  }
  return node;
}

int
vm_cluster_scan (struct vm_cluster *c)
{
  const char *argv[] = { "cibadmin", "--query", "--scope", "resources", NULL };
  CLEANUP_FREE char *out = NULL;
  xmlDocPtr doc;
  xmlXPathContextPtr ctx;
  xmlXPathObjectPtr set;
  int rc;

  memset (c, 0, sizeof *c);
  if (!cib_may_answer ()) {
    vms_debug ("vm writer: no Pacemaker cluster answers (no CIB socket "
               "listens here)");
    return 0;
  }
  rc = cluster_run (argv, &out, 1);
  if (rc != 0) {
    /* No Pacemaker here (not installed, or not running): no cluster. */
    vms_debug ("vm writer: no Pacemaker cluster answers (cibadmin: %s)",
               rc == -1 ? vms_get_error () : "the CIB does not answer");
    return 0;
  }
  doc = out ? parse_xml (out) : NULL;
  if (doc == NULL) {
    vms_set_error (EIO, "the cluster's CIB (cibadmin --query) is not XML");
    return -1;
  }
  c->up = 1;
  ctx = xmlXPathNewContext (doc);
  set = ctx ? xmlXPathEvalExpression ((const xmlChar *)
          "//primitive[@class='ocf'][@provider='heartbeat']"
          "[@type='VirtualDomain']", ctx) : NULL;
  if (set && set->nodesetval && set->nodesetval->nodeNr > 0) {
    int n = set->nodesetval->nodeNr;
    c->rsc = calloc ((size_t) n, sizeof *c->rsc);
    for (int i = 0; c->rsc && i < n; i++) {
      xmlNodePtr p = set->nodesetval->nodeTab[i];
      struct vm_cluster_rsc *r = &c->rsc[c->n];
      CLEANUP_FREE char *maint = NULL, *scripts = NULL;
      r->id = xpath_string (ctx, p, "string(@id)");
      if (!cluster_id_ok (r->id)) {
        vms_debug ("vm writer: skipping a VirtualDomain resource with the "
                   "id \"%s\"", r->id ? r->id : "");
        free (r->id);
        r->id = NULL;
        continue;
      }
      r->config = xpath_string (ctx, p, "string(instance_attributes/"
                                "nvpair[@name='config']/@value)");
      r->hypervisor = xpath_string (ctx, p, "string(instance_attributes/"
                                    "nvpair[@name='hypervisor']/@value)");
      scripts = xpath_string (ctx, p, "normalize-space(instance_attributes/"
                              "nvpair[@name='monitor_scripts']/@value)");
      maint = xpath_string (ctx, p, "string(meta_attributes/"
                            "nvpair[@name='maintenance']/@value)");
      r->monitor_scripts = scripts != NULL;
      r->in_maintenance = maint && (strcasecmp (maint, "true") == 0 ||
                                    strcasecmp (maint, "yes") == 0 ||
                                    strcmp (maint, "1") == 0 ||
                                    strcasecmp (maint, "on") == 0);
      read_config (r);
      c->n++;
    }
  }
  xmlXPathFreeObject (set);
  xmlXPathFreeContext (ctx);
  xmlFreeDoc (doc);
  /* Where they run and which node this is: only when there are
   * VirtualDomain resources (issue 15: crm_node takes 20-90 ms, and a
   * cluster without them concerns no VM). */
  if (c->n) {
    read_nodes (c);
    c->local_node = local_node_name ();
  }
  return 0;
}

const struct vm_cluster_rsc *
vm_cluster_find (const struct vm_cluster *c, const char *uri,
                 const char *uuid, const char *name)
{
  for (size_t i = 0; i < c->n; i++) {
    const struct vm_cluster_rsc *r = &c->rsc[i];
    if (r->dom_name == NULL)
      continue;
    if (uri && r->hypervisor && strcmp (uri, r->hypervisor) != 0)
      continue;
    if (r->dom_uuid ? strcasecmp (r->dom_uuid, uuid) == 0
        : strcmp (r->dom_name, name) == 0)
      return r;
  }
  return NULL;
}

char *
vm_cluster_describe (const struct vm_cluster_rsc *r)
{
  return vms_strdup_printf ("pacemaker resource %s (VirtualDomain, config %s)"
                            " %s%s%s", r->id, r->config,
                            r->node ? "running on node " : "stopped",
                            r->node ? r->node : "",
                            r->in_maintenance ? ", in maintenance" : "");
}

void
vm_cluster_meta_prev_clear (struct vm_cluster_meta_prev *prev)
{
  free (prev->nvpair_id);
  free (prev->value);
  memset (prev, 0, sizeof *prev);
}

/* The resource's own nvpair of a meta attribute: id and value. 0 found,
 * 1 none, -1 error. */
static int
meta_find (const char *id, const char *name, char **nv_id, char **value)
{
  CLEANUP_FREE char *xpath = NULL, *out = NULL;
  xmlDocPtr doc;
  xmlXPathContextPtr ctx;
  int rc;

  *nv_id = *value = NULL;
  xpath = vms_strdup_printf ("//primitive[@id='%s']/meta_attributes/"
                             "nvpair[@name='%s']", id, name);
  if (xpath == NULL)
    return -1;
  const char *argv[] = { "cibadmin", "--query", "--xpath", xpath, NULL };
  rc = cluster_run (argv, &out, 1);
  if (rc == 105)                /* "No such device or address": none */
    return 1;
  if (rc != 0) {
    if (rc > 0)
      vms_set_error (EIO, "cibadmin cannot read the meta attribute %s of "
                     "resource %s (exit status %d)", name, id, rc);
    return -1;
  }
  if (out == NULL || (doc = parse_xml (out)) == NULL) {
    vms_set_error (EIO, "cibadmin's answer for resource %s is not XML", id);
    return -1;
  }
  ctx = xmlXPathNewContext (doc);
  if (ctx) {
    *nv_id = xpath_string (ctx, xmlDocGetRootElement (doc),
                           "string(//nvpair[1]/@id)");
    *value = xpath_string (ctx, xmlDocGetRootElement (doc),
                           "string(//nvpair[1]/@value)");
    xmlXPathFreeContext (ctx);
  }
  xmlFreeDoc (doc);
  if (!cluster_id_ok (*nv_id)) {
    vms_set_error (EIO, "the %s nvpair of resource %s has no usable id", name,
                   id);
    free (*nv_id); free (*value);
    *nv_id = *value = NULL;
    return -1;
  }
  if (*value == NULL && (*value = strdup ("")) == NULL)
    return -1;
  return 0;
}

/* Set the value of an existing nvpair (found by its id). */
static int
nvpair_set (const char *nv_id, const char *value)
{
  CLEANUP_FREE char *v = xml_escape (value), *xml = NULL;
  if (v == NULL ||
      (xml = vms_strdup_printf ("<nvpair id='%s' value='%s'/>", nv_id, v)) == NULL)
    return -1;
  const char *argv[] = { "cibadmin", "--modify", "--xml-text", xml, NULL };
  return cluster_run (argv, NULL, 0) == 0 ? 0 : -1;
}

int
vm_cluster_meta_read (const char *id, const char *name, const char *value,
                      struct vm_cluster_meta_prev *prev)
{
  CLEANUP_FREE char *nv_id = NULL, *old = NULL;
  int found;

  memset (prev, 0, sizeof *prev);
  if (cluster_check_id (id) == -1 || !cluster_id_ok (name))
    return -1;
  found = meta_find (id, name, &nv_id, &old);
  if (found == -1)
    return -1;
  if (found == 0) {
    if (strcmp (old, value) == 0)
      prev->unchanged = 1;
    prev->nvpair_id = nv_id; nv_id = NULL;
    prev->value = old; old = NULL;
  }
  return 0;
}

int
vm_cluster_meta_apply (const char *id, const char *name, const char *value,
                       const struct vm_cluster_meta_prev *prev)
{
  CLEANUP_FREE char *xml = NULL, *v = NULL;

  if (prev->unchanged)
    return 0;
  if (cluster_check_id (id) == -1 || !cluster_id_ok (name))
    return -1;
  if (prev->nvpair_id)
    return nvpair_set (prev->nvpair_id, value);
  /* None: a set of our own, deleted afterwards. */
  if ((v = xml_escape (value)) == NULL ||
      (xml = vms_strdup_printf ("<primitive id='%s'><meta_attributes id='"
                                VM_CLUSTER_META_PREFIX "%s-%s'><nvpair id='"
                                VM_CLUSTER_META_PREFIX "%s-%s-nv' name='%s' "
                                "value='%s'/></meta_attributes></primitive>",
                                id, name, id, name, id, name, v)) == NULL)
    return -1;
  const char *argv[] = { "cibadmin", "--modify", "--allow-create", "--scope",
                         "resources", "--xml-text", xml, NULL };
  if (cluster_run (argv, NULL, 0) != 0)
    return -1;
  vms_debug ("vm writer: resource %s: meta %s=%s", id, name, value);
  return 0;
}

int
vm_cluster_meta_set (const char *id, const char *name, const char *value,
                     struct vm_cluster_meta_prev *prev)
{
  if (vm_cluster_meta_read (id, name, value, prev) == -1)
    return -1;
  return vm_cluster_meta_apply (id, name, value, prev);
}

int
vm_cluster_meta_restore (const char *id, const char *name,
                         const struct vm_cluster_meta_prev *prev)
{
  CLEANUP_FREE char *xml = NULL;

  if (prev->unchanged)
    return 0;
  if (cluster_check_id (id) == -1 || !cluster_id_ok (name))
    return -1;
  if (prev->nvpair_id)
    return nvpair_set (prev->nvpair_id, prev->value ? prev->value : "");
  /* (deleting a set that is not there succeeds) */
  xml = vms_strdup_printf ("<meta_attributes id='" VM_CLUSTER_META_PREFIX
                           "%s-%s'/>", name, id);
  if (xml == NULL)
    return -1;
  const char *argv[] = { "cibadmin", "--delete", "--xml-text", xml, NULL };
  return cluster_run (argv, NULL, 0) == 0 ? 0 : -1;
}

int
vm_cluster_settle (int wait_s)
{
  char t[32];
  snprintf (t, sizeof t, "%ds", wait_s);
  const char *argv[] = { "crm_resource", "--wait", "--timeout", t, NULL };
  return cluster_run (argv, NULL, 0) == 0 ? 0 : -1;
}

int
vm_cluster_pin (const char *id, const char *node)
{
  CLEANUP_FREE char *n = NULL, *xml = NULL;

  if (cluster_check_id (id) == -1 || node == NULL)
    return -1;
  if ((n = xml_escape (node)) == NULL ||
      (xml = vms_strdup_printf (
         "<rsc_location id='" VM_CLUSTER_PIN_PREFIX "%s' rsc='%s'>"
         "<rule id='" VM_CLUSTER_PIN_PREFIX "%s-rule' score='-INFINITY'>"
         "<expression id='" VM_CLUSTER_PIN_PREFIX "%s-expr' "
         "attribute='#uname' operation='ne' value='%s'/></rule>"
         "</rsc_location>", id, id, id, id, n)) == NULL)
    return -1;
  /* A pin left by a run whose guard could not lift it is replaced. */
  if (vm_cluster_unpin (id) == -1)
    return -1;
  const char *argv[] = { "cibadmin", "--create", "--scope", "constraints",
                         "--xml-text", xml, NULL };
  if (cluster_run (argv, NULL, 0) != 0)
    return -1;
  vms_debug ("vm writer: resource %s pinned to node %s", id, node);
  return 0;
}

int
vm_cluster_unpin (const char *id)
{
  CLEANUP_FREE char *xml = NULL;

  if (cluster_check_id (id) == -1)
    return -1;
  xml = vms_strdup_printf ("<rsc_location id='" VM_CLUSTER_PIN_PREFIX
                           "%s'/>", id);
  if (xml == NULL)
    return -1;
  const char *argv[] = { "cibadmin", "--delete", "--xml-text", xml, NULL };
  return cluster_run (argv, NULL, 0) == 0 ? 0 : -1;
}

int
vm_cluster_running_on (const char *id, const char *node)
{
  CLEANUP_FREE char *out = NULL;
  if (cluster_check_id (id) == -1)
    return -1;
  const char *argv[] = { "crm_resource", "--resource", id, "--locate",
                         "--quiet", NULL };
  if (cluster_run (argv, &out, 1) != 0 || out == NULL)
    return 0;
  for (char *line = strtok (out, "\n"); line; line = strtok (NULL, "\n"))
    if (node && strcmp (line, node) == 0)
      return 1;
  return 0;
}

int
vm_cluster_cleanup (const char *id)
{
  if (cluster_check_id (id) == -1)
    return -1;
  const char *argv[] = { "crm_resource", "--cleanup", "--resource", id, NULL };
  return cluster_run (argv, NULL, 0) == 0 ? 0 : -1;
}

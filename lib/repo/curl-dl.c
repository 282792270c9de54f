/* libcurl, loaded when first used (issue 15), as librados is
 * (rados-dl.c says why and how).
 *
 * Only the S3 backend (storage-s3.c) calls libcurl. Linked, libcurl and
 * what only it brings (libssl) were mapped and relocated at every start
 * of vmshadow — about 1 200 of the ~19 500 symbol relocations of a start
 * that is mostly symbol lookups (docs/performance.md, "The fixed cost of
 * a vmshadow process"). A function of libcurl used elsewhere needs its
 * line here. Without libcurl, curl_global_init returns CURLE_FAILED_INIT
 * (storage-s3.c says so) and curl_easy_init NULL. */

/* Our definition of curl_easy_setopt below, not curl.h's type-checking
 * macro of that name. */
#define CURL_DISABLE_TYPECHECK 1
#include <stdarg.h>

#include <curl/curl.h>

#include "lazy-lib.h"

static struct vms_lazy_lib curl = { .soname = "libcurl.so.4",
                                    .lock = PTHREAD_MUTEX_INITIALIZER };

#define FORWARD_OR(fn, fail, ...) VMS_LAZY_FORWARD_OR (&curl, fn, fail, __VA_ARGS__)
#define FORWARD_VOID(fn, ...) VMS_LAZY_FORWARD_VOID (&curl, fn, __VA_ARGS__)

CURLcode curl_global_init (long flags)
{ FORWARD_OR (curl_global_init, CURLE_FAILED_INIT, flags); }
CURL *curl_easy_init (void)
{ FORWARD_OR (curl_easy_init, NULL, ); }
CURLcode curl_easy_perform (CURL *h)
{ FORWARD_OR (curl_easy_perform, CURLE_FAILED_INIT, h); }
void curl_easy_reset (CURL *h)
{ FORWARD_VOID (curl_easy_reset, h); }
void curl_easy_cleanup (CURL *h)
{ FORWARD_VOID (curl_easy_cleanup, h); }
struct curl_slist *curl_slist_append (struct curl_slist *l, const char *s)
{ FORWARD_OR (curl_slist_append, NULL, l, s); }
void curl_slist_free_all (struct curl_slist *l)
{ FORWARD_VOID (curl_slist_free_all, l); }
time_t curl_getdate (const char *p, const time_t *unused)
{ FORWARD_OR (curl_getdate, -1, p, unused); }

/* The option's one argument has the type its number's range says
 * (curl.h: CURLOPTTYPE_*), which is how libcurl itself reads it. */
CURLcode
curl_easy_setopt (CURL *h, CURLoption opt, ...)
{
  VMS_LAZY_RESOLVE (&curl, curl_easy_setopt);
  CURLcode rc;
  va_list ap;

  if (real == NULL)
    return CURLE_FAILED_INIT;
  va_start (ap, opt);
  if (opt < CURLOPTTYPE_OBJECTPOINT)
    rc = real (h, opt, va_arg (ap, long));
  else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
    rc = real (h, opt, va_arg (ap, void *));
  else if (opt < CURLOPTTYPE_OFF_T)
    rc = real (h, opt, va_arg (ap, void (*) (void)));
  else if (opt < CURLOPTTYPE_BLOB)
    rc = real (h, opt, va_arg (ap, curl_off_t));
  else
    rc = real (h, opt, va_arg (ap, struct curl_blob *));
  va_end (ap);
  return rc;
}

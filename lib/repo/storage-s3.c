/* The S3 backend of the storage interface (storage.h; issue 14,
 * docs/repository-format.md "Version 2", "S3"): a repository is
 * s3://BUCKET[/PREFIX], an object per name under PREFIX/ in BUCKET, over
 * HTTP(S) with libcurl, every request signed by libcurl's own AWS
 * Signature Version 4 (CURLOPT_AWS_SIGV4) — no HTTP or signing of ours.
 *
 * put is one PUT (S3 stores an object whole or not at all), or, only
 * with $VMSHADOW_S3_PART_SIZE set, above it a multipart upload aborted on any
 * failure (s3_put_multipart), with the
 * SHA-256 of the body in x-amz-content-sha256, which the server checks;
 * an exclusive put adds If-None-Match: * (412: EEXIST; a server that
 * answers 501 has no conditional writes: ENOTSUP); get is a ranged GET
 * whose Content-Range and length must be exactly what was asked, into the
 * caller's buffer (never more); stat is HEAD; list is ListObjectsV2 page
 * by page (1000 keys, continuation tokens), each page's XML parsed with
 * libxml2 and checked element by element; delete is DELETE (404 is
 * success). Every put is durable when the server answers 200: no sync.
 * The store's clock is the Last-Modified of clock/<random> (put, then
 * HEAD; deleted at close). The names "lock" and "clock/..." are the
 * backend's and never listed; keys under the prefix that are no valid
 * object names are someone else's and never listed either.
 *
 * Requests that fail with a 5xx (or 429, 408), a timeout, a reset or a
 * refused connection are retried with exponential backoff (0.25 s
 * doubling to 8 s, with jitter; $VMSHADOW_S3_RETRIES tries, default 6).
 * An exclusive put whose retry meets 412 reads the object back: the same
 * bytes mean the first try succeeded. Memory: a GET writes into the
 * caller's buffer; list pages and error bodies are capped (8 MiB, 64 KiB).
 *
 * Configuration (docs/vmshadow.1 ENVIRONMENT, docs/repository-format.md),
 * the first source that has a value wins, key id and secret as a pair:
 * $VMSHADOW_S3_* (ENDPOINT, REGION, ADDRESSING, ACCESS_KEY_ID,
 * SECRET_ACCESS_KEY, SESSION_TOKEN, CA_FILE), then $AWS_ENDPOINT_URL_S3 /
 * $AWS_ENDPOINT_URL, $AWS_REGION / $AWS_DEFAULT_REGION, $AWS_ACCESS_KEY_ID
 * / $AWS_SECRET_ACCESS_KEY / $AWS_SESSION_TOKEN, then the file
 * $VMSHADOW_S3_CONFIG (default /etc/vmshadow/s3.conf: sections [default]
 * and [BUCKET]; it must be a regular file of ours or root's that no group
 * or other may read — the secret is in it), then the AWS shared
 * credentials file ($AWS_SHARED_CREDENTIALS_FILE, default
 * ~/.aws/credentials, profile $AWS_PROFILE or default; same rule).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ini.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "storage.h"
#include "vmshadow/error.h"

#define S3_LIST_MAX ((size_t) 8 << 20)       /* one ListObjectsV2 page */
#define S3_ERROR_MAX ((size_t) 64 << 10)     /* an error body kept */
#define S3_TOKEN_MAX 1024                    /* a continuation token */
#define S3_IDLE_HANDLES 8
#define S3_PART_SIZE_DEFAULT 0   /* off until run against a gateway */
#define S3_PART_SIZE_MIN ((size_t) 5 << 20)   /* S3's least but the last */
#define S3_PART_SIZE_MAX ((size_t) 1 << 30)
#define S3_PARTS_MAX 10000
#define S3_LOCK_RENEW_SECONDS 10
#define S3_LOCK_STALE_SECONDS 60
#define S3_DEFAULT_CONFIG "/etc/vmshadow/s3.conf"
#define EMPTY_SHA256 \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_store {
  struct storage s;
  char *base;                   /* scheme://host[:port]/[bucket/]: + key */
  char *key_prefix;             /* "" or "PREFIX/" (URL-safe already) */
  char *bucket;
  char *sigv4;                  /* aws:amz:REGION:s3 */
  char *userpwd;                /* KEYID:SECRET */
  char *token_hdr;              /* x-amz-security-token: ..., or NULL */
  char *ca_file;
  int retries;
  char clock_name[64];
  int clock_put;
  /* Idle curl handles (a handle keeps its connection alive). */
  pthread_mutex_t mu;
  CURL *idle[S3_IDLE_HANDLES];
  int nidle;
  /* The writer lock (storage_s3_lock), renewed by a thread. */
  char lock_obj[STORAGE_NAME_MAX + 1];
  char *lock_body;
  int locked;
  pthread_t renewer;
  pthread_cond_t cv;
  int stopping;
  /* Immutability (storage_s3_protect; issue 14, R29). */
  size_t part_size;             /* larger puts are multipart uploads */
  const char *lock_mode;        /* "GOVERNANCE", "COMPLIANCE" or NULL */
  int64_t retain_until;         /* the date every protected put carries */
  int append_only;
};

static const struct storage_ops s3_ops;

static struct s3_store *
ss_of (struct storage *s)
{
  return (struct s3_store *) s;
}

/* ---------------------------------------------------------------- requests */

struct s3_req {
  const char *method;           /* GET PUT HEAD DELETE */
  const char *name;             /* object name, or NULL: the bucket */
  const char *query;            /* canonical (sorted, encoded), or NULL */
  const void *body;             /* PUT */
  size_t body_len, body_pos;
  const char *hdr[6];           /* extra signed headers */
  /* The response. */
  long status;
  uint8_t *out;                 /* a 2xx body goes here, at most out_cap */
  size_t out_cap, out_len;
  int overflow;                 /* the body was longer than out_cap */
  char *err;                    /* a non-2xx body (capped), NUL-ended */
  size_t err_len;
  int bad_header;               /* a header with bytes we do not take */
  int have_length;
  uint64_t content_length;
  char content_range[96];
  char last_modified[64];
  char etag[80];
  char retain[48];              /* x-amz-object-lock-retain-until-date */
  char version[256];            /* x-amz-version-id */
  char date[64];                /* Date: the store's clock */
  CURLcode cc;
};

static size_t
write_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct s3_req *r = opaque;
  size_t n = size * nmemb;

  if (r->status >= 200 && r->status < 300) {
    if (r->out == NULL || n > r->out_cap - r->out_len) {
      r->overflow = 1;
      return 0;                 /* aborts the transfer: never more */
    }
    memcpy (r->out + r->out_len, p, n);
    r->out_len += n;
    return n;
  }
  /* An error's body: the first S3_ERROR_MAX bytes, the rest dropped. */
  if (r->err_len < S3_ERROR_MAX) {
    size_t k = n < S3_ERROR_MAX - r->err_len ? n : S3_ERROR_MAX - r->err_len;
    char *e = realloc (r->err, r->err_len + k + 1);
    if (e == NULL)
      return 0;
    memcpy (e + r->err_len, p, k);
    r->err = e;
    r->err_len += k;
    e[r->err_len] = '\0';
  }
  return n;
}

static void
copy_value (char *dst, size_t size, const char *v, size_t n, int *bad)
{
  if (n >= size) {
    *bad = 1;
    return;
  }
  memcpy (dst, v, n);
  dst[n] = '\0';
}

/* Headers: the status line resets what an earlier response (100 Continue)
 * said; every byte must be printable ASCII or a tab. */
static size_t
header_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct s3_req *r = opaque;
  size_t n = size * nmemb, len = n;

  while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
    len--;
  for (size_t i = 0; i < len; i++)
    if (!((p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\t')) {
      r->bad_header = 1;
      return n;
    }
  if (len >= 5 && strncmp (p, "HTTP/", 5) == 0) {
    const char *sp = memchr (p, ' ', len);
    r->status = 0;
    if (sp && len - (size_t) (sp - p) >= 4 && isdigit ((unsigned char) sp[1]) &&
        isdigit ((unsigned char) sp[2]) && isdigit ((unsigned char) sp[3]))
      r->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    r->have_length = 0;
    r->content_range[0] = r->last_modified[0] = r->etag[0] = '\0';
    r->retain[0] = r->version[0] = r->date[0] = '\0';
    return n;
  }
  const char *colon = memchr (p, ':', len);
  if (colon == NULL)
    return n;
  size_t klen = (size_t) (colon - p);
  const char *v = colon + 1;
  size_t vlen = len - klen - 1;
  while (vlen > 0 && (*v == ' ' || *v == '\t'))
    v++, vlen--;
  while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
    vlen--;
  if (klen == 14 && strncasecmp (p, "Content-Length", 14) == 0) {
    uint64_t x = 0;
    if (vlen == 0 || vlen > 19) {
      r->bad_header = 1;
      return n;
    }
    for (size_t i = 0; i < vlen; i++) {
      if (!isdigit ((unsigned char) v[i])) {
        r->bad_header = 1;
        return n;
      }
      x = x * 10 + (uint64_t) (v[i] - '0');
    }
    r->content_length = x;
    r->have_length = 1;
  }
  else if (klen == 13 && strncasecmp (p, "Content-Range", 13) == 0)
    copy_value (r->content_range, sizeof r->content_range, v, vlen,
                &r->bad_header);
  else if (klen == 13 && strncasecmp (p, "Last-Modified", 13) == 0)
    copy_value (r->last_modified, sizeof r->last_modified, v, vlen,
                &r->bad_header);
  else if (klen == 4 && strncasecmp (p, "ETag", 4) == 0)
    copy_value (r->etag, sizeof r->etag, v, vlen, &r->bad_header);
  else if (klen == 35 &&
           strncasecmp (p, "x-amz-object-lock-retain-until-date", 35) == 0)
    copy_value (r->retain, sizeof r->retain, v, vlen, &r->bad_header);
  else if (klen == 16 && strncasecmp (p, "x-amz-version-id", 16) == 0)
    copy_value (r->version, sizeof r->version, v, vlen, &r->bad_header);
  else if (klen == 4 && strncasecmp (p, "Date", 4) == 0)
    copy_value (r->date, sizeof r->date, v, vlen, &r->bad_header);
  return n;
}

static size_t
read_cb (char *buf, size_t size, size_t nmemb, void *opaque)
{
  struct s3_req *r = opaque;
  size_t n = size * nmemb;

  if (n > r->body_len - r->body_pos)
    n = r->body_len - r->body_pos;
  if (n)
    memcpy (buf, (const uint8_t *) r->body + r->body_pos, n);
  r->body_pos += n;
  return n;
}

static int
seek_cb (void *opaque, curl_off_t off, int origin)
{
  struct s3_req *r = opaque;

  if (origin != SEEK_SET || off < 0 || (uint64_t) off > r->body_len)
    return CURL_SEEKFUNC_FAIL;
  r->body_pos = (size_t) off;
  return CURL_SEEKFUNC_OK;
}

static CURL *
take_handle (struct s3_store *ss)
{
  CURL *h = NULL;

  pthread_mutex_lock (&ss->mu);
  if (ss->nidle > 0)
    h = ss->idle[--ss->nidle];
  pthread_mutex_unlock (&ss->mu);
  if (h == NULL)
    h = curl_easy_init ();
  return h;
}

static void
give_handle (struct s3_store *ss, CURL *h)
{
  pthread_mutex_lock (&ss->mu);
  if (ss->nidle < S3_IDLE_HANDLES) {
    ss->idle[ss->nidle++] = h;
    h = NULL;
  }
  pthread_mutex_unlock (&ss->mu);
  if (h)
    curl_easy_cleanup (h);
}

static void
sha256_hex (const void *data, size_t len, char out[65])
{
  uint8_t md[32];
  unsigned int mdlen = 0;

  EVP_Digest (data, len, md, &mdlen, EVP_sha256 (), NULL);
  for (size_t i = 0; i < 32; i++)
    snprintf (out + 2 * i, 3, "%02x", md[i]);
}

/* A name in a URL path: every byte but A-Z a-z 0-9 - _ . ~ / as %XX (the
 * form SigV4's canonical URI takes as it is). */
static void
url_path_append (char *dst, size_t size, const char *name)
{
  size_t o = strlen (dst);
  for (const char *c = name; *c && o + 4 < size; c++) {
    if (isalnum ((unsigned char) *c) || strchr ("-_.~/", *c))
      dst[o++] = *c;
    else
      o += (size_t) snprintf (dst + o, size - o, "%%%02X", (unsigned char) *c);
  }
  dst[o] = '\0';
}

/* A query value: as above, '/' included. */
static void
url_query_append (char *dst, size_t size, const char *v)
{
  size_t o = strlen (dst);
  for (const char *c = v; *c && o + 4 < size; c++) {
    if (isalnum ((unsigned char) *c) || strchr ("-_.~", *c))
      dst[o++] = *c;
    else
      o += (size_t) snprintf (dst + o, size - o, "%%%02X", (unsigned char) *c);
  }
  dst[o] = '\0';
}

static int
retryable (const struct s3_req *r)
{
  switch (r->cc) {
  case CURLE_OK:
    break;
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return 1;
  default:
    return 0;
  }
  return r->status >= 500 || r->status == 429 || r->status == 408;
}

static int
errno_of_curl (CURLcode cc)
{
  switch (cc) {
  case CURLE_OPERATION_TIMEDOUT: return ETIMEDOUT;
  case CURLE_COULDNT_CONNECT: return ECONNREFUSED;
  case CURLE_COULDNT_RESOLVE_HOST: return EHOSTUNREACH;
  /* The connection lost mid-request: the endpoint's fault, not the
   * object's (verify tells the two apart, issue 12). */
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE: return ECONNRESET;
  case CURLE_OUT_OF_MEMORY: return ENOMEM;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CONNECT_ERROR: return EPROTO;
  default: return EIO;
  }
}

/* One request, retried as the header comment says; 0 with r->status set
 * when the server answered (any status), -1 with errno set when it never
 * did (or a header was malformed: EBADMSG). */
static int
s3_request (struct s3_store *ss, struct s3_req *r)
{
  char url[STORAGE_NAME_MAX * 3 + 2048];
  char sha[65], sha_hdr[100];
  struct curl_slist *hdrs = NULL;
  CURL *h;
  int attempt = 0;

  snprintf (url, sizeof url, "%s", ss->base);
  if (r->name) {
    url_path_append (url, sizeof url, ss->key_prefix);
    url_path_append (url, sizeof url, r->name);
  }
  if (r->query) {
    strncat (url, "?", sizeof url - strlen (url) - 1);
    strncat (url, r->query, sizeof url - strlen (url) - 1);
  }
  if (strlen (url) + 8 >= sizeof url) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (r->body)
    sha256_hex (r->body, r->body_len, sha);
  snprintf (sha_hdr, sizeof sha_hdr, "x-amz-content-sha256: %s",
            r->body ? sha : EMPTY_SHA256);
  hdrs = curl_slist_append (hdrs, sha_hdr);
  if (ss->token_hdr)
    hdrs = curl_slist_append (hdrs, ss->token_hdr);
  for (size_t i = 0; i < sizeof r->hdr / sizeof r->hdr[0] && r->hdr[i]; i++)
    hdrs = curl_slist_append (hdrs, r->hdr[i]);
  if (hdrs == NULL || (h = take_handle (ss)) == NULL) {
    curl_slist_free_all (hdrs);
    errno = ENOMEM;
    return -1;
  }
  for (;;) {
    curl_easy_reset (h);
    r->status = 0;
    r->out_len = 0;
    r->overflow = r->bad_header = r->have_length = 0;
    r->body_pos = 0;
    r->err_len = 0;
    r->content_range[0] = r->last_modified[0] = r->etag[0] = '\0';
    r->retain[0] = r->version[0] = r->date[0] = '\0';
    curl_easy_setopt (h, CURLOPT_URL, url);
    curl_easy_setopt (h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt (h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ss->ca_file)
      curl_easy_setopt (h, CURLOPT_CAINFO, ss->ca_file);
    curl_easy_setopt (h, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A stalled transfer (under 1 KiB/s for 60 s) is a timeout. */
    curl_easy_setopt (h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt (h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt (h, CURLOPT_AWS_SIGV4, ss->sigv4);
    curl_easy_setopt (h, CURLOPT_USERPWD, ss->userpwd);
    curl_easy_setopt (h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt (h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt (h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt (h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt (h, CURLOPT_HEADERDATA, r);
    if (strcmp (r->method, "PUT") == 0) {
      curl_easy_setopt (h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt (h, CURLOPT_READFUNCTION, read_cb);
      curl_easy_setopt (h, CURLOPT_READDATA, r);
      curl_easy_setopt (h, CURLOPT_SEEKFUNCTION, seek_cb);
      curl_easy_setopt (h, CURLOPT_SEEKDATA, r);
      curl_easy_setopt (h, CURLOPT_INFILESIZE_LARGE,
                        (curl_off_t) r->body_len);
    }
    else if (strcmp (r->method, "POST") == 0) {
      /* Multipart uploads' initiate and complete: a small body in memory. */
      curl_easy_setopt (h, CURLOPT_POST, 1L);
      curl_easy_setopt (h, CURLOPT_POSTFIELDS, r->body);
      curl_easy_setopt (h, CURLOPT_POSTFIELDSIZE_LARGE,
                        (curl_off_t) r->body_len);
    }
    else if (strcmp (r->method, "HEAD") == 0)
      curl_easy_setopt (h, CURLOPT_NOBODY, 1L);
    else if (strcmp (r->method, "GET") != 0)
      curl_easy_setopt (h, CURLOPT_CUSTOMREQUEST, r->method);
    r->cc = curl_easy_perform (h);
    if (r->cc == CURLE_WRITE_ERROR && r->overflow)
      break;                    /* the caller says what too long means */
    if (r->bad_header)
      break;
    if (!retryable (r) || attempt + 1 >= ss->retries)
      break;
    /* Backoff: 0.25 s doubling to 8 s, and up to a quarter more. */
    long ms = 250L << (attempt < 5 ? attempt : 5);
    uint16_t j = 0;
    if (getrandom (&j, sizeof j, 0) != sizeof j)
      j = 0;
    ms += (long) (j % (unsigned) (ms / 4 + 1));
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
    attempt++;
  }
  give_handle (ss, h);
  curl_slist_free_all (hdrs);
  if (r->bad_header) {
    errno = EBADMSG;
    return -1;
  }
  if (r->cc != CURLE_OK && !(r->cc == CURLE_WRITE_ERROR && r->overflow)) {
    errno = errno_of_curl (r->cc);
    return -1;
  }
  /* How many tries it took, for put_exclusive's 412 after a retry. */
  return attempt;
}

/* errno for a status the operation has no meaning of its own for. */
static int
fail_status (struct s3_req *r)
{
  switch (r->status) {
  case 404: errno = ENOENT; break;
  case 403: errno = EACCES; break;
  case 412: errno = EEXIST; break;
  case 416: errno = EBADMSG; break;
  case 501: errno = ENOTSUP; break;
  case 507: errno = ENOSPC; break;
  case 400: errno = EINVAL; break;
  /* The service, or what is behind the endpoint, not there for now. */
  case 502: case 503: case 504: errno = EAGAIN; break;
  default:
    errno = r->status >= 500 ? EIO : EPROTO;
  }
  return -1;
}

static void
req_free (struct s3_req *r)
{
  free (r->err);
  r->err = NULL;
}

/* An Object Lock date: "YYYY-MM-DDTHH:MM:SS[.fff]Z" as S3 documents it,
 * else an HTTP date (as some gateways send it), or -1. */
static int64_t iso8601_strict (const char *s);

static int64_t
iso8601_time (const char *s)
{
  int64_t t = iso8601_strict (s);
  if (t == -1) {
    time_t h = curl_getdate (s, NULL);
    t = h == (time_t) -1 ? -1 : (int64_t) h;
  }
  return t;
}

static int64_t
iso8601_strict (const char *s)
{
  struct tm tm = { 0 };
  int n = 0;

  if (sscanf (s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
              &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
      n != 19)
    return -1;
  s += n;
  if (*s == '.') {
    s++;
    if (!isdigit ((unsigned char) *s))
      return -1;
    while (isdigit ((unsigned char) *s))
      s++;
  }
  if (strcmp (s, "Z") != 0 || tm.tm_mon < 1 || tm.tm_mon > 12 ||
      tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm (&tm);
  return t == (time_t) -1 ? -1 : (int64_t) t;
}

/* ---------------------------------------------------------------- callbacks */

static int s3_get_ (struct storage *s, const char *name, uint64_t offset,
                    size_t len, void *buf);
static const char *text_of (xmlNode *n);
static int is_elem (xmlNode *n, const char *name);
static int s3_stat_ (struct storage *s, const char *name,
                     struct storage_stat *st);
static int s3_extend (struct storage *s, const char *name, int64_t *was);
static int s3_del (struct storage *s, const char *name);

/* "Content-MD5: <base64>" of data into out (64 bytes): S3 asks for it
 * with Object Lock, and it checks each part of a multipart upload. */
static void
content_md5 (const void *data, size_t len, char out[64])
{
  uint8_t md[16];
  unsigned int mdlen = 0;
  unsigned char b64[32];

  EVP_Digest (data, len, md, &mdlen, EVP_md5 (), NULL);
  EVP_EncodeBlock (b64, md, 16);
  snprintf (out, 64, "Content-MD5: %s", b64);
}

/* The text of the one child element named child of a root element named
 * root in an answer's XML, into out (printable ASCII but '<', '>', '&',
 * 1..size-1 bytes); -1 (EBADMSG) when the answer is anything else (an
 * <Error> in a 200, S3's way for a failed complete). */
static int
xml_child_text (const uint8_t *xml, size_t len, const char *root_name,
                const char *child, char *out, size_t size)
{
  xmlDoc *doc = len < INT32_MAX
    ? xmlReadMemory ((const char *) xml, (int) len, "answer.xml", NULL,
                     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
    : NULL;
  xmlNode *root = doc ? xmlDocGetRootElement (doc) : NULL;
  int r = -1;

  if (doc && !doc->intSubset && !doc->extSubset && root &&
      is_elem (root, root_name)) {
    if (child == NULL)
      r = 0;
    for (xmlNode *n = root->children; child && n; n = n->next)
      if (is_elem (n, child)) {
        const char *t = text_of (n);
        size_t tl = t ? strlen (t) : 0;
        if (t == NULL || tl == 0 || tl >= size || r == 0) {
          r = -1;
          break;
        }
        r = 0;
        for (size_t i = 0; i < tl; i++)
          if (t[i] <= 0x20 || t[i] >= 0x7f || strchr ("<>&", t[i]))
            r = -1;
        if (r == 0)
          memcpy (out, t, tl + 1);
        else
          break;
      }
  }
  xmlFreeDoc (doc);
  if (r == -1)
    errno = EBADMSG;
  return r;
}

/* Abort a multipart upload: its parts go (best effort; errno kept). */
static void
abort_upload (struct s3_store *ss, const char *name, const char *upq)
{
  int e = errno;
  struct s3_req r = { .method = "DELETE", .name = name, .query = upq };
  if (s3_request (ss, &r) == 0)
    req_free (&r);
  errno = e;
}

/* A put of more than part_size bytes as a multipart upload (issue 14):
 * initiate (with the Object Lock headers lock_hdrs, or NULL), one part of
 * part_size bytes after another straight from buf (each with its MD5,
 * retried as every request; memory: nothing but buf), complete with the
 * parts' ETags. The object appears whole at the complete, or not at all:
 * any failure aborts the upload, which drops its parts. With lock_hdrs,
 * the retention is then read back and set where it is missing: the lab's
 * RADOS Gateway (Ceph 16) takes the headers on initiate and ignores them,
 * so without this a multipart pack would carry no lock. */
static int
s3_put_multipart (struct s3_store *ss, const char *name, const uint8_t *buf,
                  size_t len, const char *const *lock_hdrs)
{
  uint8_t ans[16384];
  char upload_id[400], upq[1300], q[1400], md5[64];
  size_t nparts = (len + ss->part_size - 1) / ss->part_size;
  char (*etags)[80] = NULL;
  char *xml = NULL;
  int ret = -1;

  if (nparts > S3_PARTS_MAX) {
    errno = EFBIG;
    return -1;
  }
  struct s3_req ini = { .method = "POST", .name = name, .query = "uploads=",
                        .body = "", .body_len = 0, .out = ans,
                        .out_cap = sizeof ans - 1,
                        .hdr = { "Content-Type: application/octet-stream",
                                 lock_hdrs ? lock_hdrs[0] : NULL,
                                 lock_hdrs ? lock_hdrs[1] : NULL } };
  if (lock_hdrs && lock_hdrs[0] && strncmp (lock_hdrs[0], "If-", 3) == 0) {
    /* (Never: exclusive puts are not multipart.) */
    errno = EINVAL;
    return -1;
  }
  if (s3_request (ss, &ini) == -1)
    return -1;
  if (ini.status != 200 || ini.overflow) {
    ret = ini.status != 200 ? fail_status (&ini) : (errno = EBADMSG, -1);
    req_free (&ini);
    return ret;
  }
  req_free (&ini);
  if (xml_child_text (ans, ini.out_len, "InitiateMultipartUploadResult",
                      "UploadId", upload_id, sizeof upload_id) == -1)
    return -1;
  strcpy (upq, "uploadId=");
  url_query_append (upq, sizeof upq, upload_id);

  etags = calloc (nparts, sizeof *etags);
  if (etags == NULL)
    goto abort;
  for (size_t p = 0; p < nparts; p++) {
    size_t off = p * ss->part_size;
    size_t n = len - off < ss->part_size ? len - off : ss->part_size;
    /* Sorted by name, as libcurl signs the query as it is. */
    snprintf (q, sizeof q, "partNumber=%zu&%s", p + 1, upq);
    content_md5 (buf + off, n, md5);
    struct s3_req pr = { .method = "PUT", .name = name, .query = q,
                         .body = buf + off, .body_len = n,
                         .hdr = { md5 } };
    if (s3_request (ss, &pr) == -1)
      goto abort;
    if (pr.status != 200) {
      fail_status (&pr);
      req_free (&pr);
      goto abort;
    }
    req_free (&pr);
    size_t el = strlen (pr.etag);
    if (el == 0 || el >= sizeof etags[p] || strpbrk (pr.etag, "<>&")) {
      errno = EBADMSG;
      goto abort;
    }
    memcpy (etags[p], pr.etag, el + 1);
  }

  size_t cap = 128 + nparts * 160, o = 0;
  xml = malloc (cap);
  if (xml == NULL)
    goto abort;
  o += (size_t) snprintf (xml + o, cap - o, "<CompleteMultipartUpload>");
  for (size_t p = 0; p < nparts; p++)
    o += (size_t) snprintf (xml + o, cap - o, "<Part><PartNumber>%zu"
                            "</PartNumber><ETag>%s</ETag></Part>", p + 1,
                            etags[p]);
  o += (size_t) snprintf (xml + o, cap - o, "</CompleteMultipartUpload>");
  struct s3_req cr = { .method = "POST", .name = name, .query = upq,
                       .body = xml, .body_len = o, .out = ans,
                       .out_cap = sizeof ans - 1,
                       .hdr = { "Content-Type: application/xml" } };
  int tries = s3_request (ss, &cr);
  if (tries == -1)
    goto abort;
  if (cr.status == 200 && !cr.overflow &&
      xml_child_text (ans, cr.out_len, "CompleteMultipartUploadResult", NULL,
                      NULL, 0) == 0) {
    req_free (&cr);
    ret = 0;
    goto retain;
  }
  if (cr.status == 404 && tries > 0) {
    /* A retry found the upload gone: completed by the first try? */
    struct storage_stat st;
    if (s3_stat_ (&ss->s, name, &st) == 0 && st.size == len) {
      req_free (&cr);
      ret = 0;
      goto retain;
    }
  }
  if (cr.status != 200)
    fail_status (&cr);
  else
    errno = EBADMSG;            /* an <Error> in a 200 */
  req_free (&cr);
 abort:
  abort_upload (ss, name, upq);
  goto out;
 retain:
  /* Not counted as put until it is locked: a failure fails the put, and
   * the unlocked object goes (best effort; nothing references it). */
  if (lock_hdrs && s3_extend (&ss->s, name, NULL) == -1) {
    int e = errno;
    s3_del (&ss->s, name);
    errno = e;
    ret = -1;
  }
 out:
  free (etags);
  free (xml);
  return ret;
}

static int
s3_put (struct storage *s, const char *name, const void *buf, size_t len,
        unsigned flags)
{
  struct s3_store *ss = ss_of (s);
  struct s3_req r = { .method = "PUT", .name = name, .body = buf ? buf : "",
                      .body_len = len };
  char mode_hdr[64], until_hdr[96], md5_hdr[64];
  int tries, ret = 0, nh = 0;
  int protect = storage_s3_protected_name (name);

  /* Append-only: a backup's objects are never written over (issue 14);
   * its notes (verify --boot's) are the one thing written again. */
  const char *last = strrchr (name, '/');
  if (protect && ss->append_only &&
      !(last && strncmp (last + 1, "note-", 5) == 0))
    flags |= STORAGE_PUT_EXCLUSIVE;
  if (flags & STORAGE_PUT_EXCLUSIVE)
    r.hdr[nh++] = "If-None-Match: *";
  if (protect && ss->lock_mode && !(flags & STORAGE_PUT_NO_RETAIN)) {
    /* Object Lock: mode and date, and the body's MD5, which S3 asks of
     * every put that sets a retention. */
    struct tm tm;
    time_t t = (time_t) ss->retain_until;
    gmtime_r (&t, &tm);
    snprintf (mode_hdr, sizeof mode_hdr, "x-amz-object-lock-mode: %s",
              ss->lock_mode);
    strftime (until_hdr, sizeof until_hdr,
              "x-amz-object-lock-retain-until-date: %Y-%m-%dT%H:%M:%SZ", &tm);
    r.hdr[nh++] = mode_hdr;
    r.hdr[nh++] = until_hdr;
  }
  /* A large object goes in parts (not an exclusive one: S3's conditional
   * writes of multipart uploads are not everywhere yet; issue 14). */
  if (!(flags & STORAGE_PUT_EXCLUSIVE) && ss->part_size && len > ss->part_size)
    return s3_put_multipart (ss, name, buf, len, nh > 0 ? r.hdr : NULL);
  if (nh > 0 && r.hdr[nh - 1] == until_hdr) {
    content_md5 (r.body, len, md5_hdr);
    r.hdr[nh++] = md5_hdr;
  }
  if ((tries = s3_request (ss, &r)) == -1)
    return -1;
  if (r.status == 200)
    goto out;
  if (r.status == 412 && (flags & STORAGE_PUT_EXCLUSIVE) && tries > 0 &&
      len <= ((size_t) 256 << 20)) {
    /* A retry found the name taken: by our own first try? */
    uint8_t *back = malloc (len ? len : 1);
    struct storage_stat st;
    if (back && s3_stat_ (s, name, &st) == 0 && st.size == len &&
        s3_get_ (s, name, 0, len, back) == 0 && memcmp (back, buf, len) == 0) {
      free (back);
      goto out;
    }
    free (back);
  }
  ret = fail_status (&r);
 out:
  req_free (&r);
  return ret;
}

/* "bytes A-B/T" exactly as asked. */
static int
range_is (const char *cr, uint64_t a, uint64_t b)
{
  char want[96];
  int n = snprintf (want, sizeof want, "bytes %" PRIu64 "-%" PRIu64 "/", a, b);
  if (strncmp (cr, want, (size_t) n) != 0)
    return 0;
  const char *t = cr + n;
  if (*t == '\0')
    return 0;
  for (; *t; t++)
    if (!isdigit ((unsigned char) *t))
      return 0;
  return 1;
}

static int
s3_get_ (struct storage *s, const char *name, uint64_t offset, size_t len,
         void *buf)
{
  struct s3_store *ss = ss_of (s);
  char range[96];
  int ret = 0;

  if (len == 0) {
    struct storage_stat st;
    if (s3_stat_ (s, name, &st) == -1)
      return -1;
    if (offset > st.size) {
      errno = EBADMSG;
      return -1;
    }
    return 0;
  }
  if (offset + len < offset) {
    errno = EINVAL;
    return -1;
  }
  snprintf (range, sizeof range, "Range: bytes=%" PRIu64 "-%" PRIu64, offset,
            offset + len - 1);
  struct s3_req r = { .method = "GET", .name = name, .out = buf,
                      .out_cap = len, .hdr = { range } };
  if (s3_request (ss, &r) == -1)
    return -1;
  if (r.status == 206) {
    if (r.overflow || r.out_len != len ||
        !range_is (r.content_range, offset, offset + len - 1)) {
      errno = EBADMSG;          /* the object ends before the range */
      ret = -1;
    }
  }
  else if (r.status == 200) {
    /* A server that ignores Range sends the whole object: right only
     * when that is exactly the range. */
    if (offset != 0 || r.overflow || r.out_len != len) {
      errno = EBADMSG;
      ret = -1;
    }
  }
  else
    ret = fail_status (&r);
  req_free (&r);
  return ret;
}

static int
s3_stat_ (struct storage *s, const char *name, struct storage_stat *st)
{
  struct s3_req r = { .method = "HEAD", .name = name };
  int ret = 0;

  if (s3_request (ss_of (s), &r) == -1)
    return -1;
  if (r.status != 200)
    ret = fail_status (&r);
  else {
    time_t t = r.last_modified[0] ? curl_getdate (r.last_modified, NULL) : -1;
    if (!r.have_length || t == (time_t) -1) {
      errno = EBADMSG;
      ret = -1;
    }
    else {
      st->size = r.content_length;
      st->mtime = (int64_t) t;
      st->retain_until = r.retain[0] ? iso8601_time (r.retain) : 0;
      st->now = r.date[0] ? (int64_t) curl_getdate (r.date, NULL) : 0;
      if (st->now < 0)
        st->now = 0;            /* unknown: callers ask the clock object */
      if (st->retain_until == -1) {
        errno = EBADMSG;
        ret = -1;
      }
    }
  }
  req_free (&r);
  return ret;
}

static int
s3_del (struct storage *s, const char *name)
{
  struct s3_store *ss = ss_of (s);
  struct s3_req r = { .method = "DELETE", .name = name };
  char query[300];
  int ret = 0;

  if (storage_s3_protected_name (name) && ss->append_only) {
    errno = EPERM;              /* append-only: never from this client */
    return -1;
  }
  if (storage_s3_protected_name (name) && ss->lock_mode) {
    /* Object Lock: never try to delete what is still retained (by the
     * store's clock), and delete the version itself, not behind a delete
     * marker that would keep its bytes stored (issue 14). */
    struct s3_req h = { .method = "HEAD", .name = name };
    if (s3_request (ss, &h) == -1)
      return -1;
    if (h.status == 404) {
      req_free (&h);
      return 0;
    }
    if (h.status != 200) {
      ret = fail_status (&h);
      req_free (&h);
      return ret;
    }
    req_free (&h);
    int64_t until = h.retain[0] ? iso8601_time (h.retain) : 0;
    int64_t now = h.date[0] ? (int64_t) curl_getdate (h.date, NULL) : -1;
    if (until == -1 || now == -1) {
      errno = EBADMSG;
      return -1;
    }
    if (until > now) {
      errno = EPERM;
      return -1;
    }
    if (h.version[0] && strcmp (h.version, "null") != 0) {
      snprintf (query, sizeof query, "versionId=");
      url_query_append (query, sizeof query, h.version);
      r.query = query;
    }
  }
  if (s3_request (ss, &r) == -1)
    return -1;
  if (r.status != 204 && r.status != 200 && r.status != 404)
    ret = fail_status (&r);
  req_free (&r);
  return ret;
}

/* The text of an element with no element children, or NULL. */
static const char *
text_of (xmlNode *n)
{
  if (n->children == NULL)
    return "";
  if (n->children->next || n->children->type != XML_TEXT_NODE)
    return NULL;
  return (const char *) n->children->content;
}

static int
is_elem (xmlNode *n, const char *name)
{
  return n->type == XML_ELEMENT_NODE &&
    strcmp ((const char *) n->name, name) == 0;
}

struct s3_page {
  char token[S3_TOKEN_MAX + 1];
  int truncated;
};

/* One ListObjectsV2 page: every key checked, the valid ones (without the
 * repository's prefix) passed to fn. */
static int
parse_page (struct s3_store *ss, const uint8_t *xml, size_t len,
            const char *full_prefix, struct s3_page *pg,
            storage_list_fn fn, void *opaque, int *stopped)
{
  xmlDoc *doc;
  xmlNode *root;
  size_t kp = strlen (ss->key_prefix), fp = strlen (full_prefix);
  int have_trunc = 0, r = 0;

  if (len > INT32_MAX) {
    errno = EBADMSG;
    return -1;
  }
  /* No network, no entity expansion, no DTD: a page is plain elements. */
  doc = xmlReadMemory ((const char *) xml, (int) len, "list.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR |
                       XML_PARSE_NOWARNING);
  if (doc == NULL || doc->intSubset || doc->extSubset ||
      (root = xmlDocGetRootElement (doc)) == NULL ||
      !is_elem (root, "ListBucketResult")) {
    xmlFreeDoc (doc);
    errno = EBADMSG;
    return -1;
  }
  pg->token[0] = '\0';
  pg->truncated = 0;
  for (xmlNode *n = root->children; n && r == 0 && !*stopped; n = n->next) {
    const char *t;
    if (n->type != XML_ELEMENT_NODE)
      continue;
    if (is_elem (n, "IsTruncated")) {
      t = text_of (n);
      if (t && strcmp (t, "true") == 0)
        pg->truncated = 1;
      else if (!t || strcmp (t, "false") != 0)
        goto bad;
      have_trunc = 1;
    }
    else if (is_elem (n, "NextContinuationToken")) {
      t = text_of (n);
      if (t == NULL || *t == '\0' || strlen (t) > S3_TOKEN_MAX)
        goto bad;
      for (const char *c = t; *c; c++)
        if (*c <= 0x20 || *c >= 0x7f)
          goto bad;
      strcpy (pg->token, t);
    }
    else if (is_elem (n, "Contents")) {
      const char *key = NULL;
      for (xmlNode *c = n->children; c; c = c->next)
        if (is_elem (c, "Key")) {
          if (key)
            goto bad;
          key = text_of (c);
          if (key == NULL)
            goto bad;
        }
      /* S3 gives only keys under the prefix asked for. */
      if (key == NULL || strncmp (key, full_prefix, fp) != 0)
        goto bad;
      const char *name = key + kp;
      if (!storage_valid_name (name) || strcmp (name, "lock") == 0 ||
          strncmp (name, "clock/", 6) == 0)
        continue;               /* someone else's, or the backend's own */
      r = fn (opaque, name);
      if (r != 0)
        *stopped = 1;
    }
  }
  xmlFreeDoc (doc);
  if (*stopped)
    return r;
  if (!have_trunc || (pg->truncated && pg->token[0] == '\0')) {
    errno = EBADMSG;
    return -1;
  }
  return 0;
 bad:
  xmlFreeDoc (doc);
  errno = EBADMSG;
  return -1;
}

static int
s3_list (struct storage *s, const char *prefix, storage_list_fn fn,
         void *opaque)
{
  struct s3_store *ss = ss_of (s);
  char full[STORAGE_NAME_MAX * 2 + 8];
  char query[STORAGE_NAME_MAX * 3 + S3_TOKEN_MAX * 3 + 128];
  struct s3_page pg = { .token = "" };
  uint8_t *buf = malloc (S3_LIST_MAX);
  int stopped = 0, r = 0;

  if (buf == NULL)
    return -1;
  snprintf (full, sizeof full, "%s%s", ss->key_prefix, prefix);
  do {
    /* Sorted by parameter name: libcurl signs the query as it is. */
    query[0] = '\0';
    if (pg.token[0]) {
      strcpy (query, "continuation-token=");
      url_query_append (query, sizeof query, pg.token);
      strcat (query, "&");
    }
    strcat (query, "list-type=2&prefix=");
    url_query_append (query, sizeof query, full);
    struct s3_req rq = { .method = "GET", .query = query, .out = buf,
                         .out_cap = S3_LIST_MAX };
    if (s3_request (ss, &rq) == -1) {
      r = -1;
      break;
    }
    if (rq.status != 200) {
      r = fail_status (&rq);
      req_free (&rq);
      break;
    }
    req_free (&rq);
    if (rq.overflow) {
      errno = EFBIG;
      r = -1;
      break;
    }
    r = parse_page (ss, buf, rq.out_len, full, &pg, fn, opaque, &stopped);
  } while (r == 0 && !stopped && pg.truncated);
  int e = errno;
  free (buf);
  errno = e;
  return r;
}

static int
s3_now (struct storage *s, int64_t *t)
{
  struct s3_store *ss = ss_of (s);
  struct storage_stat st;

  if (s3_put (s, ss->clock_name, "t", 1, 0) == -1)
    return -1;
  ss->clock_put = 1;
  if (s3_stat_ (s, ss->clock_name, &st) == -1)
    return -1;
  *t = st.mtime;
  return 0;
}

static void
stop_renewer (struct s3_store *ss)
{
  if (!ss->locked)
    return;
  pthread_mutex_lock (&ss->mu);
  ss->stopping = 1;
  pthread_cond_signal (&ss->cv);
  pthread_mutex_unlock (&ss->mu);
  pthread_join (ss->renewer, NULL);
  s3_del (&ss->s, ss->lock_obj);
  ss->locked = 0;
}

static void
s3_close (struct storage *s)
{
  struct s3_store *ss = ss_of (s);

  stop_renewer (ss);
  if (ss->clock_put)
    s3_del (s, ss->clock_name);
  for (int i = 0; i < ss->nidle; i++)
    curl_easy_cleanup (ss->idle[i]);
  pthread_mutex_destroy (&ss->mu);
  pthread_cond_destroy (&ss->cv);
  free (ss->base);
  free (ss->key_prefix);
  free (ss->bucket);
  free (ss->sigv4);
  if (ss->userpwd)
    explicit_bzero (ss->userpwd, strlen (ss->userpwd));
  free (ss->userpwd);
  free (ss->token_hdr);
  free (ss->ca_file);
  free (ss->lock_body);
  free (ss);
}

static const struct storage_ops s3_ops = {
  .size = sizeof (struct storage_ops),
  .name = "s3",
  .put = s3_put,
  .get = s3_get_,
  .stat = s3_stat_,
  .list = s3_list,
  .del = s3_del,
  .now = s3_now,
  .sync = NULL,                 /* every put is durable when it returns */
  .close = s3_close,
  .extend_retention = s3_extend,
};

/* ---------------------------------------------------------------- config */

struct s3_conf {
  const char *bucket;
  const char *section;          /* the profile, for the AWS file */
  int aws_file;
  char *endpoint, *region, *addressing, *key_id, *secret, *token, *ca_file;
  /* what the bucket's own section said wins over [default] */
  int from_bucket;
};

static void
set_once (char **dst, const char *v, int override)
{
  if (*dst && !override)
    return;
  free (*dst);
  *dst = strdup (v);
}

static int
ini_cb (void *opaque, const char *section, const char *key, const char *value)
{
  struct s3_conf *c = opaque;
  int own, def;

  if (c->aws_file) {
    if (strcmp (section, c->section) != 0)
      return 1;
    if (strcmp (key, "aws_access_key_id") == 0)
      set_once (&c->key_id, value, 1);
    else if (strcmp (key, "aws_secret_access_key") == 0)
      set_once (&c->secret, value, 1);
    else if (strcmp (key, "aws_session_token") == 0)
      set_once (&c->token, value, 1);
    return 1;
  }
  own = strcmp (section, c->bucket) == 0;
  def = strcmp (section, "default") == 0;
  if (!own && !def)
    return 1;
  char **dst = strcmp (key, "endpoint") == 0 ? &c->endpoint
    : strcmp (key, "region") == 0 ? &c->region
    : strcmp (key, "addressing") == 0 ? &c->addressing
    : strcmp (key, "access_key_id") == 0 ? &c->key_id
    : strcmp (key, "secret_access_key") == 0 ? &c->secret
    : strcmp (key, "session_token") == 0 ? &c->token
    : strcmp (key, "ca_file") == 0 ? &c->ca_file : NULL;
  if (dst == NULL)
    return 0;                   /* an unknown key: an error, with its line */
  set_once (dst, value, own);
  return 1;
}

/* Read a credentials file: a regular file (never through a link) owned by
 * us or root that no group or other can read or write. 0 read, 1 absent,
 * -1 with the error set. */
static int
read_secret_file (const char *path, struct s3_conf *c, int must_exist)
{
  int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  struct stat st;
  FILE *f;

  if (fd == -1) {
    if (errno == ENOENT && !must_exist)
      return 1;
    vms_set_error (errno, "cannot open the S3 configuration %s: %s%s", path,
                   strerror (errno), errno == ELOOP ? " (a link: not "
                   "followed)" : "");
    return -1;
  }
  if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode) ||
      (st.st_uid != geteuid () && st.st_uid != 0) ||
      (st.st_mode & 077) != 0) {
    vms_set_error (EACCES, "the S3 configuration %s holds secrets: it must be "
                   "a regular file owned by %s that no group or other may "
                   "access (chmod 600 %s)", path,
                   geteuid () == 0 ? "root" : "you or root", path);
    close (fd);
    return -1;
  }
  f = fdopen (fd, "r");
  if (f == NULL) {
    close (fd);
    vms_set_error (errno, "cannot read %s: %s", path, strerror (errno));
    return -1;
  }
  int line = ini_parse_file (f, ini_cb, c);
  fclose (f);
  if (line != 0) {
    vms_set_error (EINVAL, "the S3 configuration %s: %s at line %d", path,
                   line > 0 ? "a bad line or an unknown key" : "cannot read it",
                   line);
    return -1;
  }
  return 0;
}

static const char *
env (const char *name)
{
  const char *v = getenv (name);
  return v && *v ? v : NULL;
}

static int
loopback_host (const char *h, size_t n)
{
  return (n == 9 && strncmp (h, "localhost", 9) == 0) ||
    (n > 10 && strncmp (h + n - 10, ".localhost", 10) == 0) ||
    (n >= 4 && strncmp (h, "127.", 4) == 0) ||
    (n == 5 && strncmp (h, "[::1]", 5) == 0);
}

static void
conf_free (struct s3_conf *c)
{
  free (c->endpoint);
  free (c->region);
  free (c->addressing);
  if (c->secret)
    explicit_bzero (c->secret, strlen (c->secret));
  free (c->key_id);
  free (c->secret);
  free (c->token);
  free (c->ca_file);
}

static int
valid_bucket (const char *b, size_t n)
{
  if (n < 3 || n > 63 || b[0] == '.' || b[0] == '-' || b[n - 1] == '.' ||
      b[n - 1] == '-')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') ||
          b[i] == '.' || b[i] == '-'))
      return 0;
  return 1;
}

static int
probe (struct s3_store *ss, const char *spec)
{
  char query[STORAGE_NAME_MAX * 3 + 64] = "list-type=2&max-keys=1&prefix=";
  uint8_t buf[65536];
  struct s3_req r = { .method = "GET", .query = query, .out = buf,
                      .out_cap = sizeof buf };
  int ret = 0;

  url_query_append (query, sizeof query, ss->key_prefix);
  if (s3_request (ss, &r) == -1) {
    vms_set_error (errno, "S3: cannot reach %s for s3://%s: %s", ss->base,
                   spec, errno == EBADMSG ? "a malformed answer"
                   : strerror (errno));
    return -1;
  }
  if (r.status != 200) {
    /* The error's Code, if the body names one (checked: letters). */
    char code[64] = "";
    const char *c = r.err ? strstr (r.err, "<Code>") : NULL;
    if (c) {
      size_t n = 0;
      c += 6;
      while (n < sizeof code - 1 && isalnum ((unsigned char) c[n]))
        n++;
      memcpy (code, c, n);
      code[n] = '\0';
    }
    fail_status (&r);
    vms_set_error (errno, "S3: s3://%s at %s: HTTP %ld%s%s%s", spec, ss->base,
                   r.status, code[0] ? " " : "", code,
                   r.status == 404 ? " (no such bucket: create it first)"
                   : r.status == 403 ? " (check the access key and secret, "
                   "the region, and that they may list the bucket)" : "");
    ret = -1;
  }
  req_free (&r);
  return ret;
}

struct storage *
storage_s3_open (const char *spec)
{
  struct s3_conf c = { 0 };
  struct s3_store *ss = NULL;
  const char *slash = strchr (spec, '/');
  size_t blen = slash ? (size_t) (slash - spec) : strlen (spec);
  char bucket[64], prefix[STORAGE_NAME_MAX + 2] = "";
  const char *v;

  if (!valid_bucket (spec, blen)) {
    vms_set_error (EINVAL, "s3://%s is not an S3 repository: the form is "
                   "s3://BUCKET or s3://BUCKET/PREFIX, a bucket name of 3-63 "
                   "lower-case letters, digits, '.' and '-'", spec);
    return NULL;
  }
  memcpy (bucket, spec, blen);
  bucket[blen] = '\0';
  if (slash && slash[1]) {
    size_t pl = strlen (slash + 1);
    char p[STORAGE_NAME_MAX + 1];
    if (pl > 128) {
      vms_set_error (EINVAL, "s3://%s: the prefix is longer than 128 bytes",
                     spec);
      return NULL;
    }
    snprintf (p, sizeof p, "%s", slash + 1);
    if (p[pl - 1] == '/')
      p[--pl] = '\0';
    if (!storage_valid_name (p)) {
      vms_set_error (EINVAL, "s3://%s: a prefix is components of letters, "
                     "digits, '.', '_', ':' and '-' joined by '/'", spec);
      return NULL;
    }
    snprintf (prefix, sizeof prefix, "%s/", p);
  }

  /* Both libraries' global state, before any thread may use them.
   * (libcurl is loaded here, at its first use: curl-dl.c.) */
  if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    vms_set_error (ELIBACC, "s3://%s: cannot load or initialize libcurl "
                   "(libcurl.so.4), which the S3 backend needs", spec);
    return NULL;
  }
  xmlInitParser ();
  c.bucket = bucket;
  /* 1. VMSHADOW_S3_*, 2. AWS_*: the key id and secret as a pair. */
  if ((v = env ("VMSHADOW_S3_ENDPOINT")) || (v = env ("AWS_ENDPOINT_URL_S3")) ||
      (v = env ("AWS_ENDPOINT_URL")))
    c.endpoint = strdup (v);
  if ((v = env ("VMSHADOW_S3_REGION")) || (v = env ("AWS_REGION")) ||
      (v = env ("AWS_DEFAULT_REGION")))
    c.region = strdup (v);
  if ((v = env ("VMSHADOW_S3_ADDRESSING")))
    c.addressing = strdup (v);
  if ((v = env ("VMSHADOW_S3_CA_FILE")))
    c.ca_file = strdup (v);
  if (env ("VMSHADOW_S3_ACCESS_KEY_ID") || env ("VMSHADOW_S3_SECRET_ACCESS_KEY")) {
    if (!env ("VMSHADOW_S3_ACCESS_KEY_ID") ||
        !env ("VMSHADOW_S3_SECRET_ACCESS_KEY")) {
      vms_set_error (EINVAL, "S3: set both VMSHADOW_S3_ACCESS_KEY_ID and "
                     "VMSHADOW_S3_SECRET_ACCESS_KEY, or neither");
      goto fail;
    }
    c.key_id = strdup (env ("VMSHADOW_S3_ACCESS_KEY_ID"));
    c.secret = strdup (env ("VMSHADOW_S3_SECRET_ACCESS_KEY"));
    if ((v = env ("VMSHADOW_S3_SESSION_TOKEN")))
      c.token = strdup (v);
  }
  else if (env ("AWS_ACCESS_KEY_ID") && env ("AWS_SECRET_ACCESS_KEY")) {
    c.key_id = strdup (env ("AWS_ACCESS_KEY_ID"));
    c.secret = strdup (env ("AWS_SECRET_ACCESS_KEY"));
    if ((v = env ("AWS_SESSION_TOKEN")))
      c.token = strdup (v);
  }
  /* 3. The vmshadow file (values the environment did not set). */
  {
    struct s3_conf f = { .bucket = bucket };
    const char *path = env ("VMSHADOW_S3_CONFIG");
    int r = read_secret_file (path ? path : S3_DEFAULT_CONFIG, &f, path != NULL);
    if (r == -1) {
      conf_free (&f);
      goto fail;
    }
#define TAKE(x) if (!c.x && f.x) { c.x = f.x; f.x = NULL; }
    TAKE (endpoint) TAKE (region) TAKE (addressing) TAKE (ca_file)
    if (!c.key_id && f.key_id && f.secret) {
      TAKE (key_id) TAKE (secret) TAKE (token)
    }
#undef TAKE
    conf_free (&f);
  }
  /* 4. The AWS shared credentials file. */
  if (!c.key_id) {
    struct s3_conf f = { .aws_file = 1 };
    char path[4096];
    const char *home = env ("HOME");
    f.section = env ("AWS_PROFILE") ? env ("AWS_PROFILE") : "default";
    if ((v = env ("AWS_SHARED_CREDENTIALS_FILE")))
      snprintf (path, sizeof path, "%s", v);
    else if (home)
      snprintf (path, sizeof path, "%s/.aws/credentials", home);
    else
      path[0] = '\0';
    if (path[0] && read_secret_file (path, &f, v != NULL) == -1) {
      conf_free (&f);
      goto fail;
    }
    if (f.key_id && f.secret) {
      c.key_id = f.key_id;
      c.secret = f.secret;
      c.token = f.token;
      f.key_id = f.secret = f.token = NULL;
    }
    conf_free (&f);
  }
  if (!c.key_id || !c.secret) {
    vms_set_error (EINVAL, "S3: no credentials for s3://%s (set "
                   "VMSHADOW_S3_ACCESS_KEY_ID and VMSHADOW_S3_SECRET_ACCESS_KEY, "
                   "or write them in %s; see vmshadow(1))", spec,
                   S3_DEFAULT_CONFIG);
    goto fail;
  }
  if (!c.region)
    c.region = strdup ("us-east-1");
  for (const char *p = c.region; p && *p; p++)
    if (!(isalnum ((unsigned char) *p) || *p == '-') || p - c.region > 60) {
      vms_set_error (EINVAL, "S3: a bad region name '%s'", c.region);
      goto fail;
    }
  for (const char *p = c.key_id; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f || *p == ':') {
      vms_set_error (EINVAL, "S3: the access key id has a byte it may not "
                     "have (printable ASCII but ':')");
      goto fail;
    }
  for (const char *p = c.secret; *p; p++)
    if (*p < 0x20 || *p >= 0x7f) {
      vms_set_error (EINVAL, "S3: the secret key has a byte it may not have");
      goto fail;
    }
  for (const char *p = c.token; p && *p; p++)
    if (*p < 0x20 || *p >= 0x7f) {
      vms_set_error (EINVAL, "S3: the session token has a byte it may not "
                     "have");
      goto fail;
    }

  /* The endpoint: http(s)://HOST[:PORT][/], nothing else. */
  int aws = c.endpoint == NULL;
  if (aws && asprintf (&c.endpoint, "https://s3.%s.amazonaws.com",
                       c.region) == -1) {
    c.endpoint = NULL;
    goto nomem;
  }
  const char *ep = c.endpoint, *host;
  int https;
  if (strncmp (ep, "https://", 8) == 0)
    https = 1, host = ep + 8;
  else if (strncmp (ep, "http://", 7) == 0)
    https = 0, host = ep + 7;
  else {
    vms_set_error (EINVAL, "S3: the endpoint %s is no http:// or https:// URL",
                   ep);
    goto fail;
  }
  size_t hl = strcspn (host, "/");
  if ((host[hl] == '/' && host[hl + 1] != '\0') || hl == 0 || hl > 253) {
    vms_set_error (EINVAL, "S3: the endpoint %s must be scheme://HOST[:PORT] "
                   "(no path)", ep);
    goto fail;
  }
  for (size_t i = 0; i < hl; i++)
    if (!(isalnum ((unsigned char) host[i]) || strchr (".-:[]", host[i]))) {
      vms_set_error (EINVAL, "S3: the endpoint %s has a host name byte it may "
                     "not have", ep);
      goto fail;
    }
  size_t hostonly = hl;
  if (host[0] != '[' && memchr (host, ':', hl))
    hostonly = (size_t) ((const char *) memchr (host, ':', hl) - host);
  else if (host[0] == '[' && memchr (host, ']', hl))
    hostonly = (size_t) ((const char *) memchr (host, ']', hl) - host) + 1;
  if (!https && !loopback_host (host, hostonly) &&
      !env ("VMSHADOW_S3_ALLOW_HTTP")) {
    vms_set_error (EINVAL, "S3: the endpoint %s is plain HTTP to another host: "
                   "backups would cross the network unprotected (use https://, "
                   "or set VMSHADOW_S3_ALLOW_HTTP=1 for a trusted network)", ep);
    goto fail;
  }
  const char *ad = c.addressing ? c.addressing : aws ? "virtual" : "path";
  int virt;
  if (strcmp (ad, "path") == 0)
    virt = 0;
  else if (strcmp (ad, "virtual") == 0)
    virt = 1;
  else {
    vms_set_error (EINVAL, "S3: addressing must be 'path' or 'virtual', not "
                   "'%s'", ad);
    goto fail;
  }

  ss = calloc (1, sizeof *ss);
  if (ss == NULL)
    goto nomem;
  ss->s.ops = &s3_ops;
  pthread_mutex_init (&ss->mu, NULL);
  pthread_cond_init (&ss->cv, NULL);
  ss->part_size = S3_PART_SIZE_DEFAULT;
  if ((v = env ("VMSHADOW_S3_PART_SIZE"))) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull (v, &end, 10);
    if (errno || *end || v[0] == '-' || n < S3_PART_SIZE_MIN ||
        n > S3_PART_SIZE_MAX) {
      vms_set_error (EINVAL, "VMSHADOW_S3_PART_SIZE must be %zu to %zu bytes, "
                     "not '%s'", S3_PART_SIZE_MIN, S3_PART_SIZE_MAX, v);
      goto fail_ss;
    }
    ss->part_size = (size_t) n;
  }
  ss->retries = 6;
  if ((v = env ("VMSHADOW_S3_RETRIES"))) {
    char *end;
    long n = strtol (v, &end, 10);
    if (*end || n < 1 || n > 100) {
      vms_set_error (EINVAL, "VMSHADOW_S3_RETRIES must be 1..100, not '%s'",
                     v);
      goto fail_ss;
    }
    ss->retries = (int) n;
  }
  if ((virt ? asprintf (&ss->base, "%s://%s.%.*s/", https ? "https" : "http",
                        bucket, (int) hl, host)
       : asprintf (&ss->base, "%s://%.*s/%s/", https ? "https" : "http",
                   (int) hl, host, bucket)) == -1) {
    ss->base = NULL;
    goto nomem_ss;
  }
  if ((ss->key_prefix = strdup (prefix)) == NULL ||
      (ss->bucket = strdup (bucket)) == NULL ||
      asprintf (&ss->sigv4, "aws:amz:%s:s3", c.region) == -1 ||
      asprintf (&ss->userpwd, "%s:%s", c.key_id, c.secret) == -1 ||
      (c.token && asprintf (&ss->token_hdr, "x-amz-security-token: %s",
                            c.token) == -1) ||
      (c.ca_file && (ss->ca_file = strdup (c.ca_file)) == NULL))
    goto nomem_ss;
  strcpy (ss->clock_name, "clock/");
  uint8_t rnd[16];
  if (getrandom (rnd, sizeof rnd, 0) != sizeof rnd) {
    vms_set_error (errno, "cannot get random bytes: %s", strerror (errno));
    goto fail_ss;
  }
  for (size_t i = 0; i < sizeof rnd; i++)
    snprintf (ss->clock_name + 6 + 2 * i, 3, "%02x", rnd[i]);
  conf_free (&c);
  /* One request now: bad credentials, a missing bucket or an unreachable
   * endpoint are said here, by name, before anything is written. */
  if (probe (ss, spec) == -1) {
    s3_close (&ss->s);
    return NULL;
  }
  return &ss->s;

 nomem_ss:
  vms_set_error (ENOMEM, "out of memory");
 fail_ss:
  s3_close (&ss->s);
  conf_free (&c);
  return NULL;
 nomem:
  vms_set_error (ENOMEM, "out of memory");
 fail:
  conf_free (&c);
  return NULL;
}

/* ---------------------------------------------------------------- the lock */

static void *
renew_thread (void *arg)
{
  struct s3_store *ss = arg;

  pthread_mutex_lock (&ss->mu);
  while (!ss->stopping) {
    struct timespec until;
    clock_gettime (CLOCK_REALTIME, &until);
    until.tv_sec += S3_LOCK_RENEW_SECONDS;
    pthread_cond_timedwait (&ss->cv, &ss->mu, &until);
    if (ss->stopping)
      break;
    pthread_mutex_unlock (&ss->mu);
    /* A new Last-Modified: the lock is alive. */
    s3_put (&ss->s, ss->lock_obj, ss->lock_body, strlen (ss->lock_body), 0);
    pthread_mutex_lock (&ss->mu);
  }
  pthread_mutex_unlock (&ss->mu);
  return NULL;
}

int
storage_s3_lock (struct storage *s, const char *name, const char *desc)
{
  struct s3_store *ss = ss_of (storage_crypt_inner (s));
  char host[256] = "?";

  if (ss->s.ops != &s3_ops) {
    errno = ENOTSUP;
    return -1;
  }
  gethostname (host, sizeof host - 1);
  for (char *p = host; *p; p++)
    if (!isalnum ((unsigned char) *p) && !strchr ("-._", *p))
      *p = '_';
  free (ss->lock_body);
  if (asprintf (&ss->lock_body, "%s on %s\n", desc, host) == -1) {
    ss->lock_body = NULL;
    errno = ENOMEM;
    return -1;
  }
  snprintf (ss->lock_obj, sizeof ss->lock_obj, "%s", name);
  for (int round = 0; ; round++) {
    if (s3_put (&ss->s, name, ss->lock_body, strlen (ss->lock_body),
                STORAGE_PUT_EXCLUSIVE) == 0)
      break;
    if (errno == EEXIST && round > 0)
      errno = EBUSY;            /* another took the stale lock first */
    if (errno != EEXIST)
      return -1;
    /* Taken: by a holder that stopped renewing it? */
    struct storage_stat st;
    int64_t now;
    if (s3_stat_ (&ss->s, name, &st) == -1) {
      if (errno == ENOENT)
        continue;
      return -1;
    }
    if (s3_now (&ss->s, &now) == -1)
      return -1;
    if (now - st.mtime < S3_LOCK_STALE_SECONDS) {
      errno = EBUSY;
      return -1;
    }
    if (s3_del (&ss->s, name) == -1)
      return -1;
  }
  if (pthread_create (&ss->renewer, NULL, renew_thread, ss) != 0) {
    s3_del (&ss->s, name);
    errno = EAGAIN;
    return -1;
  }
  ss->locked = 1;
  return 0;
}

int
storage_s3_lock_holder (struct storage *s, const char *name, char *buf,
                        size_t size)
{
  struct s3_store *ss = ss_of (storage_crypt_inner (s));
  char text[256];

  if (ss->s.ops != &s3_ops)
    return -1;
  struct s3_req r = { .method = "GET", .name = name, .out = (uint8_t *) text,
                      .out_cap = sizeof text - 1 };
  if (s3_request (ss, &r) == -1 || r.status != 200 || r.overflow) {
    req_free (&r);
    return -1;
  }
  req_free (&r);
  /* Someone else's text: printable ASCII only, as it reaches a terminal. */
  size_t n = r.out_len;
  while (n > 0 && text[n - 1] == '\n')
    n--;
  for (size_t i = 0; i < n; i++)
    if (text[i] < 0x20 || text[i] >= 0x7f)
      text[i] = '?';
  text[n] = '\0';
  snprintf (buf, size, "%s", text);
  return 0;
}

/* ---------------------------------------------------------- immutability */

int
storage_s3_protected_name (const char *name)
{
  return strncmp (name, "packs/", 6) == 0 || strncmp (name, "index/", 6) == 0 ||
    strncmp (name, "backups/", 8) == 0 || strncmp (name, "keys/", 5) == 0 ||
    strcmp (name, "config") == 0 || strncmp (name, "config-", 7) == 0;
}

/* 1 if the bucket's Object Lock configuration says Enabled, 0 if it has
 * none, -1 with the error set. */
static int
bucket_lock_enabled (struct s3_store *ss)
{
  uint8_t buf[16384];
  struct s3_req r = { .method = "GET", .query = "object-lock=", .out = buf,
                      .out_cap = sizeof buf };
  int ret = 0;

  if (s3_request (ss, &r) == -1) {
    vms_set_error (errno, "S3: cannot read the Object Lock configuration of "
                   "bucket %s: %s", ss->bucket, strerror (errno));
    return -1;
  }
  if (r.status == 404) {
    req_free (&r);
    return 0;                   /* ObjectLockConfigurationNotFoundError */
  }
  if (r.status != 200 || r.overflow) {
    fail_status (&r);
    vms_set_error (errno, "S3: cannot read the Object Lock configuration of "
                   "bucket %s: HTTP %ld", ss->bucket, r.status);
    req_free (&r);
    return -1;
  }
  req_free (&r);
  xmlDoc *doc = xmlReadMemory ((const char *) buf, (int) r.out_len,
                               "object-lock.xml", NULL, XML_PARSE_NONET |
                               XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  xmlNode *root = doc ? xmlDocGetRootElement (doc) : NULL;
  if (doc == NULL || doc->intSubset || doc->extSubset || root == NULL ||
      !is_elem (root, "ObjectLockConfiguration")) {
    xmlFreeDoc (doc);
    vms_set_error (EBADMSG, "S3: bucket %s: a malformed Object Lock "
                   "configuration", ss->bucket);
    return -1;
  }
  for (xmlNode *n = root->children; n; n = n->next)
    if (is_elem (n, "ObjectLockEnabled")) {
      const char *t = text_of (n);
      ret = t && strcmp (t, "Enabled") == 0;
    }
  xmlFreeDoc (doc);
  return ret;
}

int
storage_s3_protect (struct storage *s, const char *mode, unsigned days,
                    int append_only)
{
  struct s3_store *ss = ss_of (storage_crypt_inner (s));

  if (ss->s.ops != &s3_ops) {
    vms_set_error (ENOTSUP, "Object Lock retention needs an S3 repository");
    return -1;
  }
  ss->append_only = append_only;
  if (days == 0)
    return 0;
  if (strcmp (mode, "GOVERNANCE") != 0 && strcmp (mode, "COMPLIANCE") != 0) {
    vms_set_error (EINVAL, "S3: Object Lock mode %s is neither GOVERNANCE "
                   "nor COMPLIANCE", mode);
    return -1;
  }
  int en = bucket_lock_enabled (ss);
  if (en == -1)
    return -1;
  if (en == 0) {
    vms_set_error (ENOTSUP, "S3: bucket %s has no Object Lock, so the "
                   "repository's retention (%u days) cannot be kept: create "
                   "the bucket with Object Lock enabled "
                   "(x-amz-bucket-object-lock-enabled: true); refused, not "
                   "faked", ss->bucket, days);
    return -1;
  }
  /* From the store's clock, once per session: every object this session
   * writes gets the same date (a pack and its index segment alike). */
  int64_t now;
  if (s3_now (&ss->s, &now) == -1) {
    vms_set_error (errno, "S3: cannot read the store's clock: %s",
                   strerror (errno));
    return -1;
  }
  ss->retain_until = now + (int64_t) days * 86400;
  ss->lock_mode = mode[0] == 'G' ? "GOVERNANCE" : "COMPLIANCE";
  return 0;
}

/* storage_ops.extend_retention: HEAD, then PutObjectRetention on its
 * version when it ends earlier than this session's date. */
static int
s3_extend (struct storage *s, const char *name, int64_t *was)
{
  struct s3_store *ss = ss_of (s);
  char body[320], md5[64], q[320], until[32];
  int ret;

  if (was)
    *was = 0;
  if (ss->lock_mode == NULL || !storage_s3_protected_name (name))
    return 0;
  /* Its retention now, and the version it is on (the lock is a
   * version's). */
  struct s3_req h = { .method = "HEAD", .name = name };
  if (s3_request (ss, &h) == -1)
    return -1;
  if (h.status != 200) {
    ret = fail_status (&h);
    req_free (&h);
    return ret;
  }
  req_free (&h);
  int64_t cur = h.retain[0] ? iso8601_time (h.retain) : 0;
  if (cur == -1) {
    errno = EBADMSG;
    return -1;
  }
  if (was)
    *was = cur;
  if (cur >= ss->retain_until)
    return 0;
  /* PutObjectRetention, the repository's mode: S3 lets anyone allowed to
   * put a retention lengthen it (shortening a governance one needs the
   * bypass permission; a compliance one never). */
  struct tm tm;
  time_t t = (time_t) ss->retain_until;
  gmtime_r (&t, &tm);
  strftime (until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
  int n = snprintf (body, sizeof body,
                    "<Retention xmlns=\"http://s3.amazonaws.com/doc/"
                    "2006-03-01/\"><Mode>%s</Mode><RetainUntilDate>%s"
                    "</RetainUntilDate></Retention>", ss->lock_mode, until);
  content_md5 (body, (size_t) n, md5);
  snprintf (q, sizeof q, "retention=");
  if (h.version[0] && strcmp (h.version, "null") != 0) {
    strncat (q, "&versionId=", sizeof q - strlen (q) - 1);
    url_query_append (q, sizeof q, h.version);
  }
  struct s3_req r = { .method = "PUT", .name = name, .query = q, .body = body,
                      .body_len = (size_t) n,
                      .hdr = { "Content-Type: application/xml", md5 } };
  if (s3_request (ss, &r) == -1)
    return -1;
  ret = r.status == 200 || r.status == 204 ? 1 : fail_status (&r);
  req_free (&r);
  return ret;
}

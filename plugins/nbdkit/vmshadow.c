/* nbdkit-vmshadow-plugin: one disk (or file) of a vmshadow backup as a
 * read-only NBD export, read at random offsets straight from the
 * repository (issue 16): the building block of instant recovery,
 * file-level restore and boot verification.
 *
 *   nbdkit vmshadow repo=DIR backup=ID vm=NAME [disk=vda] [cache=64M]
 *
 * Every chunk is verified (re-hashed) before it is served; a damaged or
 * missing chunk is an I/O error for the requests that touch it, never
 * wrong bytes. Extents come from the index: all-zero chunks are holes.
 * Decompressed chunks are kept in a bounded LRU cache so that a guest's
 * random reads and a sequential mover do not re-read and re-hash the same
 * chunk. It uses only libvmshadow's public API (vmshadow(3)). */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmshadow/error.h>
#include <vmshadow/key.h>
#include <vmshadow/repo.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Parameters. */
static char *repo_dir;
static const char *backup_id;
static struct vms_file_selector sel;
static int64_t cache_bytes = 64 * 1024 * 1024;
static int key_fd = -1;

/* Opened in get_ready, read by every connection. */
static vms_repo *repo;
static vms_index *idx;

/* The chunk cache: a fixed array scanned linearly (a few hundred entries:
 * cheaper than the hash it would need), least recently used evicted. */
struct cache_entry {
  uint64_t chunk;
  uint64_t used;                /* tick of the last use; 0: empty */
  size_t len;
  unsigned char *data;
};
static struct cache_entry *cache;
static size_t cache_len;
static uint64_t cache_tick;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void
vmshadow_unload (void)
{
  for (size_t i = 0; i < cache_len; i++)
    free (cache[i].data);
  free (cache);
  vms_index_free (idx);
  vms_repo_close (repo);
  free (repo_dir);
}

static int
vmshadow_config (const char *key, const char *value)
{
  if (strcmp (key, "repo") == 0) {
    free (repo_dir);
    if ((repo_dir = nbdkit_absolute_path (value)) == NULL)
      return -1;
  }
  else if (strcmp (key, "backup") == 0)
    backup_id = value;
  else if (strcmp (key, "vm") == 0)
    sel.vm = value;
  else if (strcmp (key, "disk") == 0)
    sel.disk = value;
  else if (strcmp (key, "component") == 0)
    sel.component = value;
  else if (strcmp (key, "file") == 0)
    sel.file = value;
  else if (strcmp (key, "keyfd") == 0) {
    /* An encrypted repository's unlocked key, on a descriptor that
     * vmshadow passed (vms_repo_key_handoff; never argv or the
     * environment: R28). Read in get_ready. */
    if (nbdkit_parse_int ("keyfd", value, &key_fd) == -1)
      return -1;
    if (key_fd < 3) {
      nbdkit_error ("keyfd=%d: not a descriptor of its own (3 or more)", key_fd);
      return -1;
    }
  }
  else if (strcmp (key, "cache") == 0) {
    if ((cache_bytes = nbdkit_parse_size (value)) == -1)
      return -1;
  }
  else {
    nbdkit_error ("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

static int
vmshadow_config_complete (void)
{
  if (repo_dir == NULL || backup_id == NULL) {
    nbdkit_error ("repo= and backup= are required");
    return -1;
  }
  if ((sel.vm == NULL) == (sel.component == NULL)) {
    nbdkit_error ("give vm= (with disk= for a VM of several disks) or "
                  "component= (with file=), not %s",
                  sel.vm ? "both" : "neither");
    return -1;
  }
  return 0;
}

#define vmshadow_config_help \
  "repo=<DIR>          (required) The vmshadow repository.\n" \
  "backup=<ID>         (required) The backup.\n" \
  "vm=<NAME|UUID>      The VM (or component=<NAME>).\n" \
  "disk=<TARGET>       The VM's disk, e.g. vda (or file=<PATH>).\n" \
  "cache=<SIZE>        Chunk cache size (default 64M).\n" \
  "keyfd=<FD>          Read an encrypted repository's unlocked key from FD."

/* Everything that can fail is opened here, before the first client. */
static int
vmshadow_get_ready (void)
{
  vms_manifest *m;
  int i;

  if (key_fd >= 0) {
    int r = vms_key_receive (key_fd);
    close (key_fd);
    key_fd = -1;
    if (r == -1) {
      nbdkit_error ("%s", vms_get_error ());
      return -1;
    }
  }
  if ((repo = vms_repo_open (repo_dir, 0)) == NULL) {
    nbdkit_error ("%s", vms_get_error ());
    return -1;
  }
  if ((m = vms_manifest_open (repo, backup_id)) == NULL) {
    nbdkit_error ("%s", vms_get_error ());
    return -1;
  }
  if ((i = vms_manifest_select_file (m, &sel)) == -1 ||
      (idx = vms_manifest_load_index (repo, m, (size_t) i)) == NULL) {
    nbdkit_error ("%s", vms_get_error ());
    vms_manifest_free (m);
    return -1;
  }
  vms_manifest_free (m);
  cache_len = (size_t) (cache_bytes / VMS_CHUNK_SIZE);
  if (cache_len < 4)
    cache_len = 4;
  if ((cache = calloc (cache_len, sizeof *cache)) == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  return 0;
}

static void *
vmshadow_open (int readonly)
{
  return &repo;                 /* one export, shared by every connection */
}

static int64_t
vmshadow_get_size (void *handle)
{
  return (int64_t) vms_index_size (idx);
}

static int
vmshadow_can_multi_conn (void *handle)
{
  return 1;                     /* read-only: every connection sees the same */
}

static int
vmshadow_can_cache (void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

static int
vmshadow_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                     uint32_t *maximum)
{
  *minimum = 1;
  *preferred = VMS_CHUNK_SIZE;
  *maximum = 0xffffffff;
  return 0;
}

/* Copy len bytes at in of chunk c out of the cache; 0 on a miss. */
static int
cache_get (uint64_t c, size_t in, size_t len, void *out)
{
  int hit = 0;
  pthread_mutex_lock (&cache_lock);
  for (size_t i = 0; i < cache_len; i++)
    if (cache[i].used && cache[i].chunk == c) {
      if (out)
        memcpy (out, cache[i].data + in, len);
      cache[i].used = ++cache_tick;
      hit = 1;
      break;
    }
  pthread_mutex_unlock (&cache_lock);
  return hit;
}

/* Keep chunk c (takes data) in place of the least recently used one. */
static void
cache_put (uint64_t c, unsigned char *data, size_t len)
{
  size_t victim = 0;
  pthread_mutex_lock (&cache_lock);
  for (size_t i = 0; i < cache_len; i++) {
    if (cache[i].used && cache[i].chunk == c) {
      victim = SIZE_MAX;        /* another thread read it meanwhile */
      break;
    }
    if (cache[i].used < cache[victim].used)
      victim = i;
  }
  if (victim != SIZE_MAX) {
    free (cache[victim].data);
    cache[victim] = (struct cache_entry) {
      .chunk = c, .used = ++cache_tick, .len = len, .data = data,
    };
    data = NULL;
  }
  pthread_mutex_unlock (&cache_lock);
  free (data);
}

/* Read bytes [in, in+len) of chunk c into out (out may be NULL: only
 * bring the chunk into the cache). */
static int
read_chunk (uint64_t c, size_t in, size_t len, void *out)
{
  const struct vms_digest *d = vms_index_get (idx, c);
  size_t clen = vms_index_chunk_len (idx, c);
  unsigned char *data;

  if (vms_digest_is_zero (d)) {
    if (out)
      memset (out, 0, len);
    return 0;
  }
  if (cache_get (c, in, len, out))
    return 0;
  if ((data = malloc (clen)) == NULL) {
    nbdkit_error ("malloc: %m");
    return -1;
  }
  /* Verified: a chunk whose hash does not match is never served. */
  if (vms_repo_chunk_get (repo, d, data, clen, 1) == -1) {
    char hex[65];
    vms_digest_hex (d, hex);
    nbdkit_error ("bytes %" PRIu64 "-%" PRIu64 " (chunk %s): %s",
                  c * VMS_CHUNK_SIZE, c * VMS_CHUNK_SIZE + clen - 1, hex,
                  vms_get_error ());
    free (data);
    errno = EIO;
    return -1;
  }
  if (out)
    memcpy (out, data + in, len);
  cache_put (c, data, clen);
  return 0;
}

/* Call read_chunk for every piece of [offset, offset+count). */
static int
for_each_piece (void *buf, uint32_t count, uint64_t offset)
{
  unsigned char *out = buf;

  while (count > 0) {
    uint64_t c = offset / VMS_CHUNK_SIZE;
    size_t in = (size_t) (offset % VMS_CHUNK_SIZE);
    size_t n = vms_index_chunk_len (idx, c) - in;
    if (n > count)
      n = count;
    if (read_chunk (c, in, n, out) == -1)
      return -1;
    if (out)
      out += n;
    count -= (uint32_t) n;
    offset += n;
  }
  return 0;
}

static int
vmshadow_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  return for_each_piece (buf, count, offset);
}

static int
vmshadow_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return for_each_piece (NULL, count, offset);
}

static int
vmshadow_can_extents (void *handle)
{
  return 1;
}

/* All-zero chunks were never stored: holes that read as zeros. */
static int
vmshadow_extents (void *handle, uint32_t count, uint64_t offset,
                  uint32_t flags, struct nbdkit_extents *extents)
{
  uint64_t end = offset + count, size = vms_index_size (idx);

  if (end > size)
    end = size;
  for (uint64_t c = offset / VMS_CHUNK_SIZE; c * VMS_CHUNK_SIZE < end; c++) {
    uint64_t start = c * VMS_CHUNK_SIZE;
    uint32_t type = vms_digest_is_zero (vms_index_get (idx, c))
      ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0;
    if (nbdkit_add_extent (extents, start, vms_index_chunk_len (idx, c),
                           type) == -1)
      return -1;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  return 0;
}

static struct nbdkit_plugin plugin = {
  .name = "vmshadow",
  .longname = "vmshadow backup repository",
  .version = VMSHADOW_VERSION,
  .description = "A disk or file of a vmshadow backup, read-only",
  .unload = vmshadow_unload,
  .config = vmshadow_config,
  .config_complete = vmshadow_config_complete,
  .config_help = vmshadow_config_help,
  .magic_config_key = "backup",
  .get_ready = vmshadow_get_ready,
  .open = vmshadow_open,
  .get_size = vmshadow_get_size,
  .block_size = vmshadow_block_size,
  .can_multi_conn = vmshadow_can_multi_conn,
  .can_cache = vmshadow_can_cache,
  .can_extents = vmshadow_can_extents,
  .pread = vmshadow_pread,
  .cache = vmshadow_cache,
  .extents = vmshadow_extents,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)

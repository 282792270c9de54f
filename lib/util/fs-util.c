/* Filesystem helpers (fs-util.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "fs-util.h"
#include "vmshadow/error.h"

int
vms_mkdir_p (const char *path, mode_t mode)
{
  CLEANUP_FREE char *p = strdup (path);
  size_t len;

  if (p == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  len = strlen (p);
  for (size_t i = 1; i <= len; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    p[i] = '\0';
    if (mkdir (p, mode) == -1 && errno != EEXIST) {
      vms_set_error (errno, "cannot create directory %s: %s", p,
                     strerror (errno));
      return -1;
    }
    if (i < len)
      p[i] = '/';
  }
  return 0;
}

/* Libraries opened at their first use: lazy-lib.h. */
#include <dlfcn.h>

#include "lazy-lib.h"
#include "log.h"

void *
vms_lazy_lib_sym (struct vms_lazy_lib *lib, const char *name)
{
  void *h;

  pthread_mutex_lock (&lib->lock);
  if (!lib->tried) {
    lib->tried = 1;
    /* RTLD_GLOBAL: Ceph's C++ libraries load plugins of their own. */
    lib->handle = dlopen (lib->soname, RTLD_NOW | RTLD_GLOBAL);
    if (lib->handle == NULL)
      vms_debug ("cannot load %s: %s", lib->soname, dlerror ());
  }
  h = lib->handle;
  pthread_mutex_unlock (&lib->lock);
  return h ? dlsym (h, name) : NULL;
}

/*
** OpenBLAS, loaded on first use and used only where its allocations cannot
** fail.
**
** Why: OpenBLAS 0.3.21 (Debian 12) never gives up on a buffer it cannot
** allocate. Each sgemm call takes a 128 MB work buffer from a pool that grows
** by one buffer per concurrent caller, and each of OpenBLAS's own threads
** takes one as it starts; when the allocation fails, blas_memory_alloc()
** retries it in a loop without end. Under `ulimit -v` that is a thread
** spinning at 100% CPU that no interrupt reaches: inside sgemm, or, when the
** library is merely loaded, in the thread start-up, and the process can then
** not even exit (its exit joins that thread).
**
** So the extension does not link OpenBLAS: this file dlopen()s it the first
** time a forward pass could use it, and only while an allocation cannot fail
** on Linux: no RLIMIT_AS or RLIMIT_DATA limit, and an overcommitting kernel
** (vm.overcommit_memory 0 or 1). Otherwise (and with GPT_BLAS=off, or when
** the library is missing) gpt_blas() returns NULL and the engine runs its
** own kernels, whose allocations fail with an error. OpenBLAS is held to
** one thread: the engine's pool splits the work (threads.h).
*/
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "blas.h"

static GPTBlas gBlas;
static int gBlasOk;          /* the library and both functions were found */
static int gOvercommitStrict;
static pthread_once_t gOnce = PTHREAD_ONCE_INIT;

/* Reads vm.overcommit_memory and the GPT_BLAS switch once per process. */
static int gDisabled;
static void blas_settings(void) {
  const char *z = getenv("GPT_BLAS");
  gDisabled = z && (strcmp(z, "off") == 0 || strcmp(z, "0") == 0);
  int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char c = 0;
    if (read(fd, &c, 1) == 1 && c == '2') gOvercommitStrict = 1;
    close(fd);
  }
}

/* Loads OpenBLAS and holds it to one thread. */
static pthread_once_t gLoadOnce = PTHREAD_ONCE_INIT;
static void blas_load(void) {
  void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!h) h = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
  if (!h) return;
  gBlas.sgemm = (__typeof__(cblas_sgemm) *)dlsym(h, "cblas_sgemm");
  gBlas.sgemv = (__typeof__(cblas_sgemv) *)dlsym(h, "cblas_sgemv");
  void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
  if (set_threads) set_threads(1);
  gBlasOk = gBlas.sgemm && gBlas.sgemv;
  /* the handle stays open for the life of the process: OpenBLAS's threads
  ** run its code */
}

/* True when the process has a limit that makes a large allocation fail. */
static int limited(int resource) {
  struct rlimit r;
  return getrlimit(resource, &r) == 0 && r.rlim_cur != RLIM_INFINITY;
}

const GPTBlas *gpt_blas(void) {
  pthread_once(&gOnce, blas_settings);
  if (gDisabled || gOvercommitStrict || limited(RLIMIT_AS) || limited(RLIMIT_DATA)) return NULL;
  pthread_once(&gLoadOnce, blas_load);
  return gBlasOk ? &gBlas : NULL;
}

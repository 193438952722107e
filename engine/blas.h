/*
** OpenBLAS, loaded on first use and used only where its allocations cannot
** fail (engine/blas.c says why).
**
**   const GPTBlas *b = gpt_blas();
**   if (b) b->sgemm(CblasRowMajor, ...); else own kernels
*/
#ifndef GPT_BLAS_H
#define GPT_BLAS_H

#include <cblas.h>

typedef struct GPTBlas {
  __typeof__(cblas_sgemm) *sgemm;
  __typeof__(cblas_sgemv) *sgemv;
} GPTBlas;

/* OpenBLAS's functions, or NULL when it must not be called now: the process
** runs under an address-space or data limit (ulimit -v, RLIMIT_DATA), the
** kernel does not overcommit (vm.overcommit_memory = 2), GPT_BLAS=off is
** set, or the library cannot be loaded. Cheap enough to ask once a pass. */
const GPTBlas *gpt_blas(void);

#endif

/*
** The thread pool of the forward pass: one per process.
**
** A forward pass acquires a team (gpt_team_acquire), runs parallel tasks on
** it (gpt_team_run: task(arg, i, n) for i in 0..n-1, the caller being i = 0)
** and releases it. The pool's workers serve one pass at a time: a pass that
** finds the pool taken by another thread (another connection generating at
** the same moment) gets a team of one and runs on its own thread, which
** gives the same results, as every task splits its work so that each output
** is computed the same way whatever the team size.
**
** The same pool runs the prefill's matrix products: each team member calls
** OpenBLAS's sgemm on its own slice, with OpenBLAS held to one thread
** (openblas_set_num_threads(1) once it is loaded, blas.c), so that OpenBLAS's
** own pool never spins beside this one.
*/
#ifndef GPT_THREADS_H
#define GPT_THREADS_H

#include <stddef.h>

#define GPT_MAX_THREADS 64

typedef struct GPTTeam GPTTeam;
typedef void (*GPTTask)(void *arg, int ith, int nth);

/* A team of up to n threads (the caller included), never NULL: a team of
** one when n <= 1, when the pool is busy, or when no thread can be started. */
GPTTeam *gpt_team_acquire(int n);
void gpt_team_release(GPTTeam *t);
/* Members a task is laid out for now: the capacity, less members dropped
** for a while because the system kept them off their cores (threads.c).
** It changes only between runs. */
int gpt_team_size(const GPTTeam *t);
/* The most members it will have (per-member scratch is sized for it). */
int gpt_team_capacity(const GPTTeam *t);
/* Runs task(arg, i, n) for every member i and returns when all are done. */
void gpt_team_run(GPTTeam *t, GPTTask task, void *arg);

/* Called by member ith inside a task: once its share of this run is done,
** it touches [p, p + n) into its cache while it waits, stopping as soon as
** it need wait no more. A worker (ith >= 1) waits for the next run: a
** decode step's products are separated by work the caller does alone
** (norms, attention), which an idle worker spends bringing in rows of the
** next product, the ones it will claim first. The caller (ith 0) waits for
** the others to finish this run. Never reads past p + n; touches never
** fault. */
void gpt_team_touch_after(int ith, const void *p, size_t n);

/* The part [*pLo, *pHi) of n items that member ith of nth takes, in whole
** units of align items (the last part takes the remainder). */
void gpt_team_split(int n, int align, int ith, int nth, int *pLo, int *pHi);

#endif

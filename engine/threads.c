/*
** The process-wide thread pool (see threads.h) and the thread count of
** forward passes (gpt_threads_set in gpt.h).
**
** How it works: each worker waits for its own sequence number to change. A
** run publishes the task, bumps the numbers of the team's members and does
** its own share; workers spin for a short while (GPT_SPIN_NS) after their
** last task, so that the dozens of tasks of one decode step cost no system
** call, then sleep on a condition variable until the next run wakes them.
** Only the team owner (the holder of gOwner) starts runs, so at most one
** task is in flight. Between runs a worker, and at the end of a run the
** caller, may read ahead the rows its task named (gpt_team_touch_after).
** The workers are joined when the library is unloaded.
**
** Late members: every run waits for all of its members, so a worker that
** the system takes off its core (another process busy on that core) holds
** each run up until it is back, a time slice of milliseconds. A 2-thread
** decode with one core busy elsewhere ran 6.5 times slower than on one
** thread. A run is late when the caller waits for the others longer than
** LATE_MIN_NS and longer than its own share took; when late runs take a
** large share of the time, the team drops its last member for a while
** (LATE_BACKOFF_*, longer when it runs late again soon after its return),
** then takes it back. Results do not change: every task gives the same
** values on any number of members.
*/
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "gpt.h"
#include "threads.h"

/* How long an idle worker spins before it sleeps. */
#define GPT_SPIN_NS 300000

/* A run is late when the caller waits for the others this long, and longer
** than its own share took (a prefill's last chunk may take a millisecond;
** a member off its core for a time slice holds the run up for several). */
#define LATE_MIN_NS 500000
/* Late runs that take this share of a window of at least the least and
** at most the most nanoseconds drop a member. */
#define LATE_SHARE_PCT 40
#define LATE_WINDOW_MIN_NS ((int64_t)20000000)
#define LATE_WINDOW_MAX_NS ((int64_t)100000000)
/* How long a team runs a member short: the least, doubled each time it is
** dropped again within LATE_FORGET_NS of its return, up to the most. */
#define LATE_BACKOFF_MIN_NS ((int64_t)4000000)
#define LATE_BACKOFF_MAX_NS ((int64_t)512000000)
#define LATE_FORGET_NS ((int64_t)1000000000)

struct GPTTeam {
  int nth;     /* members now, the caller included: cap, less those dropped */
  int cap;     /* members the pool gave it */
  int pooled;  /* holds the pool */
};

/* Held by the team that uses the workers. */
static pthread_mutex_t gOwner = PTHREAD_MUTEX_INITIALIZER;
/* Sleeping workers wait on gCv under gMu. */
static pthread_mutex_t gMu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gCv = PTHREAD_COND_INITIALIZER;

static struct {
  pthread_t aThread[GPT_MAX_THREADS];
  int nWorker;                  /* started, numbered 1..nWorker */
  atomic_uint aSeq[GPT_MAX_THREADS]; /* worker i runs when aSeq[i] changes */
  unsigned aSeq0[GPT_MAX_THREADS];   /* aSeq[i] when worker i was started */
  atomic_int pending;           /* members of the current run not done */
  atomic_int nSleeping;
  atomic_int aAsleep[GPT_MAX_THREADS]; /* worker i is asleep, or about to sleep */
  atomic_int nTouching;         /* workers inside touch_until_next_run */
  atomic_uint touchGen;         /* bumped by every release */
  atomic_int quit;
  const char *aTouch[GPT_MAX_THREADS]; /* gpt_team_touch_after's range a member */
  size_t aTouchN[GPT_MAX_THREADS];
  unsigned char aTouchSink[GPT_MAX_THREADS]; /* keeps the reads */
  GPTTask task;                 /* the current run */
  void *arg;
  int nth;
  GPTTeam team;
  /* late members (the team owner's alone): members dropped until lateUntil */
  int nDropped;
  int64_t lateUntil, backoff;
  int64_t winStart, winLate; /* the window of late waits: its start, their sum */
} gPool;

static GPTTeam gSolo = {1, 1, 0};

static inline void cpu_relax(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads [p, p + n) a cache line at a time, from its start, until the
** worker's number moves on from seen or the team that ran the task (release
** generation gen) is released, checked every 4 KB. Loads, not prefetch
** hints, which a full miss queue may drop. gpt_team_release bumps the
** generation, then waits for nTouching to reach 0: a worker either counts
** itself in before that wait reads the count, or sees the new generation
** (both sequentially consistent), so none reads weights that a caller frees
** once its pass is over. */
static void touch_until_next_run(int id, const char *p, size_t n, atomic_uint *pSeq,
                                 unsigned seen, unsigned gen) {
  if (n == 0) return;
  atomic_fetch_add(&gPool.nTouching, 1);
  unsigned char acc = 0;
  for (size_t i = 0; i < n; i += 64) {
    if ((i & 4095) == 0 && (atomic_load_explicit(pSeq, memory_order_relaxed) != seen ||
                            atomic_load(&gPool.touchGen) != gen))
      break;
    acc ^= *(volatile const unsigned char *)(p + i);
  }
  gPool.aTouchSink[id] = acc;
  atomic_fetch_sub_explicit(&gPool.nTouching, 1, memory_order_release);
}

/* A worker: wait for its sequence number to move (spin, then sleep), then
** run its share of the published task. */
static void *worker_main(void *p) {
  int id = (int)(intptr_t)p;
  atomic_uint *pSeq = &gPool.aSeq[id];
  unsigned seen = gPool.aSeq0[id];
  for (;;) {
    unsigned g;
    int64_t deadline = 0;
    int spins = 0;
    while ((g = atomic_load_explicit(pSeq, memory_order_acquire)) == seen) {
      if (atomic_load_explicit(&gPool.quit, memory_order_relaxed)) return 0;
      cpu_relax();
      if (++spins < 256) continue;
      spins = 0;
      int64_t t = now_ns();
      if (deadline == 0) deadline = t + GPT_SPIN_NS;
      if (t < deadline) continue;
      pthread_mutex_lock(&gMu);
      atomic_fetch_add(&gPool.nSleeping, 1);
      atomic_store(&gPool.aAsleep[id], 1);
      while (atomic_load(pSeq) == seen && !atomic_load(&gPool.quit))
        pthread_cond_wait(&gCv, &gMu);
      atomic_store(&gPool.aAsleep[id], 0);
      atomic_fetch_sub(&gPool.nSleeping, 1);
      pthread_mutex_unlock(&gMu);
      deadline = 0;
    }
    seen = g;
    unsigned gen = atomic_load(&gPool.touchGen); /* the team cannot be released mid-task */
    gPool.aTouchN[id] = 0;
    gPool.task(gPool.arg, id, gPool.nth);
    const char *touch = gPool.aTouch[id];
    size_t n_touch = gPool.aTouchN[id];
    atomic_fetch_sub_explicit(&gPool.pending, 1, memory_order_release);
    touch_until_next_run(id, touch, n_touch, pSeq, seen, gen);
  }
}

void gpt_team_touch_after(int ith, const void *p, size_t n) {
  if (ith < 0 || ith > gPool.nWorker) return;
  gPool.aTouch[ith] = (const char *)p;
  gPool.aTouchN[ith] = n;
}

/* The caller waited wait ns for the others after busy ns of its own share.
** Late waits are summed over a window that starts with the first of them;
** once it is LATE_WINDOW_MIN_NS long, the team's last member is dropped
** (see the top) if they took over LATE_SHARE_PCT of it, for longer when it
** was taken back only lately. A late run now and then is waited out: in a
** shared virtual machine the host takes a core away for a few milliseconds
** a few times a second, and leaving a member out after each of those cost
** a quiet 2-thread decode up to a third of its speed. */
static void team_check_wait(GPTTeam *t, int64_t busy, int64_t wait, int64_t now) {
  if (wait < LATE_MIN_NS || wait < busy || t->nth <= 1) return;
  if (gPool.winStart == 0 || now - gPool.winStart > LATE_WINDOW_MAX_NS) {
    gPool.winStart = now - wait;
    gPool.winLate = 0;
  }
  gPool.winLate += wait;
  int64_t span = now - gPool.winStart;
  if (span < LATE_WINDOW_MIN_NS || gPool.winLate * 100 < span * LATE_SHARE_PCT) return;
  if (gPool.backoff > 0 && now - gPool.lateUntil < LATE_FORGET_NS)
    gPool.backoff = gPool.backoff < LATE_BACKOFF_MAX_NS ? 2 * gPool.backoff : LATE_BACKOFF_MAX_NS;
  else
    gPool.backoff = LATE_BACKOFF_MIN_NS;
  gPool.lateUntil = now + gPool.backoff;
  gPool.winStart = 0;
  t->nth--;
  gPool.nDropped = t->cap - t->nth;
}

/* Takes the dropped members back once their time is up. Between runs only:
** a task's shares are laid out for gpt_team_size before it runs. */
static void team_take_back(GPTTeam *t, int64_t now) {
  if (now < gPool.lateUntil) {
    t->nth = t->cap - gPool.nDropped > 1 ? t->cap - gPool.nDropped : 1;
  } else {
    t->nth = t->cap;
    gPool.nDropped = 0;
  }
}

/* In the child of fork() the pool's workers do not exist, though the
** pool's counts and numbers say they do: a run there waited for them
** forever (a multiprocessing worker, a forking server). The child starts
** with no workers and unlocked locks (a thread of the parent may have held
** one as it forked); the workers the parent started are not its own. */
static void pool_after_fork_in_child(void) {
  pthread_mutex_init(&gOwner, 0);
  pthread_mutex_init(&gMu, 0);
  pthread_cond_init(&gCv, 0);
  for (int i = 0; i < GPT_MAX_THREADS; i++) {
    atomic_store(&gPool.aSeq[i], 0);
    atomic_store(&gPool.aAsleep[i], 0);
    gPool.aSeq0[i] = 0;
    gPool.aTouchN[i] = 0;
  }
  gPool.nWorker = 0;
  atomic_store(&gPool.pending, 0);
  atomic_store(&gPool.nSleeping, 0);
  atomic_store(&gPool.nTouching, 0);
  gPool.nDropped = 0;
  gPool.lateUntil = gPool.backoff = gPool.winStart = gPool.winLate = 0;
}

static pthread_once_t gForkOnce = PTHREAD_ONCE_INIT;
static void pool_register_fork(void) { pthread_atfork(0, 0, pool_after_fork_in_child); }

GPTTeam *gpt_team_acquire(int n) {
  if (n > GPT_MAX_THREADS) n = GPT_MAX_THREADS;
  if (n <= 1) return &gSolo;
  pthread_once(&gForkOnce, pool_register_fork);
  if (pthread_mutex_trylock(&gOwner) != 0) return &gSolo;
  while (gPool.nWorker < n - 1) {
    int id = gPool.nWorker + 1;
    gPool.aSeq0[id] = atomic_load(&gPool.aSeq[id]);
    if (pthread_create(&gPool.aThread[id], 0, worker_main, (void *)(intptr_t)id) != 0) break;
    gPool.nWorker = id;
  }
  if (gPool.nWorker == 0) {
    pthread_mutex_unlock(&gOwner);
    return &gSolo;
  }
  gPool.team.cap = n < gPool.nWorker + 1 ? n : gPool.nWorker + 1;
  gPool.team.nth = gPool.team.cap;
  gPool.team.pooled = 1;
  if (gPool.nDropped > 0) team_take_back(&gPool.team, now_ns());
  return &gPool.team;
}

void gpt_team_release(GPTTeam *t) {
  if (!t || !t->pooled) return;
  atomic_fetch_add(&gPool.touchGen, 1);
  while (atomic_load(&gPool.nTouching) > 0) cpu_relax();
  pthread_mutex_unlock(&gOwner);
}

int gpt_team_size(const GPTTeam *t) { return t->nth; }

int gpt_team_capacity(const GPTTeam *t) { return t->cap; }

/* Wakes the sleeping workers, under the lock they check their numbers
** under. */
static void wake_workers(void) {
  pthread_mutex_lock(&gMu);
  pthread_cond_broadcast(&gCv);
  pthread_mutex_unlock(&gMu);
}

void gpt_team_run(GPTTeam *t, GPTTask task, void *arg) {
  if (t->nth <= 1) {
    task(arg, 0, 1);
    if (t->nth < t->cap) team_take_back(t, now_ns());
    return;
  }
  int64_t start = now_ns();
  gPool.task = task;
  gPool.arg = arg;
  gPool.nth = t->nth;
  atomic_store_explicit(&gPool.pending, t->nth - 1, memory_order_relaxed);
  /* a worker asleep is woken at once; the others see the run published by
  ** a release store, and the caller goes on to its share without waiting
  ** for the store to reach them, as a locked add would (only the caller
  ** writes aSeq) */
  int wake = atomic_load(&gPool.nSleeping) > 0;
  int member_slept = 0; /* a member of this team was asleep: never late */
  for (int i = 1; wake && i < t->nth; i++) member_slept |= atomic_load(&gPool.aAsleep[i]);
  for (int i = 1; i < t->nth; i++) {
    if (wake) atomic_fetch_add(&gPool.aSeq[i], 1);
    else
      atomic_store_explicit(&gPool.aSeq[i],
                            atomic_load_explicit(&gPool.aSeq[i], memory_order_relaxed) + 1,
                            memory_order_release);
  }
  if (wake) wake_workers();
  gPool.aTouchN[0] = 0;
  task(arg, 0, t->nth);
  int64_t done = now_ns();
  /* a worker that went to sleep as the run was published is woken now:
  ** after the fence, either this sees it counted among the sleeping, or it
  ** saw the new number before it slept (it counts itself in first) */
  atomic_thread_fence(memory_order_seq_cst);
  if (!wake && atomic_load_explicit(&gPool.nSleeping, memory_order_relaxed) > 0) wake_workers();
  for (int i = 1; i < t->nth; i++)
    member_slept |= atomic_load_explicit(&gPool.aAsleep[i], memory_order_relaxed);
  /* the caller's own reading ahead, while the others finish */
  const char *touch = gPool.aTouch[0];
  size_t n_touch = gPool.aTouchN[0];
  unsigned char acc = 0;
  for (size_t i = 0; i < n_touch; i += 64) {
    if ((i & 1023) == 0 && atomic_load_explicit(&gPool.pending, memory_order_acquire) == 0) break;
    acc ^= *(volatile const unsigned char *)(touch + i);
  }
  gPool.aTouchSink[0] = acc;
  /* a member that the system has not scheduled yet gets this core after a
  ** while: yield rather than spin a whole time slice away */
  int spins = 0;
  for (; atomic_load_explicit(&gPool.pending, memory_order_acquire) > 0; spins++) {
    if (spins < 20000) cpu_relax();
    else sched_yield();
  }
  /* A wait of under some tens of microseconds cannot be late: no clock.
  ** Nor can a run that woke a worker: waking one takes the system up to a
  ** few milliseconds in a virtual machine whose idle core was halted, and
  ** judged late, the worker it woke slept through every time it was left
  ** out, and was woken, and judged late, at its return (2-thread decode of
  ** a quiet machine ran at 1 thread's speed). */
  if (spins >= 2000 && !member_slept) {
    int64_t now = now_ns();
    team_check_wait(t, done - start, now - done, now);
  }
  if (t->nth < t->cap) team_take_back(t, now_ns());
}

void gpt_team_split(int n, int align, int ith, int nth, int *pLo, int *pHi) {
  int units = (n + align - 1) / align;
  int lo = (int)((int64_t)units * ith / nth) * align;
  int hi = (int)((int64_t)units * (ith + 1) / nth) * align;
  *pLo = lo < n ? lo : n;
  *pHi = hi < n ? hi : n;
}

/* Stops and joins the workers when the library is unloaded (dlclose of the
** extension, or process exit), so no thread runs code that goes away. */
#if defined(__GNUC__)
__attribute__((destructor)) static void pool_shutdown(void) {
  if (gPool.nWorker == 0) return;
  atomic_store(&gPool.quit, 1);
  wake_workers();
  for (int i = 1; i <= gPool.nWorker; i++) pthread_join(gPool.aThread[i], 0);
  gPool.nWorker = 0;
}
#endif

/* ---------------------------------------------------- thread counts */

static _Thread_local int tlThreads = 0;

/* The first line of file path, without its newline, into buf; 0 or -1. */
static int read_line(const char *path, char *buf, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char *got = fgets(buf, (int)n, f);
  fclose(f);
  if (!got) return -1;
  buf[strcspn(buf, "\n")] = 0;
  return 0;
}

/* Cores a CPU bandwidth limit of quota per period allows, rounded up; 0 for
** none or for values out of range. */
static int cores_of_quota(long long quota, long long period) {
  if (quota <= 0 || period <= 0 || quota > ((long long)1 << 50) || period > ((long long)1 << 40))
    return 0;
  long long n = (quota + period - 1) / period;
  return n > GPT_MAX_THREADS ? GPT_MAX_THREADS : (int)n;
}

/* Two decimal integers (the second optional where want2 is 0) separated
** by a space at the start of text; -1 where they are not there. strtoll, not
** sscanf, which leaves a number out of range undefined. */
static int parse_two(const char *text, long long *a, long long *b, int want2) {
  char *end;
  errno = 0;
  *a = strtoll(text, &end, 10);
  if (end == text || errno) return -1;
  if (!want2) return 0;
  if (*end != ' ') return -1;
  text = end + 1;
  *b = strtoll(text, &end, 10);
  return end == text || errno ? -1 : 0;
}

/* The limit one cgroup directory sets: cgroup v2's cpu.max ("max PERIOD" or
** "QUOTA PERIOD"), else v1's cpu.cfs_quota_us and cpu.cfs_period_us (-1:
** none). 0 where it sets none or the files cannot be read. */
static int cgroup_dir_limit(const char *dir) {
  char path[4800], line[128], line2[128];
  long long quota, period;
  if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path) return 0;
  if (read_line(path, line, sizeof line) == 0)
    return parse_two(line, &quota, &period, 1) == 0 ? cores_of_quota(quota, period) : 0;
  if (snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir) >= (int)sizeof path ||
      read_line(path, line, sizeof line) != 0)
    return 0;
  if (snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir) >= (int)sizeof path ||
      read_line(path, line2, sizeof line2) != 0)
    return 0;
  if (parse_two(line, &quota, NULL, 0) != 0 || parse_two(line2, &period, NULL, 0) != 0) return 0;
  return cores_of_quota(quota, period);
}

/* Whether a /proc/self/cgroup line ("ID:CONTROLLERS:PATH") names the CPU
** controller: v2's single line has no controllers, v1's lists "cpu". */
static int cgroup_line_has_cpu(const char *ctl, size_t n) {
  if (n == 0) return 1;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && ctl[j] != ',') j++;
    if (j - i == 3 && memcmp(ctl + i, "cpu", 3) == 0) return 1;
    i = j + 1;
  }
  return 0;
}

int gpt_cgroup_cpu_limit(const char *cgroupFile, const char *root) {
  FILE *f = fopen(cgroupFile, "r");
  if (!f) return 0;
  char line[4096];
  int best = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2 || !cgroup_line_has_cpu(c1 + 1, (size_t)(c2 - c1 - 1))) continue;
    const char *cg = c2 + 1;
    if (cg[0] != '/' || strstr(cg, "/..")) continue;
    /* where the hierarchy is mounted: v2 at root, v1's cpu controller in
    ** root/cpu (a link to cpu,cpuacct on most systems) */
    char base[512], dir[4700];
    if (snprintf(base, sizeof base, c2 == c1 + 1 ? "%s" : "%s/cpu", root) >= (int)sizeof base)
      continue;
    /* the cgroup and each one above it, up to the mount (inside a cgroup
    ** namespace, the mount is the process's own cgroup) */
    size_t len = strlen(cg);
    while (len > 0 && cg[len - 1] == '/') len--;
    for (;;) {
      int n = snprintf(dir, sizeof dir, "%s%.*s", base, (int)len, cg) < (int)sizeof dir
                  ? cgroup_dir_limit(dir) : 0;
      if (n > 0 && (best == 0 || n < best)) best = n;
      if (len == 0) break;
      while (len > 0 && cg[len - 1] != '/') len--;
      while (len > 0 && cg[len - 1] == '/') len--;
    }
  }
  fclose(f);
  return best;
}

static pthread_once_t gCgroupOnce = PTHREAD_ONCE_INIT;
static int gCgroupCores;
static void read_cgroup_limit(void) {
  gCgroupCores = gpt_cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup");
}

int gpt_threads_default(void) {
  long n = -1;
#ifdef CPU_COUNT
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
#endif
  if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  /* a container's CPU limit (docker --cpus, Kubernetes limits), read once */
  pthread_once(&gCgroupOnce, read_cgroup_limit);
  if (gCgroupCores > 0 && gCgroupCores < n) n = gCgroupCores;
  return n < GPT_MAX_THREADS ? (int)n : GPT_MAX_THREADS;
}

int gpt_threads_set(int n) {
  int old = tlThreads;
  tlThreads = n < 0 ? 0 : n;
  return old;
}

/* The setting, at most the cores the process may use: members past them
** only wait on each other's time slices (64 on 2 cores decoded 100 times
** slower than 2). */
int gpt_threads_get(void) {
  int n = gpt_threads_default();
  return tlThreads > 0 && tlThreads < n ? tlThreads : n;
}

/*
 * Threading and the BLAS in one place (see threading.h): the process-wide
 * thread count, the sleeping pool, the OpenMP team scope and the sgemm.
 */
#include <cblas.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "threading.h"
#ifdef GRAD_HAVE_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

/* 0 until grad_threads_set: then OpenBLAS's own default (OPENBLAS_NUM_THREADS,
 * else all cores) is the process default. */
static atomic_int default_threads;

void grad_threads_explain(int err, char *buf, size_t size) {
  if (!buf || !size) return;
  struct rlimit nproc;
  char limit[32] = "unlimited";
  if (getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_cur != RLIM_INFINITY)
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)nproc.rlim_cur);
  snprintf(buf, size,
           "cannot start a thread (%s): this user's limit on processes and threads "
           "(ulimit -u: %s) is reached, or there is no memory left for thread stacks",
           strerror(err), limit);
}

static void *do_nothing(void *arg) { return arg; }

/* How many of `wanted` extra threads can run at once: started together
 * (so they count against the limits together), then joined. */
static int startable_threads(int wanted, int *err) {
  pthread_t threads[64];
  int started = 0;
  *err = 0;
  if (wanted > 64) wanted = 64;
  while (started < wanted && (*err = pthread_create(&threads[started], NULL, do_nothing, NULL)) == 0)
    started++;
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  return started;
}

/*
 * OpenBLAS (0.3.21) does not check that the threads it starts here exist:
 * a thread it could not create is waited for forever, and each new thread
 * takes a 128 MB buffer at once, retrying forever when that fails. So the
 * count is first reduced to the threads that can start and whose buffers
 * fit any memory limit; grad_threads_get() then says what was set, and
 * grad_last_error() why it is less.
 */
void grad_threads_set(int threads) {
  if (threads <= 0) threads = openblas_get_num_procs();
  int err = 0, requested = threads;
  if (threads > 1) threads = 1 + startable_threads(threads - 1, &err);
  if (err) {
    char why[512];
    grad_threads_explain(err, why, sizeof why);
    grad__fail(GRAD_E_NOMEM, "grad_threads_set: using %d of %d threads: %s", threads, requested,
               why);
  }
  int fit = grad__blas_threads_that_fit(threads);
  if (fit < threads)
    grad__fail(GRAD_E_NOMEM,
               "grad_threads_set: using %d of %d threads: the memory limit (ulimit -v or -d) "
               "has no room for OpenBLAS's 128 MB buffer of each further thread",
               fit, requested);
  openblas_set_num_threads(fit);
  atomic_store(&default_threads, fit);
}

int grad__blas_threads(void) { return openblas_get_num_threads(); }

int grad_threads_get(void) {
  int threads = atomic_load(&default_threads);
  return threads > 0 ? threads : openblas_get_num_threads();
}

const char *grad_blas_core(void) { return openblas_get_corename(); }

/*
 * libgomp cannot run a parallel region in a child forked after the parent
 * ran one (the child hangs waiting for threads it does not have), so a child
 * forked after the OpenMP team was used runs single-threaded, as PyTorch's
 * children do. Without oneDNN nothing here uses OpenMP.
 */
#ifdef GRAD_HAVE_ONEDNN
static atomic_bool team_used, forked_after_team;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void child_after_fork(void) {
  if (atomic_load(&team_used)) atomic_store(&forked_after_team, true);
}

static void watch_forks(void) { pthread_atfork(NULL, NULL, child_after_fork); }
#endif

int grad__threads(const grad_workspace *ws) {
#ifdef GRAD_HAVE_ONEDNN
  if (atomic_load(&forked_after_team)) return 1;
#endif
  int own = ws ? grad__ws_threads(ws) : 0;
  return own > 0 ? own : grad_threads_get();
}

grad__team_scope grad__team_enter(int threads) {
#ifdef GRAD_HAVE_ONEDNN
  pthread_once(&fork_once, watch_forks);
  atomic_store(&team_used, true);
  if (atomic_load(&forked_after_team)) threads = 1;
  grad__team_scope scope = {omp_get_max_threads()};
  if (threads > 0 && threads != scope.saved) omp_set_num_threads(threads);
  return scope;
#else
  (void)threads;
  return (grad__team_scope){0};
#endif
}

void grad__team_leave(grad__team_scope scope) {
#ifdef GRAD_HAVE_ONEDNN
  if (scope.saved > 0 && omp_get_max_threads() != scope.saved) omp_set_num_threads(scope.saved);
#else
  (void)scope;
#endif
}

void grad__sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc, int threads) {
  /* OpenBLAS for now, also where oneDNN is built in: oneDNN's sgemm runs on
   * its spinning OpenMP team, which made the decoder's many small products
   * 6x costlier in CPU time on a loaded machine (docs/guide.md, "Threads").
   * The backbone's large products go through oneDNN's convolutions instead. */
  (void)threads;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- The pool for the passes between OpenBLAS GEMMs --------------------------
 * Workers sleep on a condition variable between jobs (never spin) and are
 * started on first use; the caller works on parts too. One job at a time:
 * a caller that finds the pool busy runs its parts itself. */
enum { POOL_MAX = 63, PARALLEL_MIN_FLOATS = 1 << 15, PARTS_PER_THREAD = 4 };

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake, done;
  int workers;
  unsigned long job;     /* incremented per job; workers wait for a new value */
  grad__part_fn fn;
  void *ctx;
  int parts, next, unfinished;
  bool busy;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A forked child has none of the parent's workers. */
static void pool_after_fork(void) {
  pthread_mutex_init(&pool.lock, NULL);
  pthread_cond_init(&pool.wake, NULL);
  pthread_cond_init(&pool.done, NULL);
  pool.workers = 0;
  pool.busy = false;
}

static void pool_init(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

/* Claims and runs parts of the current job; called and returns with the lock held. */
static void run_parts(void) {
  while (pool.next < pool.parts) {
    int part = pool.next++, parts = pool.parts;
    grad__part_fn fn = pool.fn;
    void *ctx = pool.ctx;
    pthread_mutex_unlock(&pool.lock);
    fn(ctx, part, parts);
    pthread_mutex_lock(&pool.lock);
    if (--pool.unfinished == 0) pthread_cond_signal(&pool.done);
  }
}

static void *pool_worker(void *arg) {
  unsigned long seen = (unsigned long)(uintptr_t)arg;
  pthread_mutex_lock(&pool.lock);
  for (;;) {
    while (pool.job == seen) pthread_cond_wait(&pool.wake, &pool.lock);
    seen = pool.job;
    run_parts();
  }
  return NULL;
}

static void start_workers(int wanted) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr)) return;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the caller's threads */
  while (pool.workers < wanted && pool.workers < POOL_MAX) {
    pthread_t thread;
    if (pthread_create(&thread, &attr, pool_worker, (void *)(uintptr_t)pool.job)) break;
    pool.workers++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
}

/* Parts are claimed one by one, so with several parts per thread a thread
 * that another process delays holds up less of the pass. */
int grad__parallel_width(size_t floats) {
  int threads = grad_threads_get();
  size_t most = floats / PARALLEL_MIN_FLOATS;
  if (threads < 2 || most < 2) return 1;
  return most < (size_t)PARTS_PER_THREAD * threads ? (int)most : PARTS_PER_THREAD * threads;
}

void grad__parallel(int parts, grad__part_fn fn, void *ctx) {
  grad__parallel_threads(grad_threads_get(), parts, fn, ctx);
}

void grad__parallel_threads(int threads, int parts, grad__part_fn fn, void *ctx) {
  if (parts <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  pthread_once(&pool_once, pool_init);
  pthread_mutex_lock(&pool.lock);
  if (pool.busy) {
    pthread_mutex_unlock(&pool.lock);
    for (int part = 0; part < parts; part++) fn(ctx, part, parts);
    return;
  }
  pool.busy = true;
  start_workers((parts < threads ? parts : threads) - 1);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.parts = parts;
  pool.next = 0;
  pool.unfinished = parts;
  pool.job++;
  pthread_cond_broadcast(&pool.wake);
  run_parts();
  while (pool.unfinished > 0) pthread_cond_wait(&pool.done, &pool.lock);
  pool.busy = false;
  pthread_mutex_unlock(&pool.lock);
}

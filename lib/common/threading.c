/*
 * Threading and the BLAS in one place (see threading.h): the process-wide
 * thread count, the sleeping pool, the OpenMP team scope and the sgemm.
 */
#include <cblas.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
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
  if (threads != 1) atomic_store(&team_used, true); /* one thread starts no team */
  if (atomic_load(&forked_after_team)) threads = 1;
  grad__team_scope scope = {omp_get_max_threads()};
  if (threads > 0 && threads != scope.saved) omp_set_num_threads(threads);
  return scope;
#else
  (void)threads;
  return (grad__team_scope){0};
#endif
}

int grad__team_threads(void) {
#ifdef GRAD_HAVE_ONEDNN
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void grad__team_parallel(int threads, grad__part_fn fn, void *ctx) {
  if (threads <= 1) {
    fn(ctx, 0, 1);
    return;
  }
#if defined(GRAD_HAVE_ONEDNN) && !defined(__SANITIZE_THREAD__)
#pragma omp parallel num_threads(threads)
  fn(ctx, omp_get_thread_num(), omp_get_num_threads());
#else
  /* Under ThreadSanitizer the pool, whose locks it sees: it cannot see
   * libgomp's barriers, so it would report (and the suppression for
   * libgomp then hide, at great cost) every access fn makes on a team
   * thread, and check none of them. */
  grad__parallel_threads(threads, threads, fn, ctx);
#endif
}

void grad__team_leave(grad__team_scope scope) {
#ifdef GRAD_HAVE_ONEDNN
  if (scope.saved > 0 && omp_get_max_threads() != scope.saved) omp_set_num_threads(scope.saved);
#else
  (void)scope;
#endif
}

/* ---- The sgemm door ---------------------------------------------------------
 * Where oneDNN is built in, the products run on oneDNN's sgemm (JIT code for
 * the CPU's features), one single-threaded sgemm per part of C on the
 * sleeping pool: never on OpenBLAS's threads, which spin (sched_yield) for
 * a while after each product and took 7% of `grad eval` from the pool's
 * threads, nor on oneDNN's OpenMP team, whose spinning made the decoder's
 * many small products 6x costlier in CPU time on a loaded machine; and
 * OpenBLAS picks its kernels from a table of CPU models, so on a CPU it
 * does not know (AMD Zen 5 under 0.3.21) it runs AVX2 code at half speed.
 * Measured in docs/guide.md ("Threads"), bench/bench_sgemm.c. */

grad__isa grad__cpu_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma"))
    return GRAD__ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GRAD__ISA_AVX2;
  if (__builtin_cpu_supports("avx")) return GRAD__ISA_AVX;
#endif
  return GRAD__ISA_OLDER;
}

static atomic_int chosen_engine; /* GRAD_GEMM_AUTO: oneDNN where built in */

int grad__gemm_engine_used(void) {
  int chosen = atomic_load(&chosen_engine);
  if (chosen != GRAD_GEMM_AUTO) return chosen;
#ifdef GRAD_HAVE_ONEDNN
  return GRAD_GEMM_ONEDNN;
#else
  return GRAD_GEMM_OPENBLAS;
#endif
}

grad_status grad_gemm_engine_set(grad_gemm_engine engine) {
  if (engine != GRAD_GEMM_AUTO && engine != GRAD_GEMM_OPENBLAS && engine != GRAD_GEMM_ONEDNN)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_gemm_engine_set: no engine %d", (int)engine);
#ifndef GRAD_HAVE_ONEDNN
  if (engine == GRAD_GEMM_ONEDNN)
    return grad__fail(GRAD_E_UNSUPPORTED,
                      "grad_gemm_engine_set: this libgrad was built without oneDNN");
#endif
  atomic_store(&chosen_engine, (int)engine);
  return GRAD_OK;
}

static char openblas_text[96];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void name_engines(void) {
  const char *core = openblas_get_corename();
  snprintf(openblas_text, sizeof openblas_text, "OpenBLAS %s", core ? core : "unknown");
}

const char *grad_gemm_engine_name(void) {
  pthread_once(&names_once, name_engines);
  return grad__gemm_engine_used() == GRAD_GEMM_ONEDNN ? "oneDNN sgemm" : openblas_text;
}

static void cblas_part(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#ifdef GRAD_HAVE_ONEDNN
/* A product, split into parts of C along its rows or its columns. */
typedef struct gemm_job {
  bool trans_a, trans_b, by_rows;
  int m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
} gemm_job;

/* Part boundaries in whole vectors of 16 floats. */
static int part_start(int extent, int part, int parts) {
  int units = (extent + 15) / 16;
  int start = (int)((long long)units * part / parts) * 16;
  return start < extent ? start : extent;
}

static void gemm_part(void *ctx, int part, int parts) {
  const gemm_job *j = ctx;
  const int extent = j->by_rows ? j->m : j->n;
  const int first = part_start(extent, part, parts),
            count = part_start(extent, part + 1, parts) - first;
  if (count <= 0) return;
  const float *a = j->a, *b = j->b;
  float *c = j->c;
  int m = j->m, n = j->n;
  if (j->by_rows) {
    a += j->trans_a ? (size_t)first : (size_t)first * j->lda;
    c += (size_t)first * j->ldc;
    m = count;
  } else {
    b += j->trans_b ? (size_t)first * j->ldb : (size_t)first;
    c += first;
    n = count;
  }
  grad__team_scope team = grad__team_enter(1);
  dnnl_status_t st = dnnl_sgemm(j->trans_a ? 'T' : 'N', j->trans_b ? 'T' : 'N', m, n, j->k,
                                j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
  grad__team_leave(team);
  /* oneDNN fails before it writes C (no memory for its packing buffers). */
  if (st != dnnl_success)
    cblas_part(j->trans_a, j->trans_b, m, n, j->k, j->alpha, a, j->lda, b, j->ldb, j->beta, c,
               j->ldc);
}

/* Parts of C: two per thread, claimed one by one so that a thread another
 * process delays holds up less; the same parts on 1 thread as on 2, so the
 * bits are the same on both (docs/guide.md, "Threads"): a part repacks the
 * operand all parts share, which costs under 1% (bench_sgemm). No part
 * under GEMM_MIN_PART_FLOPS, about 20 us of work, which is what waking a
 * thread costs. Parts come from the shape and thread count alone, so a
 * product gives the same bits on every run. */
enum { GEMM_PARTS_PER_THREAD = 2, GEMM_MIN_PART_FLOPS = 1 << 21 };

static void onednn_sgemm(const gemm_job *job, int threads) {
  gemm_job j = *job;
  const double flops = 2.0 * j.m * j.n * j.k;
  /* Split the longer side of C, in whole vectors of 16 floats. */
  j.by_rows = j.m > j.n;
  int units = ((j.by_rows ? j.m : j.n) + 15) / 16;
  int parts = (threads > 2 ? threads : 2) * GEMM_PARTS_PER_THREAD;
  if (parts > units) parts = units;
  if (parts > flops / GEMM_MIN_PART_FLOPS) parts = (int)(flops / GEMM_MIN_PART_FLOPS);
  if (parts < 1) parts = 1;
  grad__parallel_threads(threads, parts, gemm_part, &j);
}
#endif

void grad__sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc, int threads) {
  if (k == 0) { /* OpenBLAS 0.3.21 leaves C as it is, not beta * C */
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        float *v = c + (size_t)i * ldc + j;
        *v = beta == 0.0f ? 0.0f : beta * *v;
      }
    return;
  }
#ifdef GRAD_HAVE_ONEDNN
  if (m > 0 && n > 0 && grad__gemm_engine_used() == GRAD_GEMM_ONEDNN) {
    gemm_job job = {trans_a, trans_b, false, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c};
    onednn_sgemm(&job, threads > 0 ? threads : grad__threads(NULL));
    return;
  }
#endif
  /* OpenBLAS's threads, its process-wide count. */
  (void)threads;
  cblas_part(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

grad_status grad_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc, int threads) {
  if (m < 0 || n < 0 || k < 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_sgemm: size m %d, n %d, k %d below 0", m, n, k);
  if (m == 0 || n == 0) return GRAD_OK;
  if (!c || (k > 0 && (!a || !b)))
    return grad__fail(GRAD_E_INVALID_ARG, "grad_sgemm: matrix %s is NULL",
                      !c ? "C" : !a ? "A" : "B");
  const int arow = trans_a ? m : k, brow = trans_b ? k : n; /* row lengths, as BLAS checks */
  if (lda < (arow > 1 ? arow : 1) || ldb < (brow > 1 ? brow : 1) || ldc < n)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_sgemm: a leading dimension is shorter than its row (lda %d for %d, "
                      "ldb %d for %d, ldc %d for %d)",
                      lda, arow, ldb, brow, ldc, n);
  grad__sgemm(trans_a != 0, trans_b != 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
  return GRAD_OK;
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
  int helpers; /* workers that may still join the job: its threads - 1 */
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
    if (pool.helpers > 0) { /* workers beyond the job's thread count sit it out */
      pool.helpers--;
      run_parts();
    }
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
  pool.helpers = (parts < threads ? parts : threads) - 1;
  start_workers(pool.helpers);
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

void grad__failure_init(grad__failure *f) {
  pthread_mutex_init(&f->lock, NULL);
  f->rank = INT_MAX;
  f->status = GRAD_OK;
  f->message[0] = '\0';
}

void grad__failure_note(grad__failure *f, int rank, grad_status status) {
  pthread_mutex_lock(&f->lock);
  if (f->status == GRAD_OK || rank < f->rank) {
    f->rank = rank;
    f->status = status;
    snprintf(f->message, sizeof f->message, "%s", grad_last_error());
  }
  pthread_mutex_unlock(&f->lock);
}

grad_status grad__failure_raise(grad__failure *f) {
  pthread_mutex_destroy(&f->lock);
  return f->status == GRAD_OK ? GRAD_OK : grad__fail(f->status, "%s", f->message);
}

typedef struct items_job {
  int items;
  grad__item_fn fn;
  void *ctx;
  grad__failure failure; /* ranked by item */
} items_job;

static void items_part(void *data, int part, int parts) {
  items_job *j = data;
  const int first = (int)((long long)j->items * part / parts),
            end = (int)((long long)j->items * (part + 1) / parts);
  for (int item = first; item < end; item++) {
    grad_status st = j->fn(j->ctx, item, part);
    if (st == GRAD_OK) continue;
    grad__failure_note(&j->failure, item, st);
    return;
  }
}

grad_status grad__parallel_items(int items, int parts, grad__item_fn fn, void *ctx) {
  if (items <= 0) return GRAD_OK;
  if (parts > items) parts = items;
  if (parts < 1) parts = 1;
  items_job j = {.items = items, .fn = fn, .ctx = ctx};
  grad__failure_init(&j.failure);
  grad__parallel_threads(grad__threads(NULL), parts, items_part, &j);
  return grad__failure_raise(&j.failure);
}

/* The worker pool declared in thread-pool.h (POSIX threads; C11 atomics). */
#include "thread-pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define POOL_MAX 64

/*
 * How long a thread spins before it sleeps: a worker after its task, waiting for the next one; the caller
 * waiting for the workers' last chunks. Waking a sleeping thread costs tens of microseconds on a busy VM (a
 * futex wake, then the scheduler), as much as a whole element-wise kernel on a million floats; tfjs issues
 * kernels back to back, so a worker that spins briefly is usually still awake for the next one.
 * Default 50 µs; setSpin (and BILEVEL_BLAS_SPIN_US, read by the JS side) change it (0: always sleep at once).
 */
static _Atomic long spin_ns = 50 * 1000;

void pool_set_spin_us(long us) {
  if (us < 0) us = 0;
  if (us > 100000) us = 100000;
  spin_ns = us * 1000;
}

long pool_spin_us(void) { return spin_ns / 1000; }

static inline long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
/* Serialises whole tasks: kernels run on the JS thread, but worker threads of other addons could call too. */
static pthread_mutex_t task_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t workers[POOL_MAX];
static int wanted = 1;  /* threads per task, the caller included */
static int started = 0; /* workers running */
static _Atomic int stopping = 0;
static _Atomic unsigned long generation = 0;
/* The generation when the workers were started: a worker that starts after the first task was published
 * still runs it. */
static unsigned long base_generation = 0;

/* The current task: set under `lock` and copied by each worker that wakes for it. */
typedef struct {
  pool_range_fn fn;
  void* ctx;
  size_t n, chunk, chunks;
  uint64_t generation;
} Task;
static Task task;
/* (generation << 32) | next chunk to claim: a worker that wakes late for an old task can claim nothing of
 * a newer one, so the caller never waits for sleeping workers, only for the chunks to be done. */
static _Atomic uint64_t cursor;
static atomic_size_t done_chunks;

static void run_chunks(const Task* t) {
  for (;;) {
    uint64_t v = atomic_load(&cursor);
    size_t c;
    do {
      if ((v >> 32) != (t->generation & 0xffffffffu) || (v & 0xffffffffu) >= t->chunks) return;
      c = (size_t)(v & 0xffffffffu);
    } while (!atomic_compare_exchange_weak(&cursor, &v, v + 1));
    const size_t b = c * t->chunk;
    const size_t e = b + t->chunk < t->n ? b + t->chunk : t->n;
    t->fn(t->ctx, b, e);
    if (atomic_fetch_add(&done_chunks, 1) + 1 == t->chunks) {
      pthread_mutex_lock(&lock);
      pthread_cond_broadcast(&finished);
      pthread_mutex_unlock(&lock);
    }
  }
}

/* Spins while busy(arg) holds, for at most the spin limit; returns whether it still holds. */
static int spin_while(int (*busy)(const void*), const void* arg) {
  const long limit = spin_ns;
  if (limit <= 0) return busy(arg);
  const long long start = now_ns();
  for (unsigned i = 1; busy(arg); i++) {
    CPU_RELAX();
    if ((i & 63) == 0 && now_ns() - start > limit) return busy(arg);
  }
  return 0;
}

/* No new task since generation `*seen`, and the pool is not stopping. */
static int no_task(const void* seen) {
  return atomic_load_explicit(&generation, memory_order_acquire) == *(const unsigned long*)seen && !atomic_load(&stopping);
}

/* Chunks of the task with `*chunks` chunks still running. */
static int chunks_running(const void* chunks) { return atomic_load(&done_chunks) < *(const size_t*)chunks; }

static void* worker_main(void* arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  unsigned long seen = base_generation;
  for (;;) {
    if (!stopping && generation == seen) {
      pthread_mutex_unlock(&lock);
      spin_while(no_task, &seen);
      pthread_mutex_lock(&lock);
    }
    while (!stopping && generation == seen) pthread_cond_wait(&wake, &lock);
    if (stopping) break;
    seen = generation;
    const Task t = task;
    pthread_mutex_unlock(&lock);
    run_chunks(&t);
    pthread_mutex_lock(&lock);
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

void pool_shutdown(void) {
  pthread_mutex_lock(&task_lock);
  pthread_mutex_lock(&lock);
  stopping = 1;
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < started; i++) pthread_join(workers[i], NULL);
  started = 0;
  stopping = 0;
  pthread_mutex_unlock(&task_lock);
}

void pool_set_threads(int threads) {
  if (threads < 1) threads = 1;
  if (threads > POOL_MAX + 1) threads = POOL_MAX + 1;
  if (threads == wanted) return;
  pool_shutdown();
  wanted = threads;
}

int pool_threads(void) { return wanted; }

/* Starts the workers of the current setting; called under task_lock. */
static void ensure_started(void) {
  if (started < wanted - 1) {
    pthread_mutex_lock(&lock);
    base_generation = generation;
    pthread_mutex_unlock(&lock);
  }
  while (started < wanted - 1) {
    if (pthread_create(&workers[started], NULL, worker_main, NULL) != 0) {
      wanted = started + 1; /* run with what could be started */
      return;
    }
    started++;
  }
}

/* Runs fn over [0, n) in chunks of at least `grain`, at most `max_chunks` of them (0: one per thread), claimed
 * by the caller and the workers as they become free. */
static void run_task(size_t n, size_t grain, size_t max_chunks, pool_range_fn fn, void* ctx) {
  if (n == 0) return;
  if (grain < 1) grain = 1;
  if (wanted <= 1 || n < 2 * grain) {
    fn(ctx, 0, n);
    return;
  }
  pthread_mutex_lock(&task_lock);
  ensure_started();
  const size_t threads = (size_t)started + 1;
  if (threads <= 1) {
    pthread_mutex_unlock(&task_lock);
    fn(ctx, 0, n);
    return;
  }
  size_t chunks = n / grain;
  const size_t cap = max_chunks ? max_chunks : threads;
  if (chunks > cap) chunks = cap;
  if (chunks > 0xffffffffu) chunks = 0xffffffffu;
  pthread_mutex_lock(&lock);
  generation++;
  task.fn = fn;
  task.ctx = ctx;
  task.n = n;
  task.chunk = (n + chunks - 1) / chunks;
  task.chunks = (n + task.chunk - 1) / task.chunk;
  task.generation = generation;
  const Task t = task;
  atomic_store(&done_chunks, 0);
  atomic_store(&cursor, (uint64_t)(generation & 0xffffffffu) << 32);
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&lock);
  run_chunks(&t);
  /* Every chunk claimed by now; wait for those still running on workers: spin first (a claimed chunk is
   * being computed and ends soon), then sleep. */
  if (spin_while(chunks_running, &t.chunks)) {
    pthread_mutex_lock(&lock);
    while (atomic_load(&done_chunks) < t.chunks) pthread_cond_wait(&finished, &lock);
    pthread_mutex_unlock(&lock);
  }
  pthread_mutex_unlock(&task_lock);
}

void pool_parallel_for(size_t n, size_t grain, pool_range_fn fn, void* ctx) { run_task(n, grain, 0, fn, ctx); }

void pool_parallel_tasks(size_t n, pool_range_fn fn, void* ctx) { run_task(n, 1, n, fn, ctx); }

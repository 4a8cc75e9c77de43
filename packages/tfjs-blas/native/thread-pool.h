/*
 * A persistent pool of worker threads for the element-wise kernels of bilevel-blas.c. Threads are created
 * once (on the first call that needs them, or when the thread count changes), sleep on a condition
 * variable between calls, and are joined when the addon's environment is torn down, so no thread outlives
 * the process's use of the addon or keeps it from exiting.
 */
#ifndef BILEVEL_THREAD_POOL_H
#define BILEVEL_THREAD_POOL_H
#include <stddef.h>

/* Work on the index range [begin, end) of a task. */
typedef void (*pool_range_fn)(void* ctx, size_t begin, size_t end);

/* Sets the number of threads that run a task (the caller included); 1 runs everything on the caller. */
void pool_set_threads(int threads);
/* The number of threads set. */
int pool_threads(void);
/*
 * Runs fn over [0, n) split into contiguous chunks, on the pool when n >= 2·grain (each chunk at least
 * `grain` long), else on the calling thread. Returns when every chunk is done.
 */
void pool_parallel_for(size_t n, size_t grain, pool_range_fn fn, void* ctx);
/*
 * Runs fn(ctx, i, i + 1) for every i in [0, n), each index a task of its own that the caller and the workers
 * claim as they become free (a thread that is descheduled on a busy machine holds up one task, not a share
 * of the work). On the calling thread alone when the pool has one thread or n < 2.
 */
void pool_parallel_tasks(size_t n, pool_range_fn fn, void* ctx);
/* How long (µs, 0 to 100000) a worker spins for the next task, and the caller for the last chunks, before
 * sleeping (default 50). */
void pool_set_spin_us(long us);
long pool_spin_us(void);
/* Stops and joins the workers (idempotent). */
void pool_shutdown(void);
#endif

/* synth_pool: an ordered parallel map for ft-synth. Jobs 0..n-1 run on `threads` worker
 * threads, at most `window` ahead of the consumer, and the caller takes the results strictly in
 * job order, so output bytes never depend on the thread count.
 */
#ifndef FT_SYNTH_POOL_H
#define FT_SYNTH_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct pool_item {
    uint8_t *data; /* result bytes, owned by the pool (grow with pool_item_reserve) */
    size_t len, cap;
} pool_item;

/* Produce job `job` into `out` on worker `worker` (0 <= worker < threads). Returns 0 or < 0. */
typedef int (*pool_work_fn)(void *ctx, int worker, uint64_t job, pool_item *out);

typedef struct pool pool;

int pool_start(pool **out, int threads, uint64_t n_jobs, size_t window, pool_work_fn fn, void *ctx);
/* Wait for the next job in order: 1 and *item (valid until pool_release), 0 when all jobs were
 * taken, or the job's negative status. */
int pool_next(pool *p, const pool_item **item);
void pool_release(pool *p); /* hand the current item's slot back */
void pool_stop(pool *p);    /* cancel outstanding jobs, join the workers, free; NULL ok */

int pool_item_reserve(pool_item *it, size_t cap); /* 0 or -ENOMEM */

#endif

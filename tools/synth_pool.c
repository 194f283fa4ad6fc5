/* synth_pool.c: see synth_pool.h. One mutex guards the job counter and the slot states;
 * workers wait on `work_cv` for a free slot, the consumer waits on `done_cv` for its slot. */
#include "synth_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };

typedef struct slot {
    pool_item item;
    int state, rc;
} slot;

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_t *th;
    int threads, started;
    uint64_t n_jobs, next_job, consumed;
    size_t window;
    slot *slots;
    int stop;
    pool_work_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    pool *p;
    int index;
} worker_arg;

int pool_item_reserve(pool_item *it, size_t cap) {
    if (cap <= it->cap) return 0;
    uint8_t *d = realloc(it->data, cap);
    if (!d) return -ENOMEM;
    it->data = d;
    it->cap = cap;
    return 0;
}

static void *worker_main(void *arg) {
    pool *p = ((worker_arg *)arg)->p;
    int index = ((worker_arg *)arg)->index;
    free(arg);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next_job < p->n_jobs && p->next_job >= p->consumed + p->window)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop || p->next_job >= p->n_jobs) break;
        uint64_t job = p->next_job++;
        slot *s = &p->slots[job % p->window];
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&p->mu);
        s->item.len = 0;
        int rc = p->fn(p->ctx, index, job, &s->item);
        pthread_mutex_lock(&p->mu);
        s->rc = rc;
        s->state = SLOT_READY;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_free(pool *p) {
    for (size_t i = 0; i < p->window; i++) free(p->slots[i].item.data);
    free(p->slots);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int pool_start(pool **out, int threads, uint64_t n_jobs, size_t window, pool_work_fn fn,
               void *ctx) {
    *out = NULL;
    if (threads < 1 || window < 1) return -EINVAL;
    pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = threads, p->n_jobs = n_jobs, p->window = window, p->fn = fn, p->ctx = ctx;
    p->slots = calloc(window, sizeof *p->slots);
    p->th = calloc((size_t)threads, sizeof *p->th);
    if (!p->slots || !p->th) {
        pool_free(p);
        return -ENOMEM;
    }
    for (int i = 0; i < threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        int rc = a ? 0 : ENOMEM;
        if (a) {
            a->p = p, a->index = i;
            rc = pthread_create(&p->th[i], NULL, worker_main, a);
            if (rc) free(a);
        }
        if (rc) {
            pool_stop(p);
            return -rc;
        }
        p->started++;
    }
    *out = p;
    return 0;
}

int pool_next(pool *p, const pool_item **item) {
    pthread_mutex_lock(&p->mu);
    if (p->consumed >= p->n_jobs) {
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    slot *s = &p->slots[p->consumed % p->window];
    while (s->state != SLOT_READY) pthread_cond_wait(&p->done_cv, &p->mu);
    int rc = s->rc;
    pthread_mutex_unlock(&p->mu);
    if (rc < 0) return rc;
    *item = &s->item;
    return 1;
}

void pool_release(pool *p) {
    pthread_mutex_lock(&p->mu);
    p->slots[p->consumed % p->window].state = SLOT_FREE;
    p->consumed++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
}

void pool_stop(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++) pthread_join(p->th[i], NULL);
    pool_free(p);
}

/* ir.c: the engine graph's containers (see ir.h). */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

float *ir_alloc(size_t n) {
    return calloc(n ? n : 1, sizeof(float));
}

int ir_add_value(ir_graph *g, ir_shape s) {
    if (g->nv >= 4 * IR_MAX_STEPS + 1) return -1;
    if (g->nv == g->vcap) {
        int cap = g->vcap ? 2 * g->vcap : 256;
        ir_shape *v = realloc(g->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        g->v = v, g->vcap = cap;
    }
    int id = g->nv++;
    if (s.base < 0) s.base = id;
    g->v[id] = s;
    return id;
}

ir_step *ir_add_step(ir_graph *g) {
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 128;
        ir_step *s = realloc(g->s, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        g->s = s, g->cap = cap;
    }
    ir_step *s = &g->s[g->n++];
    memset(s, 0, sizeof *s);
    s->node = -1;
    return s;
}

void ir_free(ir_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        ir_step *s = &g->s[i];
        free(s->w), free(s->b), free(s->gamma), free(s->beta), free(s->mean), free(s->var);
        free(s->alpha);
    }
    free(g->s);
    free(g->v);
    memset(g, 0, sizeof *g);
}

/* train_cpu_step.c: time full training steps of the CPU trainer core (IResNet forward and
 * backward, margin softmax + Partial FC, grad clipping, SGD) on random data.
 *
 * Build: target ft-bench-train (bench/CMakeLists.txt). Run:
 *   ft-bench-train [--depth 18] [--batch 32] [--threads 2] [--classes 93431] [--rate 1]
 *                  [--steps 3] [--width 64] [--dtype f32|f16|bf16] [--device cpu|cuda]
 *                  [--layout auto|nchw|nhwc] [--phases 1|0] [--graphs 0|1]
 * Prints per-phase times of the timed steps (after one warm-up step), samples/s, the device
 * bytes of the model/head/optimizer and the peak RSS. --phases 0 times whole steps only (no
 * wait for the device between phases: a device backend runs the step as ft-train does);
 * --graphs 1 (implies --phases 0) records the forward, head and backward once as a graph (in
 * a second warm-up step) and replays it, as ft-train's cuda_graphs = True does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ft_common.h"
#include "iresnet.h"
#include "optim.h"
#include "pfc.h"

static double cpu_seconds(const struct rusage *ru) {
    return ru->ru_utime.tv_sec + ru->ru_stime.tv_sec +
           1e-6 * (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec);
}

typedef struct bench {
    ft_ops *o;
    ft_iresnet *m;
    ft_pfc *p;
    ft_sgd *s;
    float *demb;
    int batch, classes;
    int phases, graphs; /* --phases, --graphs */
    ft_graph_slot slot; /* the recording (--graphs 1), keyed by the sampled classes */
    double t[5];        /* forward, head, backward, optimizer, total */
} bench;

/* the step's labels: the same for every mode */
static void labels(bench *b, uint64_t step, int32_t *lab) {
    ft_rng g;
    ft_rng_seed(&g, 3, step);
    for (int i = 0; i < b->batch; i++) lab[i] = (int32_t)ft_rng_below(&g, (uint64_t)b->classes);
}

/* a device backend queues work: with --phases 1 each phase ends when its work has run */
static int phase_end(bench *b) {
    return b->phases ? b->o->sync(b->o) : 0;
}

/* forward, head and backward of a step, its values staged (the work of a graph slot) */
static int device_part(void *ctx) {
    bench *b = ctx;
    const float *emb;
    int rc = ft_iresnet_forward(b->m, ft_iresnet_input(b->m), b->batch, 1, &emb);
    if (!rc) rc = ft_pfc_forward_backward_dev(b->p, emb, b->demb);
    if (!rc) rc = ft_iresnet_backward(b->m, b->demb);
    return rc;
}

/* --graphs 1: device_part through a graph slot, as ft-train's cuda_graphs runs it: recorded
 * at the second warm-up step (step 1), replayed after it */
static int graph_part(bench *b, uint64_t step, int32_t *lab, float *loss) {
    labels(b, step, lab);
    int rc = ft_iresnet_stage(b->m), how = FT_GRAPH_DIRECT;
    if (!rc) rc = ft_pfc_stage(b->p, lab, b->batch, step);
    uint64_t key = (uint64_t)ft_pfc_step_count(b->p);
    if (!rc) rc = ft_graph_run(b->o, &b->slot, &key, 1, device_part, b, &how);
    if (!rc && how == FT_GRAPH_REPLAYED) {
        ft_iresnet_replayed(b->m, b->batch);
        ft_pfc_replayed(b->p);
    }
    return rc ? rc : ft_pfc_loss(b->p, loss);
}

static int one_step(bench *b, uint64_t step, const float *x, int32_t *lab) {
    const float *emb;
    float loss;
    double t0 = ft_now(), t1, t2, t3;
    int rc = b->o->upload(b->o, ft_iresnet_input(b->m), x, (size_t)b->batch * 3 * 112 * 112 * 4);
    if (b->graphs) {
        if (!rc) rc = graph_part(b, step, lab, &loss);
        t1 = t2 = t3 = ft_now();
    } else {
        if (!rc) rc = ft_iresnet_forward(b->m, ft_iresnet_input(b->m), b->batch, 1, &emb);
        if (!rc) rc = phase_end(b);
        t1 = ft_now();
        labels(b, step, lab);
        if (!rc) rc = ft_pfc_prepare(b->p, lab, b->batch, step);
        if (!rc) rc = ft_pfc_forward_backward(b->p, emb, b->demb, &loss);
        if (!rc) rc = phase_end(b);
        t2 = ft_now();
        if (!rc) rc = ft_iresnet_backward(b->m, b->demb);
        if (!rc) rc = phase_end(b);
        t3 = ft_now();
    }
    double norm;
    if (!rc) rc = ft_sgd_clip_grad_norm(b->s, FT_SGD_GROUP_BACKBONE, 5.0, &norm);
    if (!rc) rc = ft_sgd_step(b->s, 0.1f);
    if (!rc) rc = ft_sgd_zero_grad(b->s);
    if (!rc) rc = b->o->sync(b->o);
    double t4 = ft_now();
    b->t[0] += t1 - t0, b->t[1] += t2 - t1, b->t[2] += t3 - t2, b->t[3] += t4 - t3;
    b->t[4] += t4 - t0;
    fprintf(stderr, "step %llu: %.4f s, loss %.9g, grad norm %.9g\n", (unsigned long long)step,
            t4 - t0, loss, norm);
    return rc;
}

#define USAGE                                                                                      \
    "usage: ft-bench-train [--depth 18] [--batch 32] [--threads 2] [--classes 93431] [--rate 1]\n" \
    "                      [--steps 3] [--width 64] [--dtype f32|f16|bf16] [--device cpu|cuda]\n"  \
    "                      [--layout auto|nchw|nhwc] [--phases 1|0] [--graphs 0|1]\n"              \
    "Time full training steps (IResNet + margin softmax + Partial FC + SGD) on random\n"           \
    "data: per-phase times, samples/s, model/head/optimizer bytes and peak RSS.\n"                 \
    "--phases 0: whole steps only (no wait between phases); --graphs 1: the forward, head and\n"   \
    "backward replayed from a recording (a backend with graphs; implies --phases 0).\n"

int main(int argc, char **argv) {
    int depth = 18, batch = 32, threads = 2, classes = 93431, steps = 3, width = 64, dtype = FT_F32;
    int phases = 1, graphs = 0;
    const char *device = "cpu";
    int layout = FT_LAYOUT_AUTO;
    double rate = 1.0;
    if (ft_cli_help_version(argc, argv, "ft-bench-train", USAGE)) return 0;
    if ((argc - 1) % 2)
        return fprintf(stderr, "ft-bench-train: every option takes a value\n" USAGE), 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--depth"))
            depth = atoi(v);
        else if (!strcmp(k, "--batch"))
            batch = atoi(v);
        else if (!strcmp(k, "--threads"))
            threads = atoi(v);
        else if (!strcmp(k, "--classes"))
            classes = atoi(v);
        else if (!strcmp(k, "--steps"))
            steps = atoi(v);
        else if (!strcmp(k, "--width"))
            width = atoi(v);
        else if (!strcmp(k, "--rate"))
            rate = atof(v);
        else if (!strcmp(k, "--phases"))
            phases = atoi(v) != 0;
        else if (!strcmp(k, "--graphs"))
            graphs = atoi(v) != 0;
        else if (!strcmp(k, "--device"))
            device = v;
        else if (!strcmp(k, "--layout") && (layout = ft_layout_parse(v)) < 0)
            return fprintf(stderr, "ft-bench-train: --layout takes auto, nchw or nhwc\n"), 2;
        else if (!strcmp(k, "--layout"))
            continue;
        else if (!strcmp(k, "--dtype") && (dtype = ft_dtype_parse(v)) < 0)
            return fprintf(stderr, "ft-bench-train: --dtype takes f32, f16 or bf16\n"), 2;
        else if (!strcmp(k, "--dtype"))
            continue;
        else
            return fprintf(stderr, "ft-bench-train: unknown option '%s'\n" USAGE, k), 2;
    }
    bench b = {.batch = batch, .classes = classes, .phases = phases && !graphs, .graphs = graphs};
    ft_iresnet_config mc;
    if (ft_iresnet_config_init(&mc, depth)) return fprintf(stderr, "bad depth\n"), 2;
    mc.max_batch = batch, mc.width = width, mc.dtype = dtype;
    ft_pfc_config pc;
    ft_pfc_config_init(&pc, classes);
    pc.max_batch = batch, pc.sample_rate = (float)rate, pc.dtype = dtype;
    ft_sgd_config sc = {0.9f, 5e-4f};
    void *d;
    ft_ops_options opts = {.threads = threads, .device = -1, .layout = layout};
    char err[256];
    int rc = ft_ops_create(device, &opts, &b.o, err, sizeof err);
    if (rc) return fprintf(stderr, "ft-bench-train: %s\n", err), rc == FT_ENODEV ? 77 : 1;
    if (graphs && !b.o->graph_begin)
        return fprintf(stderr, "ft-bench-train: --graphs 1: the %s backend has no graphs\n",
                       b.o->name),
               2;
    if (!rc) rc = ft_iresnet_create(b.o, &mc, &b.m);
    if (!rc) rc = ft_pfc_create(b.o, &pc, &b.p);
    if (!rc) rc = ft_sgd_create(b.o, &sc, &b.s);
    if (!rc) rc = b.o->alloc(b.o, (size_t)batch * 512 * 4, &d);
    if (rc) return fprintf(stderr, "setup: %s\n", ft_strerror(rc)), 1;
    b.demb = d;
    size_t mom = 0;
    for (int i = 0; i < ft_iresnet_param_count(b.m) && !rc; i++) {
        ft_param p;
        ft_iresnet_param(b.m, i, &p);
        rc = ft_sgd_add_param(b.s, &p, FT_SGD_GROUP_BACKBONE) < 0;
        mom += p.trainable ? p.numel * 4 : 0;
    }
    ft_param pp;
    ft_pfc_param(b.p, &pp);
    rc |= ft_sgd_add_param(b.s, &pp, FT_SGD_GROUP_HEAD) < 0;
    mom += pp.numel * 4;
    size_t xn = (size_t)batch * 3 * 112 * 112;
    float *x = malloc(xn * sizeof(float));
    int32_t *lab = malloc((size_t)batch * sizeof(int32_t));
    if (rc || !x || !lab) return fprintf(stderr, "setup failed\n"), 1;
    ft_rng g;
    ft_rng_seed(&g, 1, 0);
    for (size_t i = 0; i < xn; i++) x[i] = (float)(2 * ft_rng_uniform(&g) - 1);
    /* warm-up: the first step does the one-time work; with --graphs 1 the second records */
    int warm = graphs ? 2 : 1;
    for (int s = 0; s < warm; s++)
        if (one_step(&b, (uint64_t)s, x, lab)) return 1;
    memset(b.t, 0, sizeof b.t);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu0 = cpu_seconds(&ru);
    for (int s = warm; s < steps + warm; s++)
        if (one_step(&b, (uint64_t)s, x, lab)) return 1;
    size_t pb, ab, wb, tot = ft_iresnet_bytes(b.m, &pb, &ab, &wb);
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (cpu_seconds(&ru) - cpu0) / steps;
    if (b.phases)
        printf("r%d width %d batch %d threads %d classes %d rate %.2f %s %s: %.2f samples/s "
               "(step %.2f s: forward %.2f, head %.2f, backward %.2f, optimizer %.2f)\n",
               depth, width, batch, threads, classes, rate, device, ft_dtype_name((ft_dtype)dtype),
               batch * steps / b.t[4], b.t[4] / steps, b.t[0] / steps, b.t[1] / steps,
               b.t[2] / steps, b.t[3] / steps);
    else
        printf("r%d width %d batch %d threads %d classes %d rate %.2f %s %s: %.2f samples/s "
               "(step %.4f s, whole steps%s)\n",
               depth, width, batch, threads, classes, rate, device, ft_dtype_name((ft_dtype)dtype),
               batch * steps / b.t[4], b.t[4] / steps,
               b.graphs ? ", forward + head + backward replayed from a graph" : "");
    /* on a shared machine the wall time includes waiting for the cores: CPU time per step
     * divided by the thread count is what an idle machine would take at full parallelism */
    printf("cpu time %.2f s/step -> %.2f samples/s if the %d threads had their cores\n", cpu,
           batch * threads / cpu, threads);
    printf("memory: backbone arena %.0f MiB (params+grads %.0f, activations %.0f, conv ws %.0f), "
           "head %.0f MiB, momentum %.0f MiB, peak RSS %.0f MiB\n",
           tot / 1048576.0, pb / 1048576.0, ab / 1048576.0, wb / 1048576.0,
           ft_pfc_bytes(b.p) / 1048576.0, mom / 1048576.0, ru.ru_maxrss / 1024.0);
    printf("backbone plan by dtype: %s\n", ft_iresnet_plan_desc(b.m));
    double gf = ft_iresnet_flops(b.m) / 1e9;
    printf("backbone: %.2f GFLOP forward per sample; the step (3x) ran at %.2f TFLOP/s\n", gf,
           3 * gf * batch * steps / b.t[4] / 1e3);
    size_t dfree = 0, dtot = 0;
    if (!b.o->mem_info(b.o, &dfree, &dtot))
        printf("device memory: %.0f MiB in use of %.0f MiB after the steps\n",
               (dtot - dfree) / 1048576.0, dtot / 1048576.0);
    free(x), free(lab);
    ft_graph_slot_drop(b.o, &b.slot);
    b.o->free(b.o, b.demb);
    ft_sgd_free(b.s);
    ft_pfc_free(b.p);
    ft_iresnet_free(b.m);
    ft_ops_free(b.o);
    return 0;
}

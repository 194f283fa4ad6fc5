/* pfc_plan.c (ft-bench-pfc-plan): memory per rank of the Partial FC head from the code's own
 * planner (ft_pfc_plan: the arena ft_pfc_create would allocate, plus the SGD momentum of the
 * centres), and the communication volume per step and rank of a distributed step, for the
 * class counts of the public datasets. Nothing is allocated but the backbone used to count
 * its parameters (batch 2).
 *
 *   ft-bench-pfc-plan [--batch 128] [--emb 512] [--network 100]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "iresnet.h"
#include "pfc.h"

static double gib(double b) {
    return b / (1024.0 * 1024.0 * 1024.0);
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "ft-bench-pfc-plan",
                            "usage: ft-bench-pfc-plan [--batch B] [--emb E] [--network D]\n"
                            "Partial FC memory per rank (the planner's figures) and the\n"
                            "communication volume per step of a distributed step.\n"))
        return 0;
    int batch = 128, emb = 512, depth = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--emb"))
            emb = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--network"))
            depth = atoi(argv[i + 1]);
        else
            return fprintf(stderr, "ft-bench-pfc-plan: unknown option %s\n", argv[i]), 2;
    }
    static const struct {
        const char *name;
        int64_t classes;
    } sets[] = {
        {"MS1MV3", 93431}, {"Glint360K", 360232}, {"WebFace42M", 2059906}, {"29M ids", 29000000}};
    static const int worlds[] = {8, 64};
    static const float rates[] = {1.0f, 0.1f};
    printf("Partial FC head per rank: batch %d per rank, embedding %d; centres + their\n"
           "gradient + momentum + per-step buffers (logits: cos and logits fp32 [W*B, S],\n"
           "+ a 16-bit copy of cos with fp16); GiB\n\n",
           batch, emb);
    printf("| classes | ranks | sample rate | rows/rank | sampled S | centres (W) | logits f32 | "
           "total f32 | logits f16 | total f16 | measured f32 arena |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    char err[256];
    ft_ops_options oo = {.threads = 1, .device = -1};
    ft_ops *o;
    if (ft_ops_create("cpu", &oo, &o, err, sizeof err))
        return fprintf(stderr, "ft-bench-pfc-plan: %s\n", err), 1;
    for (size_t d = 0; d < sizeof sets / sizeof *sets; d++)
        for (size_t w = 0; w < 2; w++)
            for (size_t q = 0; q < 2; q++) {
                ft_pfc_plan_info a, h;
                ft_pfc_config c;
                ft_pfc_config_init(&c, sets[d].classes);
                c.world_size = worlds[w], c.rank = 0, c.emb = emb;
                c.max_batch = batch * worlds[w], c.sample_rate = rates[q];
                int rc = ft_pfc_plan(&c, &a);
                c.dtype = FT_F16;
                if (!rc) rc = ft_pfc_plan(&c, &h);
                if (rc) return fprintf(stderr, "plan failed: %s\n", ft_strerror(rc)), 1;
                /* what fits here is allocated for real: the arena it holds */
                char meas[32] = "(not allocated)";
                ft_pfc *p = NULL;
                c.dtype = FT_F32;
                if (a.arena_bytes < (1ull << 30) && !ft_pfc_create(o, &c, &p))
                    snprintf(meas, sizeof meas, "%.2f", gib((double)ft_pfc_bytes(p)));
                ft_pfc_free(p);
                printf(
                    "| %s %lld | %d | %.1f | %lld | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n",
                    sets[d].name, (long long)sets[d].classes, worlds[w], (double)rates[q],
                    (long long)a.num_local, a.num_sample, gib((double)a.centre_bytes),
                    gib((double)a.logit_bytes), gib((double)(a.arena_bytes + a.centre_bytes)),
                    gib((double)h.logit_bytes), gib((double)(h.arena_bytes + h.centre_bytes)),
                    meas);
            }
    /* communication of one step on W ranks: the backbone's gradients (ring all-reduce: each
     * rank sends and receives 2 (W-1)/W of them), the all-gather of embeddings and labels,
     * the softmax's three all-reduces of W*B floats, the reduce-scatter of the embedding
     * gradient */
    ft_iresnet_config mc;
    if (ft_iresnet_config_init(&mc, depth)) return fprintf(stderr, "no IResNet-%d\n", depth), 1;
    mc.max_batch = 2, mc.emb = emb;
    ft_iresnet *m;
    if (ft_iresnet_create(o, &mc, &m))
        return fprintf(stderr, "cannot build IResNet-%d\n", depth), 1;
    double params = 0;
    for (int i = 0; i < ft_iresnet_param_count(m); i++) {
        ft_param p;
        ft_iresnet_param(m, i, &p);
        if (p.trainable) params += (double)p.numel;
    }
    ft_iresnet_free(m);
    ft_ops_free(o);
    int W = 8;
    double ring = 2.0 * (W - 1) / W, gath = (double)(W - 1) / W;
    double grads = params * 4 * ring, embs = (double)batch * W * emb * 4 * gath;
    double labels = (double)batch * W * 4 * gath, soft = 3.0 * batch * W * 4 * ring;
    double rs = (double)batch * W * emb * 4 * gath, total = grads + embs + labels + soft + rs;
    printf("\nCommunication per step and rank, IResNet-%d (%.2fM trainable parameters) + "
           "Partial FC, %d ranks, batch %d per rank (bytes sent = bytes received):\n\n",
           depth, params / 1e6, W, batch);
    printf("| collective | MB |\n|---|---|\n");
    printf("| backbone gradients, all-reduce (ring 2(W-1)/W) | %.1f |\n", grads / 1e6);
    printf("| embeddings, all-gather | %.2f |\n| labels, all-gather | %.3f |\n", embs / 1e6,
           labels / 1e6);
    printf("| softmax row max, row sum, p_target: all-reduce | %.3f |\n", soft / 1e6);
    printf("| embedding gradient, reduce-scatter | %.2f |\n| total | %.1f |\n", rs / 1e6,
           total / 1e6);
    static const struct {
        const char *link;
        double gbs;
    } links[] = {{"NVLink 3 (A100 SXM, NCCL bus bandwidth ~230 GB/s)", 230},
                 {"NVLink 4 (H100 SXM, ~370 GB/s)", 370},
                 {"InfiniBand HDR 200 Gb/s, one NIC per GPU (~24 GB/s)", 24},
                 {"InfiniBand NDR 400 Gb/s, one NIC per GPU (~48 GB/s)", 48}};
    printf("\nProjected time of that traffic per step (bytes / bandwidth, no overlap, no\n"
           "latency; a projection, not a measurement):\n\n| link | ms |\n|---|---|\n");
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        printf("| %s | %.2f |\n", links[i].link, total / (links[i].gbs * 1e9) * 1e3);
    return 0;
}

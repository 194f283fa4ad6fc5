/* backend.c: the CPU backend's table: creation (thread pool, scratch), destruction and the
 * capability query. Each op family fills its own slots (cpu_install_<stem>, one file each).
 *
 * Every op supports FT_F32; the ops on activations also FT_F16 and FT_BF16 (storage only:
 * converted to fp32 on load, rounded once on store, see cpu.h).
 */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "ft_common.h"
#include "cpu.h"

static void cpu_destroy(ft_ops *o) {
    cpu_backend *b = o->impl;
#ifdef FT_HAVE_ONEDNN
    cpu_dnnl_close(b);
#endif
    cpu_pool_destroy(&b->pool);
    if (b->scratch)
        for (int t = 0; t < b->pool.n; t++)
            for (int s = 0; s < CPU_SCRATCH_SLOTS; s++) free(b->scratch[t].buf[s]);
    free(b->scratch);
    for (int i = 0; i < 3; i++) free(b->shared[i]);
    free(b);
}

static int cpu_supports(const ft_ops *o, int op, ft_dtype dt) {
    if (op < 0 || op >= FT_OP_COUNT) return 0;
    if (dt == FT_F32) return 1;
    return (dt == FT_F16 || dt == FT_BF16) && ft_op_takes_dtype(op);
}

/* OpenBLAS picks its kernels by CPU model, once, as the library loads; a model newer than the
 * installed OpenBLAS knows gets its generic Prescott (SSE3) kernels, several times slower
 * than the AVX2 or AVX-512 ones the CPU can run. Say so once per process, with the fix (the
 * variable must be set before the program starts), at the first GEMM: a CPU backend that
 * never multiplies (a GPU rank's host-side one) says nothing. */
void cpu_openblas_note(void) {
    static int said;
    if (__atomic_load_n(&said, __ATOMIC_RELAXED) || __atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
        return;
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "prescott") != 0 || getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    const char *better = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                             ? "SkylakeX"
                         : __builtin_cpu_supports("avx2") ? "Haswell"
                                                          : NULL;
    if (better)
        fprintf(stderr,
                "ft_ops cpu: note: OpenBLAS does not know this CPU model and runs its generic "
                "Prescott kernels; OPENBLAS_CORETYPE=%s in the environment selects the faster "
                "ones this CPU can run\n",
                better);
}

int ft_ops_cpu_create_(int threads, int inference, ft_ops **out) {
    if (threads < 0 || threads > 1024) return FT_EARG;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    cpu_backend *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    int rc = 0, omp = 0;
#ifdef FT_HAVE_ONEDNN
    rc = cpu_dnnl_open(b, threads, inference);
    omp = b->dnnl != NULL;
#endif
    if (!rc) rc = cpu_pool_init(&b->pool, threads, omp);
    if (!rc && !(b->scratch = calloc((size_t)b->pool.n, sizeof *b->scratch))) rc = -ENOMEM;
    ft_ops *o = &b->ops;
    o->impl = b;
    if (rc) {
        cpu_destroy(o);
        return rc;
    }
    openblas_set_num_threads(1);
    o->name = "cpu";
    o->destroy = cpu_destroy;
    o->supports = cpu_supports;
    cpu_install_memory(o);
    cpu_install_cast(o);
    cpu_install_elementwise(o);
    cpu_install_gemm(o);
    cpu_install_dropout(o);
    cpu_install_sgd(o);
    cpu_install_conv(o);
    cpu_install_batchnorm(o);
    cpu_install_prelu(o);
    cpu_install_rows(o);
    cpu_install_sample(o);
    cpu_install_margin(o);
    *out = o;
    return 0;
}

int ft_ops_cpu_threads(const ft_ops *o) {
    if (!o || o->destroy != cpu_destroy) return 0;
    return ((const cpu_backend *)o->impl)->pool.n;
}

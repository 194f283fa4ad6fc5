/* nccl_none.c: the NCCL entry points of a build without NCCL (no CUDA backend, or no nccl.h). */
#include <stdio.h>

#include "comm.h"
#include "ft_common.h"

int ft_comm_have_nccl(void) {
    return 0;
}

int ft_comm_nccl(ft_comm **out, ft_ops *o, const ft_comm_nccl_options *opt, char *err, size_t cap) {
    if (err && cap)
        snprintf(err, cap,
                 "this build has no NCCL transport (build with the CUDA toolkit and NCCL)");
    return FT_ENOTSUP;
}

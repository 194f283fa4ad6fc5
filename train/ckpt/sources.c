/* sources.c: see sources.h. */
#include "sources.h"

static int bb_count(void *o) {
    return ft_iresnet_tensor_count(o);
}
static int bb_info(void *o, int i, ft_tensor_info *t) {
    return ft_iresnet_tensor_info(o, i, t);
}
static int bb_get(void *o, int i, void *h) {
    return ft_iresnet_tensor_get(o, i, h);
}
static int bb_set(void *o, int i, const void *h) {
    return ft_iresnet_tensor_set(o, i, h);
}
static int pfc_count(void *o) {
    return ft_pfc_tensor_count(o);
}
static int pfc_info(void *o, int i, ft_tensor_info *t) {
    return ft_pfc_tensor_info(o, i, t);
}
static int pfc_get(void *o, int i, void *h) {
    return ft_pfc_tensor_get(o, i, h);
}
static int pfc_set(void *o, int i, const void *h) {
    return ft_pfc_tensor_set(o, i, h);
}
static int opt_count(void *o) {
    return ft_sgd_state_count(o);
}
static int opt_info(void *o, int i, ft_tensor_info *t) {
    return ft_sgd_state_info(o, i, t);
}
static int opt_get(void *o, int i, void *h) {
    return ft_sgd_state_get(o, i, h);
}
static int opt_set(void *o, int i, const void *h) {
    return ft_sgd_state_set(o, i, h);
}
static int opt_is_head(void *o, int i) {
    return i == ft_sgd_state_count(o) - 1;
}
static int opt_is_backbone(void *o, int i) {
    return !opt_is_head(o, i);
}

ft_ckpt_source ft_ckpt_src_backbone(ft_iresnet *m) {
    ft_ckpt_source s = {m, bb_count, bb_info, bb_get, bb_set, NULL};
    return s;
}

ft_ckpt_source ft_ckpt_src_pfc(ft_pfc *p) {
    ft_ckpt_source s = {p, pfc_count, pfc_info, pfc_get, pfc_set, NULL};
    return s;
}

ft_ckpt_source ft_ckpt_src_momentum(ft_sgd *s, int head) {
    /* skip: head keeps only the last buffer, otherwise all but it */
    ft_ckpt_source src = {s,       opt_count, opt_info,
                          opt_get, opt_set,   head ? opt_is_backbone : opt_is_head};
    return src;
}

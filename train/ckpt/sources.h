/* sources.h: the model's tensor sets as checkpoint sources (checkpoint.h's ft_ckpt_source),
 * for ft-train's saves and resumes and for every tool that reads or writes a backbone. */
#ifndef FT_CKPT_SOURCES_H
#define FT_CKPT_SOURCES_H

#include "checkpoint.h"
#include "iresnet.h"
#include "optim.h"
#include "pfc.h"

/* the IResNet's state_dict (parameters, BN statistics, num_batches_tracked) */
ft_ckpt_source ft_ckpt_src_backbone(ft_iresnet *m);
/* a Partial FC shard's class centres */
ft_ckpt_source ft_ckpt_src_pfc(ft_pfc *p);
/* the SGD momentum buffers; the Partial FC weight is registered last, so head = 1 is its
 * buffer alone and head = 0 the backbone's buffers without it */
ft_ckpt_source ft_ckpt_src_momentum(ft_sgd *s, int head);

#endif

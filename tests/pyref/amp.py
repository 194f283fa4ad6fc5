"""Mixed-precision building blocks of the "same casts" reference (pyref.iresnet).

facetrain's fp16/bf16 mode stores activations and activation gradients in a storage dtype D
and computes in fp32 (or whatever dtype the reference runs in: fp64 for calibration). Here
round(t) = t.to(D).to(t.dtype): round to nearest even; fp16 overflows to +-inf.

  RoundBoth  forward round(x), backward round(grad): a tensor stored in D whose gradient is
             also stored in D (every activation of the backbone)
  RoundFwd   forward round(x), backward identity: the D copy of an fp32 master weight (conv
             weights); the weight gradient is accumulated in fp32, not rounded
  LossScaler torch.cuda.amp.GradScaler semantics on the CPU (GradScaler itself needs CUDA):
             scale the loss, unscale the gradients before clipping, skip the step on inf/NaN
             and halve the scale, double it after growth_interval finite steps
"""
import torch

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}


def storage_dtype(name):
    """None for fp32 ('f32', None), else the torch dtype of 'f16' / 'bf16'."""
    if name in (None, "f32", "F32"):
        return None
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError("unknown storage dtype %r (f32, f16 or bf16)" % (name,))


def round_to(t, d):
    """t rounded to the storage dtype d and back to t's dtype (d None: t itself)."""
    return t if d is None else t.to(d).to(t.dtype)


class RoundBoth(torch.autograd.Function):
    """Forward round to D, backward round the incoming gradient to D."""

    @staticmethod
    def forward(ctx, x, d):
        ctx.d = d
        return round_to(x, d)

    @staticmethod
    def backward(ctx, g):
        return round_to(g, ctx.d), None


class RoundFwd(torch.autograd.Function):
    """Forward round to D, backward identity (the gradient reaches the fp32 master)."""

    @staticmethod
    def forward(ctx, x, d):
        return round_to(x, d)

    @staticmethod
    def backward(ctx, g):
        return g, None


class Rounding:
    """The roundings of one model: d the storage dtype (None: fp32, no rounding); enabled
    False keeps the graph's structure but makes every rounding the identity (self-test: the
    f16 model without rounding is the fp32 model)."""

    def __init__(self, d, enabled=True):
        self.d = d
        self.enabled = enabled and d is not None  # d None: the fp32 graph, no roundings

    def both(self, x):
        return RoundBoth.apply(x, self.d) if self.enabled else x

    def fwd(self, w):
        return RoundFwd.apply(w, self.d) if self.enabled else w


class LossScaler:
    """GradScaler(init_scale, growth_factor=2, backoff_factor=0.5, growth_interval=100).

    Per optimizer step:  scaler.scale(loss).backward()  (every micro-step of a window)
                         found_inf = scaler.unscale_(params)   grads *= float32(1 / scale)
                         clip_grad_norm_(...)
                         skipped = scaler.step(optimizer)      optimizer.step() unless found_inf
                         scaler.update()                       scale x0.5 on inf, x2 after
                                                               growth_interval finite steps
    enabled=False (fp32, bf16): scale 1, never skips. The scale is kept as a float32 value
    like GradScaler's _scale tensor."""

    def __init__(self, init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=100, enabled=True):
        self.enabled = enabled
        self._scale = torch.tensor(float(init_scale) if enabled else 1.0, dtype=torch.float32)
        self.growth_factor, self.backoff_factor = growth_factor, backoff_factor
        self.growth_interval = growth_interval
        self.growth_tracker = 0
        self.found_inf = False
        self._unscaled = False

    @property
    def scale_value(self):
        return float(self._scale)

    def scale(self, loss):
        return loss * self._scale.to(loss.dtype) if self.enabled else loss

    def unscale_(self, params):
        """Multiply every gradient by the float32 reciprocal of the scale (computed in double,
        as GradScaler does); returns whether any gradient holds an inf or NaN."""
        found = False
        if self.enabled:
            inv = self._scale.double().reciprocal().float()
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(inv.to(p.grad.dtype))
                    found |= not bool(torch.isfinite(p.grad).all())
        self.found_inf, self._unscaled = found, True
        return found

    def step(self, optimizer):
        """optimizer.step() unless the unscaled gradients held an inf/NaN; returns skipped."""
        if not self._unscaled:
            raise RuntimeError("unscale_ before step")
        if self.found_inf:
            return True
        optimizer.step()
        return False

    def update(self):
        if self.enabled:
            if self.found_inf:
                self._scale = self._scale * self.backoff_factor
                self.growth_tracker = 0
            else:
                self.growth_tracker += 1
                if self.growth_tracker == self.growth_interval:
                    self._scale = self._scale * self.growth_factor
                    self.growth_tracker = 0
        self.found_inf, self._unscaled = False, False

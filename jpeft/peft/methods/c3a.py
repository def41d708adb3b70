"""C3A: circular convolution adaptation (Chen et al., ACL 2025), as the PyTorch PEFT library (0.22.0,
`peft/tuners/c3a`) computes it.

Where: every Dense of every block, qkv, proj, fc1 and fc2 (`targets`; peft's `C3AConfig(target_modules=...)` on a
timm ViT with those four block layers as targets). The update of a Dense [in] -> [out] is a block-circulant matrix:
cut the input into n = in / b blocks and the output into m = out / b blocks of `block_size` b; block (j, i) is the
circulant matrix of a learned kernel w[j, i] [b], applied as a circular convolution by FFT (peft's
`BlockCircularConvolution`), and the sum is divided by `in`:

  y = z K + b + s * bcc(z, w) / in,   bcc(z, w)_j = Re(fft(sum_i ifft(z_i) * fft(w[j, i])))     (s = merge_factor)

Merged (and WiSE-FT): K + s * bcc(I_in, w) / in, the same map applied to the identity's rows (peft's
`get_circulant_fast`, transposed to jpeft's kernel layout). Initialisation (peft's `init_weights`):
'xavier_uniform', the library's default, w ~ U(+-sqrt(6 / (in + out))) (so the model does not start at the
backbone); 'kaiming_uniform', U(+-1 / sqrt(in)); 'gaussian', N(0, 1); 'zeros' (peft's True), the backbone.
A weight-independent delta: C3A composes in any order.

Parameters, in the scope of the Dense's parent (attn or mlp): c3a_<site>_kernel [out / b, in / b, b] (peft's
c3a_kernel, same layout).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.dense_delta import DenseDelta

INITS = ("xavier_uniform", "kaiming_uniform", "gaussian", "zeros")


def block_circular_conv(z, w):
  """z [..., n b], w [m, n, b] -> [..., m b]: sum over input blocks of their circular convolutions with w[j, i]."""
  m, n, b = w.shape
  spectrum = jnp.einsum("...nb,mnb->...mb", jnp.fft.ifft(z.reshape(*z.shape[:-1], n, b)), jnp.fft.fft(w))
  return jnp.fft.fft(spectrum).real.reshape(*z.shape[:-1], m * b)


@base.register
@dataclasses.dataclass(frozen=True)
class C3A(DenseDelta):
  """Block-circulant updates of every targeted Dense (see module doc)."""
  name: ClassVar[str] = "c3a"
  grid: ClassVar[dict] = {"block_size": (64, 128, 256)}
  block_size: int = 256
  init_weights: str = "xavier_uniform"

  def validate(self):
    super().validate()
    self.require_positive_int("block_size")
    self.require("init_weights", self.init_weights in INITS, f"one of {INITS}")

  def create(self, m, where, in_dim, out_dim):
    b = self.block_size
    if in_dim % b or out_dim % b:
      raise ValueError(f"PEFT method 'c3a': block_size={b} does not divide the widths {in_dim} -> {out_dim} of the "
                       f"Dense '{where}'. Choose a common divisor of every targeted width (256 for ViT-B/16), e.g. "
                       "--config.peft.c3a.block_size=16, or leave it out of targets.")
    if self.init_weights == "gaussian":
      init = nn.initializers.normal(1.0)
    elif self.init_weights == "zeros":
      init = nn.initializers.zeros
    else:
      bound = math.sqrt(6 / (in_dim + out_dim)) if self.init_weights == "xavier_uniform" else 1 / math.sqrt(in_dim)
      init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    return {"kernel": self.site_param(m, where, "kernel", init, (out_dim // b, in_dim // b, b))}

  def delta(self, p, kernel, merge_factor):
    in_dim = kernel.shape[0]
    eye = jnp.eye(in_dim, dtype=jnp.float32)
    return (merge_factor * block_circular_conv(eye, p["kernel"].astype(jnp.float32)) / in_dim).astype(kernel.dtype)

  def dense(self, m, where, z, y, ctx):
    if where not in self.targets:
      return y
    in_dim = z.shape[-1]
    w = self.create(m, where, in_dim, y.shape[-1])["kernel"]
    # By FFT on the activations, as the library: cheaper than the [in, out] matrix `delta` builds for merging.
    update = block_circular_conv(z.astype(jnp.float32), w.astype(jnp.float32)) / in_dim
    return y + ctx.merge_factor * update.astype(y.dtype)

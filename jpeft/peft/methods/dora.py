"""DoRA: weight-decomposed low-rank adaptation (Liu et al., ICML 2024), as the PyTorch PEFT library computes it.

Where: every Dense of every block, the fused qkv, proj, fc1 and fc2 (peft's `LoraConfig(use_dora=True,
target_modules=...)` on a timm ViT with those four block layers as targets, given as a regex because a bare
'proj' also matches the patch embedding; `targets` narrows it). For a Dense with kernel W [in, out] and bias b
the adapted layer is

  y = b + m / ||W + A B|| * (z W + dropout(z) A B)        (A [in, r], B [r, out]; the norm per output column)

with peft's `lora_alpha = r` (scaling 1, as the study's LoRA has no alpha / r factor) and peft's detached norm:
||W + A B|| gets no gradient (DoRA, section 4.3). peft adds this to the base output as
(m / n - 1) * (z W) + (m / n) * dropout(z) A B, computing z W from the dropped-out input while training with
dropout, and so does this module (dropout 0.1 by default, as the study's LoRA; peft's default is 0). Since it
reads z W from the Dense's output, DoRA comes first in a composition (`build_methods` refuses other orders).

The magnitude m is stored as its offset from the pretrained column norm, `dora_<site>_magnitude` = m - ||W||,
initialised to 0: peft initialises m to ||W|| from the loaded weights, but jpeft initialises methods before
the pretrained weights are loaded, so an absolute m would start at the norm of random weights. The offset has
the same gradient as m (the frozen W's norm is a constant); weight decay pulls m towards ||W|| instead of 0.
With merge_factor s the output is y_base + s * (y_dora - y_base): the merged kernel is
W + s * (m / ||W + A B|| * (W + A B) - W), bias unchanged, as peft's `merge_and_unload` at s = 1.

Parameters, in the scope of the Dense's parent (attn or mlp), for site in `targets`:
  dora_<site>_a [in, r] (torch Linear init), dora_<site>_b [r, out] (zeros), dora_<site>_magnitude [out] (zeros).
"""
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.inits import TORCH_LINEAR, ZEROS

SITES = ("qkv", "proj", "fc1", "fc2")


def column_norm(kernel):
  """kernel [in, out] -> [out]: the norm of each output's weights (torch's ||W||_dim=1 on a [out, in] weight)."""
  return jnp.sqrt(jnp.sum(jnp.square(kernel), axis=0))


@base.register
@dataclasses.dataclass(frozen=True)
class DoRA(base.Method):
  """Magnitude and direction of every targeted Dense, the direction updated by a rank-r LoRA (see module doc)."""
  name: ClassVar[str] = "dora"
  grid: ClassVar[dict] = {"rank": (1, 8, 16, 32)}
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR  # merge_factor 0 is the backbone
  composition_position: ClassVar[str] = "first"  # reads the pretrained z W from the Dense's output
  rank: int = 8
  dropout: float = 0.1
  targets: tuple[str, ...] = SITES

  def validate(self):
    self.require_positive_int("rank")
    self.require_rate()
    self.require("targets", bool(self.targets) and set(self.targets) <= set(SITES) and
                 len(set(self.targets)) == len(self.targets), f"distinct Dense names from {SITES}")

  def paddable(self):
    # Zero columns of A / rows of B leave A B, and so the column norm ||W + A B||, unchanged; their gradients
    # vanish (each factor's goes through the other); dropout acts on z; the magnitude has no rank axis.
    return ("rank",)

  def dense(self, m, where, z, y, ctx):
    if where not in self.targets:
      return y
    weights = base.dense_weights(m, where)
    kernel = weights["kernel"]
    a = m.param(f"dora_{where}_a", TORCH_LINEAR, (z.shape[-1], self.rank))
    b = m.param(f"dora_{where}_b", ZEROS, (self.rank, y.shape[-1]))
    offset = m.param(f"dora_{where}_magnitude", ZEROS, (y.shape[-1],))
    norm = jax.lax.stop_gradient(column_norm(kernel + a @ b))
    scale = ((column_norm(jax.lax.stop_gradient(kernel)) + offset) / norm).astype(y.dtype)
    dropped = nn.Dropout(self.dropout)(z, ctx.deterministic)
    if ctx.deterministic or self.dropout == 0:
      base_out = y - weights["bias"].astype(y.dtype)  # z W, from the Dense's output
    else:  # as peft: while training with dropout, z W is recomputed from the dropped-out input
      base_out = dropped @ kernel.astype(y.dtype)
    delta = (scale - 1) * base_out + scale * ((dropped @ a.astype(y.dtype)) @ b.astype(y.dtype))
    return y + ctx.merge_factor * delta

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    for a_path in [p for p in flat if p.rsplit("/", 1)[-1].startswith("dora_") and p.endswith("_a")]:
      scope, leaf = a_path.rsplit("/", 1)
      site = leaf[len("dora_"):-len("_a")]
      kernel_path = f"{scope}/{site}/kernel"
      kernel = flat[kernel_path]
      direction = kernel + flat.pop(a_path) @ flat.pop(f"{scope}/dora_{site}_b")
      magnitude = column_norm(kernel) + flat.pop(f"{scope}/dora_{site}_magnitude")
      flat[kernel_path] = kernel + merge_factor * (magnitude / column_norm(direction) * direction - kernel)
    return flat

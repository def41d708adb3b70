"""VeRA: vector-based random matrix adaptation (Kopiczko et al., ICLR 2024), as the PyTorch PEFT library computes it.

Where: every Dense of every block, the fused qkv, proj, fc1 and fc2 (peft's `VeraConfig(target_modules=...)` on
a timm ViT with those four block layers as targets, as a regex: a bare 'proj' also matches the patch embedding;
`targets` narrows it). One frozen random pair is shared by all of them,
sized for the largest input and output among the targets, and each Dense uses its top-left slice:

  y = z W + b + lambda_b * ((dropout(z) A[:in] * lambda_d) B[:, :out])     A [in_max, r], B [r, out_max]

A and B are drawn as peft's `_kaiming_init` draws them (kaiming-uniform, gain sqrt(2)): U(+-sqrt(6 / fan_in)) with
fan_in = in_max for A and fan_in = r for B (peft's torch shapes are A (r, in_max), B (out_max, r); the fan is the
same on jpeft's transposes). The values come from a fixed key (`projection_seed`, like peft's
`projection_prng_key`, though jax's generator gives other numbers than torch's) and not from the run's seed: they
are frozen parameters (label 'frozen', not saved in the adapter file) that any initialisation regenerates.
The trainable vectors: lambda_d = d_initial, lambda_b = 0 (identity at initialisation).
With merge_factor s the update is multiplied by s; the merged kernel is W + s * (A[:in] * lambda_d) B[:, :out] *
lambda_b (peft's `merge_and_unload` at s = 1).

Parameters: encoder/vera_a [in_max, r], encoder/vera_b [r, out_max] (frozen); in the scope of the Dense's parent
(attn or mlp), for site in `targets`: vera_<site>_lambda_d [r], vera_<site>_lambda_b [out].
"""
import dataclasses
from typing import ClassVar

import jax
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.dora import SITES
from jpeft.peft.methods.inits import KAIMING_UNIFORM, ZEROS


def _sizes(site: str, ctx: base.Context) -> tuple[int, int]:
  """(in, out) features of a block's Dense."""
  d, h = ctx.width, ctx.mlp_dim
  return {"qkv": (d, 3 * d), "proj": (d, d), "fc1": (d, h), "fc2": (h, d)}[site]


@base.register
@dataclasses.dataclass(frozen=True)
class VeRA(base.Method):
  """Shared frozen random A, B; per-Dense trainable scaling vectors lambda_d [r] and lambda_b [out]."""
  name: ClassVar[str] = "vera"
  grid: ClassVar[dict] = {"rank": (64, 256, 1024)}
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR  # merge_factor 0 is the backbone
  rank: int = 256
  dropout: float = 0.0
  d_initial: float = 0.1
  projection_seed: int = 0
  targets: tuple[str, ...] = SITES
  # Columns of A per unit of rank: PVeRA (pvera.py), which reuses this class, reads a mean and a log-variance.
  a_columns_per_rank: ClassVar[int] = 1

  def validate(self):
    self.require_positive_int("rank")
    self.require_rate()
    self.require_finite("d_initial")
    self.require("projection_seed", isinstance(self.projection_seed, int) and self.projection_seed >= 0,
                 "an integer >= 0")
    self.require("targets", bool(self.targets) and set(self.targets) <= set(SITES) and
                 len(set(self.targets)) == len(self.targets), f"distinct Dense names from {SITES}")

  def shared(self, m, ctx):
    in_max = max(_sizes(site, ctx)[0] for site in self.targets)
    out_max = max(_sizes(site, ctx)[1] for site in self.targets)
    key = jax.random.key(self.projection_seed)
    key_a, key_b = jax.random.split(key)
    # The run's initialisation key is ignored: the projections depend on projection_seed only.
    a = m.param(f"{self.name}_a", lambda _, shape: KAIMING_UNIFORM(key_a, shape),
                (in_max, self.a_columns_per_rank * self.rank))
    b = m.param(f"{self.name}_b", lambda _, shape: KAIMING_UNIFORM(key_b, shape), (self.rank, out_max))
    return a, b

  def label(self, path):
    if path[-1] in (f"{self.name}_a", f"{self.name}_b"):
      return base.FROZEN  # the shared random projections stay frozen, even under 'full'
    return super().label(path)

  def dense(self, m, where, z, y, ctx):
    if where not in self.targets:
      return y
    a, b = ctx.shared[self.name]
    lambda_d = m.param(f"{self.name}_{where}_lambda_d", nn.initializers.constant(self.d_initial),
                       (self.a_columns_per_rank * self.rank,))
    lambda_b = m.param(f"{self.name}_{where}_lambda_b", ZEROS, (y.shape[-1],))
    z = nn.Dropout(self.dropout)(z, ctx.deterministic)
    hidden = (z @ a[:z.shape[-1]].astype(y.dtype)) * lambda_d.astype(y.dtype)
    delta = (self.latent(m, hidden, ctx) @ b[:, :y.shape[-1]].astype(y.dtype)) * lambda_b.astype(y.dtype)
    return y + ctx.merge_factor * delta

  def latent(self, m, hidden, ctx):
    """The r-dimensional input of B from hidden = (z A[:in]) * lambda_d [..., a_columns_per_rank * r]: hidden
    itself for VeRA."""
    del m, ctx
    return hidden

  def merge(self, flat, merge_factor=1.0):
    flat, prefix = dict(flat), f"{self.name}_"
    a, b = flat.pop(f"encoder/{prefix}a"), flat.pop(f"encoder/{prefix}b")
    for d_path in [p for p in flat if p.rsplit("/", 1)[-1].startswith(prefix) and p.endswith("_lambda_d")]:
      scope, leaf = d_path.rsplit("/", 1)
      site = leaf[len(prefix):-len("_lambda_d")]
      kernel_path = f"{scope}/{site}/kernel"
      n_in, n_out = flat[kernel_path].shape
      lambda_d = flat.pop(d_path)[:self.rank]  # PVeRA: the mean half (merging keeps the expected update)
      delta = (a[:n_in, :self.rank] * lambda_d) @ b[:, :n_out] * flat.pop(f"{scope}/{prefix}{site}_lambda_b")
      flat[kernel_path] = flat[kernel_path] + merge_factor * delta
    return flat

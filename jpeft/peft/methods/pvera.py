"""PVeRA: probabilistic VeRA (2025; evaluated on VTAB-1K), as the PyTorch PEFT library (0.22.0, `peft/tuners/pvera`)
computes it.

Where: every Dense of every block, qkv, proj, fc1 and fc2 (`targets`; peft's `PveraConfig(target_modules=...)` on
a timm ViT with those four block layers as targets). As VeRA (jpeft/peft/methods/vera.py), one frozen random pair
is shared by all targets, sized for the largest input and output, each Dense using its top-left slice; but A has
2r columns, whose halves give the mean and the log-variance of an r-dimensional latent:

  (mu | logvar) = (dropout(z) A[:in]) * lambda_d            A [in_max, 2r], lambda_d [2r]
  u = mu (evaluation, as peft's default `sample_at_inference=False`; that option is not carried over: jpeft's
      evaluation draws no random numbers) or mu + eps * exp(logvar / 2), eps ~ N(0, I) (training)
  y = z W + b + s * lambda_b * (u B[:, :out])               B [r, out_max], lambda_b [out]; s = merge_factor

A and B are drawn as peft draws them (torch's kaiming_uniform: U(+-sqrt(6 / fan_in)), fan_in = in_max for A and r
for B) from the fixed key `projection_seed` (peft's `projection_prng_key`; jax's generator, so other numbers with
the same distribution), frozen and not saved. Start as peft's: lambda_d = d_initial, lambda_b = 0 (the backbone).
Training draws eps from the run's 'dropout' random stream. Merge (peft's `merge_and_unload`, mean only, and
WiSE-FT's rule): K + s * (A[:in, :r] * lambda_d[:r]) B[:, :out] * lambda_b.

Parameters: encoder/pvera_a [in_max, 2r], encoder/pvera_b [r, out_max] (frozen); in the scope of the Dense's
parent (attn or mlp), for site in `targets`: pvera_<site>_lambda_d [2r], pvera_<site>_lambda_b [out].
"""
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.dora import SITES
from jpeft.peft.methods.inits import KAIMING_UNIFORM, ZEROS
from jpeft.peft.methods.vera import _sizes


@base.register
@dataclasses.dataclass(frozen=True)
class PVeRA(base.Method):
  """Shared frozen random A [in_max, 2r], B [r, out_max]; a Gaussian latent per Dense (see module doc)."""
  name: ClassVar[str] = "pvera"
  grid: ClassVar[dict] = {"rank": (64, 256, 1024)}
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR  # merge_factor 0 is the backbone
  rank: int = 256
  dropout: float = 0.0
  d_initial: float = 0.1
  projection_seed: int = 0
  targets: tuple[str, ...] = SITES

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
    key_a, key_b = jax.random.split(jax.random.key(self.projection_seed))
    # The run's initialisation key is ignored: the projections depend on projection_seed only.
    a = m.param("pvera_a", lambda _, shape: KAIMING_UNIFORM(key_a, shape), (in_max, 2 * self.rank))
    b = m.param("pvera_b", lambda _, shape: KAIMING_UNIFORM(key_b, shape), (self.rank, out_max))
    return a, b

  def label(self, path):
    if path[-1] in ("pvera_a", "pvera_b"):
      return base.FROZEN  # the shared random projections stay frozen, even under 'full'
    return super().label(path)

  def dense(self, m, where, z, y, ctx):
    if where not in self.targets:
      return y
    a, b = ctx.shared[self.name]
    lambda_d = m.param(f"pvera_{where}_lambda_d", nn.initializers.constant(self.d_initial), (2 * self.rank,))
    lambda_b = m.param(f"pvera_{where}_lambda_b", ZEROS, (y.shape[-1],))
    z = nn.Dropout(self.dropout)(z, ctx.deterministic)
    hidden = (z @ a[:z.shape[-1]].astype(y.dtype)) * lambda_d.astype(y.dtype)
    mu, logvar = hidden[..., :self.rank], hidden[..., self.rank:]
    latent = mu
    if not ctx.deterministic:
      eps = jax.random.normal(m.make_rng("dropout"), mu.shape, mu.dtype)
      latent = mu + eps * jnp.exp(0.5 * logvar)
    delta = (latent @ b[:, :y.shape[-1]].astype(y.dtype)) * lambda_b.astype(y.dtype)
    return y + ctx.merge_factor * delta

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    a, b = flat.pop("encoder/pvera_a"), flat.pop("encoder/pvera_b")
    for d_path in [p for p in flat if p.rsplit("/", 1)[-1].startswith("pvera_") and p.endswith("_lambda_d")]:
      scope, leaf = d_path.rsplit("/", 1)
      site = leaf[len("pvera_"):-len("_lambda_d")]
      kernel_path = f"{scope}/{site}/kernel"
      n_in, n_out = flat[kernel_path].shape
      lambda_d = flat.pop(d_path)[:self.rank]  # the mean half: merging keeps the expected update
      delta = (a[:n_in, :self.rank] * lambda_d) @ b[:, :n_out] * flat.pop(f"{scope}/pvera_{site}_lambda_b")
      flat[kernel_path] = flat[kernel_path] + merge_factor * delta
    return flat

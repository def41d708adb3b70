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

from jpeft.peft import base
from jpeft.peft.methods.vera import VeRA


@base.register
@dataclasses.dataclass(frozen=True)
class PVeRA(VeRA):
  """Shared frozen random A [in_max, 2r], B [r, out_max]; a Gaussian latent per Dense (see module doc). VeRA's
  hyperparameters, validation, projections, labels and merge, with parameters named pvera_*."""
  name: ClassVar[str] = "pvera"
  a_columns_per_rank: ClassVar[int] = 2  # (mu | logvar)

  def latent(self, m, hidden, ctx):
    mu, logvar = hidden[..., :self.rank], hidden[..., self.rank:]
    if ctx.deterministic:
      return mu
    eps = jax.random.normal(m.make_rng("dropout"), mu.shape, mu.dtype)
    return mu + eps * jnp.exp(0.5 * logvar)

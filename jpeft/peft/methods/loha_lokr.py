"""LyCORIS low-rank deltas: LoHa (Hadamard product of two low-rank matrices; Hyeon-Woo et al., 2022, FedPara) and
LoKr (Kronecker product; Yeh et al., 2024), as the PyTorch `peft` library (0.22.0, `peft/tuners/loha`,
`peft/tuners/lokr`) applies them to a timm ViT with target_modules = blocks.*.{attn.qkv, attn.proj, mlp.fc1,
mlp.fc2}: the fused qkv, the attention output projection and both MLP layers of every block (`targets`).

  y = W z + b + s * (alpha / rank) * Delta z,      s = merge_factor

Every 2-D parameter is the transpose of the library's parameter of the same name (kernels [in, out], as Flax's),
initialised like it (torch's kaiming_uniform(a=sqrt(5)) is `TORCH_LINEAR`), so the delta is zero at init. The
library's rank / module dropout (off by default) and LoKr's decompose_both / conv options are not offered.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from jpeft.peft import base
from jpeft.peft.methods.dense_delta import DenseDelta
from jpeft.peft.methods.inits import TORCH_LINEAR, ZEROS


@dataclasses.dataclass(frozen=True)
class _Scaled(DenseDelta):
  rank: int = 8
  alpha: float = 8.0  # the library's default: alpha / rank = 1 at rank 8

  def validate(self):
    super().validate()
    self.require_positive_int("rank")
    self.require_finite("alpha")


@base.register
@dataclasses.dataclass(frozen=True)
class LoHa(_Scaled):
  """Delta = (W1b W1a) * (W2b W2a) (elementwise), W*b [in, rank], W*a [rank, out]: rank^2-rank updates from
  2 rank (in + out) parameters per Dense. 'loha_<site>_{w1_a, w1_b, w2_a, w2_b}'; w2_b starts at zero."""
  name: ClassVar[str] = "loha"
  grid: ClassVar[dict] = {"rank": (1, 2, 4, 8)}

  def create(self, m, where, in_dim, out_dim):
    r = self.rank
    return {"w1_a": self.site_param(m, where, "w1_a", TORCH_LINEAR, (r, out_dim)),
            "w1_b": self.site_param(m, where, "w1_b", TORCH_LINEAR, (in_dim, r)),
            "w2_a": self.site_param(m, where, "w2_a", TORCH_LINEAR, (r, out_dim)),
            "w2_b": self.site_param(m, where, "w2_b", ZEROS, (in_dim, r))}

  def delta(self, p, kernel, merge_factor):
    product = (p["w1_b"] @ p["w1_a"]) * (p["w2_b"] @ p["w2_a"])
    return (merge_factor * self.alpha / self.rank) * product


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
  """The library's `lokr.layer.factorization`: dimension = m * n with m <= n; m = factor when it divides, else
  the divisor pair closest to the square root whose m does not exceed `factor` (-1: no limit)."""
  if factor > 0 and dimension % factor == 0:
    return factor, dimension // factor
  if factor == -1:
    factor = dimension
  m, n = 1, dimension
  length = m + n  # (never updated, as in the library: the bound is the trivial pair's sum)
  while m < n:
    new_m = m + 1
    while dimension % new_m:
      new_m += 1
    new_n = dimension // new_m
    if new_m + new_n > length or new_m > factor:
      break
    m, n = new_m, new_n
  return (n, m) if m > n else (m, n)


@base.register
@dataclasses.dataclass(frozen=True)
class LoKr(_Scaled):
  """Delta = W1 (x) W2 (Kronecker), with in = c d and out = a b from `factorization` (`decompose_factor`):
  W1 [c, a] full, zero at init ('lokr_<site>_w1'); W2 [d, b] full ('lokr_<site>_w2') when rank >= max(b, d) / 2,
  else W2b W2a, W2b [d, rank], W2a [rank, b] ('lokr_<site>_w2_b', '_w2_a'), as the library decides."""
  name: ClassVar[str] = "lokr"
  grid: ClassVar[dict] = {"rank": (1, 4, 8, 16)}
  decompose_factor: int = -1

  def validate(self):
    super().validate()
    self.require("decompose_factor", isinstance(self.decompose_factor, int) and
                 (self.decompose_factor == -1 or self.decompose_factor >= 1), "-1 (near the square root) or >= 1")

  def create(self, m, where, in_dim, out_dim):
    c, d = factorization(in_dim, self.decompose_factor)
    a, b = factorization(out_dim, self.decompose_factor)
    p = {"w1": self.site_param(m, where, "w1", ZEROS, (c, a))}
    if self.rank >= max(b, d) / 2:
      p["w2"] = self.site_param(m, where, "w2", TORCH_LINEAR, (d, b))
    else:
      p["w2_a"] = self.site_param(m, where, "w2_a", TORCH_LINEAR, (self.rank, b))
      p["w2_b"] = self.site_param(m, where, "w2_b", TORCH_LINEAR, (d, self.rank))
    return p

  def delta(self, p, kernel, merge_factor):
    w2 = p["w2"] if "w2" in p else p["w2_b"] @ p["w2_a"]
    return (merge_factor * self.alpha / self.rank) * jnp.kron(p["w1"], w2)

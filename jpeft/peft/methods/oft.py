"""Orthogonal fine-tuning: OFT (Qiu et al., 2023) and BOFT, its butterfly factorisation (Liu et al., 2024).

Both rotate the input of a frozen Dense by a learned orthogonal matrix R [in, in], y = (z R) W + b, i.e. the
kernel becomes R W. As the PyTorch `peft` library (0.22.0, `peft/tuners/oft`, `peft/tuners/boft`) applies them to
a timm ViT with target_modules = blocks.*.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2}: the fused qkv, the attention
output projection and both MLP layers of every block (`targets`), each with its own R. Parameter layouts are the
library's, so its state dict loads as is (BOFT's per-output scale is stored flat, [out] instead of [out, 1]).

With merge_factor s the rotation is I + s (R - I) (and BOFT's scale 1 + s (scale - 1)), so s = 1 is the method,
s = 0 the pretrained model, and merging folds the same weights.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.dense_delta import DenseDelta


def _cayley_neumann(q, terms: int):
  """The library's truncated Neumann series of Cayley's (I + Q)(I - Q)^-1: I + 2Q + 2Q^2 + ... + Q^(terms-1)."""
  r = jnp.broadcast_to(jnp.eye(q.shape[-1], dtype=q.dtype), q.shape)
  if terms > 1:
    r = r + 2 * q
    if terms > 2:
      power = q @ q
      r = r + 2 * power
      for _ in range(3, terms - 1):
        power = power @ q
        r = r + 2 * power
      r = r + power @ q
  return r


def _cayley(q):
  """Exact Cayley transform of skew-symmetric q [..., n, n], as the library: (I - Q)(I + Q)^-1 (orthogonal)."""
  eye = jnp.broadcast_to(jnp.eye(q.shape[-1], dtype=q.dtype), q.shape)
  # X (I + Q) = I - Q  <=>  (I + Q)^T X^T = (I - Q)^T
  return jnp.swapaxes(jnp.linalg.solve(jnp.swapaxes(eye + q, -1, -2), jnp.swapaxes(eye - q, -1, -2)), -1, -2)


def _rotate_rows(blocks, kernel):
  """blockdiag(blocks) @ kernel: blocks [n, b, b], kernel [n * b, out] -> [n * b, out]."""
  n, b, _ = blocks.shape
  return jnp.einsum("nij,njo->nio", blocks, kernel.reshape(n, b, -1)).reshape(kernel.shape)


def _require_divides(method: str, field: str, size: int, in_dim: int, where: str):
  if in_dim % size:
    raise ValueError(f"PEFT method '{method}': {field}={size} does not divide the input width {in_dim} of the "
                     f"Dense '{where}'. Choose a divisor of every targeted input width, e.g. "
                     f"--config.peft.{method}.block_size=8, or leave '{where}' out of targets.")


@base.register
@dataclasses.dataclass(frozen=True)
class OFT(DenseDelta):
  """OFT as the library's defaults: block-diagonal R = diag(R_1, ..., R_n), blocks of `block_size`, each the
  Cayley transform of a skew-symmetric Q_i; Q_i is stored as its strict upper triangle (row-major), so 'oft_<site>_r'
  is [in / block_size, block_size (block_size - 1) / 2], zeros at init (R = I: identity). With `cayley_neumann`
  (the library's default) R_i is the series of `_cayley_neumann` with `neumann_terms` terms, else the exact Cayley
  transform. The library's other options (coft, block_share, module_dropout) are left at their defaults (off).
  """
  name: ClassVar[str] = "oft"
  composition_position: ClassVar[str] = "first"  # R acts on the pretrained kernel
  grid: ClassVar[dict] = {"block_size": (4, 8, 16, 32)}
  block_size: int = 32
  cayley_neumann: bool = True
  neumann_terms: int = 5

  def validate(self):
    super().validate()
    self.require_positive_int("block_size")
    self.require("cayley_neumann", isinstance(self.cayley_neumann, bool), "True or False")
    self.require_positive_int("neumann_terms")

  def create(self, m, where, in_dim, out_dim):
    _require_divides(self.name, "block_size", self.block_size, in_dim, where)
    b = self.block_size
    return {"r": self.site_param(m, where, "r", nn.initializers.zeros, (in_dim // b, b * (b - 1) // 2))}

  def rotation_blocks(self, packed):
    """[n, b (b - 1) / 2] strict upper triangles -> the orthogonal blocks R_i [n, b, b]."""
    b = self.block_size
    # Q[i, j] = packed[k] above the diagonal, -packed[k] below, 0 on it: a gather from [0, packed...] (cheaper to
    # compile than a scatter).
    index, sign = np.zeros((b, b), np.int32), np.zeros((b, b), np.float32)
    rows, cols = np.triu_indices(b, 1)
    index[rows, cols] = index[cols, rows] = np.arange(1, len(rows) + 1)
    sign[rows, cols], sign[cols, rows] = 1, -1
    padded = jnp.concatenate([jnp.zeros_like(packed[:, :1]), packed], axis=1)
    q = padded[:, index] * sign.astype(packed.dtype)
    return _cayley_neumann(q, self.neumann_terms) if self.cayley_neumann else _cayley(q)

  def delta(self, p, kernel, merge_factor):
    blocks = self.rotation_blocks(p["r"])
    return merge_factor * _rotate_rows(blocks - jnp.eye(self.block_size, dtype=blocks.dtype), kernel)


def butterfly_perm(n: int, b: int, r: int, n_butterfly_factor: int) -> np.ndarray:
  """The library's `BOFTLayer.block_butterfly_perm`: within each of b groups of n / b indices, chunks of r are
  reordered evens first, then odds. Returns perm [n]; the factor's matrix is P B P^T with P[i, perm[i]] = 1."""
  if n_butterfly_factor == 0:
    return np.arange(n)
  size = n // b
  step = size / r
  order = np.concatenate([np.arange(0, step, 2), np.arange(1, step, 2)])
  sorted_order = np.concatenate([np.arange(size)[int(pos * r):int(pos * r + r)] for pos in order])
  return np.concatenate([np.arange(i, i + size)[sorted_order] for i in range(0, n, size)])


@base.register
@dataclasses.dataclass(frozen=True)
class BOFT(DenseDelta):
  """BOFT: R = B_m ... B_1 with m = `butterfly_factor` factors B_k = P_k diag(R_k1, ..., R_kn) P_k^T (the library's
  butterfly permutations P_k, `butterfly_perm`; m = 1 is block-diagonal OFT), each block the exact Cayley transform
  of 0.5 (A - A^T) for a free A; then a learned per-output scale: kernel -> (R W) * scale.
  Parameters 'boft_<site>_r' [m, in / block_size, block_size, block_size] (zeros: R = I) and 'boft_<site>_s' [out]
  (ones). (The library falls back to m = 1 when its CUDA block-diagonal extension does not build; this module
  computes every m.)
  """
  name: ClassVar[str] = "boft"
  composition_position: ClassVar[str] = "first"  # R acts on the pretrained kernel
  grid: ClassVar[dict] = {"block_size": (4, 8, 16), "butterfly_factor": (1, 2)}
  block_size: int = 4
  butterfly_factor: int = 1

  def validate(self):
    super().validate()
    self.require_positive_int("block_size")
    self.require_positive_int("butterfly_factor")
    self.require("block_size", self.butterfly_factor == 1 or self.block_size % 2 == 0,
                 "even when butterfly_factor > 1")

  def create(self, m, where, in_dim, out_dim):
    spread = self.block_size * 2 ** (self.butterfly_factor - 1)  # the width one butterfly mixes
    _require_divides(self.name, "block_size * 2^(butterfly_factor - 1)", spread, in_dim, where)
    if self.butterfly_factor > 1 and (in_dim // self.block_size) % 2:
      raise ValueError(f"PEFT method 'boft': the Dense '{where}' has {in_dim // self.block_size} blocks of "
                       f"{self.block_size}, an odd number, which butterfly_factor > 1 cannot pair: choose "
                       f"block_size so that {in_dim} / block_size is even.")
    n, b = in_dim // self.block_size, self.block_size
    return {"r": self.site_param(m, where, "r", nn.initializers.zeros, (self.butterfly_factor, n, b, b)),
            "s": self.site_param(m, where, "s", nn.initializers.ones, (out_dim,))}

  def rotate(self, free, kernel):
    """R @ kernel for free blocks [m, n, b, b], one butterfly factor at a time (never forming R)."""
    m, n, b, _ = free.shape
    skew = 0.5 * (free - jnp.swapaxes(free, -1, -2))
    blocks = _cayley(skew)
    for k in range(m):
      perm = butterfly_perm(n * b, n // 2 ** k, b // 2, m - 1)
      # P B P^T x = (B (x[inverse perm]))[perm], row-wise on the kernel.
      kernel = _rotate_rows(blocks[k], kernel[np.argsort(perm)])[perm]
    return kernel

  def delta(self, p, kernel, merge_factor):
    rotated = kernel + merge_factor * (self.rotate(p["r"], kernel) - kernel)
    return rotated * (1 + merge_factor * (p["s"] - 1)) - kernel

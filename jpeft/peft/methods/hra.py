"""HRA: Householder reflection adaptation (Yuan et al., NeurIPS 2024), as the PyTorch PEFT library (0.22.0,
`peft/tuners/hra`) computes it.

Where: every Dense of every block, qkv, proj, fc1 and fc2 (`targets`; peft's `HRAConfig(target_modules=...)` on a
timm ViT with those four block layers as targets). Each Dense's input is multiplied by a chain of r Householder
reflections H = H_1 ... H_r, H_i = I - 2 u_i u_i^T / ||u_i||^2, held in the compact WY form
H = I - V T V^T (V = the normalised columns of U [in, r], T [r, r] upper triangular with
T^-1 = I / 2 + triu(V^T V, 1)); with `apply_gs` the columns are orthonormalised first (V = Q of U = QR, T = 2 I):
H = I - 2 V V^T. In torch's layout the merged weight is W H; with jpeft's kernel K = W^T [in, out]:

  y = z H^T K + b,      merged kernel K + s (H^T K - K)       (s = merge_factor; s = 1 is peft's merge_and_unload)

Initialisation (peft's `init_weights=True`): for even r the columns come in equal pairs, u_{2i} = u_{2i+1}, each
drawn as torch's kaiming_uniform(a = sqrt(5)) draws a [in, r / 2] tensor (U(+-1 / sqrt(r / 2)), fan_in = r / 2
in torch's convention for a 2-D tensor), so each pair cancels and H = I; for odd r, U(+-1 / sqrt(r)) and no
identity (peft warns). Since H acts on the pretrained kernel, HRA comes first in a composition.

Parameters, in the scope of the Dense's parent (attn or mlp): hra_<site>_u [in, r] (peft's hra_u, same layout).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from jpeft.peft import base
from jpeft.peft.methods.dense_delta import DenseDelta


def _paired_uniform(key, shape, dtype=jnp.float32):
  """[in, r]: U(+-1/sqrt(r/2)) columns repeated in pairs for even r (H = I); U(+-1/sqrt(r)) for odd r."""
  n_in, r = shape
  if r % 2:
    bound = 1 / jnp.sqrt(r)
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  half = jax.random.uniform(key, (n_in, r // 2), dtype, -1 / jnp.sqrt(r // 2), 1 / jnp.sqrt(r // 2))
  return jnp.repeat(half, 2, axis=1)


def householder_wy(u, apply_gs: bool):
  """U [in, r] -> (V [in, r], T [r, r]) with H = I - V T V^T, as peft's `_get_householder_vt`."""
  eye = jnp.eye(u.shape[1], dtype=u.dtype)
  if apply_gs:
    return jnp.linalg.qr(u, mode="reduced")[0], 2 * eye
  v = u / jnp.linalg.norm(u, axis=0)
  t_inv = 0.5 * eye + jnp.triu(v.T @ v, k=1)
  return v, jax.scipy.linalg.solve_triangular(t_inv, eye, lower=False)


@base.register
@dataclasses.dataclass(frozen=True)
class HRA(DenseDelta):
  """r Householder reflections of each targeted Dense's input (see module doc)."""
  name: ClassVar[str] = "hra"
  composition_position: ClassVar[str] = "first"  # H acts on the pretrained kernel
  grid: ClassVar[dict] = {"rank": (2, 4, 8, 16)}
  rank: int = 8
  apply_gs: bool = False

  def validate(self):
    super().validate()
    self.require_positive_int("rank")
    self.require("apply_gs", isinstance(self.apply_gs, bool), "True or False")

  def create(self, m, where, in_dim, out_dim):
    return {"u": self.site_param(m, where, "u", _paired_uniform, (in_dim, self.rank))}

  def delta(self, p, kernel, merge_factor):
    v, t = householder_wy(p["u"].astype(jnp.float32), self.apply_gs)
    # H^T K - K = -V T^T V^T K
    return -merge_factor * (v @ (t.T @ (v.T @ kernel.astype(jnp.float32)))).astype(kernel.dtype)

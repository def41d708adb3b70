"""GLoRA: generalised LoRA (Chavan et al., 2023), as the PyTorch PEFT library (0.22.0, `peft/tuners/glora`)
computes it.

Where: every Dense of every block, qkv, proj, fc1 and fc2 (`targets`; peft's `GloraConfig(target_modules=...)` on a
timm ViT with those four block layers as targets). In torch's layout (W [out, in], b [out]) each Dense becomes

  W' = W + W * A + B,      b' = b + b * D + E + W C              (* elementwise, broadcast)

with each of A, B (`config_a_b`), C (`config_c`) and D, E (`config_d_e`) a path of peft's kinds:
  'lora'      A = Xd Xu, Xd [out, r] (zeros), Xu [r, in] (torch-Linear init, U(+-1/sqrt(in))); for C: [in, r] [r, 1]
              (Xu ~ U(+-1): torch's fan_in of a [r, 1] tensor is 1)
  'vector'    one value per output (A, B: [out, 1]; D, E: [out]) or per input (C: [in, 1]), zeros
  'constant'  one scalar, zero
  'none'      no parameters (zero)
peft's defaults: A, B 'lora', C 'lora', D, E 'constant', r = 8, every path starting at zero (`init_weights=True`:
the backbone). In jpeft's kernel layout K = W^T [in, out]:

  y = z K + b + s (z (K * A^T + B^T) + b * D + E + C^T K)      merged K + s (K * A^T + B^T), b + s (...)

(s = merge_factor: WiSE-FT's rule; s = 1 is peft's `merge_and_unload`). The update reads the pretrained W, so
GLoRA comes first in a composition.

Parameters, in the scope of the Dense's parent (attn or mlp), as transposes of peft's (jpeft kernels are
[in, out]): glora_<site>_{a,b}_u [in, r] (= Xu^T), glora_<site>_{a,b}_d [r, out] (= Xd^T), or glora_<site>_{a,b}
[out] (vector) / [] (constant); glora_<site>_c_u [1, r], glora_<site>_c_d [r, in] (lora) or glora_<site>_c [in];
glora_<site>_{d,e} [out] or [].
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.dora import SITES
from jpeft.peft.methods.inits import ZEROS

PATHS_AB = ("lora", "vector", "constant", "none")
PATHS_C = ("lora", "vector", "none")
PATHS_DE = ("vector", "constant", "none")


def _uniform(bound: float):
  return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)


@base.register
@dataclasses.dataclass(frozen=True)
class GLoRA(base.Method):
  """W' = W + W * A + B, b' = b + b * D + E + W C on every targeted Dense (see module doc)."""
  name: ClassVar[str] = "glora"
  grid: ClassVar[dict] = {"rank": (4, 8, 16)}
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR  # merge_factor 0 is the backbone
  composition_position: ClassVar[str] = "first"  # W * A and W C read the pretrained weight
  rank: int = 8
  config_a_b: str = "lora"
  config_c: str = "lora"
  config_d_e: str = "constant"
  targets: tuple[str, ...] = SITES

  def validate(self):
    self.require_positive_int("rank")
    self.require("config_a_b", self.config_a_b in PATHS_AB, f"one of {PATHS_AB}")
    self.require("config_c", self.config_c in PATHS_C, f"one of {PATHS_C}")
    self.require("config_d_e", self.config_d_e in PATHS_DE, f"one of {PATHS_DE}")
    self.require("targets", bool(self.targets) and set(self.targets) <= set(SITES) and
                 len(set(self.targets)) == len(self.targets), f"distinct Dense names from {SITES}")

  def _path(self, m, where: str, letter: str, kind: str, rows: int, cols: int):
    """Path `letter` as an array broadcastable to jpeft's [rows, cols] (A, B: [in, out]; C: [1, in] read as C^T;
    D, E: [out]), creating its parameters; None for 'none'."""
    prefix = f"glora_{where}_{letter}"
    if kind == "lora":
      u = m.param(f"{prefix}_u", _uniform(1 / math.sqrt(rows)), (rows, self.rank))
      return u @ m.param(f"{prefix}_d", ZEROS, (self.rank, cols))
    if kind == "vector":
      return m.param(prefix, ZEROS, (cols,))
    if kind == "constant":
      return m.param(prefix, ZEROS, ())
    return None

  def _paths(self, m, where: str, in_dim: int, out_dim: int) -> dict:
    return {"a": self._path(m, where, "a", self.config_a_b, in_dim, out_dim),
            "b": self._path(m, where, "b", self.config_a_b, in_dim, out_dim),
            "c": self._path(m, where, "c", self.config_c, 1, in_dim),  # C^T [1, in]; lora: Xu^T [1, r] U(+-1)
            "d": self._path(m, where, "d", self.config_d_e, 1, out_dim),
            "e": self._path(m, where, "e", self.config_d_e, 1, out_dim)}

  @staticmethod
  def _deltas(p: dict, kernel, bias):
    """(kernel delta [in, out], bias delta [out]) at merge_factor 1."""
    zero = jnp.zeros((), kernel.dtype)
    a, b, c, d, e = (zero if p[k] is None else p[k].astype(kernel.dtype) for k in "abcde")
    c_term = jnp.reshape(jnp.reshape(c, (1, -1)) @ kernel, (-1,)) if p["c"] is not None else zero
    return kernel * a + b, bias * d + e + c_term

  def dense(self, m, where, z, y, ctx):
    if where not in self.targets:
      return y
    weights = base.dense_weights(m, where)
    kernel, bias = weights["kernel"], weights["bias"]
    p = self._paths(m, where, *kernel.shape)
    d_kernel, d_bias = self._deltas(p, kernel, bias)
    return y + ctx.merge_factor * (z @ d_kernel.astype(z.dtype) + d_bias.astype(y.dtype))

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    sites: dict[tuple[str, str], dict] = {}
    for path in list(flat):
      scope, _, leaf = path.rpartition("/")
      if leaf.startswith("glora_"):
        site, field = leaf[len("glora_"):].split("_", 1)
        sites.setdefault((scope, site), {})[field] = flat.pop(path)
    for (scope, site), fields in sites.items():
      p = {}
      for letter in "abcde":
        if f"{letter}_u" in fields:
          p[letter] = fields[f"{letter}_u"] @ fields[f"{letter}_d"]
        else:
          p[letter] = fields.get(letter)
      kernel, bias = flat[f"{scope}/{site}/kernel"], flat[f"{scope}/{site}/bias"]
      d_kernel, d_bias = self._deltas(p, kernel, bias)
      flat[f"{scope}/{site}/kernel"] = kernel + merge_factor * d_kernel
      flat[f"{scope}/{site}/bias"] = bias + merge_factor * d_bias
    return flat

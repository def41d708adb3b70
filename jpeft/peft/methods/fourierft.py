"""FourierFT: fine-tuning in the Fourier domain (Gao et al., ICML 2024), as the PyTorch PEFT library (0.22.0,
`peft/tuners/fourierft`) computes it.

Where: every Dense of every block, qkv, proj, fc1 and fc2 (`targets`; peft's `FourierFTConfig(target_modules=...)`
on a timm ViT with those four block layers as targets). Each Dense learns n = `n_frequency` spectral coefficients
c at fixed random positions of its weight's 2-D spectrum; the weight update is the real part of the inverse 2-D
DFT of that sparse spectrum, times `scaling`:

  Delta W = scaling * Re(ifft2(S)),  S [out, in] zero but S[rows, cols] = c    (torch's layout, as peft)
  y = z K + b + s * z Delta W^T            (K = W^T jpeft's kernel; s = merge_factor; merged K + s Delta W^T)

The positions: n distinct entries of the [out, in] grid drawn from the fixed seed `random_loc_seed` (peft's
default 777), the same draw for every Dense of one shape, as peft's. They are drawn with numpy's generator, not
torch's `randperm`, so the positions differ from the library's (the distribution is the same); they are not
parameters but constants of the program, recomputed from the seed and the shape wherever the model is built.
Initialisation (peft's `init_weights`): False, the library's default, draws c ~ N(0, 1), so the model does not
start at the backbone; True starts at c = 0.

Parameters, in the scope of the Dense's parent (attn or mlp): fourierft_<site>_spectrum [n] (peft's
fourierft_spectrum).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.dense_delta import DenseDelta


@functools.lru_cache(maxsize=None)
def spectrum_positions(out_dim: int, in_dim: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(rows, cols) [n] of the learned coefficients in the [out, in] spectrum: n distinct cells from `seed`."""
  flat = np.random.default_rng(seed).permutation(out_dim * in_dim)[:n]
  return flat // in_dim, flat % in_dim


@base.register
@dataclasses.dataclass(frozen=True)
class FourierFT(DenseDelta):
  """n learned spectral coefficients per targeted Dense (see module doc)."""
  name: ClassVar[str] = "fourierft"
  grid: ClassVar[dict] = {"n_frequency": (1000, 3000, 10000)}
  n_frequency: int = 1000
  scaling: float = 150.0
  random_loc_seed: int = 777
  init_weights: bool = False

  def validate(self):
    super().validate()
    self.require_positive_int("n_frequency")
    self.require_finite("scaling")
    self.require("random_loc_seed", isinstance(self.random_loc_seed, int) and self.random_loc_seed >= 0,
                 "an integer >= 0")
    self.require("init_weights", isinstance(self.init_weights, bool), "True or False")

  def create(self, m, where, in_dim, out_dim):
    if self.n_frequency > in_dim * out_dim:
      raise ValueError(f"PEFT method 'fourierft': n_frequency={self.n_frequency} is more than the {in_dim * out_dim} "
                       f"weights of the Dense '{where}'. Choose at most that, or leave it out of targets.")
    init = nn.initializers.zeros if self.init_weights else nn.initializers.normal(1.0)
    return {"spectrum": self.site_param(m, where, "spectrum", init, (self.n_frequency,))}

  def delta(self, p, kernel, merge_factor):
    in_dim, out_dim = kernel.shape
    rows, cols = spectrum_positions(out_dim, in_dim, self.n_frequency, self.random_loc_seed)
    # ifft2 of the transposed spectrum is the transposed ifft2: build it [in, out], jpeft's kernel layout.
    dense = jnp.zeros((in_dim, out_dim), jnp.float32).at[cols, rows].set(p["spectrum"].astype(jnp.float32))
    return (merge_factor * self.scaling * jnp.fft.ifft2(dense).real).astype(kernel.dtype)

"""Position-embedding resampling, numerically the same as timm's `resample_abs_pos_embed` (bicubic).

PyTorch's `F.interpolate(mode='bicubic', align_corners=False)` uses Keys' cubic kernel with a = -0.75 and
clamps taps at the border; `jax.image.resize` uses a = -0.5 and renormalises at the border, which differs by
~1e-2 on real position embeddings. So the PyTorch kernel is written out here as one small matrix per axis.
With `antialias=True` (timm's default in `checkpoint_filter_fn`, which the study used to load DINOv2 at 224px)
PyTorch switches to PIL's separable filter: a = -0.5, the kernel stretched by the downscale factor, and each
output's weights renormalised (aten/src/ATen/native/cpu/UpSampleKernel.cpp, `_compute_indices_weights_aa`).
"""
from __future__ import annotations

import numpy as np

_A = -0.75  # PyTorch's bicubic coefficient (upsample_bicubic2d)
_A_ANTIALIAS = -0.5  # PyTorch's antialiased bicubic (PIL's)


def _cubic(d: np.ndarray, a: float = _A) -> np.ndarray:
  d = np.abs(d)
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
  return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def antialiased_bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] float64 weights of torch bicubic with antialias=True (align_corners=False)."""
  scale = size_in / size_out
  stretch = max(scale, 1.0)  # the kernel widens only when downsampling
  support = 2.0 * stretch
  weights = np.zeros((size_out, size_in))
  for i in range(size_out):
    centre = scale * (i + 0.5)
    # int() truncates toward zero, as the C++ int64 cast does.
    lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size_in)
    taps = _cubic((np.arange(lo, hi) - centre + 0.5) / stretch, _A_ANTIALIAS)
    weights[i, lo:hi] = taps / taps.sum()
  return weights


def bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] float64 weights such that `W @ v` resizes v as torch bicubic, align_corners=False."""
  # Half-pixel centres; for cubic PyTorch does not clamp the source coordinate at 0 (only the taps).
  src = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
  base = np.floor(src).astype(int)
  weights = np.zeros((size_out, size_in))
  for tap in range(-1, 3):
    index = np.clip(base + tap, 0, size_in - 1)
    np.add.at(weights, (np.arange(size_out), index), _cubic(src - (base + tap)))
  return weights


def resample_pos_embedding(pos: np.ndarray, new_grid: tuple[int, int], old_grid: tuple[int, int] | None = None,
                           num_prefix_tokens: int = 1, antialias: bool = False) -> np.ndarray:
  """pos [1, prefix + h*w, D] -> [1, prefix + H*W, D] on the grid new_grid = (H, W); prefix (CLS) rows kept.

  old_grid defaults to the square grid the token count implies. antialias: torch's antialiased bicubic (see the
  module docstring). Computed in float64, returned in pos.dtype.
  """
  prefix, grid = pos[:, :num_prefix_tokens], pos[0, num_prefix_tokens:].astype(np.float64)
  if old_grid is None:
    side = int(round(np.sqrt(grid.shape[0])))
    old_grid = (side, side)
  if old_grid[0] * old_grid[1] != grid.shape[0]:
    raise ValueError(f"pos_embedding has {grid.shape[0]} grid tokens, which is not a {old_grid[0]}x{old_grid[1]} "
                     "grid; pass old_grid.")
  grid = grid.reshape(old_grid[0], old_grid[1], -1)
  matrix = antialiased_bicubic_matrix if antialias else bicubic_matrix
  rows, cols = matrix(old_grid[0], new_grid[0]), matrix(old_grid[1], new_grid[1])
  out = np.einsum("Hh,hwd,Ww->HWd", rows, grid, cols).reshape(1, new_grid[0] * new_grid[1], -1)
  return np.concatenate([prefix, out.astype(pos.dtype)], axis=1)

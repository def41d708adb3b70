"""RoAd: 2D rotary adaptation (Liao et al., 2024), as the PyTorch PEFT library (0.22.0, `peft/tuners/road`)
computes it.

Where: every Dense of every block, qkv, proj, fc1 and fc2 (`targets`; peft's `RoadConfig(target_modules=...)` on a
timm ViT with those four block layers as targets). The Dense's output y [.., out] (bias included) is cut into
groups of `group_size`; inside a group, element i of the first half and element i of the second half form a pair
(x1, x2) that is rotated and scaled:

  (x1, x2) -> (c1 x1 - s2 x2, c2 x2 + s1 x1)    c = alpha cos(theta), s = alpha sin(theta), per output element

i.e. y' = y * c + rotate_half(y) * s with rotate_half(y) = (-x2, x1) per group (peft's `_apply_road`), a
block-diagonal matrix R with y' = R y. `variant` sets how many parameters c and s share (peft's): 'road_1', one
(theta, alpha) per pair, [out / 2] each; 'road_2', one per element, [out]; 'road_4', separate (theta, alpha)
for cos and sin, [2 out] laid out per group as [cos part | sin part].
Initialisation: theta = 0, alpha = 1 (R = I). With merge_factor s: y + s (R y - y); merged W <- W + s (R W - W)
and b <- b + s (R b - b) in torch's layout (peft's `merge_and_unload` at s = 1), i.e. jpeft's kernel
K <- K + s (K R^T - K).

Parameters, in the scope of the Dense's parent (attn or mlp): road_<site>_theta, road_<site>_alpha (peft's
road_theta, road_alpha, same layout).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.dora import SITES

VARIANTS = {"road_1": 0.5, "road_2": 1, "road_4": 2}  # parameters per output element, of theta and of alpha


def road_cols(variant: str, group_size: int, theta, alpha):
  """(c, s) [out]: the multipliers of y and of rotate_half(y), as peft's `_prepare_cols`."""
  if variant == "road_1":
    theta = jnp.repeat(theta.reshape(-1, group_size // 2), 2, axis=0).reshape(-1)
    alpha = jnp.repeat(alpha.reshape(-1, group_size // 2), 2, axis=0).reshape(-1)
  if variant in ("road_1", "road_2"):
    return alpha * jnp.cos(theta), alpha * jnp.sin(theta)
  theta, alpha = theta.reshape(-1, 2, group_size), alpha.reshape(-1, 2, group_size)
  return (alpha[:, 0] * jnp.cos(theta[:, 0])).reshape(-1), (alpha[:, 1] * jnp.sin(theta[:, 1])).reshape(-1)


def rotate_half(y, group_size: int):
  """[..., out] -> per group of `group_size`, halves (x1, x2) -> (-x2, x1)."""
  grouped = y.reshape(*y.shape[:-1], -1, 2, group_size // 2)
  return jnp.stack([-grouped[..., 1, :], grouped[..., 0, :]], axis=-2).reshape(y.shape)


@base.register
@dataclasses.dataclass(frozen=True)
class RoAd(base.Method):
  """Per-group 2D rotations and scalings of every targeted Dense's output (see module doc)."""
  name: ClassVar[str] = "road"
  grid: ClassVar[dict] = {"variant": ("road_1", "road_2", "road_4")}
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR  # merge_factor 0 is the backbone
  variant: str = "road_1"
  group_size: int = 64
  targets: tuple[str, ...] = SITES

  def validate(self):
    self.require("variant", self.variant in VARIANTS, f"one of {tuple(VARIANTS)}")
    self.require("group_size", isinstance(self.group_size, int) and self.group_size >= 2 and
                 self.group_size % 2 == 0, "an even integer >= 2")
    self.require("targets", bool(self.targets) and set(self.targets) <= set(SITES) and
                 len(set(self.targets)) == len(self.targets), f"distinct Dense names from {SITES}")

  def _road(self, theta, alpha, y):
    c, s = road_cols(self.variant, self.group_size, theta.astype(y.dtype), alpha.astype(y.dtype))
    return y * c + rotate_half(y, self.group_size) * s

  def dense(self, m, where, z, y, ctx):
    if where not in self.targets:
      return y
    out = y.shape[-1]
    if out % self.group_size:
      raise ValueError(f"PEFT method 'road': group_size={self.group_size} does not divide the output width {out} "
                       f"of the Dense '{where}'. Choose a divisor of every targeted output width, e.g. "
                       "--config.peft.road.group_size=8, or leave it out of targets.")
    size = int(out * VARIANTS[self.variant])
    theta = m.param(f"road_{where}_theta", nn.initializers.zeros, (size,))
    alpha = m.param(f"road_{where}_alpha", nn.initializers.ones, (size,))
    return y + ctx.merge_factor * (self._road(theta, alpha, y) - y)

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    for theta_path in [p for p in flat if p.rsplit("/", 1)[-1].startswith("road_") and p.endswith("_theta")]:
      scope, leaf = theta_path.rsplit("/", 1)
      site = leaf[len("road_"):-len("_theta")]
      theta, alpha = flat.pop(theta_path), flat.pop(f"{scope}/road_{site}_alpha")
      for name in ("kernel", "bias"):  # R acts on the output axis, the last of both
        value = flat[f"{scope}/{site}/{name}"]
        flat[f"{scope}/{site}/{name}"] = value + merge_factor * (self._road(theta, alpha, value) - value)
    return flat

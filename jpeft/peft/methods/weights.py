"""Methods that unfreeze pretrained weights instead of inserting modules (plus DiffFit's gammas).

They select plain-ViT parameters by exact path components (module name, then 'bias' / 'scale'), never by
substring, so block_1 does not also select block_10.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from flax import linen as nn

from jpeft.peft import base

# Plain-ViT modules with a bias (the head is labelled separately) and the LayerNorms (`ln_pre`: CLIP only).
_DENSE_OR_CONV = ("embedding", "qkv", "proj", "fc1", "fc2")
_NORMS = ("ln1", "ln2", "norm", "ln_pre")


def _is_bias(path: tuple[str, ...]) -> bool:
  return len(path) >= 2 and path[-1] == "bias" and path[-2] in _DENSE_OR_CONV + _NORMS


def _is_norm(path: tuple[str, ...]) -> bool:
  return len(path) >= 2 and path[-2] in _NORMS


class _NothingInserted(base.Method):
  """Shared by methods that only unfreeze pretrained weights: merging leaves the weights as they are."""
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_INTERPOLATE

  def merge(self, flat, merge_factor=1.0):
    return flat


@base.register
@dataclasses.dataclass(frozen=True)
class Linear(_NothingInserted):
  """Linear probing: the head alone is trained."""
  name: ClassVar[str] = "linear"

  def label(self, path):
    return None


@base.register
@dataclasses.dataclass(frozen=True)
class Full(_NothingInserted):
  """Full fine-tuning: every pretrained weight is trainable (group 'backbone')."""
  name: ClassVar[str] = "full"

  def label(self, path):
    return base.BACKBONE


@base.register
@dataclasses.dataclass(frozen=True)
class BitFit(_NothingInserted):
  """Every bias: qkv, proj, fc1, fc2, patch embedding and the LayerNorm biases (Zaken et al., 2022)."""
  name: ClassVar[str] = "bitfit"

  def label(self, path):
    return base.BACKBONE if _is_bias(path) else None


@base.register
@dataclasses.dataclass(frozen=True)
class LayerNorm(_NothingInserted):
  """Scale and bias of every LayerNorm."""
  name: ClassVar[str] = "layernorm"

  def label(self, path):
    return base.BACKBONE if _is_norm(path) else None


@base.register
@dataclasses.dataclass(frozen=True)
class DiffFit(base.Method):
  """BitFit + every LayerNorm + per-block residual gammas (Xie et al., 2023):
  x <- x + gamma1 * DP(Attn(.)); x <- x + gamma2 * DP(MLP(.)), gammas in R^D initialised to 1.

  With merge_factor s the branch scale is 1 + s * (gamma - 1), so s = 0 is the pretrained block.
  """
  name: ClassVar[str] = "difffit"
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR
  merge_order: ClassVar[int] = 1
  _GAMMA: ClassVar[dict] = {"attn": "difffit_gamma1", "mlp": "difffit_gamma2"}
  _FOLD_INTO: ClassVar[dict] = {"attn": "attn/proj", "mlp": "mlp/fc2"}

  def after_sublayer(self, m, where, h, ctx):
    gamma = m.param(self._GAMMA[where], nn.initializers.ones, (h.shape[-1],))
    return h * (1 + ctx.merge_factor * (gamma - 1)).astype(h.dtype)

  def label(self, path):
    if super().label(path):
      return base.PEFT
    return base.BACKBONE if _is_bias(path) or _is_norm(path) else None

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    for gamma_path in [p for p in flat if p.rsplit("/", 1)[-1] in self._GAMMA.values()]:
      block = gamma_path.rsplit("/", 1)[0]
      where = "attn" if gamma_path.endswith(self._GAMMA["attn"]) else "mlp"
      scale = 1 + merge_factor * (flat.pop(gamma_path) - 1)
      dense = f"{block}/{self._FOLD_INTO[where]}"
      flat[f"{dense}/kernel"] = flat[f"{dense}/kernel"] * scale
      flat[f"{dense}/bias"] = flat[f"{dense}/bias"] * scale
    return flat


@base.register
@dataclasses.dataclass(frozen=True)
class Selective(_NothingInserted):
  """Selective tuning: unfreeze the chosen parts of the chosen blocks (group 'backbone').

  Attributes:
    blocks: block indices (0-based, exact: 1 selects block_1 only).
    parts: any of 'attn' (qkv + proj), 'qkv', 'proj', 'mlp' (fc1 + fc2), 'fc1', 'fc2', 'ln' (ln1 + ln2); each
      a Dense (kernel and bias) or LayerNorm (scale and bias), matched by exact path components. On a
      LayerScale backbone (DINOv2) 'attn' and 'mlp' also take their sublayer's gain (ls1 / ls2), which is the
      last weight of that residual branch.
  """
  name: ClassVar[str] = "selective"
  # part -> module paths inside a block, each a tuple of exact path components.
  _PARTS: ClassVar[dict] = {"attn": (("attn",), ("ls1",)), "qkv": (("attn", "qkv"),),
                            "proj": (("attn", "proj"),), "mlp": (("mlp",), ("ls2",)), "fc1": (("mlp", "fc1"),),
                            "fc2": (("mlp", "fc2"),),
                            "ln": (("ln1",), ("ln2",))}
  blocks: tuple[int, ...] = (0,)
  parts: tuple[str, ...] = ("attn", "mlp", "ln")

  def validate(self):
    self.require("blocks", isinstance(self.blocks, tuple) and len(self.blocks) > 0 and
                 all(isinstance(b, int) and b >= 0 for b in self.blocks),
                 "a non-empty tuple of block indices >= 0, e.g. (0, 11)")
    self.require("parts", isinstance(self.parts, tuple) and len(self.parts) > 0 and
                 set(self.parts) <= set(self._PARTS), f"a non-empty tuple of {sorted(self._PARTS)}")

  def shared(self, m, ctx):
    # The first point where the depth is known: reject indices the model does not have.
    self.require("blocks", max(self.blocks) < ctx.depth, f"block indices in [0, {ctx.depth - 1}] "
                 f"(the model has {ctx.depth} blocks)")
    return None

  def label(self, path):
    selected = {f"block_{b}" for b in self.blocks}
    if len(path) < 3 or path[0] != "encoder" or path[1] not in selected:
      return None
    inside = path[2:]
    modules = [module for part in self.parts for module in self._PARTS[part]]
    return base.BACKBONE if any(inside[:len(module)] == module for module in modules) else None

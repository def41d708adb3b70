"""Folding trained PEFT parameters into plain ViT weights (re-parameterisation)."""
from __future__ import annotations

from typing import Mapping, Sequence

from jpeft.peft import base, partition


def merge(params: Mapping, methods: Sequence[base.Method], merge_factor=1.0) -> dict:
  """Nested params of a model with `methods` -> nested params of the plain ViT computing the same logits.

  Every method must be re-parameterisable (`Method.mergeable`); they fold in `merge_order`, so that e.g.
  LoRA's delta, which reads the qkv input, is folded before an SSF scale on the qkv output. The result is
  what the unmerged model computes at `merge_factor` (evaluation mode: no dropout).
  """
  blocked = [m.name for m in methods if not m.mergeable]
  if blocked:
    mergeable = sorted(name for name, cls in base.registry().items() if cls.mergeable)
    raise ValueError(f"Cannot merge PEFT method(s) {blocked}: they add computation no plain ViT weight can "
                     f"express. Re-parameterisable methods: {mergeable}.")
  flat = dict(partition.flatten(params))
  for method in sorted(methods, key=lambda m: m.merge_order):
    flat = method.merge(flat, merge_factor)
  return partition.unflatten(flat)

"""Folding trained PEFT parameters into plain ViT weights (re-parameterisation)."""
from __future__ import annotations

from typing import Mapping, Sequence

from jpeft.peft import base, partition


def merge(params: Mapping, methods: Sequence[base.Method], merge_factor=1.0) -> dict:
  """Nested params of a model with `methods` -> nested params of the plain ViT computing the same logits.

  Every method must be re-parameterisable (`Method.mergeable`); they fold in `merge_order`, then in the
  given order (the order their hooks run in), so that e.g. 'lora+ssf' folds LoRA's delta before SSF's scale
  of the qkv output, and RepAdapter's rewrite of the qkv input comes after both. The result is
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

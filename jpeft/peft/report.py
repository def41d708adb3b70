"""Trainable-parameter counts, like the PyTorch PEFT library's `print_trainable_parameters`."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from jpeft.peft import base, partition

_GROUPS = (base.HEAD, base.PEFT, base.BACKBONE, base.FROZEN)


def count_params(params: Mapping, labels: Mapping[str, str]) -> dict[str, int]:
  """{'trainable', 'total', one entry per group in `_GROUPS`, and 'peft_b'} -> number of scalars.

  'peft' counts every parameter a method inserted and trains, LoRA's B factors included; 'peft_b' is that part
  of them in LoRA+'s own learning-rate group (`base.PEFT_B`).
  params: nested or flat parameters (arrays or `jax.ShapeDtypeStruct`s); labels: flat {path: group}.
  """
  flat = partition.flatten(params)
  counts = {group: 0 for group in (*_GROUPS, base.PEFT_B)}
  for path, leaf in flat.items():
    counts[labels[path]] += int(np.prod(leaf.shape))
  counts[base.PEFT] += counts[base.PEFT_B]
  counts["total"] = sum(counts[g] for g in _GROUPS)
  counts["trainable"] = counts["total"] - counts[base.FROZEN]
  return counts


def summary(params: Mapping, labels: Mapping[str, str]) -> str:
  """'trainable params: 294,912 || all params: 86,093,578 || trainable%: 0.3425' and one line per group."""
  c = count_params(params, labels)
  lines = [f"trainable params: {c['trainable']:,} || all params: {c['total']:,} || "
           f"trainable%: {100 * c['trainable'] / max(c['total'], 1):.4f}"]
  for group in _GROUPS:
    lines.append(f"  {group}: {c[group]:,}")
    if group == base.PEFT and c[base.PEFT_B]:  # only where a method has the group (LoRA)
      lines.append(f"    of which peft_b (LoRA's B, at optim.lr_mult.peft_b): {c[base.PEFT_B]:,}")
  return "\n".join(lines)

"""Trainable-parameter counts, like the PyTorch PEFT library's `print_trainable_parameters`."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from jpeft.peft import base, partition

_GROUPS = (base.HEAD, base.PEFT, base.PEFT_B, base.BACKBONE, base.FROZEN)


def count_params(params: Mapping, labels: Mapping[str, str]) -> dict[str, int]:
  """{'trainable', 'total', and one entry per group in `_GROUPS`} -> number of scalars.

  params: nested or flat parameters (arrays or `jax.ShapeDtypeStruct`s); labels: flat {path: group}.
  """
  flat = partition.flatten(params)
  counts = {group: 0 for group in _GROUPS}
  for path, leaf in flat.items():
    counts[labels[path]] += int(np.prod(leaf.shape))
  counts["total"] = sum(counts[g] for g in _GROUPS)
  counts["trainable"] = counts["total"] - counts[base.FROZEN]
  return counts


def summary(params: Mapping, labels: Mapping[str, str]) -> str:
  """'trainable params: 294,912 || all params: 86,093,578 || trainable%: 0.3425' and one line per group."""
  c = count_params(params, labels)
  lines = [f"trainable params: {c['trainable']:,} || all params: {c['total']:,} || "
           f"trainable%: {100 * c['trainable'] / max(c['total'], 1):.4f}"]
  # peft_b (LoRA's B factors, LoRA+'s group) only where a method has it, so other methods' summaries keep their form
  lines += [f"  {group}: {c[group]:,}" for group in _GROUPS if group != base.PEFT_B or c[group]]
  return "\n".join(lines)

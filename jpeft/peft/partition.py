"""Trainable / frozen partition of a parameter tree, from the methods' labels.

Parameters are handled as flat dicts keyed by '/'-joined paths ('encoder/block_0/attn/qkv/kernel'), so the
trainable subset is a plain pytree that `jax.grad`, optax and orbax see alone: frozen weights get no gradient
computation and no optimizer state.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from flax import traverse_util

from jpeft.peft import base


def flatten(params: Mapping) -> dict[str, object]:
  """Nested params -> {'a/b/c': leaf}."""
  return traverse_util.flatten_dict(dict(params), sep="/")


def unflatten(flat: Mapping[str, object]) -> dict:
  return traverse_util.unflatten_dict(dict(flat), sep="/")


def label_params(params: Mapping, methods: Sequence[base.Method]) -> dict[str, str]:
  """Flat labels {path: group}: 'head' for the classifier, the first method's label that claims a path,
  else 'frozen'."""
  labels = {}
  for path in flatten(params):
    keys = tuple(path.split("/"))
    label = base.HEAD if keys[0] == "head" else None
    for method in methods:
      if label is None:
        label = method.label(keys)
    labels[path] = label or base.FROZEN
  return labels


def split(params: Mapping, labels: Mapping[str, str]) -> tuple[dict, dict]:
  """Nested params -> (trainable flat dict, frozen flat dict)."""
  flat = flatten(params)
  trainable = {k: v for k, v in flat.items() if labels[k] != base.FROZEN}
  frozen = {k: v for k, v in flat.items() if labels[k] == base.FROZEN}
  return trainable, frozen


def combine(trainable: Mapping, frozen: Mapping) -> dict:
  """Inverse of `split`: the nested params the model applies."""
  return unflatten({**frozen, **trainable})

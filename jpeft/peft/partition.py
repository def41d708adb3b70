"""Trainable / frozen partition of a parameter tree, from the methods' labels.

Parameters are handled as flat dicts keyed by '/'-joined paths ('encoder/block_0/attn/qkv/kernel'), so the
trainable subset is a plain pytree that `jax.grad`, optax and orbax see alone: frozen weights get no gradient
computation and no optimizer state.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import optax
from flax import traverse_util

from jpeft.peft import base


def flatten(params: Mapping) -> dict[str, object]:
  """Nested params -> {'a/b/c': leaf}."""
  return traverse_util.flatten_dict(dict(params), sep="/")


def unflatten(flat: Mapping[str, object]) -> dict:
  return traverse_util.unflatten_dict(dict(flat), sep="/")


# When several methods claim a path, the most specific group wins: a module a method inserted stays 'peft' (or
# 'peft_b', LoRA's B factors) even under 'full', which claims every path as 'backbone'; and a parameter its method
# claims as 'frozen' (derived or random by definition: VeRA's projections, PiSSA's principal factors) stays frozen
# whatever else is trained.
_PRIORITY = (base.FROZEN, base.HEAD, base.PEFT_B, base.PEFT, base.BACKBONE)


# The classifier: the head, and CLIP's visual projection when a model keeps it (the study's robustness head is
# projection + text-initialised linear layer, trained by every method; see jpeft/zeroshot).
HEAD_MODULES = ("head", "proj")


def label_params(params: Mapping, methods: Sequence[base.Method]) -> dict[str, str]:
  """Flat labels {path: group}: 'head' for the classifier (HEAD_MODULES); else the highest-priority group any
  method claims ('frozen' over 'peft' over 'backbone'); else 'frozen'."""
  labels = {}
  for path in flatten(params):
    keys = tuple(path.split("/"))
    claims = {base.HEAD} if keys[0] in HEAD_MODULES else {method.label(keys) for method in methods}
    labels[path] = next((group for group in _PRIORITY if group in claims), base.FROZEN)
  return labels


def trainable_groups(labels: Mapping[str, str]) -> dict[str, str]:
  """{path: group} restricted to trainable paths: the label tree of the trainable flat dict."""
  return {path: group for path, group in labels.items() if group != base.FROZEN}


def make_optimizer(labels: Mapping[str, str], tx_factory: Callable[[float], optax.GradientTransformation],
                   lr_mult: Mapping[str, float]) -> optax.GradientTransformation:
  """One optimizer per trainable group via `optax.multi_transform`, for the trainable flat dict only.

  Args:
    labels: flat {path: group} from `label_params` (frozen paths are dropped: they have no state).
    tx_factory: learning-rate multiplier -> transformation, e.g.
      `lambda mult: optax.inject_hyperparams(optax.adamw)(learning_rate=lr * mult, weight_decay=wd)`.
    lr_mult: group -> multiplier (`config.optim.lr_mult`).
  """
  groups = trainable_groups(labels)
  missing = sorted(set(groups.values()) - set(lr_mult))
  if missing:
    raise ValueError(f"No learning-rate multiplier for trainable group(s) {missing}: add them to "
                     f"config.optim.lr_mult (has {sorted(lr_mult)}).")
  transforms = {group: tx_factory(float(lr_mult[group])) for group in sorted(set(groups.values()))}
  return optax.multi_transform(transforms, groups)


def split(params: Mapping, labels: Mapping[str, str]) -> tuple[dict, dict]:
  """Nested params -> (trainable flat dict, frozen flat dict)."""
  flat = flatten(params)
  trainable = {k: v for k, v in flat.items() if labels[k] != base.FROZEN}
  frozen = {k: v for k, v in flat.items() if labels[k] == base.FROZEN}
  return trainable, frozen


def combine(trainable: Mapping, frozen: Mapping) -> dict:
  """Inverse of `split`: the nested params the model applies."""
  return unflatten({**frozen, **trainable})

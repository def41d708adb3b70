"""A run that starts from a PyTorch PEFT adapter: `--config.init_from.peft=DIR` (`jpeft.finetune(init_from_peft=DIR)`).

DIR is what the library's `save_pretrained` writes for a timm ViT (adapter_config.json +
adapter_model.safetensors; mapping in `jpeft.export.peft_format`). The run's model is built as usual (backbone
from `pretrained`), then the adapter's tensors replace the method's initial parameters, and its head
(modules_to_save) the initial head when it fits the task and `init_from.head` is true. VeRA's shared projections
come from the adapter too (they are frozen, so a resumed, evaluated or exported run re-reads them from DIR).
So mode 'eval' evaluates the adapter as it is, and a training mode continues training it.

The run's `method` and its hyperparameters must be the adapter's (training-only ones may differ: dropout,
VeRA's d_initial and projection_seed); a mismatch, a method jpeft lacks, or a base model of other shapes is
one error naming it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from absl import logging

from jpeft.export import peft_export, peft_format
from jpeft.peft import base, partition
from jpeft.train.errors import ConfigError

# Hyperparameters that only shape training or initialisation: the adapter's trained tensors mean the same.
_TRAINING_ONLY = ("dropout", "d_initial", "projection_seed")
_WHAT = "--config.init_from.peft"


def _flags(name: str, method: base.Method) -> str:
  fields = {f.name: getattr(method, f.name) for f in dataclasses.fields(method) if f.name not in _TRAINING_ONLY}
  return " ".join([f"--config.method={name}"] + [f"--config.peft.{name}.{k}={v!r}".replace(" ", "")
                                                 for k, v in fields.items()])


def adapter_method(directory: str) -> tuple[str, dict[str, Any]]:
  """(method, hyperparameters) of the adapter in `directory` (for `jpeft.finetune(init_from_peft=...)`)."""
  config, tensors = peft_export.read_adapter(directory, _WHAT)
  return peft_format.method_of(config, tensors, f"{_WHAT}={directory!r}")


def load_into(config, params: dict, methods: tuple[base.Method, ...], num_classes: int) -> dict:
  """Nested `params` of the run's freshly built model with the adapter in `config.init_from.peft` in place.

  Raises ConfigError (or PeftFormatError, a RunError too) naming what does not fit: both init_from sources set,
  the run's method or hyperparameters, a tensor of another shape (another base model)."""
  directory = config.init_from.peft
  if config.init_from.workdir:
    raise ConfigError(f"--config.init_from.workdir and {_WHAT} are both set: a run starts from one of them.")
  where = f"{_WHAT}={directory!r}"
  adapter_config, tensors = peft_export.read_adapter(directory, _WHAT)
  name, hparams = peft_format.method_of(adapter_config, tensors, where)
  (method,) = _build(name, hparams, where)
  if len(methods) != 1 or type(methods[0]) is not type(method) or dataclasses.replace(methods[0], **{
      k: getattr(method, k) for k in _TRAINING_ONLY if hasattr(method, k)}) != method:
    raise ConfigError(f"{where} is a {name} adapter ({_describe(method)}), but this run's method is "
                      f"{'+'.join(m.name for m in methods) or 'linear'}"
                      f"{f' ({_describe(methods[0])})' if len(methods) == 1 else ''}. Run it with "
                      f"{_flags(name, method)}.")
  flat = partition.flatten(params)
  depth = sum(1 for k in flat if k.endswith("/attn/qkv/kernel"))
  own = peft_format.from_peft(method, adapter_config, tensors, flat, depth)
  labels = partition.label_params(params, methods)
  projections = {"encoder/vera_a", "encoder/vera_b"} & set(own)  # frozen, but VeRA's own
  expected = {k for k, group in labels.items() if group in (base.PEFT, base.PEFT_B)} | projections
  got = {k for k in own if not k.startswith("head/")}
  if got != expected:
    raise ConfigError(f"{where} does not fit this model: missing {sorted(expected - got)[:4]}, unexpected "
                      f"{sorted(got - expected)[:4]}. It was trained on another base model (jpeft builds "
                      f"{config.model.variant!r}).")
  misfit = [f"{k} is {tuple(own[k].shape)} there but {tuple(np.shape(flat[k]))} here" for k in sorted(got)
            if tuple(own[k].shape) != tuple(np.shape(flat[k]))]
  if misfit:
    raise ConfigError(f"{where} does not fit this model ({config.model.variant!r}): {'; '.join(misfit[:3])}. It "
                      "was trained on a base model of other sizes; set model.variant (and pretrained) to its base.")
  head = {k: v for k, v in own.items() if k.startswith("head/")}
  fits = bool(head) and head["head/kernel"].shape == tuple(np.shape(flat["head/kernel"]))
  if config.mode == "eval" and not fits:
    has = f"has {head['head/bias'].shape[0]} classes" if head else "has none (no modules_to_save)"
    raise ConfigError(f"mode 'eval' with {where} evaluates the adapter's head, which {has}, where task "
                      f"'{config.task}' has {num_classes}. Evaluate on a task with its classes, or train a new "
                      "head with --config.mode=tune or final.")
  if not head:
    logging.warning("%s has no head (modules_to_save); this run starts from a new head.", where)
  elif not config.init_from.head:
    head = {}
  elif not fits:
    logging.warning("%s has a head for %d classes; this task has %d: this run starts from a new head.", where,
                    head["head/kernel"].shape[1], num_classes)
    head = {}
  flat.update({k: own[k].astype(np.asarray(flat[k]).dtype) for k in got})
  flat.update(head)
  logging.info("Started from the %s adapter in %s (head: %s).", name, os.path.abspath(directory),
               "the adapter's" if head else "new")
  return partition.unflatten(flat)


def _build(name: str, hparams: dict, where: str) -> tuple[base.Method, ...]:
  from jpeft import peft  # pylint: disable=import-outside-toplevel  (jpeft.peft imports the methods)
  try:
    return peft.build_methods(name, {name: hparams})
  except ValueError as e:
    raise peft_format.PeftFormatError(f"{where}: jpeft's {name} cannot take the adapter's settings: {e}") from None


def _describe(method: base.Method) -> str:
  return ", ".join(f"{f.name}={getattr(method, f.name)!r}" for f in dataclasses.fields(method)
                   if f.name not in _TRAINING_ONLY)

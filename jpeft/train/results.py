"""What a run writes besides checkpoints and metrics: result JSON files, predictions, the merged model.

A training run writes `result.json` and `logits_<split>.npy` / `labels_<split>.npy`; mode 'eval' writes
`eval_<split>.json` and `eval_logits_<split>.npy` / `eval_labels_<split>.npy`, so evaluating a run again never
replaces the files of its training.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Iterable, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from jpeft import peft
from jpeft.peft import base, partition
from jpeft.train import errors

EVAL_PREFIX = "eval_"


def write_json(path: str, obj: dict) -> None:
  """Writes `obj` atomically (a crash never leaves a half-written file); WriteError names `path` if it fails."""
  tmp = path + ".tmp"
  with errors.writing(path):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)


def write_csv(path: str, rows: Iterable[dict], columns: Sequence[str]) -> None:
  """A table as CSV, one row per dict with `columns` in order (a missing key: empty cell), written atomically."""
  tmp = path + ".tmp"
  with errors.writing(path):
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(columns))
      writer.writeheader()
      writer.writerows({k: row.get(k) for k in columns} for row in rows)
    os.replace(tmp, path)


def save_predictions(workdir: str, split: str, evaluation: dict, prefix: str = "") -> None:
  """Writes `<prefix>logits_<split>.npy` (f32 [N, C]) and `<prefix>labels_<split>.npy` (i32 [N])."""
  for name, array in (("logits", evaluation["logits"].astype(np.float32)),
                      ("labels", evaluation["labels"].astype(np.int32))):
    path = os.path.join(workdir, f"{prefix}{name}_{split}.npy")
    with errors.writing(path):
      np.save(path, array)


INIT_HEAD = "init_head.npz"


def save_init_head(workdir: str, trainable, labels) -> None:
  """Writes the head the run starts from (its 'head' group, e.g. head/kernel [D, C] and head/bias [C]) to
  `<workdir>/init_head.npz` unless there (a resumed run started from the same one): the alpha = 0 end of
  WiSE-FT (`jpeft.wise`), e.g. the zero-shot head of `head_init`."""
  path = os.path.join(workdir, INIT_HEAD)
  if os.path.exists(path):
    return
  head = {k: np.asarray(jax.device_get(v)) for k, v in trainable.items() if labels[k] == base.HEAD}
  tmp = path + ".tmp.npz"
  with errors.writing(path):
    np.savez(tmp, **head)
    os.replace(tmp, path)


def load_init_head(workdir: str) -> dict:
  """{path: array} written by `save_init_head`; FileNotFoundError if the run did not record one."""
  with np.load(os.path.join(workdir, INIT_HEAD)) as f:
    return {k: f[k] for k in f.files}


def save_merged(workdir: str, methods, trainable, frozen, merge_factor: float) -> None:
  """Writes the full model with re-parameterisable methods folded in (at the run's merge_factor) to
  `<workdir>/merged`."""
  merged = peft.merge(partition.combine(jax.device_get(trainable), jax.device_get(frozen)), methods,
                      merge_factor=merge_factor)
  path = os.path.abspath(os.path.join(workdir, "merged"))
  with errors.writing(path, catch=(OSError, ValueError)):  # ValueError: TensorStore's failed write
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(path, merged, force=True)

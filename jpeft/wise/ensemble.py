"""WiSE-FT of one finished run: the weight-space ensemble of its zero-shot start and its fine-tuned end.

At alpha in [0, 1], every trainable weight the pretrained model has (the head; the backbone weights full
fine-tuning, BitFit, LayerNorm, selective tuning or DiffFit unfreeze) is (1 - alpha) * start + alpha * fine-tuned,
and modules a method inserts keep their fine-tuned weights under merge_factor = alpha * the run's merge_factor
(`Method.wise`). The start is the run's own: the backbone as loaded from its pretrained checkpoint and the head
it recorded at its start (`init_head.npz`, e.g. a zero-shot head from `head_init`). alpha = 0 is that start model,
alpha = 1 the fine-tuned one.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import ml_collections
import numpy as np

from jpeft.data import tasks
from jpeft.peft import base
from jpeft.train import config_checks, evaluation, model_setup, results, reuse, sharding, steps
from jpeft.train.errors import ConfigError
from jpeft.train.splits import Split


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished run, ready to be ensembled.

  Attributes:
    workdir: where it is.
    config: its config, as its checkpoint recorded it.
    setup: `model_setup.Setup` rebuilt from the config (model, methods, labels, frozen weights).
    start, finetuned: flat {path: array} trainable weights at the start (head from init_head.npz) and at the
      newest intact checkpoint.
    step: the checkpoint's step.
    completion: how far the run got (`reuse.Completion`: the step, the step it was meant to reach, finished).
  """
  workdir: str
  config: ml_collections.ConfigDict
  setup: model_setup.Setup
  start: dict
  finetuned: dict
  step: int
  completion: reuse.Completion


def load_run(workdir: str, allow_unfinished: bool = False) -> Run:
  """Rebuilds the run in `workdir` from its newest checkpoint's config.

  Raises ConfigError if there is no checkpoint, the run is unfinished (`reuse.UnfinishedRunError`, unless
  `allow_unfinished`: then its newest intact checkpoint is the fine-tuned end), there is no init_head.npz, a
  method has no zero-shot end, or the pretrained file has changed since the run recorded it."""
  saved = reuse.load_run(workdir, "--workdir", allow_unfinished)
  config, meta = saved.config, saved.meta
  model_setup.check_pretrained(config, meta, workdir)  # the zero-shot end and the frozen weights come from the file
  setup = model_setup.build(config)
  unsupported = [m.name for m in setup.methods if m.wise is None]
  if unsupported:
    supported = sorted(n for n, cls in base.registry().items() if cls.wise)
    raise ConfigError(f"WiSE-FT cannot ensemble the run in '{workdir}' (method '{config.method}'): merge_factor "
                      f"does not remove what {unsupported} insert, so there is no zero-shot end to interpolate "
                      f"towards. Methods with WiSE-FT: {supported}.")
  try:
    head = results.load_init_head(workdir)
  except FileNotFoundError:
    raise ConfigError(f"'{workdir}' has no {results.INIT_HEAD}, the head the run started from (runs record it "
                      "since WiSE-FT was added). Train the run again with this version of jpeft.") from None
  start = dict(setup.trainable)
  for path, value in head.items():
    if path not in start or np.shape(start[path]) != value.shape:
      raise ConfigError(f"{results.INIT_HEAD} in '{workdir}' holds {path} {value.shape}, which the run's model "
                        f"does not have (it has {np.shape(start.get(path))}): the file is not this run's.")
    start[path] = value
  misfit = sorted(k for k in set(start) | set(saved.trainable) if k not in start or k not in saved.trainable
                  or np.shape(start[k]) != np.shape(saved.trainable[k]))
  if misfit:
    raise ConfigError(f"The checkpoint in '{workdir}' holds parameters its own config's model does not have "
                      f"({misfit[:6]}): it was written by another jpeft version.")
  return Run(workdir, config, setup, start, saved.trainable, saved.step, saved.completion)


def ensemble(run: Run, alpha: float) -> tuple[dict, float]:
  """(trainable flat weights, merge_factor) of the WiSE-FT model at `alpha`."""
  interpolated = (base.HEAD, base.BACKBONE)
  trainable = {path: (1 - alpha) * run.start[path] + alpha * value
               if run.setup.labels[path] in interpolated else value
               for path, value in run.finetuned.items()}
  return trainable, alpha * run.config.merge_factor


def eval_sets(run: Run, specs: Optional[Sequence[str]] = None) -> list[tuple[str, str]]:
  """[(task, split)] from 'task:split' specs; by default the run's eval split, then its `shift_tasks`' test."""
  if not specs:
    mode = run.config.mode if run.config.mode in config_checks.SPLITS else "final"
    return ([(run.config.task, config_checks.SPLITS[mode][1])] +
            [(name, "test") for name in run.config.get("shift_tasks", ())])
  out = []
  for spec in specs:
    task, sep, split = spec.partition(":")
    if not sep or not task or not split:
      raise ConfigError(f"--splits entry '{spec}' is not of the form <task>:<split>, e.g. mini_shapes:test.")
    num_classes = tasks.get_task(task).num_classes
    if num_classes != run.setup.task.num_classes:
      raise ConfigError(f"--splits entry '{spec}': task '{task}' has {num_classes} classes, the run's model "
                        f"{run.setup.task.num_classes}; pass tasks in the label space of '{run.config.task}'.")
    out.append((task, split))
  return out


def evaluate(run: Run, alphas: Sequence[float], sets: Sequence[tuple[str, str]], progress=None) -> list[dict]:
  """One row per alpha: {'alpha', 'merge_factor', '<task>:<split>': accuracy, ...}; `progress` (a tqdm bar or
  None) advances once per (alpha, set)."""
  mesh = sharding.make_mesh()
  frozen = sharding.replicate(run.setup.frozen, mesh)
  batch_size = run.config.optim.batch_size
  eval_steps, opened = {}, []
  for task_name, split in sets:
    task = tasks.get_task(task_name)
    if task_name not in eval_steps:  # one compiled step per task (its class mask), shared by its splits
      eval_steps[task_name] = evaluation.jit_eval_step(run.setup.model, mesh, task)
    opened.append((f"{task_name}:{split}", Split.open(run.config, task, split), eval_steps[task_name]))
  rows = []
  for alpha in alphas:
    trainable, merge_factor = ensemble(run, alpha)
    trainable = sharding.replicate(trainable, mesh)
    hparams = dict(steps.hparams_from_config(run.config, 1), merge_factor=np.float32(merge_factor))
    hparams = sharding.replicate(hparams, mesh)
    row = dict(alpha=float(alpha), merge_factor=float(merge_factor))
    for name, split, step in opened:
      out = evaluation.evaluate(step, trainable, frozen, split, hparams, batch_size, mesh)
      row[name] = out["accuracy"]
      if progress is not None:
        progress.update(1)
    rows.append(row)
  return rows

"""A sweep workdir written by hand (summary.jsonl, trials.jsonl, predictions/) in the layout of
`jpeft.sweep.protocol`, so that the analysis can be run on logits whose statistics are known."""
import json
import os

import numpy as np

from jpeft.sweep import protocol, trial_log

SETTING = dict(lr=1e-3, wd=1e-4)


def _row(task: str, method: str, seed: int, stage: str, logits: np.ndarray, labels: np.ndarray,
         workdir: str) -> dict:
  config_key = f"{task}|{method}|lr={SETTING['lr']!r}|wd={SETTING['wd']!r}"
  row = dict(key=f"{config_key}|seed={seed}", config_key=config_key, task=task, method=method, hparams={},
             seed=seed, stage=stage, accuracy=float(np.mean(logits.argmax(-1) == labels)), **SETTING)
  path = (protocol.predictions_path(workdir, task, method, seed) if stage == "final"
          else protocol.val_predictions_path(workdir, row))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path, logits=logits, labels=labels)
  row["predictions"] = os.path.relpath(path, workdir)
  return row


def write_sweep(workdir: str, tasks: dict) -> str:
  """Writes a finished sweep with the given predictions; returns `workdir`.

  tasks: {task: {'labels': [N], 'test': {method: {seed: [N, C]}}, and optionally 'val_labels': [V],
    'val': {method: {seed: [V, C]}}}} (no 'val': a sweep made before val200 predictions were saved; fewer
    val seeds than test seeds: a sweep with more final seeds than tuning seeds).
  """
  os.makedirs(workdir, exist_ok=True)
  summaries, rows = [], []
  for task, data in tasks.items():
    for method, seeds in data["test"].items():
      for seed, logits in seeds.items():
        rows.append(_row(task, method, seed, "final", logits, data["labels"], workdir))
        if seed in data.get("val", {}).get(method, {}):
          rows.append(_row(task, method, seed, "tune", data["val"][method][seed], data["val_labels"], workdir))
      summaries.append(dict(task=task, method=method, selected=dict(SETTING), seeds=list(seeds)))
  with open(os.path.join(workdir, trial_log.TRIALS_FILE), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  with open(os.path.join(workdir, protocol.SUMMARY_FILE), "w") as f:
    f.writelines(json.dumps(s) + "\n" for s in summaries)
  return workdir


def one_hot_logits(pred: np.ndarray, num_classes: int, margin: float = 5.0) -> np.ndarray:
  """[N, C] logits whose argmax is `pred` [N] (margin `margin` over the other classes)."""
  return margin * np.eye(num_classes)[pred]

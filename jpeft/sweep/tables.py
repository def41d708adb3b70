"""Results tables laid out like the study's: one row per method, test accuracy per task, group means.

Columns: every task present (grouped natural / specialized / structured, in registry order), the mean of each
group, the mean over all tasks ("mean of 19" when the 19 VTAB tasks are all there, else "mean of N"), and the
study's group means and mean of 19 (`STUDY`) side by side where the study has the method. Mini VTAB tasks
(groups 'mini_<group>') go into the column of their group. Accuracies are in percent, one decimal.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Optional, Sequence

import numpy as np

from jpeft.data import tasks as tasks_lib
from jpeft.sweep.trial_log import SWEEP_KEPT
from jpeft.train import errors

GROUPS = ("natural", "specialized", "structured")
# Last-epoch test accuracy (%), VTAB-1K, ViT-B/16 IN21K: (natural, specialized, structured, mean of 19), from
# the study's released result files as restated in shared/spec/vtab.md.
STUDY = {
    "linear": (68.9, 80.5, 32.1, 55.9), "full": (59.7, 78.4, 47.5, 58.5),
    "vpt_shallow": (76.8, 80.2, 41.2, 62.5), "vpt_deep": (80.1, 81.5, 58.6, 71.3),
    "bitfit": (81.3, 84.1, 58.2, 72.2), "layernorm": (81.4, 82.5, 56.6, 71.2),
    "difffit": (81.8, 81.9, 58.6, 72.0), "ssf": (81.6, 83.7, 60.1, 73.0), "lora": (80.5, 85.0, 60.3, 72.9),
    "fact_tt": (81.6, 85.3, 60.9, 73.7), "fact_tk": (81.5, 85.2, 60.4, 73.4),
    "adaptformer": (81.5, 85.3, 61.1, 73.7), "convpass": (81.6, 85.2, 62.4, 74.2),
    "repadapter": (81.4, 84.8, 61.1, 73.6), "pfeiffer": (80.9, 83.4, 61.4, 73.2),
    "adapter": (81.4, 85.6, 61.8, 74.0),
}
NUM_VTAB_TASKS = 19


def task_group(task: str) -> Optional[str]:
  """'natural' | 'specialized' | 'structured' for VTAB and Mini VTAB tasks, None for anything else."""
  group = tasks_lib.get_task(task).group
  group = group[len("mini_"):] if group.startswith("mini_") else group
  return group if group in GROUPS else None


def build_table(summaries: Sequence[dict]) -> tuple[list[str], list[list]]:
  """(header, rows) of the table: accuracies in percent (None where missing), methods in first-seen order.

  summaries: rows of `jpeft.sweep.protocol.run_sweep` ('task', 'method', 'test_accuracy' in [0, 1]).
  """
  methods = list(dict.fromkeys(r["method"] for r in summaries))
  present = set(r["task"] for r in summaries)
  order = {t: i for i, t in enumerate(tasks_lib.list_tasks())}
  by_group = {g: sorted((t for t in present if task_group(t) == g), key=lambda t: order.get(t, 0))
              for g in GROUPS}
  others = sorted(t for t in present if task_group(t) is None)
  columns = [t for g in GROUPS for t in by_group[g]] + others
  mean_name = f"mean of {len(columns)}"
  header = (["method"] + columns + [f"{g} mean" for g in GROUPS if by_group[g]] + [mean_name] +
            [f"study {g}" for g in GROUPS] + [f"study mean of {NUM_VTAB_TASKS}"])
  accuracy = {(r["task"], r["method"]): r["test_accuracy"] for r in summaries}
  rows = []
  for method in methods:
    values = {t: accuracy.get((t, method)) for t in columns}
    percent = {t: None if v is None else 100 * v for t, v in values.items()}

    def mean(ts):
      got = [percent[t] for t in ts]
      return None if not got or any(v is None for v in got) else float(np.mean(got))

    study = STUDY.get(method, (None,) * 4)
    rows.append([method] + [percent[t] for t in columns] + [mean(by_group[g]) for g in GROUPS if by_group[g]] +
                [mean(columns)] + list(study))
  return header, rows


def _fmt(value) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return f"{value:.1f}" if isinstance(value, float) else str(value)


def to_markdown(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def plot_accuracy_vs_params(summaries: Sequence[dict], path: str) -> None:
  """Mean test accuracy over tasks vs mean trainable parameters (head included, log scale), one point per
  method."""
  import matplotlib
  matplotlib.use("Agg")  # files only: no display on servers
  import matplotlib.pyplot as plt
  import matplotlib.ticker
  fig, ax = plt.subplots(figsize=(6, 4))
  for method in dict.fromkeys(r["method"] for r in summaries):
    done = [r for r in summaries if r["method"] == method and r["test_accuracy"] is not None]
    if not done:
      continue
    x = float(np.mean([r["trainable_params"] for r in done]))
    y = 100 * float(np.mean([r["test_accuracy"] for r in done]))
    ax.scatter(x, y)
    ax.annotate(method, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
  ax.set_xscale("log")
  # A narrow range on a log axis labels every minor tick on top of each other: label major ticks only.
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.set_xlabel("trainable parameters (mean over tasks, head included)")
  ax.set_ylabel("test accuracy (%, mean over tasks)")
  ax.grid(True, alpha=0.3)
  fig.tight_layout()
  fig.savefig(path + ".tmp", dpi=120, format="png")
  plt.close(fig)
  os.replace(path + ".tmp", path)


def write_all(summaries: Sequence[dict], workdir: str) -> dict[str, str]:
  """Writes results.md, results.csv and accuracy_vs_params.png to `workdir` (each under a temporary name, then
  renamed: sweep processes sharing the workdir rewrite them while others read); returns their paths."""
  header, rows = build_table(summaries)
  paths = {name: os.path.join(workdir, name) for name in ("results.md", "results.csv", "accuracy_vs_params.png")}
  with errors.writing(paths["results.md"], SWEEP_KEPT):
    with open(paths["results.md"] + ".tmp", "w") as f:
      f.write(to_markdown(header, rows))
    os.replace(paths["results.md"] + ".tmp", paths["results.md"])
  with errors.writing(paths["results.csv"], SWEEP_KEPT):
    with open(paths["results.csv"] + ".tmp", "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(header)
      writer.writerows([[("" if v is None else round(v, 2) if isinstance(v, float) else v) for v in row]
                        for row in rows])
    os.replace(paths["results.csv"] + ".tmp", paths["results.csv"])
  with errors.writing(paths["accuracy_vs_params.png"], SWEEP_KEPT):
    plot_accuracy_vs_params(summaries, paths["accuracy_vs_params.png"])
  return paths

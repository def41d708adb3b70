"""Agreement: do methods of similar accuracy get the same test samples right?

For every task and pair of methods (each method's primary seed): the fraction of test samples both get right,
only one gets right, neither; Cohen's kappa of their predicted classes; the Jaccard overlap of their error sets.
Heat maps of kappa and error overlap per task group, averaged over the group's tasks.
"""
from __future__ import annotations

import itertools
import math
import os
from typing import Sequence

import numpy as np

from jpeft.analysis import report
from jpeft.analysis.load import TaskPredictions

STATS = ("both", "only_a", "only_b", "neither", "kappa", "error_jaccard")
MAPS = (("kappa", "Cohen's kappa of predictions"), ("error_jaccard", "Jaccard overlap of error sets"))


def cohen_kappa(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
  """Cohen's kappa of two class sequences [N]: (p_o - p_e) / (1 - p_e), with p_o the observed agreement and p_e
  the agreement expected from each side's class frequencies; NaN when p_e = 1 (both always predict one class)."""
  n = len(pred_a)
  _, index = np.unique(np.concatenate([pred_a, pred_b]), return_inverse=True)
  freq_a = np.bincount(index[:n], minlength=index.max() + 1) / n
  freq_b = np.bincount(index[n:], minlength=index.max() + 1) / n
  expected = float(freq_a @ freq_b)
  if math.isclose(expected, 1.0):
    return math.nan
  return (float(np.mean(pred_a == pred_b)) - expected) / (1.0 - expected)


def pair_stats(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """The statistics of `STATS` for two methods' predicted classes [N] against labels [N]."""
  right_a, right_b = pred_a == labels, pred_b == labels
  return dict(both=float(np.mean(right_a & right_b)), only_a=float(np.mean(right_a & ~right_b)),
              only_b=float(np.mean(~right_a & right_b)), neither=float(np.mean(~right_a & ~right_b)),
              kappa=cohen_kappa(pred_a, pred_b),
              error_jaccard=report.jaccard(np.sum(~right_a & ~right_b), np.sum(~right_a | ~right_b)))


def analyse(tasks: Sequence[TaskPredictions], methods: Sequence[str]) -> dict:
  """{'methods', 'accuracy': {task: {method: test accuracy}}, 'pairs': one row per task and pair}."""
  accuracy, pairs = {}, []
  for tp in tasks:
    preds = {m: tp.test.primary(m).argmax(-1) for m in methods}
    accuracy[tp.task] = {m: float(np.mean(p == tp.test.labels)) for m, p in preds.items()}
    for a, b in itertools.combinations(methods, 2):
      pairs.append(dict(task=tp.task, group=report.group_of(tp.task), a=a, b=b,
                        **pair_stats(preds[a], preds[b], tp.test.labels)))
  return dict(methods=list(methods), accuracy=accuracy, pairs=pairs)


def pair_means(result: dict, tasks: Sequence[str]) -> dict[tuple[str, str], dict[str, float]]:
  """{(a, b): {stat: mean over `tasks`}} for every pair of the result."""
  out: dict[tuple[str, str], dict[str, float]] = {}
  for a, b in itertools.combinations(result["methods"], 2):
    rows = [r for r in result["pairs"] if r["a"] == a and r["b"] == b and r["task"] in tasks]
    out[(a, b)] = {s: report.mean(r[s] for r in rows) for s in STATS}
  return out


def matrix(means: dict[tuple[str, str], dict[str, float]], methods: Sequence[str], stat: str) -> np.ndarray:
  """[M, M] symmetric matrix of `stat`; the diagonal is 1 (a method agrees with itself)."""
  out = np.eye(len(methods))
  for (a, b), values in means.items():
    i, j = methods.index(a), methods.index(b)
    out[i, j] = out[j, i] = values[stat]
  return out


def plot_group(result: dict, group: str, tasks: Sequence[str], path: str) -> str:
  """Heat maps of kappa and error-set Jaccard, averaged over the group's tasks, values printed in the cells."""
  plt = report.pyplot()
  methods = result["methods"]
  means = pair_means(result, tasks)
  size = 1.2 + 0.45 * len(methods)
  fig, axes = plt.subplots(1, len(MAPS), figsize=(2 * size + 2.5, size + 0.8), layout="constrained")
  for ax, (stat, title) in zip(axes, MAPS):
    values = matrix(means, methods, stat)
    image = ax.imshow(values, vmin=min(0.0, float(np.nanmin(values))), vmax=1.0, cmap="viridis")
    for i, j in itertools.product(range(len(methods)), repeat=2):
      ax.text(j, i, report.fmt(float(values[i, j]), 2), ha="center", va="center", fontsize=7,
              color="white" if values[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(methods)), methods, rotation=90, fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
  fig.suptitle(f"{group}: mean over {len(tasks)} task(s) ({', '.join(tasks)})", fontsize=9)
  return report.save(fig, path)


def write(result: dict, out: str) -> list[str]:
  """agreement.md / .csv (per task and pair), agreement_groups.md / .csv (group means) and one heat map PNG
  per group; returns the paths."""
  header = ["task", "group", "method a", "method b", *STATS]
  rows = [[r["task"], r["group"], r["a"], r["b"], *(r[s] for s in STATS)] for r in result["pairs"]]
  paths = report.write_table(out, "agreement", header, rows)
  groups = report.by_group(result["accuracy"])
  group_rows = [[g, a, b, *(v[s] for s in STATS)] for g, ts in groups.items()
                for (a, b), v in pair_means(result, ts).items()]
  paths += report.write_table(out, "agreement_groups", ["group", "method a", "method b", *STATS], group_rows)
  if len(result["methods"]) > 1:
    paths += [plot_group(result, g, ts, os.path.join(out, f"agreement_{g}.png")) for g, ts in groups.items()]
  return paths


def findings(result: dict) -> list[str]:
  """Markdown bullets: accuracy per method, how often pairs disagree, their kappa and error overlap."""
  tasks = list(result["accuracy"])
  accuracy = {m: report.mean(result["accuracy"][t][m] for t in tasks) for m in result["methods"]}
  ranked = sorted(accuracy, key=accuracy.get, reverse=True)
  lines = [f"Test accuracy, mean over {len(tasks)} task(s): " +
           ", ".join(f"{m} {report.pct(accuracy[m])}%" for m in ranked) +
           f" (spread {report.pct(accuracy[ranked[0]] - accuracy[ranked[-1]])} points)."]
  if not result["pairs"]:
    return lines
  pairs = result["pairs"]
  one = report.mean(r["only_a"] + r["only_b"] for r in pairs)
  lines.append(f"Different mistakes: over {len(pairs)} (task, pair) combinations, {report.pct(one)}% of test "
               f"samples are right for exactly one of the two methods (both right "
               f"{report.pct(report.mean(r['both'] for r in pairs))}%, neither "
               f"{report.pct(report.mean(r['neither'] for r in pairs))}%); mean Cohen's kappa "
               f"{report.fmt(report.mean(r['kappa'] for r in pairs))}, mean Jaccard overlap of the error sets "
               f"{report.fmt(report.mean(r['error_jaccard'] for r in pairs))}.")
  for group, ts in report.by_group(tasks).items():
    means = pair_means(result, ts)
    by_kappa = sorted((v["kappa"] for v in means.values() if math.isfinite(v["kappa"])))
    if by_kappa:
      low, high = (next(f"{report.fmt(k)} ({a} vs {b})" for (a, b), v in means.items() if v["kappa"] == k)
                   for k in (by_kappa[0], by_kappa[-1]))
      lines.append(f"{group} ({len(ts)} task(s)): kappa " + (low if len(by_kappa) == 1 else f"from {low} to {high}") +
                   f"; error overlap {report.fmt(report.mean(v['error_jaccard'] for v in means.values()))} "
                   "on average.")
  return lines

"""Calibration: is a method's confidence (max softmax) its accuracy?

Expected calibration error with 15 equal-width confidence bins (Guo et al., 2017): the sample-weighted mean of
|accuracy - mean confidence| over the bins, bin b holding the confidences in (b/15, (b+1)/15] (0 in the first).
Per task and method, and pooled over tasks per method; a reliability diagram per method and a plot of the
accuracy of the samples at or above each confidence (pooled over tasks).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jpeft.analysis import report
from jpeft.analysis.load import TaskPredictions

NUM_BINS = 15


def confidence_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Max softmax [N] and whether the argmax is right, bool [N]."""
  return report.softmax(logits).max(-1), logits.argmax(-1) == labels


def reliability(confidence: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS) -> dict[str, np.ndarray]:
  """Per bin (equal width over [0, 1]): 'count' [B], 'confidence' and 'accuracy' [B] (NaN in empty bins)."""
  index = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
  count = np.bincount(index, minlength=num_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    return dict(count=count, confidence=np.bincount(index, confidence, num_bins) / count,
                accuracy=np.bincount(index, correct.astype(float), num_bins) / count)


def ece(confidence: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS) -> float:
  """Expected calibration error of confidences [N] and correctness [N] (see the module docstring)."""
  bins = reliability(confidence, correct, num_bins)
  filled = bins["count"] > 0
  gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
  return float(np.sum(bins["count"][filled] * gaps) / len(confidence))


def analyse(tasks: Sequence[TaskPredictions], methods: Sequence[str]) -> dict:
  """{'per_task': rows (task, method, accuracy, mean confidence, ECE), 'pooled': {method: (confidence [N],
  correct [N]) over all tasks}} for each method's primary seed."""
  per_task, pooled = [], {}
  for m in methods:
    parts = [confidence_and_correct(tp.test.primary(m), tp.test.labels) for tp in tasks]
    for tp, (confidence, correct) in zip(tasks, parts):
      per_task.append(dict(task=tp.task, group=report.group_of(tp.task), method=m, accuracy=float(np.mean(correct)),
                           confidence=float(np.mean(confidence)), ece=ece(confidence, correct)))
    pooled[m] = tuple(np.concatenate(x) for x in zip(*parts))
  return dict(per_task=per_task, pooled=pooled)


def plot_reliability(pooled: dict, path: str) -> str:
  """One reliability diagram per method, test samples pooled over tasks: accuracy per confidence bin against the
  diagonal, the pooled ECE in the title."""
  plt = report.pyplot()
  cols = min(4, len(pooled))
  rows = -(-len(pooled) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
  edges = np.linspace(0, 1, NUM_BINS + 1)
  for ax, (method, (confidence, correct)) in zip(axes.flat, pooled.items()):
    bins = reliability(confidence, correct)
    filled = bins["count"] > 0
    ax.bar(edges[:-1][filled], bins["accuracy"][filled], width=1 / NUM_BINS, align="edge", edgecolor="black",
           label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    ax.set_title(f"{method}: ECE {100 * ece(confidence, correct):.1f}% (pooled)", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max softmax)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
  for ax in list(axes.flat)[len(pooled):]:
    ax.axis("off")
  fig.tight_layout()
  return report.save(fig, path)


def plot_accuracy_vs_confidence(pooled: dict, path: str) -> str:
  """Accuracy of the test samples whose confidence is at least t, against t, one line per method."""
  plt = report.pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  for method, (confidence, correct) in pooled.items():
    order = np.argsort(-confidence, kind="stable")
    # Accuracy of the n most confident samples, for every n: each point is a threshold t = the n-th confidence.
    ax.plot(confidence[order], np.cumsum(correct[order]) / np.arange(1, len(order) + 1), label=method)
  ax.set_xlabel("confidence threshold t (max softmax)")
  ax.set_ylabel("accuracy of samples with confidence >= t")
  ax.set_xlim(0, 1)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return report.save(fig, path)


def write(result: dict, out: str) -> list[str]:
  """calibration.md / .csv (per task and method, then pooled rows with task 'all'), reliability.png,
  accuracy_vs_confidence.png; returns the paths."""
  rows = [list(r.values()) for r in result["per_task"]]
  rows += [["all", "all", m, float(np.mean(correct)), float(np.mean(confidence)), ece(confidence, correct)]
           for m, (confidence, correct) in result["pooled"].items()]
  paths = report.write_table(out, "calibration", ["task", "group", "method", "accuracy", "mean confidence",
                                                  f"ECE ({NUM_BINS} bins)"], rows)
  paths.append(plot_reliability(result["pooled"], os.path.join(out, "reliability.png")))
  paths.append(plot_accuracy_vs_confidence(result["pooled"], os.path.join(out, "accuracy_vs_confidence.png")))
  return paths


def findings(result: dict) -> list[str]:
  """Markdown bullet: ECE per method (mean over tasks) and whether methods are over- or under-confident."""
  methods = list(result["pooled"])
  mean_ece = {m: report.mean(r["ece"] for r in result["per_task"] if r["method"] == m) for m in methods}
  gap = {m: float(np.mean(c) - np.mean(k)) for m, (c, k) in result["pooled"].items()}
  return [f"Calibration, ECE ({NUM_BINS} bins) mean over tasks: " +
          ", ".join(f"{m} {report.pct(mean_ece[m])}%" for m in sorted(methods, key=mean_ece.get)) +
          "; mean confidence minus accuracy (pooled): " +
          ", ".join(f"{m} {100 * gap[m]:+.1f}" for m in methods) + " points (positive: over-confident)."]

"""Confident predictions: do methods agree on which test samples they are sure of, and are they right there?

Each method's confident set is, on every task, the ceil(fraction x N) test samples with the highest max softmax
(ties to the lower index), pooled over tasks. A per-task fraction rather than the study's one pooled top 5,000:
max softmax is not comparable across tasks (its floor is 1/C, so a pooled top-k would be filled by the tasks
with the fewest classes), and a fraction fits any test size (Mini VTAB's 1,000 per task, VTAB's 711 to 73,728),
each task contributing in proportion to its test set. Reported: each method's accuracy on its confident set,
the pairwise overlap of the sets, how often two methods predict different classes on samples both are confident
of, and a three-set Venn diagram of the correct predictions within the confident sets (the study's Figure 1b).
"""
from __future__ import annotations

import itertools
import math
import os
from typing import Optional, Sequence

import numpy as np

from jpeft.analysis import report
from jpeft.analysis.load import TaskPredictions

DEFAULT_FRACTION = 0.1
DEFAULT_VENN = ("lora", "adapter", "ssf")  # the study's Figure 1b
REGIONS = ("a", "b", "c", "ab", "ac", "bc", "abc")  # exclusive: 'ab' is in a and b, not in c


def top_confident(logits: np.ndarray, fraction: float) -> np.ndarray:
  """Indices of the ceil(fraction * N) samples of [N, C] logits with the highest max softmax, most confident
  first, ties to the lower index."""
  confidence = report.softmax(logits).max(-1)
  k = math.ceil(fraction * len(confidence))
  return np.argsort(-confidence, kind="stable")[:k]


def venn_regions(a: set, b: set, c: set) -> dict[str, int]:
  """Sizes of the seven exclusive regions of three sets, keyed by `REGIONS`."""
  return {"a": len(a - b - c), "b": len(b - a - c), "c": len(c - a - b), "ab": len((a & b) - c),
          "ac": len((a & c) - b), "bc": len((b & c) - a), "abc": len(a & b & c)}


def analyse(tasks: Sequence[TaskPredictions], methods: Sequence[str], fraction: float,
            venn: Optional[Sequence[str]]) -> dict:
  """Confident sets of every method (primary seed) and their statistics.

  Returns {'fraction', 'per_method': rows, 'pairs': rows, 'venn': (methods, {region: count}) or None}; samples
  are identified as (task, index).
  """
  sets = {m: set() for m in methods}
  correct = {m: set() for m in methods}
  predicted: dict[str, dict] = {m: {} for m in methods}
  overall = {m: [] for m in methods}
  for tp in tasks:
    for m in methods:
      logits = tp.test.primary(m)
      pred = logits.argmax(-1)
      overall[m].append(pred == tp.test.labels)
      for i in top_confident(logits, fraction):
        sets[m].add((tp.task, i))
        predicted[m][(tp.task, i)] = pred[i]
        if pred[i] == tp.test.labels[i]:
          correct[m].add((tp.task, i))
  per_method = [dict(method=m, confident=len(sets[m]), confident_accuracy=len(correct[m]) / len(sets[m]),
                     accuracy=float(np.mean(np.concatenate(overall[m])))) for m in methods]
  pairs = []
  for a, b in itertools.combinations(methods, 2):
    shared = sets[a] & sets[b]
    differ = sum(predicted[a][s] != predicted[b][s] for s in shared)
    pairs.append(dict(a=a, b=b, jaccard=report.jaccard(len(shared), len(sets[a] | sets[b])),
                      both_confident=len(shared), different_prediction=differ / len(shared) if shared else math.nan))
  regions = None if venn is None else (list(venn), venn_regions(*(correct[m] for m in venn)))
  return dict(fraction=fraction, per_method=per_method, pairs=pairs, venn=regions)


def plot_venn(names: Sequence[str], counts: dict[str, int], path: str, title: str) -> str:
  """Three overlapping circles with the seven region counts written in them."""
  plt = report.pyplot()
  from matplotlib.patches import Circle
  centers = np.array([[-0.45, 0.3], [0.45, 0.3], [0.0, -0.45]])
  middle = centers.mean(0)
  fig, ax = plt.subplots(figsize=(5.5, 5.5))
  for center, name, colour in zip(centers, names, ("tab:blue", "tab:orange", "tab:green")):
    ax.add_patch(Circle(tuple(center), 0.75, alpha=0.3, color=colour))
    label_at = middle + 2.25 * (center - middle)
    ax.text(*label_at, name, ha="center", va="center", fontsize=11, weight="bold")
  for region in REGIONS:
    members = centers[["abc".index(ch) for ch in region]]
    # One circle: away from the others; two: toward the pair, away from the third; three: the middle.
    at = middle + {1: 1.35, 2: 0.9, 3: 0.0}[len(region)] * (members.mean(0) - middle)
    ax.text(*at, str(counts[region]), ha="center", va="center", fontsize=12)
  ax.set_xlim(-1.5, 1.5)
  ax.set_ylim(-1.4, 1.4)
  ax.set_aspect("equal")
  ax.axis("off")
  ax.set_title(title, fontsize=9)
  return report.save(fig, path)


def write(result: dict, out: str) -> list[str]:
  """confident.md / .csv (per method), confident_pairs.md / .csv, and with a Venn: venn.md / .csv and
  confident_venn.png; returns the paths."""
  paths = report.write_table(out, "confident", ["method", "confident samples", "accuracy on them", "accuracy"],
                             [list(r.values()) for r in result["per_method"]])
  paths += report.write_table(out, "confident_pairs", ["method a", "method b", "jaccard of confident sets",
                                                       "confident for both", "different prediction there"],
                              [list(r.values()) for r in result["pairs"]])
  if result["venn"] is not None:
    names, counts = result["venn"]
    header = ["region", "methods", "count"]
    rows = [[r, " & ".join(names["abc".index(ch)] for ch in r) + " only" * (len(r) < 3), counts[r]]
            for r in REGIONS]
    paths += report.write_table(out, "venn", header, rows)
    paths.append(plot_venn(names, counts, os.path.join(out, "confident_venn.png"),
                           f"Correct predictions among each method's most confident "
                           f"{report.pct(result['fraction'])}% test samples per task"))
  return paths


def findings(result: dict) -> list[str]:
  """Markdown bullets: accuracy on the confident sets, their overlap, the Venn region counts."""
  lines = [f"Most confident {report.pct(result['fraction'])}% of each task's test samples per method: accuracy "
           "there " + ", ".join(f"{r['method']} {report.pct(r['confident_accuracy'])}%" for r in result["per_method"])
           + " (all samples: " + ", ".join(f"{report.pct(r['accuracy'])}%" for r in result["per_method"]) + ")."]
  pairs = result["pairs"]
  if pairs:
    overlap = [p["jaccard"] for p in pairs]
    lines.append(f"Different confident predictions: the confident sets of two methods overlap with Jaccard "
                 f"{report.fmt(report.mean(overlap))} on average (from {report.fmt(min(overlap))} to "
                 f"{report.fmt(max(overlap))}); on samples both are confident of, they predict different classes "
                 f"{report.pct(report.mean(p['different_prediction'] for p in pairs))}% of the time.")
  if result["venn"] is not None:
    names, counts = result["venn"]
    unique = {names[i]: counts["abc"[i]] for i in range(3)}
    lines.append(f"Venn of correct confident predictions ({', '.join(names)}): {counts['abc']} shared by all "
                 f"three, " + ", ".join(f"{n} alone {c}" for n, c in unique.items()) +
                 f"; pairs only: {names[0]}&{names[1]} {counts['ab']}, {names[0]}&{names[2]} {counts['ac']}, "
                 f"{names[1]}&{names[2]} {counts['bc']}.")
  return lines

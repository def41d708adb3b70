"""What the analyses share: probabilities from logits, task groups, and writing tables and figures."""
from __future__ import annotations

import csv
import math
import os
from typing import Iterable, Sequence

import numpy as np

from jpeft.sweep import tables

OTHER_GROUP = "other"  # tasks outside VTAB's three groups (and Mini VTAB's)


def softmax(logits: np.ndarray) -> np.ndarray:
  """[..., C] logits -> [..., C] probabilities (float64, shifted by the max for stability)."""
  z = np.asarray(logits, np.float64)
  z = np.exp(z - z.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def group_of(task: str) -> str:
  """'natural' | 'specialized' | 'structured' (Mini VTAB tasks go to their group), else 'other'."""
  return tables.task_group(task) or OTHER_GROUP


def by_group(tasks: Iterable[str]) -> dict[str, list[str]]:
  """{group: tasks} in the order natural, specialized, structured, other; empty groups left out."""
  tasks = list(tasks)
  groups = {g: [t for t in tasks if group_of(t) == g] for g in (*tables.GROUPS, OTHER_GROUP)}
  return {g: ts for g, ts in groups.items() if ts}


def jaccard(intersection: int, union: int) -> float:
  """The Jaccard index |A & B| / |A | B| from those two sizes; 1.0 when both sets are empty (they are equal)."""
  return float(intersection / union) if union else 1.0


def mean(values: Iterable[float]) -> float:
  """Mean of the finite values (NaN marks an undefined statistic); NaN if there is none."""
  finite = [v for v in values if v is not None and math.isfinite(v)]
  return float(np.mean(finite)) if finite else math.nan


def fmt(value, digits: int = 3) -> str:
  """A table cell: floats with `digits` decimals, '-' for None / NaN."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def pct(value: float) -> str:
  """A fraction in [0, 1] as percent with one decimal ('-' for NaN)."""
  return fmt(100 * value, 1) if math.isfinite(value) else "-"


def write_table(out: str, name: str, header: Sequence[str], rows: Sequence[Sequence], digits: int = 3) -> list[str]:
  """<out>/<name>.md (cells rounded to `digits` decimals) and <out>/<name>.csv (full precision); their paths."""
  md, csv_path = os.path.join(out, f"{name}.md"), os.path.join(out, f"{name}.csv")
  with open(md, "w") as f:
    f.write(tables.to_markdown(header, [[fmt(v, digits) for v in row] for row in rows]))
  with open(csv_path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
  return [md, csv_path]


def pyplot():
  """matplotlib.pyplot drawing to files only (no display on servers)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save(fig, path: str) -> str:
  """Writes `fig` as a PNG, closes it and returns the path."""
  fig.savefig(path, dpi=120, bbox_inches="tight")
  pyplot().close(fig)
  return path

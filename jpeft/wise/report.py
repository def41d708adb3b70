"""WiSE-FT tables (JSON, CSV, Markdown) and the study's figure: in-distribution accuracy against the mean
accuracy over the shifted sets, one curve per run from alpha = 0 (the zero-shot model) to alpha = 1."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

from jpeft import outputs  # noqa: E402
from jpeft.train import results  # noqa: E402

KINDS = ("json", "csv", "md", "png")


def check_out(out_dir: str, overwrite: bool, workdirs: Sequence[str]) -> None:
  """Refuses, before any evaluation, to replace the tables of an earlier WiSE-FT (another alpha grid, other sets,
  other runs) unless `overwrite`, and an `out_dir` among a run's records other than a run's own `wise/` folder.

  Raises:
    outputs.OutputError: naming the existing file and how to proceed.
  """
  own = {os.path.realpath(os.path.join(w, "wise")) for w in workdirs}
  for kind in KINDS:
    path = os.path.join(out_dir, f"wise.{kind}")
    if os.path.realpath(out_dir) not in own:
      outputs.check_file(path, overwrite, "--out", workdirs)
    elif os.path.lexists(path) and not overwrite:
      raise outputs.OutputError(f"'{path}' exists: an earlier jpeft.wise wrote it; pass --overwrite (Python: "
                                "overwrite=True) to replace that table, or --out=<new folder> to keep both.")


def summarise(rows: Sequence[dict], sets: Sequence[str]) -> list[dict]:
  """Adds 'in_distribution' (the first set's accuracy) and 'shift_mean' (the mean over the others; None when
  there are none) to each row."""
  out = []
  for row in rows:
    shifted = [row[name] for name in sets[1:]]
    out.append(dict(row, in_distribution=row[sets[0]],
                    shift_mean=sum(shifted) / len(shifted) if shifted else None))
  return out


def write(out_dir: str, rows: Sequence[dict], sets: Sequence[str]) -> dict[str, str]:
  """Writes wise.json, wise.csv, wise.md and (with shifted sets) wise.png into `out_dir`; returns their paths.

  rows: dicts with 'run', 'method', 'alpha', 'merge_factor', 'in_distribution', 'shift_mean', one accuracy per
  name in `sets` (the first set is the in-distribution one), and the run's checkpoint: 'step', 'planned_step',
  'finished' (`jpeft.train.reuse.Completion.record`). Call `check_out` first: this replaces what is there, and
  removes an earlier wise.png when there is no shifted set to plot (it would describe another table)."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {kind: os.path.join(out_dir, f"wise.{kind}") for kind in KINDS}
  columns = ["method", "alpha", "merge_factor", *sets, "in_distribution", "shift_mean", "run", "step",
             "planned_step", "finished"]
  results.write_json(paths["json"], dict(sets=list(sets), rows=list(rows)))
  results.write_csv(paths["csv"], rows, columns)
  pct = lambda v: "" if v is None else f"{100 * v:.1f}"
  lines = [f"WiSE-FT: accuracy (%) of (1 - alpha) * start + alpha * fine-tuned. In distribution: `{sets[0]}`; "
           f"shifted: {', '.join(f'`{s}`' for s in sets[1:]) or 'none'}. alpha = 0 is the zero-shot model.", "",
           *_checkpoint_lines(rows), "",
           "| method | alpha | " + " | ".join(sets) + " | mean of shifts |",
           "|---|---|" + "---|" * (len(sets) + 1)]
  for row in rows:
    lines.append(f"| {row['method']} | {row['alpha']:g} | " + " | ".join(pct(row[s]) for s in sets) +
                 f" | {pct(row['shift_mean'])} |")
  with outputs.atomic_file(paths["md"], "w", overwrite=True) as f:
    f.write("\n".join(lines) + "\n")
  if len(sets) > 1:
    _plot(paths["png"], rows, sets[0])
  else:
    if os.path.lexists(paths["png"]):
      os.remove(paths["png"])
    del paths["png"]
  return paths


def _checkpoint_lines(rows: Sequence[dict]) -> list[str]:
  """One line per run naming the checkpoint that is its fine-tuned end (alpha = 1)."""
  lines = []
  for row in {row["run"]: row for row in rows}.values():
    planned = "an unknown number" if row.get("planned_step") is None else row["planned_step"]
    state = ("finished" if row.get("finished") else
             "UNFINISHED (--allow_unfinished): alpha = 1 is this mid-training checkpoint, not the fine-tuned model")
    lines.append(f"- `{row['method']}` ({row['run']}): step {row['step']} of {planned}, {state}.")
  return lines


def _plot(path: str, rows: Sequence[dict], in_distribution: str) -> None:
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for run in dict.fromkeys(row["run"] for row in rows):
    curve = sorted((r for r in rows if r["run"] == run), key=lambda r: r["alpha"])
    x = [100 * r["in_distribution"] for r in curve]
    y = [100 * r["shift_mean"] for r in curve]
    line, = ax.plot(x, y, "o-", markersize=3, label=curve[0]["method"])
    ax.plot(x[-1], y[-1], "s", color=line.get_color(), markersize=7)  # alpha = 1: the fine-tuned model
    if curve[0]["alpha"] == 0:
      ax.plot(x[0], y[0], "k*", markersize=12, zorder=5)
  ax.plot([], [], "k*", markersize=10, label="zero-shot (alpha = 0)")
  ax.plot([], [], "ks", markersize=6, label="fine-tuned (alpha = 1)")
  ax.set_xlabel(f"in-distribution accuracy (%), {in_distribution}")
  ax.set_ylabel("mean accuracy over the shifted sets (%)")
  ax.set_title("WiSE-FT: weight-space ensembles of zero-shot and fine-tuned")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  with outputs.atomic_path(path, overwrite=True) as tmp:
    fig.savefig(tmp, dpi=120, format="png")
  plt.close(fig)

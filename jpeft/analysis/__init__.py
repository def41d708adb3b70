"""Prediction analysis of a sweep: do PEFT methods of similar accuracy make the same mistakes, and do ensembles
of them help? Pure numpy on the predictions a sweep saved; no model and no device.

  tasks = load.load_sweep('runs/sweep')                   # test (and val200) logits per task, method, seed
  result = agreement.analyse(tasks, ['lora', 'adapter'])  # pairwise right/wrong, kappa, error overlap
  run('runs/sweep')                                       # all four analyses -> runs/sweep/analysis/summary.md

One module per analysis, each with `analyse` (numbers), `write` (Markdown + CSV tables, PNG figures) and
`findings` (the summary's sentences): `agreement`, `confident`, `ensembles`, `calibration`.
CLI: `python -m jpeft.analysis --sweep=runs/sweep [--tasks=...] [--methods=...] [--out=...]` (see `__main__`).
`python -m jpeft.analysis.pack` copies what the analysis reads of a sweep into a small folder, to commit beside the
tables (`pack`); `analyse` and `summary` give summary.md's text without drawing the figures.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from jpeft.analysis import agreement, calibration, confident, ensembles, load
from jpeft.analysis.load import AnalysisError, load_sweep

TITLE = "# Prediction analysis of "  # the first line of summary.md: marks a folder this tool may overwrite
SECTIONS = (("1. Agreement: different mistakes", agreement), ("2. Confident predictions", confident),
            ("3. Ensembles", ensembles), ("4. Calibration", calibration))


def venn_methods(asked: Optional[Sequence[str]], methods: Sequence[str]) -> Optional[list[str]]:
  """The three methods of the Venn figure: `asked`, else the study's (lora, adapter, ssf) where all were
  analysed, else the first three; None with fewer than three methods."""
  if asked is not None:
    bad = [m for m in asked if m not in methods]
    if len(asked) != 3 or len(set(asked)) != 3 or bad:
      raise AnalysisError(f"--venn={','.join(asked)} must name three different analysed methods "
                          f"(analysed: {', '.join(methods)}).")
    return list(asked)
  if all(m in methods for m in confident.DEFAULT_VENN):
    return list(confident.DEFAULT_VENN)
  return list(methods[:3]) if len(methods) >= 3 else None


def _prepare(out: str) -> None:
  """Makes `out`, or empties the files of a previous analysis there; any other non-empty folder is refused,
  so that nothing the user saved is overwritten and no old figure passes for this run's."""
  if os.path.isdir(out) and os.listdir(out):
    summary = os.path.join(out, "summary.md")
    previous = os.path.exists(summary) and open(summary).readline().startswith(TITLE)
    if not previous:
      raise AnalysisError(f"--out={out} is not empty and holds no earlier analysis (no summary.md of this tool): "
                          "pass a new or empty folder.")
    for name in os.listdir(out):
      if name.endswith((".md", ".csv", ".png")):
        os.remove(os.path.join(out, name))
  os.makedirs(out, exist_ok=True)


def run(sweep: str, out: Optional[str] = None, tasks: Optional[Sequence[str]] = None,
        methods: Optional[Sequence[str]] = None, confident_fraction: float = confident.DEFAULT_FRACTION,
        venn: Optional[Sequence[str]] = None) -> str:
  """Runs the four analyses on the sweep in `sweep` and writes their files and summary.md to `out`.

  Args:
    sweep: a sweep workdir (summary.jsonl, trials.jsonl, predictions/).
    out: output folder (default <sweep>/analysis); must be new, empty, or an earlier analysis (replaced).
    tasks, methods: what to analyse (default: all the sweep has).
    confident_fraction: per task, the share of test samples in each method's confident set, in (0, 1].
    venn: three methods for the Venn figure (default: lora, adapter, ssf if analysed, else the first three).
  Returns the path of summary.md. Raises AnalysisError for unusable input (fewer than two methods included),
  before writing anything.
  """
  if not 0 < confident_fraction <= 1:
    raise AnalysisError(f"--confident_fraction={confident_fraction} must be in (0, 1]: the share of each task's "
                        "test samples in a method's confident set (e.g. 0.1).")
  predictions = load.load_sweep(sweep, tasks, methods)
  methods = list(predictions[0].test.logits)
  if len(methods) < 2:
    raise AnalysisError(f"Only one method to analyse ({methods[0]}): the analyses compare methods. Pass at "
                        "least two with --methods=, or sweep more methods.")
  venn = venn_methods(venn, methods)
  out = out or os.path.join(sweep, "analysis")
  _prepare(out)
  results = analyse(predictions, methods, confident_fraction, venn)
  files = {name_of(module): module.write(results[name_of(module)], out) for _, module in SECTIONS}
  path = os.path.join(out, "summary.md")
  with open(path, "w") as f:
    f.write(summary(sweep, predictions, results, files))
  return path


def name_of(module) -> str:
  """A section's name: its module's ('agreement'), the key of its results and files."""
  return module.__name__.rsplit(".", 1)[1]


def analyse(predictions: Sequence[load.TaskPredictions], methods: Sequence[str],
            confident_fraction: float = confident.DEFAULT_FRACTION, venn: Optional[Sequence[str]] = None) -> dict:
  """{'agreement' | 'confident' | 'ensembles' | 'calibration': that module's `analyse` result} (no Venn diagram
  when `venn` is None)."""
  return dict(agreement=agreement.analyse(predictions, methods),
              confident=confident.analyse(predictions, methods, confident_fraction, venn),
              ensembles=ensembles.analyse(predictions, methods),
              calibration=calibration.analyse(predictions, methods))


def summary(sweep: str, predictions: Sequence[load.TaskPredictions], results: dict,
            files: dict[str, Sequence[str]]) -> str:
  """summary.md's text: the sweep, then each section's findings and the files its `write` returned (`files`:
  {module name: paths}; summary.md links their base names)."""
  methods = list(predictions[0].test.logits)
  seeds = {m: list(predictions[0].test.logits[m]) for m in methods}
  lines = [f"{TITLE}{sweep}", "",
           f"{len(predictions)} task(s): {', '.join(tp.task for tp in predictions)} "
           f"({sum(len(tp.test.labels) for tp in predictions)} test samples). {len(methods)} method(s), each at "
           f"its selected hyperparameters; seeds: " + ", ".join(f"{m} {s}" for m, s in seeds.items()) +
           ". Single-model statistics use each method's first seed; anything chosen is chosen on val200.", ""]
  for title, module in SECTIONS:
    lines += [f"## {title}", ""] + [f"- {f}" for f in module.findings(results[name_of(module)])]
    lines += ["", "Files: " + ", ".join(f"[{os.path.basename(p)}]({os.path.basename(p)})"
                                       for p in files[name_of(module)]), ""]
  if results["confident"]["venn"] is None:
    lines.append("No Venn figure: it needs three methods.")
  return "\n".join(lines) + "\n"

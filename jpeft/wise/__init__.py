"""WiSE-FT (Wortsman et al., 2022) of finished runs: evaluate (1 - alpha) * zero-shot + alpha * fine-tuned.

  python -m jpeft.wise --workdir=<run>[,<run>...] [--alphas=0,0.1,...,1] [--splits=<task>:<split>,...] [--out=...]

`ensemble` loads a run and builds the ensemble at each alpha (how each method is ensembled is its `Method.wise`);
`report` writes the table and the figure. Reads checkpoints and `init_head.npz`; trains nothing.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import tqdm

from jpeft.wise import ensemble, report


def run(workdirs: Sequence[str], alphas: Sequence[float], specs: Optional[Sequence[str]] = None,
        out_dir: Optional[str] = None, allow_unfinished: bool = False, overwrite: bool = False) -> dict[str, str]:
  """Evaluates the WiSE-FT ensembles of each run at `alphas` on the sets of `specs` ('task:split'; default: the
  first run's eval split and shift tasks), writes the table and figure to `out_dir` (default <workdir>/wise for
  one run) and returns the written paths. An unfinished run is refused (`jpeft.train.reuse.UnfinishedRunError`)
  unless `allow_unfinished`; every row records the step used ('step', 'planned_step', 'finished'). The tables
  of an earlier WiSE-FT in `out_dir` are replaced only with `overwrite` (checked before anything is evaluated)."""
  out_dir = out_dir or os.path.join(workdirs[0], "wise")
  report.check_out(out_dir, overwrite, workdirs)
  runs = [ensemble.load_run(w, allow_unfinished) for w in workdirs]
  sets = ensemble.eval_sets(runs[0], specs)
  names = [f"{task}:{split}" for task, split in sets]
  rows = []
  with tqdm.tqdm(total=len(runs) * len(alphas) * len(sets), desc="wise") as bar:
    for r in runs:
      for row in ensemble.evaluate(r, alphas, sets, bar):
        rows.append(dict(row, method=r.config.method, run=os.path.abspath(r.workdir), **r.completion.record()))
  return report.write(out_dir, report.summarise(rows, names), names)

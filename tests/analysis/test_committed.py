"""The committed prediction analyses re-run from the repository alone.

For every results folder with a packed sweep (`experiments/results/<study>/sweep/packed.json`, written by
`python -m jpeft.analysis.pack`) and the analysis made from it (`<study>/analysis/summary.md`), and for the tiny
packed sweep of tests/fixtures/packed_sweep (made by tests/fixtures/make_packed_sweep.py, so that the check runs
before any study is committed), the analysis of the packed sweep states exactly the committed summary: every
number, every choice, and the files it links exist. The figures are not drawn again (the summary is what they
are drawn from; tests/analysis/test_cli.py checks that a packed sweep gives the same figures as the sweep).
"""
import glob
import os
import re

import pytest

from jpeft import analysis
from jpeft.analysis import load, pack
from tests.helpers import REPO

FIXTURE = os.path.join("tests", "fixtures", "packed_sweep")


def committed() -> list[str]:
  """Folders, relative to the repository, holding a packed sweep in sweep/ and its analysis in analysis/."""
  studies = glob.glob(os.path.join(REPO, "experiments", "results", "*", "sweep", pack.MARKER))
  return sorted(os.path.relpath(os.path.dirname(os.path.dirname(p)), REPO) for p in studies) + [FIXTURE]


def _files(summary: str) -> dict[str, list[str]]:
  """{section name: the file names its 'Files:' line links}, in the order of the summary's sections."""
  lines = [line for line in summary.splitlines() if line.startswith("Files: ")]
  assert len(lines) == len(analysis.SECTIONS), summary
  return {analysis.name_of(module): re.findall(r"\]\(([^)]+)\)", line)
          for (_, module), line in zip(analysis.SECTIONS, lines)}


@pytest.mark.parametrize("folder", committed())
def test_committed_summary_is_reproduced(folder):
  sweep = os.path.join(folder, "sweep")  # as summary.md names it: the analysis was run from the repository root
  with open(os.path.join(REPO, folder, "analysis", "summary.md")) as f:
    expected = f.read()
  predictions = load.load_sweep(os.path.join(REPO, sweep))  # also checks every file against its row's accuracy
  methods = list(predictions[0].test.logits)
  results = analysis.analyse(predictions, methods, venn=analysis.venn_methods(None, methods))
  files = _files(expected)
  assert analysis.summary(sweep, predictions, results, files) == expected
  missing = [n for names in files.values() for n in names
             if not os.path.exists(os.path.join(REPO, folder, "analysis", n))]
  assert not missing, f"{folder}/analysis/summary.md links files that are not committed: {missing}"

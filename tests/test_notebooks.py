"""Every notebook under notebooks/ runs top to bottom on the CPU, shrunk by its parameters cell.

Each notebook has a cell tagged `parameters` (papermill's convention); the test inserts a cell after it that sets
SMOKE = True (tiny epochs, Mini VTAB only, no downloads), as papermill would, and executes the notebook with
nbclient in a fresh kernel whose working directory is a temporary folder. Any cell error fails the test. nbclient
rather than papermill: injecting one cell is a few lines, and papermill would add its own dependencies (click,
tenacity, requests, ...) for nothing else.
"""
import glob
import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))


def _with_smoke_parameters(nb, data_dir: str):
  tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
  assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters' (SMOKE, RUN_VTAB, ...)"
  smoke = f"SMOKE = True\nRUN_VTAB = False\nWORKDIR = 'runs'\nDATA_DIR = {data_dir!r}"
  nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(smoke, metadata={"tags": ["injected-parameters"]}))
  return nb


def test_there_are_notebooks():
  assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_shrunk_on_cpu(path, tmp_path, mini_count_data_dir):
  nb = _with_smoke_parameters(nbformat.read(path, as_version=4), mini_count_data_dir)
  # The kernel is this interpreter's (its `python` first on PATH), on the CPU, seeing this checkout of jpeft,
  # with a compilation cache of its own (as a user's default one): rebuilding a run's model to evaluate or merge
  # it loads the programs its training compiled. The smoke runs are tiny models for one epoch, so compiling is
  # most of their time: XLA's CPU backend at optimisation level 0 compiles about twice as fast (the programs run
  # slower, and give the same results up to float rounding).
  xla_flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))
  env = dict(os.environ, JAX_PLATFORMS="cpu", JPEFT_COMPILATION_CACHE=str(tmp_path / "xla"), XLA_FLAGS=xla_flags,
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
             PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
  client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
  client.execute(env=env)  # raises CellExecutionError, with the cell and its traceback, on any error
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  assert any("image/png" in o.get("data", {}) for o in outputs)  # each notebook shows at least one figure
  if os.path.basename(path) == "quickstart.ipynb":
    assert any("trainable params:" in o.get("text", "") for o in outputs)  # jpeft.summary's table
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_has_a_colab_badge_and_one_repository_url(path):
  nb = nbformat.read(path, as_version=4)
  name = os.path.basename(path)
  assert f"colab.research.google.com/github/jpeft/jpeft/blob/main/notebooks/{name}" in nb.cells[0].source
  code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
  # The repository's URL is one constant; everything else uses REPO_URL.
  assert code.count("https://github.com/") == 1 and "REPO_URL = 'https://github.com/jpeft/jpeft'" in code
  assert "<your-fork>" not in code


def test_the_four_notebooks_exist():
  assert sorted(map(os.path.basename, NOTEBOOKS)) == [
      "analysis_ensembles.ipynb", "quickstart.ipynb", "robustness_wise.ipynb", "vtab_sweep_tpu.ipynb"]

"""`python -m jpeft.analysis` end to end on a real sweep made here (mu/8, 2 methods x 2 trials x 2 epochs): the
files it writes hold the statistics of the saved predictions, and bad input exits 1 with one paragraph; the
sweep packed by `python -m jpeft.analysis.pack` is analysed to the same files."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jpeft import analysis, outputs
from jpeft.analysis import agreement, calibration, ensembles, pack
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import protocol, trial_log
from tests.helpers import REPO, load_config, write_folder_task
from tests.sweep.conftest import tiny_overrides

METHODS = ["lora", "adapter"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("analysis_folder"))
  write_folder_task(root, noise=200)
  grid = grid_lib.default_grid()
  grid.lr, grid.wd, grid.seeds = (1e-3, 1e-2), (1e-4,), (42,)
  grid.lora.rank = (4,)
  grid.adapter.bottleneck, grid.adapter.scale = (4,), (1.0,)
  workdir = str(tmp_path_factory.mktemp("analysis_sweep"))
  # One trial per program: a method's tune trials and its final run then share their compiled programs (12
  # compilations instead of 18, the bulk of this file's time). Batched trials' predictions are checked by
  # tests/sweep/test_cli.py (trial_batch=4).
  protocol.run_sweep(load_config(tiny_overrides(root)), ["dtd"], METHODS, grid, workdir, trial_batch=1,
                     log=lambda _: None)
  return workdir


def _run(*args, program="jpeft.analysis"):
  return subprocess.run([sys.executable, "-m", program, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))


def _csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _saved(workdir, stage):
  """{method: (logits, labels)} of each method's selected trial, read from the files trials.jsonl names."""
  with open(os.path.join(workdir, protocol.SUMMARY_FILE)) as f:
    selected = {s["method"]: s["selected"] for s in map(json.loads, f)}
  with open(os.path.join(workdir, trial_log.TRIALS_FILE)) as f:
    rows = [json.loads(line) for line in f]
  out = {}
  for row in rows:
    if row["stage"] == stage and dict(lr=row["lr"], wd=row["wd"], **row["hparams"]) == selected[row["method"]]:
      with np.load(os.path.join(workdir, row["predictions"])) as saved:
        out[row["method"]] = (saved["logits"], saved["labels"])
  return out


@pytest.fixture(scope="module")
def analysed(sweep, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("analysis_out"))
  proc = _run(f"--sweep={sweep}", f"--out={out}")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return out, proc.stdout


def test_summary_states_every_finding(analysed):
  out, stdout = analysed
  with open(os.path.join(out, "summary.md")) as f:
    summary = f.read()
  assert summary in stdout
  for title in ("1. Agreement: different mistakes", "2. Confident predictions", "3. Ensembles", "4. Calibration"):
    assert f"## {title}" in summary
  assert "No Venn figure: it needs three methods." in summary
  assert "Chosen on val200 only, over 1 task(s)" in summary
  for name in ("agreement_natural.png", "reliability.png", "accuracy_vs_confidence.png"):
    assert os.path.getsize(os.path.join(out, name)) > 1000
    assert f"[{name}]({name})" in summary


def test_agreement_table_is_the_saved_predictions(analysed, sweep):
  out, _ = analysed
  test = _saved(sweep, "final")
  (row,) = _csv(os.path.join(out, "agreement.csv"))
  labels = test["lora"][1]
  expected = agreement.pair_stats(test[row["method a"]][0].argmax(-1), test[row["method b"]][0].argmax(-1), labels)
  for stat, value in expected.items():
    assert float(row[stat]) == pytest.approx(value)


def test_chosen_ensemble_follows_the_val_predictions(analysed, sweep):
  out, _ = analysed
  val, test = _saved(sweep, "tune"), _saved(sweep, "final")
  val_accuracy = {m: np.mean(x.argmax(-1) == y) for m, (x, y) in val.items()}
  (row,) = _csv(os.path.join(out, "ensembles_chosen.csv"))
  assert row["val-best method"] == max(METHODS, key=lambda m: (val_accuracy[m], -METHODS.index(m)))
  members = [test[m][0] for m in row["chosen members"].split("+")]
  assert float(row["test accuracy"]) == pytest.approx(
      ensembles.accuracy(ensembles.combine(members, row["rule"]), test["lora"][1]))


def test_val_predictions_are_the_selected_trials(sweep):
  """The val200 files found for the selected setting score what summary.jsonl reports as its val accuracy."""
  val = _saved(sweep, "tune")
  with open(os.path.join(sweep, protocol.SUMMARY_FILE)) as f:
    for summary in map(json.loads, f):
      logits, labels = val[summary["method"]]
      assert np.mean(logits.argmax(-1) == labels) == pytest.approx(summary["val_accuracy"])


def test_calibration_table_is_the_saved_predictions(analysed, sweep):
  out, _ = analysed
  test = _saved(sweep, "final")
  rows = {(r["task"], r["method"]): r for r in _csv(os.path.join(out, "calibration.csv"))}
  for method, (logits, labels) in test.items():
    confidence, correct = calibration.confidence_and_correct(logits, labels)
    assert float(rows[("dtd", method)]["ECE (15 bins)"]) == pytest.approx(calibration.ece(confidence, correct))


def test_bad_input_exits_1_with_one_paragraph(sweep, tmp_path):
  """(test_load checks every bad input's message; this checks what the command does with one.)"""
  proc = _run(f"--sweep={sweep}", f"--out={tmp_path / 'out'}", "--methods=lora,ssf")
  assert proc.returncode == 1
  assert "jpeft.analysis: error: Unknown method 'ssf': the sweep in" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "out")


@pytest.fixture(scope="module")
def packed(sweep, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("packed") / "sweep")
  proc = _run(f"--sweep={sweep}", f"--out={out}", program="jpeft.analysis.pack")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return out, proc.stdout


def test_packed_sweep_holds_only_what_the_analysis_reads(packed, sweep):
  out, stdout = packed
  size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out) for f in files)
  assert f"2 test and 2 val200 prediction files, 8 files, {size / 2**20:.2f} MiB." in stdout
  with open(os.path.join(out, trial_log.TRIALS_FILE)) as f:
    rows = [json.loads(line) for line in f]
  # Of the sweep's 4 tune trials and 2 final runs: each method's final run and its selected trial's tune run.
  assert sorted((r["method"], r["stage"]) for r in rows) == [("adapter", "final"), ("adapter", "tune"),
                                                             ("lora", "final"), ("lora", "tune")]
  assert all(set(r) <= set(pack.TRIAL_FIELDS) for r in rows)
  for stage in ("final", "tune"):
    for method, (logits, labels) in _saved(sweep, stage).items():
      (row,) = [r for r in rows if r["method"] == method and r["stage"] == stage]
      with np.load(os.path.join(out, row["predictions"])) as saved:
        assert saved["logits"].dtype == logits.dtype
        np.testing.assert_array_equal(saved["logits"], logits)
        np.testing.assert_array_equal(saved["labels"], labels)


def test_packed_sweep_is_analysed_to_the_same_files(analysed, packed, tmp_path):
  """Every table, figure and summary line equal, but the summary's title, which names the sweep analysed."""
  out, _ = analysed
  summary = analysis.run(packed[0], str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == sorted(os.listdir(out))
  for name in os.listdir(out):
    with open(os.path.join(out, name), "rb") as a, open(os.path.join(tmp_path, name), "rb") as b:
      expected, got = a.read(), b.read()
    if name == "summary.md":
      assert got.split(b"\n", 1)[0] == f"{analysis.TITLE}{packed[0]}".encode()
      expected, got = expected.split(b"\n", 1)[1], got.split(b"\n", 1)[1]
    assert got == expected, name
  assert summary == str(tmp_path / "summary.md")


def test_pack_refuses_an_existing_out(sweep, tmp_path):
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "notes.txt").write_text("mine")
  with pytest.raises(outputs.OutputError, match=f"--out='{mine}' is a folder that is not empty and holds no "
                     "earlier pack"):
    pack.pack(sweep, str(mine), overwrite=True)
  assert os.listdir(mine) == ["notes.txt"]
  earlier = str(tmp_path / "earlier")
  pack.pack(sweep, earlier, methods=["lora"])
  with pytest.raises(outputs.OutputError, match="holds an earlier pack; pass --overwrite"):
    pack.pack(sweep, earlier)
  assert pack.pack(sweep, earlier, overwrite=True)["methods"] == ["lora", "adapter"]
  assert sorted(os.listdir(tmp_path)) == ["earlier", "mine"]  # no temporary folder left behind
  with pytest.raises(outputs.OutputError, match="holds no earlier pack"):
    pack.pack(sweep, sweep, overwrite=True)

"""Reading a sweep, and bad input: each problem is one AnalysisError naming it and the fix, before any output."""
import json
import os

import numpy as np
import pytest

from jpeft import analysis
from jpeft.analysis import AnalysisError, load
from jpeft.sweep import protocol, trial_log

from .conftest import one_hot_logits, write_sweep


def _tasks(rng, with_val=True, methods=("lora", "adapter", "ssf"), seeds=(42,)):
  out = {}
  for task in ("mini_count", "mini_cells"):
    labels, val_labels = rng.integers(0, 4, 60), rng.integers(0, 4, 20)
    out[task] = dict(labels=labels, test={m: {s: rng.normal(size=(60, 4)) for s in seeds} for m in methods})
    if with_val:
      out[task].update(val_labels=val_labels,
                       val={m: {s: rng.normal(size=(20, 4)) for s in seeds} for m in methods})
  return out


@pytest.fixture
def sweep(tmp_path):
  return write_sweep(str(tmp_path / "sweep"), _tasks(np.random.default_rng(0), seeds=(42, 43)))


def test_loads_what_was_written(tmp_path):
  data = _tasks(np.random.default_rng(1), seeds=(42, 43))
  loaded = load.load_sweep(write_sweep(str(tmp_path / "s"), data), methods=["ssf", "lora"])
  assert [tp.task for tp in loaded] == ["mini_count", "mini_cells"]
  for tp in loaded:
    assert list(tp.test.logits) == ["ssf", "lora"]  # the order asked
    np.testing.assert_array_equal(tp.test.labels, data[tp.task]["labels"])
    np.testing.assert_array_equal(tp.test.logits["lora"][43], data[tp.task]["test"]["lora"][43])
    np.testing.assert_array_equal(tp.val.logits["ssf"][42], data[tp.task]["val"]["ssf"][42])
    np.testing.assert_array_equal(tp.test.primary("lora"), data[tp.task]["test"]["lora"][42])


def test_more_final_seeds_than_tuning_seeds_keep_val(tmp_path):
  """--grid.final_seeds=42,43 over one tuning seed: test has both seeds, val200 the tuned one; a tuning seed whose
  val200 file was never saved (a sweep older than that) leaves the task without val."""
  data = _tasks(np.random.default_rng(3), seeds=(42, 43))
  for task in data.values():
    task["val"] = {m: {42: seeds[42]} for m, seeds in task["val"].items()}
  workdir = write_sweep(str(tmp_path / "s"), data)
  for tp in load.load_sweep(workdir):
    assert list(tp.test.logits["lora"]) == [42, 43] and list(tp.val.logits["lora"]) == [42]
    np.testing.assert_array_equal(tp.val.primary("adapter"), data[tp.task]["val"]["adapter"][42])
  trials = os.path.join(workdir, trial_log.TRIALS_FILE)
  rows = [json.loads(line) for line in open(trials)]
  for row in rows:
    if row["stage"] == "tune" and row["task"] == "mini_cells" and row["method"] == "ssf":
      del row["predictions"]
  with open(trials, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  count, cells = load.load_sweep(workdir)
  assert count.val is not None and cells.val is None


def test_sweep_without_val_predictions_still_analysed(tmp_path):
  workdir = write_sweep(str(tmp_path / "s"), _tasks(np.random.default_rng(2), with_val=False))
  assert all(tp.val is None for tp in load.load_sweep(workdir))
  with open(analysis.run(workdir)) as f:
    summary = f.read()
  assert "No val200 predictions for mini_count, mini_cells" in summary
  assert "## 4. Calibration" in summary


@pytest.mark.parametrize("kwargs,message", [
    (dict(tasks=["mini_count", "svhn"]), "Unknown task 'svhn': the sweep in"),
    (dict(methods=["lora", "lorra"]), "Unknown method 'lorra'"),
    (dict(venn=["lora", "adapter"]), "--venn=lora,adapter must name three different analysed methods"),
    (dict(methods=["lora", "adapter"], venn=["lora", "adapter", "ssf"]), "analysed: lora, adapter"),
    (dict(confident_fraction=0.0), "--confident_fraction=0.0 must be in (0, 1]"),
    (dict(methods=["ssf"]), "Only one method to analyse (ssf): the analyses compare methods."),
])
def test_bad_options(sweep, kwargs, message):
  with pytest.raises(AnalysisError) as error:
    analysis.run(sweep, **kwargs)
  assert message in str(error.value)
  assert not os.path.exists(os.path.join(sweep, "analysis"))  # nothing written


def test_not_a_sweep(tmp_path):
  with pytest.raises(AnalysisError, match="holds no finished sweep"):
    analysis.run(str(tmp_path))


def test_sweep_without_predictions(sweep):
  """A sweep made before predictions were saved: its rows name no files."""
  path = os.path.join(sweep, trial_log.TRIALS_FILE)
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  with open(path, "w") as f:
    f.writelines(json.dumps({k: v for k, v in r.items() if k != "predictions"}) + "\n" for r in rows)
  with pytest.raises(AnalysisError) as error:
    analysis.run(sweep)
  assert "has no saved test predictions for mini_count/lora, mini_count/adapter" in str(error.value)
  assert "--tasks= / --methods=" in str(error.value)


def test_mismatched_labels(sweep):
  path = protocol.predictions_path(sweep, "mini_cells", "ssf", 42)
  with np.load(path) as saved:
    logits, labels = saved["logits"], saved["labels"]
  np.savez(path, logits=logits[:50], labels=labels[:50])  # another test set (its own accuracy kept true)
  row_accuracy = float(np.mean(logits[:50].argmax(-1) == labels[:50]))
  trials = os.path.join(sweep, trial_log.TRIALS_FILE)
  with open(trials) as f:
    rows = [json.loads(line) for line in f]
  for r in rows:
    if r["task"] == "mini_cells" and r["method"] == "ssf" and r["seed"] == 42 and r["stage"] == "final":
      r["accuracy"] = row_accuracy
  with open(trials, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  with pytest.raises(AnalysisError, match="mini_cells: ssf seed 42 has labels that differ from lora seed 42 "
                                          r"\(50 vs 60 samples\): they come from different test sets"):
    analysis.run(sweep)


def test_relabelled_test_set(sweep):
  """Same size, other labels: moved only where the prediction is wrong either way, so the file's accuracy still
  matches its row and only the comparison with the other methods' labels can catch it."""
  path = protocol.predictions_path(sweep, "mini_count", "lora", 43)
  with np.load(path) as saved:
    logits, labels = saved["logits"], saved["labels"]
  moved = (labels + 1) % 4
  where = np.flatnonzero((logits.argmax(-1) != labels) & (logits.argmax(-1) != moved))[:3]
  relabelled = labels.copy()
  relabelled[where] = moved[where]
  np.savez(path, logits=logits, labels=relabelled)
  with pytest.raises(AnalysisError, match=f"lora seed 43 has labels that differ from lora seed 42 "
                                          rf"\({len(where)} of 60 labels differ\)"):
    analysis.run(sweep)


def test_stale_predictions_file(sweep):
  path = protocol.predictions_path(sweep, "mini_count", "adapter", 43)
  with np.load(path) as saved:
    labels = saved["labels"]
  np.savez(path, logits=one_hot_logits(labels, 4), labels=labels)  # 100% right: not the recorded run
  with pytest.raises(AnalysisError, match="does not hold the predictions of its run: their accuracy is 1.0000"):
    analysis.run(sweep)


def test_out_folder_is_never_clobbered(sweep, tmp_path):
  mine = tmp_path / "mine"
  os.makedirs(mine)
  (mine / "notes.md").write_text("keep me")
  with pytest.raises(AnalysisError, match="is not empty and holds no earlier analysis"):
    analysis.run(sweep, out=str(mine))
  assert (mine / "notes.md").read_text() == "keep me"


def test_rerun_replaces_an_earlier_analysis(sweep):
  analysis.run(sweep)
  out = os.path.join(sweep, "analysis")
  assert os.path.exists(os.path.join(out, "confident_venn.png"))
  analysis.run(sweep, methods=["lora", "adapter"])  # no Venn this time: the old figure must not remain
  assert not os.path.exists(os.path.join(out, "confident_venn.png"))
  with open(os.path.join(out, "summary.md")) as f:
    assert "No Venn figure: it needs three methods." in f.read()

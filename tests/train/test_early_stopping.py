"""Early stopping: training stops after `patience` evaluations of the watched split without improvement, the
reported test accuracy is the best parameters' (the model every checkpoint keeps as its 'best' item, which mode
'eval' evaluates), and a run killed on the way resumes to the same result."""
import json

import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft.train import checkpointing, splits, trainer
from jpeft.train.errors import ConfigError

EPOCHS = 12


def _overrides(folder_root, **extra):
  # Final mode watching val200 (inside train800val200 here: the mechanics, not a protocol) and testing on test;
  # a high lr makes val accuracy stall within a few epochs, and patience 2 stops there.
  return tiny_overrides(folder_root, mode="final", **{
      "optim.epochs": EPOCHS, "optim.lr": 3e-2, "checkpoint_every_epochs": 3, "checkpoint_max_to_keep": 1,
      "early_stopping.patience": 2, "early_stopping.split": "val200", **extra})


@pytest.fixture(scope="module")
def stopped(folder_root, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("early_stopping") / "run"
  return trainer.run(load_config(_overrides(folder_root)), str(workdir)), workdir


def test_training_stops_and_reports_the_best_parameters(stopped, folder_root):
  result, workdir = stopped
  es = result["early_stopping"]
  accuracies = [e["accuracy"] for e in result["evals"]]
  assert es["reason"] == "patience" and es["stopped_epoch"] < EPOCHS  # it did stop early ...
  assert [e["epoch"] for e in result["evals"]] == list(range(1, es["stopped_epoch"] + 1))  # ... after evaluating
  best = int(np.argmax(accuracies))  # the first maximum: ties are no improvement
  assert es["best_epoch"] == best + 1 and es["best_value"] == accuracies[best]
  assert es["stopped_epoch"] == es["best_epoch"] + 2 and es["split"] == "val200"
  assert result["eval_split"] == "test" and result["steps"] == es["stopped_epoch"] * (96 // 16)

  # The newest checkpoint (max_to_keep 1: the one of the stopping epoch) holds the best parameters, and mode
  # 'eval' scores them: the same test accuracy and logits as the run reported.
  evaluated = trainer.run(load_config(dict(_overrides(folder_root), mode="eval")), str(workdir))
  assert evaluated["accuracy"] == result["accuracy"]
  assert (evaluated["step"], evaluated["epoch"]) == (es["best_step"], es["best_epoch"])
  np.testing.assert_array_equal(np.load(workdir / "eval_logits_test.npy"), np.load(workdir / "logits_test.npy"))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"), create=False)
  try:
    step = ckpt.latest_step()
    state, meta = ckpt.restore(step, None)
  finally:
    ckpt.close()
  assert meta["early_stopping"]["best"]["step"] == es["best_step"] < step
  assert any(not np.array_equal(state["trainable"][k], state["last_trainable"][k]) for k in state["trainable"])


def test_a_killed_run_resumes_to_the_same_result(stopped, folder_root, tmp_path, monkeypatch):
  reference, _ = stopped
  # Killed in the epoch that stops it: resumed from the checkpoint before, which counts one evaluation without
  # improvement since the best, the run must stop at the same epoch with the same best parameters.
  kill_epoch = reference["early_stopping"]["stopped_epoch"] - 1
  overrides = _overrides(folder_root, checkpoint_every_epochs=1)
  original = splits.train_batches

  def dying_batches(arrays, batch_size, seed, epoch):
    for i, batch in enumerate(original(arrays, batch_size, seed, epoch)):
      if epoch == kill_epoch and i == 1:
        raise KeyboardInterrupt("simulated kill")
      yield batch

  monkeypatch.setattr(splits, "train_batches", dying_batches)
  with pytest.raises(KeyboardInterrupt):
    trainer.run(load_config(overrides), str(tmp_path / "run"))
  monkeypatch.setattr(splits, "train_batches", original)
  resumed = trainer.run(load_config(overrides), str(tmp_path / "run"))
  assert resumed["launches"] == 2
  for key in ("accuracy", "evals", "early_stopping", "steps"):
    assert resumed[key] == reference[key], key
  assert json.loads((tmp_path / "run" / "result.json").read_text())["early_stopping"] == reference["early_stopping"]


@pytest.mark.parametrize("overrides, message", [
    ({"early_stopping.patience": 0}, r"early_stopping.split' = 'val200'.*patience is 0"),
    ({"early_stopping.split": "test"}, r"early_stopping.split' = 'test'.*optimistic"),
    ({"early_stopping.split": "val10"}, r"early_stopping.split' = 'val10'.*a split of task 'dtd'"),
    ({"early_stopping.metric": "top5"}, r"early_stopping.metric' = 'top5'"),
    ({"data.random_erasing": 0.25}, r"data.random_erasing' = 0.25.*data.augment is None"),
    ({"data.randaugment": "rand-m9-x3"}, r"data.randaugment'.*Unknown section 'x3'"),
])
def test_bad_settings_are_refused(folder_root, overrides, message):
  with pytest.raises(ConfigError, match=message):
    trainer.run(load_config(_overrides(folder_root, **overrides)), "/nonexistent/never_created")

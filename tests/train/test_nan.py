"""A non-finite loss stops the run keeping the last good checkpoint, or is skipped when configured."""
import os

import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft.train import checkpointing, splits, trainer
from jpeft.train.errors import ConfigError, NonFiniteLossError


@pytest.fixture
def poisoned_batches(monkeypatch):
  """The first batch of epoch 2 has a NaN pixel."""
  original = splits.train_batches

  def batches(arrays, batch_size, seed, epoch):
    for i, batch in enumerate(original(arrays, batch_size, seed, epoch)):
      if epoch == 1 and i == 0:
        batch["image"] = batch["image"].copy()
        batch["image"][0, 0, 0, 0] = np.nan
      yield batch

  monkeypatch.setattr(splits, "train_batches", batches)


def test_nan_stops_and_keeps_last_good_checkpoint(folder_root, tmp_path, poisoned_batches):
  workdir = tmp_path / "stop"
  config = load_config(tiny_overrides(folder_root, **{"optim.epochs": 3, "checkpoint_every_epochs": 1}))
  with pytest.raises(NonFiniteLossError, match=r"step 5 \(epoch 2\).*its last checkpoint \(step 4\) is the last "
                     r"good state.*nan_policy=skip"):
    trainer.run(config, str(workdir))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == 4  # end of epoch 1; nothing saved after the NaN
  ckpt.close()
  assert not (workdir / "result.json").exists()


def test_nan_before_the_first_checkpoint_says_none_was_written_and_leaves_nothing(folder_root, tmp_path,
                                                                                 poisoned_batches):
  workdir = tmp_path / "early"
  config = load_config(tiny_overrides(folder_root, **{"optim.epochs": 3, "checkpoint_every_epochs": 2}))
  with pytest.raises(NonFiniteLossError, match=r"step 5 \(epoch 2\).*it had written no checkpoint yet, so nothing "
                     r"of it was kept") as raised:
    trainer.run(config, str(workdir))
  assert "last good state" not in str(raised.value)
  assert not workdir.exists()  # no init_head.npz, metrics or empty checkpoints/ of a run that kept nothing

  user_file = tmp_path / "mine" / "notes.txt"  # a workdir the user made: only what the run added goes
  user_file.parent.mkdir()
  user_file.write_text("mine")
  with pytest.raises(NonFiniteLossError):
    trainer.run(config, str(user_file.parent))
  assert sorted(os.listdir(user_file.parent)) == ["notes.txt"] and user_file.read_text() == "mine"


def test_nan_batch_is_skipped_when_configured(folder_root, tmp_path, poisoned_batches):
  config = load_config(tiny_overrides(folder_root, **{"optim.epochs": 3, "optim.nan_policy": "skip"}))
  result = trainer.run(config, str(tmp_path / "skip"))
  assert result["skipped_steps"] == 1
  assert all(np.isfinite(e["loss"]) for e in result["evals"])
  assert result["warnings"] == ["1 of 12 steps (8.3%) had a non-finite loss or gradients and were skipped "
                                "(optim.nan_policy=skip)."]


def test_too_many_skipped_steps_fail_keeping_final_checkpoint(folder_root, tmp_path, poisoned_batches):
  workdir = tmp_path / "skip"
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 3, "optim.nan_policy": "skip",
                                             "optim.max_skipped_fraction": 0.05})
  with pytest.raises(NonFiniteLossError, match=r"1 of 12 steps .*max_skipped_fraction = 0.05"):
    trainer.run(load_config(overrides), str(workdir))
  assert not (workdir / "result.json").exists()
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == 12
  ckpt.close()
  # Accepting the skips needs no retraining: the same run with a higher bar only evaluates.
  result = trainer.run(load_config(dict(overrides, **{"optim.max_skipped_fraction": 0.1})), str(workdir))
  assert result["skipped_steps"] == 1 and result["steps"] == 12


def test_max_skipped_fraction_is_validated(folder_root, tmp_path):
  with pytest.raises(ConfigError, match="optim.max_skipped_fraction"):
    trainer.run(load_config(tiny_overrides(folder_root, **{"optim.max_skipped_fraction": 1.5})),
                str(tmp_path / "x"))
  assert not (tmp_path / "x").exists()

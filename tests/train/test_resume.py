"""A run killed mid-way and started again with the same command ends exactly where an uninterrupted run ends."""
import errno
import json

import numpy as np
import orbax.checkpoint as ocp
import pytest

from .conftest import load_config, tiny_overrides
from jpeft.train import checkpointing, trainer
from jpeft.train.checkpointing import CheckpointWriteError
from jpeft.train.errors import ConfigError


def test_interrupted_run_resumes_to_identical_result(folder_root, tmp_path, monkeypatch):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 4, "checkpoint_every_epochs": 2})
  reference = trainer.run(load_config(overrides), str(tmp_path / "reference"))

  # Kill in the middle of epoch 3: the checkpoint of epoch 2 exists, the progress of epoch 3 is lost.
  original = trainer.train_batches

  def dying_batches(arrays, batch_size, seed, epoch):
    for i, batch in enumerate(original(arrays, batch_size, seed, epoch)):
      if epoch == 2 and i == 2:
        raise KeyboardInterrupt("simulated kill")
      yield batch

  workdir = tmp_path / "resumed"
  monkeypatch.setattr(trainer, "train_batches", dying_batches)
  with pytest.raises(KeyboardInterrupt):
    trainer.run(load_config(overrides), str(workdir))
  assert not (workdir / "result.json").exists()
  monkeypatch.setattr(trainer, "train_batches", original)

  resumed = trainer.run(load_config(overrides), str(workdir))
  assert resumed["steps"] == reference["steps"]
  assert resumed["evals"] == reference["evals"]  # bit-identical accuracies and losses, epochs 1-4
  assert resumed["accuracy"] == reference["accuracy"]
  np.testing.assert_array_equal(np.load(workdir / "logits_val200.npy"),
                                np.load(tmp_path / "reference" / "logits_val200.npy"))
  events = [json.loads(line).get("event") for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert events.count("resumed") == 1


def test_full_disk_fails_cleanly_keeping_earlier_checkpoints(folder_root, tmp_path, monkeypatch):
  original_save = ocp.CheckpointManager.save
  calls = []

  def save_until_disk_full(self, step, *args, **kwargs):
    calls.append(step)
    if len(calls) > 1:
      raise OSError(errno.ENOSPC, "No space left on device")
    return original_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_until_disk_full)
  workdir = tmp_path / "full"
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 4, "checkpoint_every_epochs": 2,
                                             "eval_every_epochs": 4})
  with pytest.raises(CheckpointWriteError, match=r"No space left.*latest complete step: 8"):
    trainer.run(load_config(overrides), str(workdir))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == 8
  ckpt.close()


def test_resuming_with_another_config_is_refused(folder_root, tmp_path):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 1})
  trainer.run(load_config(overrides), str(tmp_path / "run"))
  with pytest.raises(ConfigError, match=r"optim.lr = 0.01, but this config has optim.lr = 0.5.*--workdir"):
    trainer.run(load_config(dict(overrides, **{"optim.lr": 0.5})), str(tmp_path / "run"))

"""A non-finite loss stops the run keeping the last good checkpoint, or is skipped when configured."""
import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft.train import checkpointing, trainer
from jpeft.train.errors import NonFiniteLossError


@pytest.fixture
def poisoned_batches(monkeypatch):
  """The first batch of epoch 2 has a NaN pixel."""
  original = trainer.train_batches

  def batches(arrays, batch_size, seed, epoch):
    for i, batch in enumerate(original(arrays, batch_size, seed, epoch)):
      if epoch == 1 and i == 0:
        batch["image"] = batch["image"].copy()
        batch["image"][0, 0, 0, 0] = np.nan
      yield batch

  monkeypatch.setattr(trainer, "train_batches", batches)


def test_nan_stops_and_keeps_last_good_checkpoint(folder_root, tmp_path, poisoned_batches):
  workdir = tmp_path / "stop"
  config = load_config(tiny_overrides(folder_root, **{"optim.epochs": 3, "checkpoint_every_epochs": 1}))
  with pytest.raises(NonFiniteLossError, match=r"step 5 \(epoch 2\).*nan_policy=skip"):
    trainer.run(config, str(workdir))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == 4  # end of epoch 1; nothing saved after the NaN
  ckpt.close()
  assert not (workdir / "result.json").exists()


def test_nan_batch_is_skipped_when_configured(folder_root, tmp_path, poisoned_batches):
  config = load_config(tiny_overrides(folder_root, **{"optim.epochs": 3, "optim.nan_policy": "skip"}))
  result = trainer.run(config, str(tmp_path / "skip"))
  assert result["skipped_steps"] == 1
  assert all(np.isfinite(e["loss"]) for e in result["evals"])

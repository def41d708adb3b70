"""A run killed mid-way and started again with the same command ends exactly where an uninterrupted run ends."""
import errno
import json
import os
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from .conftest import load_config, tiny_overrides
from jpeft import workdir_lock
from jpeft.train import checkpointing, splits, trainer
from jpeft.train.checkpointing import CheckpointWriteError
from jpeft.train.errors import ConfigError


def _tb_steps(tb_dir, tag: str) -> list[int]:
  """The steps of `tag` over all event files in `tb_dir`, in file order."""
  steps = []
  for name in sorted(os.listdir(tb_dir)):
    for record in tf.data.TFRecordDataset(str(tb_dir / name)).as_numpy_iterator():
      event = event_pb2.Event.FromString(record)
      steps += [event.step for value in event.summary.value if value.tag == tag]
  return steps


def test_interrupted_run_resumes_to_identical_result(folder_root, tmp_path, monkeypatch):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 4, "checkpoint_every_epochs": 2})
  reference = trainer.run(load_config(overrides), str(tmp_path / "reference"))

  # Kill in the middle of epoch 3: the checkpoint of epoch 2 exists, the progress of epoch 3 is lost.
  original = splits.train_batches

  def dying_batches(arrays, batch_size, seed, epoch):
    for i, batch in enumerate(original(arrays, batch_size, seed, epoch)):
      if epoch == 2 and i == 2:
        raise KeyboardInterrupt("simulated kill")
      yield batch

  workdir = tmp_path / "resumed"
  monkeypatch.setattr(splits, "train_batches", dying_batches)
  start = time.time()
  with pytest.raises(KeyboardInterrupt):
    trainer.run(load_config(overrides), str(workdir))
  first_s = time.time() - start
  assert not (workdir / "result.json").exists()
  monkeypatch.setattr(splits, "train_batches", original)

  start = time.time()
  resumed = trainer.run(load_config(overrides), str(workdir))
  second_s = time.time() - start
  assert resumed["steps"] == reference["steps"]
  assert resumed["evals"] == reference["evals"]  # bit-identical accuracies and losses, epochs 1-4
  assert resumed["accuracy"] == reference["accuracy"]
  np.testing.assert_array_equal(np.load(workdir / "logits_val200.npy"),
                                np.load(tmp_path / "reference" / "logits_val200.npy"))

  # The result describes both processes: the first one's time up to its checkpoint counts too.
  assert resumed["launches"] == 2 and resumed["devices_per_launch"] == [1, 1]
  assert second_s < resumed["wall_s"] < first_s + second_s

  # Steps 9-10, logged by the first process after its checkpoint at step 8, are logged once, in both files.
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r.get("event") for r in records].count("resumed") == 1
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert train_steps == [2 * i for i in range(1, 9)]
  assert [r["step"] for r in records if "val200/accuracy" in r] == [4, 8, 12, 16]
  tb_steps = _tb_steps(workdir / "tb", "train/loss")
  assert tb_steps == train_steps


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
  with pytest.raises(CheckpointWriteError, match=r"No space left.*Earlier checkpoints are intact \(newest: step 8\)"):
    trainer.run(load_config(overrides), str(workdir))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == 8
  ckpt.close()


def test_resuming_with_another_config_is_refused(folder_root, tmp_path):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 1})
  trainer.run(load_config(overrides), str(tmp_path / "run"))
  with pytest.raises(ConfigError, match=r"optim.lr = 0.01, but this config has optim.lr = 0.5.*--workdir"):
    trainer.run(load_config(dict(overrides, **{"optim.lr": 0.5})), str(tmp_path / "run"))


def _snapshot(workdir) -> dict:
  """{relative path: bytes} of every file under workdir but the lock (which names the process holding it)."""
  return {os.path.relpath(os.path.join(root, name), workdir): open(os.path.join(root, name), "rb").read()
          for root, _, names in os.walk(workdir) for name in names if name != workdir_lock.LOCK_FILE}


def test_finished_run_started_again_says_so_and_changes_nothing(folder_root, tmp_path, capsys):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 2})
  workdir = tmp_path / "run"
  first = trainer.run(load_config(overrides), str(workdir))
  before = _snapshot(workdir)
  capsys.readouterr()

  again = trainer.run(load_config(overrides), str(workdir))
  assert again == json.loads(json.dumps(first))  # result.json as written, no second launch or seconds
  assert _snapshot(workdir) == before  # result.json, predictions, metrics, tb/ and checkpoints untouched
  said = capsys.readouterr().out.strip().splitlines()
  assert said == [f"jpeft: the run in '{workdir}' is finished (step 8, val200 accuracy {first['accuracy']:.4f}); "
                  "nothing was changed. To evaluate its final checkpoint again and rewrite result.json, add "
                  "--config.reevaluate=True."]

  # Asked to, it evaluates the final checkpoint again: the same numbers, one more launch.
  reevaluated = trainer.run(load_config(dict(overrides, reevaluate=True)), str(workdir))
  assert reevaluated["accuracy"] == first["accuracy"] and reevaluated["evals"] == first["evals"]
  assert reevaluated["launches"] == 2
  assert json.loads((workdir / "result.json").read_text())["launches"] == 2

"""A damaged newest checkpoint is set aside with a warning and the run resumes from the newest intact one."""
import glob
import os
import shutil

import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft.train import checkpointing, trainer


def _truncate_data_file(step_dir):
  for path in glob.glob(os.path.join(step_dir, "state", "d", "*")):
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


def _empty_manifest(step_dir):
  open(os.path.join(step_dir, "state", "manifest.ocdbt"), "w").close()


def _remove_metadata(step_dir):
  os.remove(os.path.join(step_dir, "meta", "metadata"))


DAMAGE = {"truncated data file": _truncate_data_file, "empty manifest": _empty_manifest,
          "missing metadata": _remove_metadata}


@pytest.fixture(scope="module")
def finished(folder_root, tmp_path_factory):
  """A finished 4-epoch run with checkpoints at epochs 3 and 4 (steps 12 and 16) kept."""
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 4, "checkpoint_every_epochs": 1,
                                             "checkpoint_max_to_keep": 2})
  workdir = str(tmp_path_factory.mktemp("damaged") / "reference")
  result = trainer.run(load_config(overrides), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "16"]
  return overrides, workdir, result


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_to_intact_one(finished, tmp_path, caplog, kind):
  overrides, reference, expected = finished
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  os.remove(workdir / "result.json")
  DAMAGE[kind](str(workdir / "checkpoints" / "16"))

  result = trainer.run(load_config(overrides), str(workdir))
  # Resumed at step 12, retrained epoch 4: the same result as the undamaged run.
  assert result["evals"] == expected["evals"]
  np.testing.assert_array_equal(np.load(workdir / "logits_val200.npy"),
                                np.load(os.path.join(reference, "logits_val200.npy")))
  warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("The checkpoint of step")]
  assert len(warnings) == 1 and "step 16" in warnings[0] and "is damaged" in warnings[0]
  assert "moved it to" in warnings[0] and warnings[0].endswith("intact checkpoint, step 12.")
  # The damaged checkpoint is kept, out of the way; the new step 16 is whole.
  assert (workdir / "checkpoints_damaged" / "16").is_dir()
  assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "16"]


def test_no_intact_checkpoint_is_one_clear_error(finished, tmp_path):
  overrides, reference, _ = finished
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  _remove_metadata(str(workdir / "checkpoints" / "16"))
  _empty_manifest(str(workdir / "checkpoints" / "12"))
  with pytest.raises(checkpointing.DamagedCheckpointError,
                     match=r"step 16: FileNotFoundError.*step 12: ValueError.*left in place"):
    trainer.run(load_config(overrides), str(workdir))
  assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "16"]
  assert not (workdir / "checkpoints_damaged").exists()

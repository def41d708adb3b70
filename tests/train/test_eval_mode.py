"""Mode 'eval' evaluates the run in the workdir only with that run's config, and writes files of its own."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft import checkpoints
from jpeft.models import vit
from jpeft.train import trainer
from jpeft.train.errors import ConfigError
from jpeft.workdir_lock import LOCK_FILE


@pytest.fixture(scope="module")
def trained(folder_root, tmp_path_factory):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 1})
  workdir = tmp_path_factory.mktemp("eval") / "run"
  trainer.run(load_config(overrides), str(workdir))
  return overrides, workdir


def _files(workdir):
  """{name: modification time} of the workdir's entries but the lock file (which records each holder)."""
  return {name: os.path.getmtime(workdir / name) for name in os.listdir(workdir) if name != LOCK_FILE}


def test_eval_with_another_backbone_and_method_is_refused(trained, tmp_path):
  overrides, workdir = trained
  backbone = vit.create_model("mu/8", num_classes=0).init(jax.random.PRNGKey(3), jnp.zeros((1, 32, 32, 3)))
  npz = str(tmp_path / "other_backbone.npz")
  checkpoints.save_npz(backbone["params"], npz, num_heads=2)
  before = _files(workdir)
  config = load_config(dict(overrides, mode="eval", method="lora", **{"pretrained.path": npz}))
  with pytest.raises(ConfigError, match=r"method = 'linear'.*pretrained.path = None.*but this config has "
                                        r"method = 'lora'.*pretrained.path = '.*other_backbone.npz'"):
    trainer.run(config, str(workdir))
  assert _files(workdir) == before  # nothing written, nothing replaced


def test_eval_writes_its_own_files_and_may_change_split_and_batch_size(trained):
  overrides, workdir = trained
  before = {name: (workdir / name).read_bytes() for name in ("result.json", "logits_val200.npy",
                                                              "labels_val200.npy")}
  config = load_config(dict(overrides, mode="eval", eval_split="test", **{"optim.batch_size": 8}))
  out = trainer.run(config, str(workdir))
  assert out["split"] == "test" and (workdir / "eval_test.json").exists()
  logits, labels = np.load(workdir / "eval_logits_test.npy"), np.load(workdir / "eval_labels_test.npy")
  assert logits.shape == (48, 47) and np.isclose((logits.argmax(-1) == labels).mean(), out["accuracy"])
  assert {name: (workdir / name).read_bytes() for name in before} == before


def test_eval_of_a_workdir_without_checkpoint_creates_nothing(folder_root, tmp_path):
  config = load_config(tiny_overrides(folder_root, mode="eval"))
  with pytest.raises(ConfigError, match="needs a checkpoint"):
    trainer.run(config, str(tmp_path / "missing"))
  assert not (tmp_path / "missing").exists()
  (tmp_path / "empty").mkdir()
  with pytest.raises(ConfigError, match="needs a checkpoint"):
    trainer.run(config, str(tmp_path / "empty"))
  assert os.listdir(tmp_path / "empty") == []

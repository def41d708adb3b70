"""`config.init_from`: a new run starts from another run's trained state (PEFT parameters, head, optionally the
optimizer), on the same or another task, and refuses sources that do not fit."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft import checkpoints
from jpeft.models import vit
from jpeft.train import model_setup, optim, reuse, trainer
from jpeft.train.errors import ConfigError

OTHER_TASK = "eurosat"  # 10 classes, where dtd has 47: a transfer needs a new head


@pytest.fixture(scope="module")
def source(folder_root, tmp_path_factory):
  """A LoRA run on dtd over a saved mu/8 backbone; the folder root also holds the same images as OTHER_TASK."""
  tmp = tmp_path_factory.mktemp("init_from")
  root = str(tmp / "data")
  shutil.copytree(os.path.join(folder_root, "dtd"), os.path.join(root, "dtd"))
  shutil.copytree(os.path.join(folder_root, "dtd"), os.path.join(root, OTHER_TASK))
  backbone = vit.create_model("mu/8", num_classes=0).init(jax.random.PRNGKey(7), jnp.zeros((1, 32, 32, 3)))
  npz = str(tmp / "backbone.npz")
  checkpoints.save_npz(backbone["params"], npz, num_heads=2)
  overrides = tiny_overrides(root, **{"method": "lora", "pretrained.path": npz, "optim.epochs": 1})
  workdir = str(tmp / "source")
  result = trainer.run(load_config(overrides), workdir)
  return overrides, workdir, result


def _start(overrides, **extra):
  config = load_config(dict(overrides, **extra))
  setup = model_setup.build(config)
  tx = optim.make_optimizer(config.optim, setup.labels)
  return setup, reuse.start_from(config, setup.trainable, setup.labels, tx)


def test_transfer_takes_the_adapters_and_makes_a_new_head(source):
  overrides, workdir, result = source
  saved = reuse.load_run(workdir)
  assert saved.step == result["steps"]
  setup, (params, opt_state, record) = _start(overrides, task=OTHER_TASK, **{"init_from.workdir": workdir})
  assert record == dict(workdir=os.path.abspath(workdir), step=result["steps"], task="dtd", head="new",
                        optimizer=False)
  for path, value in params.items():
    expected = setup.trainable[path] if path.startswith("head/") else saved.trainable[path]
    np.testing.assert_array_equal(np.asarray(value), np.asarray(expected), err_msg=path)
  assert params["head/kernel"].shape == (32, 10)
  assert any(np.any(saved.trainable[p]) for p in params if "lora_b" in p)  # the adapters did train
  assert int(opt_state.count) == 0 and not np.any(opt_state.mu["encoder/block_0/attn/lora_a/kernel"])


def test_same_task_keeps_head_and_optimizer_when_asked(source):
  overrides, workdir, _ = source
  saved = reuse.load_run(workdir)
  _, (params, opt_state, record) = _start(overrides, **{"init_from.workdir": workdir,
                                                        "init_from.optimizer": True})
  assert record["head"] == "source" and record["optimizer"]
  np.testing.assert_array_equal(params["head/kernel"], saved.trainable["head/kernel"])
  assert int(opt_state.count) == saved.step
  for path in params:
    np.testing.assert_array_equal(np.asarray(opt_state.nu[path]), saved.opt_state.nu[path], err_msg=path)
  _, (params, _, record) = _start(overrides, **{"init_from.workdir": workdir, "init_from.head": False})
  assert record["head"] == "new" and not np.any(params["head/kernel"])  # the fresh (zero) head


def test_run_from_another_run_records_it_and_resumes_without_it(source, tmp_path):
  overrides, workdir, result = source
  config = load_config(dict(overrides, task=OTHER_TASK, **{"init_from.workdir": workdir}))
  out = trainer.run(config, str(tmp_path / "transfer"))
  expected = dict(workdir=os.path.abspath(workdir), step=result["steps"], task="dtd", head="new", optimizer=False)
  assert out["init_from"] == expected
  with open(tmp_path / "transfer" / "result.json") as f:
    assert json.load(f)["init_from"] == expected
  # Started again, the finished run restores its own checkpoint: the source is no longer needed.
  moved = str(tmp_path / "moved_source")
  shutil.move(workdir, moved)
  try:
    again = trainer.run(config, str(tmp_path / "transfer"))
  finally:
    shutil.move(moved, workdir)
  assert again["init_from"] == expected and again["accuracy"] == out["accuracy"]


def test_sources_that_do_not_fit_are_refused_with_the_fields(source, tmp_path):
  overrides, workdir, _ = source
  with pytest.raises(ConfigError, match=r"model.variant = 'mu/8', peft.lora.rank = None, .*but this config has "
                                        r"model.variant = 'mu/16', peft.lora.rank = 4"):
    _start(overrides, **{"init_from.workdir": workdir, "model.variant": "mu/16", "peft.lora": dict(rank=4)})
  with pytest.raises(ConfigError, match="holds no checkpoint"):
    _start(overrides, **{"init_from.workdir": str(tmp_path / "nothing")})
  with pytest.raises(ConfigError, match="this run's own --workdir"):
    trainer.run(load_config(dict(overrides, **{"init_from.workdir": workdir})), workdir)

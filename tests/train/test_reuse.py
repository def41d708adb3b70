"""Reusing a run: `config.init_from` starts a new run (or an evaluation) from another run's trained state, and
`jpeft.export` writes a finished run as timm safetensors or an adapter file."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors import safe_open

from .conftest import load_config, tiny_overrides
from jpeft import checkpoints, export
from jpeft.checkpoints import statedict
from jpeft.models import vit
from jpeft.peft.export import load_adapter
from jpeft.train import checkpointing, evaluation, model_setup, optim, reuse, splits, trainer
from jpeft.train.errors import ConfigError

OTHER_TASK = "eurosat"  # 10 classes, where dtd has 47: a transfer needs a new head
SOURCE_STEP = 12


@pytest.fixture(scope="module")
def source(folder_root, tmp_path_factory):
  """(overrides, workdir): a LoRA 'run' on dtd over a saved mu/8 backbone, its checkpoint written as the trainer
  writes one, with random non-zero trained parameters and Adam state (so every taken value shows). The data
  root also holds the same images as OTHER_TASK."""
  tmp = tmp_path_factory.mktemp("reuse")
  root = str(tmp / "data")
  for task in ("dtd", OTHER_TASK):
    shutil.copytree(os.path.join(folder_root, "dtd"), os.path.join(root, task))
  backbone = vit.create_model("mu/8", num_classes=0).init(jax.random.PRNGKey(7), jnp.zeros((1, 32, 32, 3)))
  npz = str(tmp / "backbone.npz")
  checkpoints.save_npz(backbone["params"], npz, num_heads=2)
  overrides = tiny_overrides(root, **{"method": "lora", "pretrained.path": npz, "optim.epochs": 1})
  config = load_config(overrides)
  setup = model_setup.build(config)
  rng = np.random.default_rng(0)
  noise = lambda tree: {k: (0.3 * rng.normal(size=np.shape(v))).astype(np.float32) for k, v in tree.items()}
  trainable = noise(setup.trainable)
  opt_state = optax.ScaleByAdamState(count=jnp.int32(SOURCE_STEP), mu=noise(trainable),
                                     nu={k: v ** 2 for k, v in noise(trainable).items()})
  workdir = str(tmp / "source")
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  ckpt.save(SOURCE_STEP, dict(trainable=trainable, opt_state=opt_state, step=SOURCE_STEP,
                              rng=jax.random.key_data(jax.random.PRNGKey(0))),
            trainer._meta(config, 1, [], 0, {}, None))  # pylint: disable=protected-access
  ckpt.wait()
  ckpt.close()
  return overrides, workdir, setup


@pytest.fixture(scope="module")
def other_setup(source):
  """The model setup of the source's config on OTHER_TASK (built once: each build compiles)."""
  return model_setup.build(load_config(dict(source[0], task=OTHER_TASK)))


@pytest.fixture(scope="module")
def transferred(source, tmp_path_factory):
  """(config, workdir, result) of a real run on OTHER_TASK that started from `source`."""
  overrides, workdir, _ = source
  config = load_config(dict(overrides, task=OTHER_TASK, **{"init_from.workdir": workdir}))
  out = str(tmp_path_factory.mktemp("transfer") / "run")
  return config, out, trainer.run(config, out)


def _start(setup, overrides, **extra):
  """start_from for the config `overrides` + `extra`, whose model `setup` is."""
  config = load_config(dict(overrides, **extra))
  tx = optim.make_optimizer(config.optim, setup.labels)
  return reuse.start_from(config, setup.trainable, setup.labels, tx)


def test_transfer_takes_the_adapters_and_makes_a_new_head(source, other_setup):
  overrides, workdir, _ = source
  saved = reuse.load_run(workdir)
  params, opt_state, record = _start(other_setup, overrides, task=OTHER_TASK, **{"init_from.workdir": workdir})
  assert record == dict(workdir=os.path.abspath(workdir), step=SOURCE_STEP, planned_step=SOURCE_STEP,
                        finished=True, task="dtd", head="new", optimizer=False)
  assert params["head/kernel"].shape == (32, 10)
  for path, value in params.items():
    expected = other_setup.trainable[path] if path.startswith("head/") else saved.trainable[path]
    np.testing.assert_array_equal(np.asarray(value), np.asarray(expected), err_msg=path)
  assert int(opt_state.count) == 0 and not np.any(opt_state.mu["encoder/block_0/attn/lora_a/kernel"])


def test_same_task_keeps_the_head_and_the_optimizer_when_asked(source):
  overrides, workdir, setup = source
  saved = reuse.load_run(workdir)
  params, opt_state, record = _start(setup, overrides, **{"init_from.workdir": workdir, "init_from.optimizer": True})
  assert record["head"] == "source" and record["optimizer"]
  np.testing.assert_array_equal(params["head/kernel"], saved.trainable["head/kernel"])
  assert int(opt_state.count) == SOURCE_STEP
  for path in params:
    np.testing.assert_array_equal(np.asarray(opt_state.nu[path]), saved.opt_state.nu[path], err_msg=path)
  params, _, record = _start(setup, overrides, **{"init_from.workdir": workdir, "init_from.head": False})
  assert record["head"] == "new" and not np.any(params["head/kernel"])  # the fresh (zero-initialised) head


def test_sources_that_do_not_fit_are_refused_naming_the_fields(source, tmp_path):
  overrides, workdir, _ = source
  saved = reuse.load_run(workdir)
  config = load_config(dict(overrides, **{"init_from.workdir": workdir, "model.variant": "mu/16",
                                          "peft.lora": dict(rank=4)}))
  with pytest.raises(ConfigError, match=r"model.variant = 'mu/8', peft.lora.rank = None, .*but this config has "
                                        r"model.variant = 'mu/16', peft.lora.rank = 4"):
    reuse.check_compatible(config, saved)
  with pytest.raises(ConfigError, match="holds no checkpoint"):
    reuse.load_run(str(tmp_path / "nothing"), "--config.init_from.workdir")
  with pytest.raises(ConfigError, match="this run's own --workdir"):
    trainer.run(load_config(dict(overrides, **{"init_from.workdir": workdir})), workdir)


def test_a_run_from_another_run_records_it(transferred, source):
  config, workdir, result = transferred
  expected = dict(workdir=os.path.abspath(source[1]), step=SOURCE_STEP, planned_step=SOURCE_STEP, finished=True,
                  task="dtd", head="new", optimizer=False)
  assert result["init_from"] == expected
  with open(os.path.join(workdir, "result.json")) as f:
    assert json.load(f)["init_from"] == expected
  # Its checkpoints carry the record: a resumed launch reports it without reading the source again.
  assert reuse.load_run(workdir).meta["init_from"] == expected


def test_eval_of_another_runs_checkpoint_into_a_new_workdir(source, other_setup, tmp_path):
  overrides, workdir, _ = source
  out = trainer.run(load_config(dict(overrides, mode="eval", **{"init_from.workdir": workdir})),
                    str(tmp_path / "eval"))
  assert out["init_from"]["step"] == SOURCE_STEP and out["step"] == SOURCE_STEP
  assert (tmp_path / "eval" / "eval_val200.json").exists() and not (tmp_path / "eval" / "checkpoints").exists()
  with pytest.raises(ConfigError, match="does not fit task 'eurosat'"):
    config = load_config(dict(overrides, mode="eval", task=OTHER_TASK, **{"init_from.workdir": workdir}))
    evaluation._restore_source(config, other_setup, None)  # pylint: disable=protected-access


def test_timm_export_of_a_run_predicts_as_the_run(transferred, other_setup, tmp_path):
  config, workdir, _ = transferred
  out = str(tmp_path / "model.safetensors")
  assert export.export_run(workdir, out, "timm") == [out]
  with safe_open(out, framework="np") as f:
    tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
  assert export.timm_usage(out, metadata).splitlines() == [
      "model = timm.create_model('vit_base_patch16_224', pretrained=False, num_classes=10, patch_size=8, "
      "embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, img_size=32)",
      f"model.load_state_dict(safetensors.torch.load_file({out!r}))"]
  assert json.loads(metadata[export.RUN_METADATA_KEY])["step"] == reuse.load_run(workdir).step
  plain = vit.create_model("mu/8", num_classes=10)
  val = splits.load_split(config, other_setup.task, "val200")
  logits = jax.jit(plain.apply)({"params": statedict.from_state_dict(tensors)}, val["image"])
  np.testing.assert_allclose(np.asarray(logits), np.load(os.path.join(workdir, "logits_val200.npy")), atol=1e-4)


def test_adapter_export_holds_the_trained_parameters(transferred, tmp_path):
  _, workdir, _ = transferred
  paths = export.export_run(workdir, str(tmp_path) + os.sep, "adapter")
  assert paths == [str(tmp_path / "adapter.safetensors")]
  trainable, methods = load_adapter(paths[0])
  saved = reuse.load_run(workdir)
  assert [m.name for m in methods] == ["lora"] and set(trainable) == set(saved.trainable)
  for path, value in trainable.items():
    np.testing.assert_array_equal(value, saved.trainable[path], err_msg=path)

"""`--config.init_from.peft=DIR`: a run's model starts from a PyTorch PEFT adapter (the adapters peft 0.22.0 saved
in tests/fixtures/peft_format_reference.npz, make_peft_format_reference.py, on the timm ViT of vit_mu8.safetensors)."""
import json
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from .conftest import load_config
from jpeft import api
from jpeft.data import tasks
from jpeft.export import peft_format
from jpeft.train import model_setup, trainer
from jpeft.train.errors import ConfigError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
FIVE_CLASSES = tasks.register_task(tasks.Task(name="peft_fixture_5", builder="none", num_classes=5), overwrite=True)


def _fixture() -> dict:
  with np.load(os.path.join(FIXTURES, "peft_format_reference.npz")) as f:
    return {k: f[k] for k in f.files}


def _write_adapter(directory, case: str, change=None) -> str:
  """The files peft saved for `case`, written as save_pretrained wrote them (`change` edits the tensors)."""
  fix = _fixture()
  prefix = f"{case}/tensor/"
  tensors = {k[len(prefix):]: v for k, v in fix.items() if k.startswith(prefix)}
  if change:
    change(tensors)
  os.makedirs(directory)
  with open(os.path.join(directory, peft_format.CONFIG_NAME), "w") as f:
    f.write(fix[f"{case}/config"].item())
  save_file(tensors, os.path.join(directory, peft_format.WEIGHTS_NAME))
  return str(directory)


def _config(adapter: str, method: str, hparams: dict, **extra):
  return load_config({"task": FIVE_CLASSES.name, "model.variant": "mu/8", "data.image_size": 32,
                      "pretrained.name": "", "pretrained.path": os.path.join(FIXTURES, "vit_mu8.safetensors"),
                      "method": method, "peft": {method: hparams}, "init_from.peft": adapter, **extra})


@pytest.mark.parametrize("case", ["dora", "vera"])  # DoRA's magnitude offsets, VeRA's frozen projections
def test_the_run_starts_from_the_adapter_and_computes_peft_logits(case, tmp_path):
  spec = json.loads(_fixture()[f"{case}/hparams"].item())
  config = _config(_write_adapter(tmp_path / case, case), spec["method"], dict(spec["hparams"], dropout=0.0))
  setup = model_setup.build(config)
  from jpeft.peft import partition  # pylint: disable=import-outside-toplevel
  logits = jax.jit(setup.model.apply)({"params": partition.combine(setup.trainable, setup.frozen)},
                                      _fixture()["images"])
  np.testing.assert_allclose(np.asarray(logits), _fixture()[f"{case}/logits"], atol=1e-4, rtol=0)


def test_another_method_or_base_is_one_error_naming_it(tmp_path):
  adapter = _write_adapter(tmp_path / "dora", "dora")
  with pytest.raises(ConfigError, match=r"is a dora adapter \(rank=2, targets=\('qkv', 'fc2'\)\), but this run's "
                                        r"method is lora .*--config.method=dora --config.peft.dora.rank=2"):
    model_setup.build(_config(adapter, "lora", {}))
  vera = _write_adapter(tmp_path / "vera", "vera")  # fields (d_initial) the run's method lacks
  with pytest.raises(ConfigError, match=r"is a vera adapter \(rank=4, targets=.*method is lora"):
    model_setup.build(_config(vera, "lora", {}))
  with pytest.raises(ConfigError, match=r"rank=8.*--config.peft.dora.rank=2"):
    model_setup.build(_config(adapter, "dora", {"targets": ("qkv", "fc2")}))

  def widen(tensors):  # an adapter of a base with other widths
    key = "base_model.model.blocks.0.attn.qkv.lora_A.weight"
    tensors[key] = np.zeros((2, 48), np.float32)
  wide = _write_adapter(tmp_path / "wide", "dora", widen)
  with pytest.raises(ConfigError, match=r"does not fit this model \('mu/8'\): encoder/block_0/attn/dora_qkv_a is "
                                        r"\(48, 2\) there but \(32, 2\) here"):
    model_setup.build(_config(wide, "dora", {"rank": 2, "targets": ("qkv", "fc2")}))
  with pytest.raises(peft_format.PeftFormatError, match=r"init_from.peft='.*nothing' is not a PEFT adapter"):
    model_setup.build(_config(str(tmp_path / "nothing"), "dora", {}))


def test_a_head_for_other_classes_is_new_and_eval_refuses_it(tmp_path):
  adapter = _write_adapter(tmp_path / "lora", "lora")
  hparams = {"rank": 3}
  setup = model_setup.build(_config(adapter, "lora", hparams, task="dtd"))  # 47 classes: a new head
  assert setup.trainable["head/kernel"].shape == (32, 47)
  np.testing.assert_allclose(setup.trainable["encoder/block_1/attn/lora_a/kernel"],
                             _fixture()["lora/tensor/base_model.model.blocks.1.attn.qkv.lora_A.weight"].T)
  with pytest.raises(ConfigError, match=r"mode 'eval' with .* evaluates the adapter's head, which has 5 classes, "
                                        r"where task 'dtd' has 47"):
    model_setup.build(_config(adapter, "lora", hparams, task="dtd", mode="eval"))


def test_finetune_takes_the_adapters_method(tmp_path, monkeypatch):
  adapter = _write_adapter(tmp_path / "vera", "vera")
  seen = {}
  monkeypatch.setattr(trainer, "run", lambda config, workdir: seen.setdefault("config", config) and {})
  api.finetune("mini/8", task="mini_count", workdir=str(tmp_path / "run"), init_from_peft=adapter,
               peft=dict(vera=dict(dropout=0.1)), compilation_cache="")
  config = seen["config"]
  assert config.method == "vera" and config.init_from.peft == adapter
  assert (config.peft.vera.rank, config.peft.vera.projection_seed, config.peft.vera.dropout) == (4, 3, 0.1)
  with pytest.raises(ValueError, match=r"is a vera adapter, but method='dora'"):
    api.finetune("mini/8", "dora", workdir=str(tmp_path / "run2"), init_from_peft=adapter)

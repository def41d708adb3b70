"""LoRA's options (scaling, alpha, init, LoRA+'s B group) against the PyTorch PEFT library 0.22.0.

Fixture: tests/fixtures/peft_library_reference_lora.npz (make_peft_library_reference_lora.py): the timm ViT of
vit_mu8.safetensors wrapped with LoRA on qkv, per case the library's initial adapter, the adapter moved by random
values, the logits and merge_and_unload()'s qkv weights.
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from jpeft import peft
from jpeft.checkpoints import statedict
from jpeft.models import vit
from jpeft.peft import partition

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
REF = dict(np.load(os.path.join(FIXTURES, "peft_library_reference_lora.npz")))
BASE = load_file(os.path.join(FIXTURES, "vit_mu8.safetensors"))
CASES = ("alpha_over_r", "rslora", "pissa", "olora_rslora", "gaussian")


@functools.lru_cache(maxsize=None)
def _setup(case: str):
  """(model, method, flat params: the fixture's backbone, lora parameters from jpeft's init and from_backbone)."""
  hparams = json.loads(REF[f"{case}/hparams"].item())
  methods = peft.build_methods("lora", {"lora": hparams})
  model = vit.create_model("mu/8", num_classes=5, methods=methods)
  fresh = partition.flatten(jax.jit(model.init)(jax.random.key(0), REF["images"][:1])["params"])
  plain = partition.flatten(statedict.from_state_dict(BASE))
  assert set(plain) <= set(fresh)
  flat = methods[0].from_backbone({**fresh, **plain})  # what model_setup.build does after loading
  return model, methods, flat


def _library(case: str, kind: str) -> dict:
  """{(block, 'A' | 'B'): jpeft-layout array} of the fixture's adapter (kind 'init' or 'adapter')."""
  out = {}
  for key, value in REF.items():
    if key.startswith(f"{case}/{kind}/"):
      parts = key.split("/")[-1].split(".")  # blocks.<i>.attn.qkv.lora_A.weight
      out[(int(parts[1]), parts[4][-1])] = value.T
  return out


def _with_adapter(case: str, flat: dict, kind: str = "adapter") -> dict:
  """flat with the library's A and B; for PiSSA / OLoRA as offsets from jpeft's own principal factors."""
  flat = dict(flat)
  for (block, which), value in _library(case, kind).items():
    scope = f"encoder/block_{block}/attn"
    start = flat.get(f"{scope}/lora_principal_{which.lower()}", 0.0)
    flat[f"{scope}/lora_{which.lower()}/kernel"] = jnp.asarray(value - np.asarray(start), jnp.float32)
  return flat


def _logits(model, flat):
  return np.asarray(jax.jit(model.apply)({"params": partition.unflatten(flat)}, REF["images"]))


@pytest.mark.parametrize("case", CASES)
def test_logits_and_merged_qkv_equal_the_library(case):
  model, methods, flat = _setup(case)
  flat = _with_adapter(case, flat)
  np.testing.assert_allclose(_logits(model, flat), REF[f"{case}/logits"], atol=1e-4, rtol=0)
  merged = partition.flatten(peft.merge(partition.unflatten(flat), methods))
  assert not any("lora" in k for k in merged)
  for block in (0, 1):
    np.testing.assert_allclose(merged[f"encoder/block_{block}/attn/qkv/kernel"],
                               REF[f"{case}/merged/blocks.{block}.attn.qkv.weight"].T, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["pissa", "olora_rslora"])
def test_principal_init_is_the_library_s_and_step_0_is_the_backbone(case):
  """jpeft's frozen principal factors times the scale are the library's (A0 B0 is unique; the factors' signs
  need not be), the trainable offsets start at 0, and the model and its merge at step 0 are the backbone."""
  model, methods, flat = _setup(case)
  scale = methods[0].scale
  library = _library(case, "init")
  for block in (0, 1):
    scope = f"encoder/block_{block}/attn"
    ours = flat[f"{scope}/lora_principal_a"] @ flat[f"{scope}/lora_principal_b"]
    np.testing.assert_allclose(scale * ours, scale * library[(block, "A")] @ library[(block, "B")], atol=1e-5)
    assert not np.any(flat[f"{scope}/lora_a/kernel"]) and not np.any(flat[f"{scope}/lora_b/kernel"])
    assert np.abs(scale * ours).max() > 0.1  # a real part of W moved
  np.testing.assert_allclose(_logits(model, flat), REF["base_logits"], atol=1e-4, rtol=0)
  np.testing.assert_allclose(REF[f"{case}/init_logits"], REF["base_logits"], atol=1e-4, rtol=0)
  merged = partition.flatten(peft.merge(partition.unflatten(flat), methods))
  plain = partition.flatten(statedict.from_state_dict(BASE))
  for path, value in merged.items():
    np.testing.assert_allclose(value, plain[path], atol=1e-5, rtol=0, err_msg=path)


def test_principal_factors_are_frozen_and_b_is_the_lora_plus_group():
  _, methods, flat = _setup("pissa")
  labels = partition.label_params(partition.unflatten(flat), methods)
  scope = "encoder/block_0/attn"
  assert labels[f"{scope}/lora_principal_a"] == labels[f"{scope}/lora_principal_b"] == peft.FROZEN
  assert labels[f"{scope}/lora_a/kernel"] == peft.PEFT
  assert labels[f"{scope}/lora_b/kernel"] == peft.PEFT_B


@pytest.mark.parametrize("init", ["study", "gaussian"])
def test_a_is_drawn_as_the_library_draws_it(init):
  """ViT-B/16's qkv at r = 8: torch-Linear U(+-1/sqrt(768)) for 'study', N(0, 1/r^2) for 'gaussian'."""
  method = peft.build_methods("lora", {"lora": {"rank": 8, "init": init}})[0]
  model = vit.create_model("B/16", num_classes=10, methods=(method,))
  init_a = jax.jit(lambda k: model.init(k, jnp.zeros((1, 224, 224, 3)))["params"]["encoder"]["block_0"]["attn"][
      "lora_a"]["kernel"])
  a = np.asarray(init_a(jax.random.key(3))).T  # torch's [r, in]
  assert list(a.shape) == REF[f"init_stats/{init}/shape"].tolist()
  np.testing.assert_allclose(a.std(), float(REF[f"init_stats/{init}/std"]), rtol=0.03)
  if init == "study":
    assert np.abs(a).max() <= float(REF["init_stats/study/bound"]) * 1.01


@pytest.mark.parametrize("name,hparams", [("lora_r8", {"rank": 8}), ("lora_r8_pissa", {"rank": 8, "init": "pissa"})])
def test_vit_b16_trainable_count_equals_the_library(name, hparams):
  methods = peft.build_methods("lora", {"lora": hparams})
  model = vit.create_model("B/16", num_classes=1000, methods=methods)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
  counts = peft.count_params(params, partition.label_params(params, methods))
  assert counts["trainable"] - counts["head"] == int(REF[f"counts/{name}"])
  assert counts[peft.PEFT_B] == 12 * 8 * 2304  # the B factors, LoRA+'s group


@pytest.mark.parametrize("field,value,match", [
    ("scaling", "alpha", r"scaling='alpha' is invalid, it must be one of \('study', 'alpha_over_r', 'rslora'\)"),
    ("init", "loftq", r"init='loftq' is invalid"),
    ("alpha", 0, r"alpha=0 is invalid, it must be a positive finite number"),
])
def test_bad_options_are_named(field, value, match):
  with pytest.raises(ValueError, match=match):
    peft.build_methods("lora", {"lora": {field: value}})


def test_lora_plus_trains_b_at_lr_mult_peft_b():
  """config.optim.lr_mult.peft_b = 16: B's step is 16 times A's for the same Adam direction (LoRA+)."""
  from jpeft import config_base
  from jpeft.train import optim
  config = config_base.get_config("lora")
  config.optim.lr_mult.peft_b = 16.0
  labels = {"attn/lora_a/kernel": peft.PEFT, "attn/lora_b/kernel": peft.PEFT_B}
  tx = optim.make_optimizer(config.optim, labels)
  params = {k: jnp.zeros((2, 2)) for k in labels}
  grads = {k: jnp.ones((2, 2)) for k in labels}
  hp = {k: jnp.float32(v) for k, v in dict(lr=1e-3, wd=0.0, warmup_steps=0, total_steps=10, steps_per_epoch=1).items()}
  new, _, _ = tx.update(grads, tx.init(params), params, hp)
  np.testing.assert_allclose(new["attn/lora_b/kernel"], 16 * new["attn/lora_a/kernel"], rtol=1e-6)
  assert np.all(np.asarray(new["attn/lora_a/kernel"]) < 0)

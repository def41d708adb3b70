"""jpeft's adapters in the PyTorch PEFT library's format, against what peft 0.22.0 itself saved.

The fixture (tests/fixtures/peft_format_reference.npz, made by make_peft_format_reference.py with torch, timm and
peft) holds, per case, the adapter_config.json and adapter_model.safetensors peft wrote for a tiny timm ViT (the
'mu/8' ViT of vit_mu8.safetensors) with random adapter and head weights, and the logits peft computed. Round
trip: jpeft imports the files and must give peft's logits; its export of what it imported must be peft's files,
tensor by tensor and field by field. So `PeftModel.from_pretrained` on jpeft's export computes these logits.
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
from jpeft.export import peft_format
from jpeft.models import vit
from jpeft.peft import partition

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
CASES = ("lora", "dora", "vera", "ia3", "ia3_query", "oft", "oft_exact", "boft", "loha", "lokr", "lokr_factor4")


@functools.lru_cache(maxsize=None)
def _fixture() -> dict:
  with np.load(os.path.join(FIXTURES, "peft_format_reference.npz")) as f:
    return {k: f[k] for k in f.files}


def _case(case: str):
  """(config dict, tensors, {method, hparams}) peft saved for `case`."""
  fix = _fixture()
  prefix = f"{case}/tensor/"
  tensors = {k[len(prefix):]: v for k, v in fix.items() if k.startswith(prefix)}
  return json.loads(fix[f"{case}/config"].item()), tensors, json.loads(fix[f"{case}/hparams"].item())


@functools.lru_cache(maxsize=None)
def _plain() -> dict:
  return partition.flatten(statedict.from_state_dict(load_file(os.path.join(FIXTURES, "vit_mu8.safetensors"))))


def _imported(case: str):
  config, tensors, spec = _case(case)
  name, hparams = peft_format.method_of(config, tensors, case)
  (method,) = peft.build_methods(name, {name: hparams})
  plain = _plain()
  own = peft_format.from_peft(method, config, tensors, plain, depth=2)
  return method, config, tensors, spec, {**plain, **own}


@pytest.mark.parametrize("case", CASES)
def test_import_reads_peft_hyperparameters_and_gives_peft_logits(case):
  method, _, _, spec, flat = _imported(case)
  expected = peft.build_methods(spec["method"], {spec["method"]: spec["hparams"]})[0]
  assert method == expected
  model = vit.create_model("mu/8", num_classes=5, methods=(method,))
  shapes = partition.flatten(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"])
  assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in shapes.items()}
  logits = jax.jit(model.apply)({"params": partition.unflatten(flat)}, _fixture()["images"])
  np.testing.assert_allclose(np.asarray(logits), _fixture()[f"{case}/logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", [c for c in CASES if c != "ia3_query"])
def test_export_writes_the_files_peft_saved(case):
  method, config, tensors, _, flat = _imported(case)
  exported = peft_format.to_peft(method, flat, depth=2)
  assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in tensors.items()}
  for key, value in tensors.items():
    np.testing.assert_allclose(exported[key], value, rtol=1e-6, atol=1e-6, err_msg=key)
  written = peft_format.adapter_config(method, base_model=None)
  assert written == config


def test_query_scales_fold_into_key_scales():
  """peft's random query scales are folded on import; the export has unit query scales and the same logits."""
  method, _, tensors, _, flat = _imported("ia3_query")
  exported = peft_format.to_peft(method, flat, depth=2)
  key = "base_model.model.blocks.0.attn.qkv.ia3_l"
  q, k, v = np.split(tensors[key][:, 0], 3)
  assert not np.allclose(q, 1)
  np.testing.assert_allclose(exported[key][:, 0], np.concatenate([np.ones_like(q), q * k, v]), rtol=1e-6)


@pytest.mark.parametrize("change,match", [
    (dict(peft_type="PREFIX_TUNING"), r"is a PREFIX_TUNING adapter; jpeft imports"),
    (dict(bias="all"), r"sets bias='all'"),
    (dict(save_projection=False), r"save_projection=True"),
])
def test_adapters_jpeft_cannot_express_are_named(change, match):
  config, tensors, _ = _case("vera")
  with pytest.raises(peft_format.PeftFormatError, match=match):
    peft_format.method_of({**config, **change}, tensors, "adapter_dir")


def test_lora_beyond_qkv_and_a_deeper_base_are_refused():
  config, tensors, _ = _case("dora")
  with pytest.raises(peft_format.PeftFormatError, match=r"LoRA on \['qkv', 'fc2'\].*fused qkv only"):
    peft_format.method_of({**config, "use_dora": False}, tensors, "d")
  method, config, tensors, _, _ = _imported("dora")
  with pytest.raises(peft_format.PeftFormatError, match=r"no tensor 'base_model.model.blocks.2.attn.qkv.*"
                                                        r"3-block ViT"):
    peft_format.from_peft(method, config, tensors, _plain(), depth=3)


def test_lora_alpha_folds_into_b():
  """lora_alpha = 2 r doubles B (the library's scaling alpha / r; jpeft's LoRA has none)."""
  method, config, tensors, _, flat = _imported("lora")
  doubled = peft_format.from_peft(method, {**config, "lora_alpha": 2 * config["r"]}, tensors, _plain(), depth=2)
  path = "encoder/block_0/attn/lora_b/kernel"
  np.testing.assert_allclose(doubled[path], 2 * flat[path], rtol=1e-6)


def test_runs_the_format_cannot_carry_are_refused():
  with pytest.raises(peft_format.PeftFormatError, match=r"'lora\+ssf' has no class.*--format=lora"):
    peft_format.check_exportable(peft.build_methods("lora+ssf", {}), 1.0)
  with pytest.raises(peft_format.PeftFormatError, match=r"merge_factor=0.5"):
    peft_format.check_exportable(peft.build_methods("lora", {}), 0.5)

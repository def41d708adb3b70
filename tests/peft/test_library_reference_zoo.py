"""The methods added by issue 32 against the PyTorch PEFT library 0.22.0: logits unmerged and merged, the library's
initialisation, ViT-B/16 trainable counts (fixture: tests/fixtures/make_peft_library_reference_zoo.py)."""
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
REF = dict(np.load(os.path.join(FIXTURES, "peft_library_reference_zoo.npz")))
BASE = load_file(os.path.join(FIXTURES, "vit_mu8.safetensors"))
CASES = sorted({k.split("/")[0] for k in REF if k.endswith("/hparams")})


def _spec(case: str):
  return json.loads(REF[f"{case}/hparams"].item())


def _to_jpeft(method: str, key: str, value: np.ndarray) -> tuple[str, np.ndarray]:
  """'blocks.0.attn.qkv.hra_u' -> ('encoder/block_0/attn/hra_qkv_u', value in jpeft's layout)."""
  _, block, scope, site, name = key.split(".", 4)
  if method == "hra":
    return f"encoder/block_{block}/{scope}/hra_{site}_u", value
  if method == "road":  # road_theta / road_alpha
    return f"encoder/block_{block}/{scope}/road_{site}_{name.split('_')[1]}", value
  raise KeyError(method)


@functools.lru_cache(maxsize=None)
def _model(case: str):
  spec = _spec(case)
  methods = peft.build_methods(spec["method"], {spec["method"]: spec["hparams"]})
  return vit.create_model("mu/8", num_classes=5, methods=methods), methods


def _params(case: str, kind: str) -> dict:
  """Flat params: the fixture's backbone and the library's adapter (kind 'init' or 'adapter')."""
  method = _spec(case)["method"]
  flat = partition.flatten(statedict.from_state_dict(BASE))
  prefix = f"{case}/{kind}/"
  flat.update(_to_jpeft(method, k[len(prefix):], v) for k, v in REF.items() if k.startswith(prefix))
  return {k: jnp.asarray(v, jnp.float32) for k, v in flat.items()}


def _logits(model, flat, merge_factor=1.0):
  return np.asarray(jax.jit(lambda p, x, s: model.apply({"params": p}, x, merge_factor=s))(
      partition.unflatten(flat), REF["images"], jnp.float32(merge_factor)))


@pytest.mark.parametrize("case", CASES)
def test_logits_and_merged_weights_equal_the_library(case):
  model, methods = _model(case)
  flat = _params(case, "adapter")
  shapes = partition.flatten(jax.eval_shape(model.init, jax.random.key(0), REF["images"][:1])["params"])
  assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in shapes.items()}, "same parameters"
  np.testing.assert_allclose(_logits(model, flat), REF[f"{case}/logits"], atol=1e-4, rtol=0)
  merged = partition.flatten(peft.merge(partition.unflatten(flat), methods))
  plain = partition.flatten(statedict.from_state_dict(BASE))
  assert set(merged) == set(plain)
  prefix, compared = f"{case}/merged/", 0
  for key in (k for k in REF if k.startswith(prefix)):
    _, block, scope, site, leaf = key[len(prefix):].split(".")
    if leaf == "weight":
      np.testing.assert_allclose(merged[f"encoder/block_{block}/{scope}/{site}/kernel"], REF[key].T, atol=1e-5,
                                 rtol=0, err_msg=key)
      compared += 1
  assert compared == 8  # qkv, proj, fc1, fc2 of both blocks
  # WiSE-FT's knob: merging at 0.6 computes what the unmerged model computes at 0.6.
  merged = partition.flatten(peft.merge(partition.unflatten(flat), methods, 0.6))
  plain_model = vit.create_model("mu/8", num_classes=5)
  np.testing.assert_allclose(_logits(plain_model, merged), _logits(model, flat, 0.6), atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_initialisation_is_the_library_s(case):
  """jpeft computes the library's logits on the library's initial adapter, and there the identity, as with its
  own initialisation; jpeft's draw has the library's structure (HRA: equal column pairs, |u| <= 1 / sqrt(r / 2)).
  HRA with Gram-Schmidt is the exception: QR of paired (rank r / 2) columns leaves r / 2 columns of rounding noise,
  in the library as here, so that start is neither the identity nor reproducible across QR implementations."""
  model, methods = _model(case)
  ours = partition.flatten(jax.jit(model.init)(jax.random.key(1), REF["images"][:1])["params"])
  plain = partition.flatten(statedict.from_state_dict(BASE))
  identity = not (methods[0].name == "hra" and methods[0].apply_gs)
  assert identity == np.allclose(REF[f"{case}/init_logits"], REF["base_logits"], atol=1e-4)
  if identity:
    np.testing.assert_allclose(_logits(model, _params(case, "init")), REF[f"{case}/init_logits"], atol=1e-4,
                               rtol=0)
    np.testing.assert_allclose(_logits(model, {**ours, **plain}), REF["base_logits"], atol=1e-4, rtol=0)
  if methods[0].name == "hra":
    rank = methods[0].rank
    for key in (k for k in REF if k.startswith(f"{case}/init/")):
      theirs, mine = REF[key], np.asarray(ours[_to_jpeft("hra", key.split("/", 2)[2], None)[0]])
      for u in (theirs, mine):
        np.testing.assert_array_equal(u[:, 0::2], u[:, 1::2])
        assert np.abs(u).max() <= 1 / np.sqrt(rank // 2) and np.abs(u).max() > 0.5 / np.sqrt(rank // 2)


def test_vit_b16_trainable_counts_equal_the_library():
  counts = {k: json.loads(v.item()) for k, v in REF.items() if k.startswith("count/")}
  assert counts
  for name, case in counts.items():
    methods = peft.build_methods(case["method"], {case["method"]: case["hparams"]})
    model = vit.create_model("B/16", num_classes=1000, methods=methods)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    got = peft.count_params(params, partition.label_params(params, methods))
    assert got["trainable"] - got["head"] == case["trainable"], name


@pytest.mark.parametrize("method,hparams,match", [
    ("hra", {"rank": 0}, r"rank=0 is invalid"),
    ("road", {"variant": "road_3"}, r"variant='road_3' is invalid, it must be one of \('road_1', 'road_2', 'road_4'\)"),
    ("road", {"group_size": 5}, r"group_size=5 is invalid, it must be an even integer"),
    ("road", {"group_size": 64}, r"group_size=64 does not divide the output width 96 of the Dense 'qkv'"),
])
def test_bad_hyperparameters_are_named(method, hparams, match):
  with pytest.raises(ValueError, match=match):
    methods = peft.build_methods(method, {method: hparams})
    model = vit.create_model("mu/8", num_classes=5, methods=methods)
    jax.eval_shape(model.init, jax.random.key(0), REF["images"][:1])

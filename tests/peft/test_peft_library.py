"""DoRA, VeRA and (IA)^3 against the PyTorch PEFT library: logits, gradients, merged weights, ViT-B/16 counts.

The fixture (tests/fixtures/peft_library_reference.npz, made by make_peft_library_reference.py with torch, timm
and peft 0.22.0) wraps the timm ViT of vit_mu8.safetensors with each method, adapter weights random and non-zero.
Here the same weights are mapped to jpeft's parameter names by the layouts the method modules document.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from safetensors.numpy import load_file

from jpeft import peft
from jpeft.checkpoints import statedict
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.peft.methods.dora import column_norm

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
REF = dict(np.load(os.path.join(FIXTURES, "peft_library_reference.npz")))
BASE = load_file(os.path.join(FIXTURES, "vit_mu8.safetensors"))
# The fixture's peft configs (make_peft_library_reference.py): r = 3 and r = 4, no dropout.
FIXTURE_HPARAMS = {"dora": {"rank": 3, "dropout": 0.0}, "vera": {"rank": 4}, "ia3": {}}
PREFIX = "base_model.model.blocks."


def _plain() -> dict:
  return partition.flatten(statedict.from_state_dict(BASE))


def _peft_tensors(method: str, kind: str) -> dict:
  """{'blocks.<i>.<attn|mlp>.<site>.<peft name>' or 'base_model.vera_A', ...: array} of the fixture's adapter
  tensors (kind 'adapter') or their gradients (kind 'grad')."""
  start = f"{method}/{kind}/"
  return {k[len(start):].replace(PREFIX, "blocks."): v for k, v in REF.items() if k.startswith(start)}


def _sites(tensors: dict, leaf: str):
  """(jpeft scope 'encoder/block_i/attn', site 'qkv', array) for every tensor named '...<site>.<leaf>'."""
  for key, value in tensors.items():
    if key.startswith("blocks.") and key.endswith("." + leaf):
      _, block, parent, site = key[:-len("." + leaf)].split(".")
      yield f"encoder/block_{block}/{parent}", site, value


def to_jpeft(method: str, tensors: dict, plain: dict = None) -> dict:
  """peft's adapter tensors (or their gradients) in jpeft's layout, as the method modules' docstrings describe.

  With `plain` (values, not gradients) DoRA's magnitude becomes jpeft's offset m - ||W||; the offset's gradient
  is m's. (IA)^3 drops the query third of qkv's scale.
  """
  own = {}
  if method == "dora":
    for scope, site, a in _sites(tensors, "lora_A.weight"):
      own[f"{scope}/dora_{site}_a"] = a.T
    for scope, site, b in _sites(tensors, "lora_B.weight"):
      own[f"{scope}/dora_{site}_b"] = b.T
    for scope, site, m in _sites(tensors, "lora_magnitude_vector"):
      norm = 0 if plain is None else np.asarray(column_norm(plain[f"{scope}/{site}/kernel"]))
      own[f"{scope}/dora_{site}_magnitude"] = m - norm
  elif method == "vera":
    if "base_model.vera_A" in tensors:  # frozen buffers: no gradient
      own["encoder/vera_a"], own["encoder/vera_b"] = tensors["base_model.vera_A"].T, tensors["base_model.vera_B"].T
    for leaf in ("vera_lambda_b", "vera_lambda_d"):
      for scope, site, value in _sites(tensors, leaf):
        own[f"{scope}/vera_{site}_{leaf[len('vera_'):]}"] = value
  else:
    for scope, site, scale in _sites(tensors, "ia3_l"):
      if site == "qkv":
        width = scale.shape[0] // 3
        own[f"{scope}/ia3_kv_scale"] = scale[width:, 0]
      else:
        own[f"{scope}/ia3_ff_scale"] = scale[0]
  return {k: jnp.asarray(v, jnp.float32) for k, v in own.items()}


@functools.lru_cache(maxsize=None)
def _model(method: str):
  methods = peft.build_methods(method, FIXTURE_HPARAMS)
  return vit.create_model("mu/8", num_classes=5, methods=methods), methods


@pytest.mark.parametrize("method", ["dora", "vera", "ia3"])
def test_logits_gradients_and_merged_weights_equal_the_peft_library(method):
  model, methods = _model(method)
  plain = _plain()
  adapter = _peft_tensors(method, "adapter")
  if method == "ia3":  # the fixture leaves peft's query scales at 1 (jpeft has none)
    np.testing.assert_array_equal([v[:v.shape[0] // 3] for k, v in adapter.items() if ".qkv." in k], 1.0)
  own = to_jpeft(method, adapter, plain)
  params = partition.unflatten({**plain, **own})
  shapes = partition.flatten(jax.eval_shape(model.init, jax.random.key(0), REF["images"][:1])["params"])
  assert {k: v.shape for k, v in partition.flatten(params).items()} == {k: v.shape for k, v in shapes.items()}

  def loss(own):
    logits = model.apply({"params": partition.unflatten({**plain, **own})}, REF["images"])
    return jnp.sum(logits * REF["loss_weights"]), logits

  grads, logits = jax.jit(jax.grad(loss, has_aux=True))(own)
  np.testing.assert_allclose(logits, REF[f"{method}/logits"], atol=1e-4, rtol=0)
  expected_grads = to_jpeft(method, _peft_tensors(method, "grad"))
  assert expected_grads and set(expected_grads) <= set(grads)
  for path, expected in expected_grads.items():  # DoRA: the column norm is detached, as in peft
    np.testing.assert_allclose(grads[path], expected, atol=1e-4, rtol=1e-4, err_msg=path)

  merged = partition.flatten(peft.merge(params, methods))
  start = f"{method}/merged/"
  expected = partition.flatten(statedict.from_state_dict(
      {**BASE, **{k[len(start):]: v for k, v in REF.items() if k.startswith(start)}}))
  assert set(merged) == set(expected)
  for path in expected:
    np.testing.assert_allclose(merged[path], expected[path], atol=1e-5, rtol=0, err_msg=path)
  assert any(not np.allclose(merged[p], plain[p]) for p in plain), "the adapter must change some weight"


def _vit_b16_trainable_without_head(method: str, hparams: dict) -> int:
  methods = peft.build_methods(method, {method: hparams})
  model = vit.create_model("B/16", num_classes=1000, methods=methods)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
  counts = peft.count_params(params, partition.label_params(params, methods))
  return counts["trainable"] - counts["head"]


# fixture count name -> (method, jpeft hyperparameters). peft's counts are of timm's ViT-B/16 without a head
# (num_classes=0); jpeft's are trainable minus head. (IA)^3: see the module doc of jpeft/peft/methods/ia3.py.
COUNTS = {
    "dora_r8": ("dora", {"rank": 8}),
    "dora_r32": ("dora", {"rank": 32}),
    "vera_r256": ("vera", {"rank": 256}),
    "vera_r1024": ("vera", {"rank": 1024}),
    "ia3_hf_vit_paper_sites": ("ia3", {}),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_vit_b16_trainable_counts_equal_the_peft_library(name):
  assert _vit_b16_trainable_without_head(*COUNTS[name]) == int(REF[f"counts/{name}"])


def test_ia3_on_the_fused_qkv_drops_only_peft_query_scales():
  """peft on timm's fused qkv also scales the queries: 12 blocks x 768 more than the paper's sites."""
  assert int(REF["counts/ia3_timm_fused_qkv"]) - _vit_b16_trainable_without_head("ia3", {}) == 12 * 768


def test_vera_projections_are_drawn_as_the_library_draws_them():
  """VeRA's frozen A, B for ViT-B/16 at r = 256 have the shapes, bounds and spread of peft's own draw
  (kaiming-uniform, gain sqrt(2): U(+-sqrt(6 / fan_in)), fan_in = in_max for A and r for B); torch's A (r, in_max)
  and B (out_max, r) are jpeft's transposes. A torch-Linear draw (U(+-1/sqrt(fan_in))) has a std 6x smaller."""
  vera = peft.build_methods("vera", {"vera": {"rank": 256}})[0]
  ctx = peft.base.Context(layer=None, depth=12, width=768, mlp_dim=3072, num_heads=12, merge_factor=1.0,
                          deterministic=True)

  class Shared(nn.Module):
    @nn.compact
    def __call__(self):
      return vera.shared(self, ctx)

  a, b = jax.jit(lambda: Shared().init_with_output(jax.random.key(7))[0])()
  for which, ours in (("A", np.asarray(a).T), ("B", np.asarray(b).T)):  # to torch's layout
    assert list(ours.shape) == REF[f"vera_init/{which}/shape"].tolist(), which
    bound = float(REF[f"vera_init/{which}/bound"])
    fan_in = ours.shape[1]
    np.testing.assert_allclose(bound, np.sqrt(6 / fan_in), rtol=1e-3)  # the library's rule, read off its draw
    assert np.abs(ours).max() <= np.sqrt(6 / fan_in) * (1 + 1e-6)
    np.testing.assert_allclose(np.abs(ours).max(), bound, rtol=1e-2, err_msg=which)
    np.testing.assert_allclose(ours.std(), float(REF[f"vera_init/{which}/std"]), rtol=1e-2, err_msg=which)
    assert abs(ours.mean() - float(REF[f"vera_init/{which}/mean"])) < 0.01 * bound, which

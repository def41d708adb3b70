"""The methods added by issue 32 against the PyTorch PEFT library 0.22.0: logits unmerged and merged, the library's
initialisation, ViT-B/16 trainable counts (fixture: tests/fixtures/make_peft_library_reference_zoo.py)."""
import functools
import json
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from jpeft import peft
from jpeft.checkpoints import statedict
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.peft.methods import fourierft

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
  if method == "fourierft":
    return f"encoder/block_{block}/{scope}/fourierft_{site}_spectrum", value
  if method == "c3a":
    return f"encoder/block_{block}/{scope}/c3a_{site}_kernel", value
  if method == "pvera":  # pvera_lambda_d / pvera_lambda_b
    return f"encoder/block_{block}/{scope}/pvera_{site}_{name[len('pvera_'):]}", value
  if method == "glora":  # glora_A.Xd [out, r] / .Xu [r, in] / .X [out, 1], [in, 1], [out] or [1]
    path, leaf = name.split(".")
    letter = path[-1].lower()
    jpeft = f"encoder/block_{block}/{scope}/glora_{site}_{letter}"
    if leaf == "X":
      return jpeft, None if value is None else (value.reshape(()) if value.size == 1 else value.reshape(-1))
    return f"{jpeft}_{'d' if leaf == 'Xd' else 'u'}", None if value is None else value.T
  raise KeyError(method)


@pytest.fixture(autouse=True)
def library_positions(request, monkeypatch):
  """FourierFT's spectrum positions as the library drew them (torch's randperm; jpeft draws its own with numpy,
  see test_fourierft_positions), for the fixture case a test runs."""
  case = request.node.callspec.params.get("case") if hasattr(request.node, "callspec") else None
  prefix = f"{case}/indices/"
  drawn = {}
  for key, value in REF.items():
    if case and key.startswith(prefix):
      in_dim, out_dim = BASE[key[len(prefix):] + ".weight"].shape[::-1]
      assert np.array_equal(drawn.setdefault((out_dim, in_dim), value), value)  # one draw per shape, as jpeft's
  if drawn:
    monkeypatch.setattr(fourierft, "spectrum_positions",
                        lambda out_dim, in_dim, n, seed: tuple(drawn[(out_dim, in_dim)][:, :n]))


# These tests spend their time compiling, not computing (a mu/8 ViT on two 32x32 images). So each model's forward
# pass is compiled once, with merge_factor an argument, and shared by every test of this file (the plain ViT's by
# all cases), merging is one compiled program per case instead of op-by-op dispatch, and XLA's backend (LLVM)
# optimisation is off: the same HLO, so the same arithmetic up to float rounding, compiled about twice as fast.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jit(fn, **kwargs):
  return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


@functools.lru_cache(maxsize=None)
def _model(case: Optional[str]):
  """(model, methods, compiled forward (params, images, merge_factor) -> logits) of a fixture case; None: the
  plain mu/8 ViT. FourierFT's forward reads the positions `library_positions` sets, the same for every test of a
  case."""
  spec = {} if case is None else _spec(case)
  methods = () if case is None else peft.build_methods(spec["method"], {spec["method"]: spec["hparams"]})
  model = vit.create_model("mu/8", num_classes=5, methods=methods)
  return model, methods, _jit(lambda p, x, s: model.apply({"params": p}, x, merge_factor=s))


# merge_factor traced, so merging at 1 and at 0.6 share one program; methods (frozen dataclasses) are static.
_merge = _jit(peft.merge, static_argnums=1)


def _params(case: str, kind: str) -> dict:
  """Flat params: the fixture's backbone and the library's adapter (kind 'init' or 'adapter')."""
  method = _spec(case)["method"]
  flat = partition.flatten(statedict.from_state_dict(BASE))
  prefix = f"{case}/{kind}/"
  flat.update(_to_jpeft(method, k[len(prefix):], v) for k, v in REF.items() if k.startswith(prefix))
  if method == "pvera":  # the library's shared frozen projections, transposed to jpeft's layout
    flat["encoder/pvera_a"], flat["encoder/pvera_b"] = REF[f"{case}/projection/A"].T, REF[f"{case}/projection/B"].T
  return {k: jnp.asarray(v, jnp.float32) for k, v in flat.items()}


def _logits(case: Optional[str], flat, merge_factor=1.0) -> np.ndarray:
  """Logits [2, 5] of the case's model (None: the plain ViT) with flat params on the fixture's images."""
  return np.asarray(_model(case)[2](partition.unflatten(flat), REF["images"], jnp.float32(merge_factor)))


@pytest.mark.parametrize("case", CASES)
def test_logits_and_merged_weights_equal_the_library(case):
  model, methods, _ = _model(case)
  flat = _params(case, "adapter")
  shapes = partition.flatten(jax.eval_shape(model.init, jax.random.key(0), REF["images"][:1])["params"])
  assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in shapes.items()}, "same parameters"
  np.testing.assert_allclose(_logits(case, flat), REF[f"{case}/logits"], atol=1e-4, rtol=0)
  merged = partition.flatten(_merge(partition.unflatten(flat), methods, jnp.float32(1.0)))
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
  merged = partition.flatten(_merge(partition.unflatten(flat), methods, jnp.float32(0.6)))
  np.testing.assert_allclose(_logits(None, merged), _logits(case, flat, 0.6), atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_initialisation_is_the_library_s(case):
  """jpeft computes the library's logits on the library's initial adapter, and there the identity, as with its
  own initialisation; jpeft's draw has the library's structure (HRA: equal column pairs, |u| <= 1 / sqrt(r / 2)).
  HRA with Gram-Schmidt is the exception: QR of paired (rank r / 2) columns leaves r / 2 columns of rounding noise,
  in the library as here, so that start is neither the identity nor reproducible across QR implementations."""
  model, methods, _ = _model(case)
  plain = partition.flatten(statedict.from_state_dict(BASE))
  # The method's parameters as model.init draws them (the same initialisers, and the same keys: flax derives a
  # parameter's key from its path), created around the fixture's backbone, so that the backbone's own draws, which
  # this test discards, are not compiled: they were most of model.init's compile time.
  init = _jit(lambda p, k: model.apply({"params": p}, REF["images"][:1], rngs={"params": k}, mutable=["params"]))
  ours = partition.flatten(init(partition.unflatten(plain), jax.random.key(1))[1]["params"])
  method = methods[0]
  identity = not ((method.name == "hra" and method.apply_gs) or (method.name == "fourierft" and not method.init_weights)
                  or (method.name == "c3a" and method.init_weights != "zeros"))
  assert identity == np.allclose(REF[f"{case}/init_logits"], REF["base_logits"], atol=1e-4)
  if identity:
    np.testing.assert_allclose(_logits(case, _params(case, "init")), REF[f"{case}/init_logits"], atol=1e-4,
                               rtol=0)
    np.testing.assert_allclose(_logits(case, {**ours, **plain}), REF["base_logits"], atol=1e-4, rtol=0)
  if method.name == "fourierft" and not method.init_weights:  # peft's default: N(0, 1) coefficients
    np.testing.assert_allclose(_logits(case, _params(case, "init")), REF[f"{case}/init_logits"], atol=1e-4, rtol=0)
    spectra = np.concatenate([np.ravel(v) for k, v in ours.items() if k.endswith("_spectrum")])
    assert 0.7 < spectra.std() < 1.3 and abs(spectra.mean()) < 0.3
  if method.name == "c3a" and method.init_weights == "xavier_uniform":  # the library's default
    np.testing.assert_allclose(_logits(case, _params(case, "init")), REF[f"{case}/init_logits"], atol=1e-4, rtol=0)
    for key in (k for k in REF if k.startswith(f"{case}/init/")):
      theirs = REF[key]
      mine = np.asarray(ours[_to_jpeft("c3a", key.split("/", 2)[2], None)[0]])
      _, block, scope, site, _ = key.split("/", 2)[2].split(".", 4)
      out_dim, in_dim = BASE[f"blocks.{block}.{scope}.{site}.weight"].shape
      bound = np.sqrt(6 / (in_dim + out_dim))
      for w in (theirs, mine):
        assert w.shape == theirs.shape and np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
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


def test_fourierft_positions():
  """jpeft draws n distinct cells of the [out, in] grid from the seed alone (not the run's key), as the library."""
  rows, cols = fourierft.spectrum_positions(2304, 768, 3000, 777)
  assert len(set(zip(rows.tolist(), cols.tolist()))) == 3000
  assert rows.max() < 2304 and cols.max() < 768 and rows.max() > 2000 and cols.max() > 700
  again = fourierft.spectrum_positions.__wrapped__(2304, 768, 3000, 777)
  assert np.array_equal(again[0], rows) and np.array_equal(again[1], cols)
  assert not np.array_equal(fourierft.spectrum_positions(2304, 768, 3000, 778)[0], rows)


def test_pvera_projections_are_drawn_as_the_library_draws_them():
  """PVeRA's frozen A [in_max, 2r] and B [r, out_max] for ViT-B/16 at r = 256: the shapes, bounds and spread of
  the library's draw (kaiming-uniform, U(+-sqrt(6 / fan_in)), fan_in = in_max for A, r for B)."""
  from flax import linen as nn
  method = peft.build_methods("pvera", {"pvera": {"rank": 256}})[0]
  ctx = peft.base.Context(layer=None, depth=12, width=768, mlp_dim=3072, num_heads=12, merge_factor=1.0,
                          deterministic=True)

  class Shared(nn.Module):
    @nn.compact
    def __call__(self):
      return method.shared(self, ctx)

  a, b = jax.jit(lambda: Shared().init_with_output(jax.random.key(3))[0])()
  for which, ours in (("A", np.asarray(a).T), ("B", np.asarray(b).T)):  # torch's layout
    assert list(ours.shape) == REF[f"pvera_init/{which}/shape"].tolist(), which
    bound = np.sqrt(6 / ours.shape[1])
    np.testing.assert_allclose(float(REF[f"pvera_init/{which}/bound"]), bound, rtol=1e-3)
    assert bound * 0.99 < np.abs(ours).max() <= bound * (1 + 1e-6)
    np.testing.assert_allclose(ours.std(), float(REF[f"pvera_init/{which}/std"]), rtol=1e-2, err_msg=which)


def test_pvera_samples_the_latent_in_training_only():
  """Training samples the latent, mu + eps * exp(logvar / 2) with eps from the 'dropout' stream (two keys, two
  outputs, both unlike evaluation's); evaluation uses the mean (the library's eval logits); lambda_b = 0 removes
  the sampled term."""
  model = _model("pvera")[0]
  flat = _params("pvera", "adapter")
  forward = _jit(lambda p, x, k: model.apply({"params": p}, x, train=True, rngs={"dropout": k}))  # one compile
  train = lambda p, k: np.asarray(forward(partition.unflatten(p), REF["images"], k))
  logits = _logits("pvera", flat)
  np.testing.assert_allclose(logits, REF["pvera/logits"], atol=1e-4, rtol=0)
  first, second = train(flat, jax.random.key(0)), train(flat, jax.random.key(1))
  assert np.abs(first - logits).max() > 1e-3 and np.abs(first - second).max() > 1e-3
  silent = {k: (v * 0 if k.endswith("_lambda_b") else v) for k, v in flat.items()}
  np.testing.assert_allclose(train(silent, jax.random.key(0)), REF["base_logits"], atol=1e-4, rtol=0)

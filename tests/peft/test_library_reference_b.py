"""OFT, BOFT, LoHa and LoKr against the PyTorch `peft` library: logits of a timm ViT wrapped by the library, its
merge_and_unload() weights and its ViT-B/16 trainable counts (fixture: tests/fixtures/make_peft_library_reference_b.py).
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jpeft import peft
from jpeft.checkpoints.statedict import from_state_dict
from jpeft.models import vit
from jpeft.peft import base, partition
from .conftest import apply, init, make, plain_params

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "peft_library_reference_b.npz")
CASES = ("oft", "boft", "loha", "lokr", "lokr_factor4")


@functools.lru_cache(maxsize=None)
def _fixture() -> dict:
  with np.load(FIXTURE) as f:
    return {k: f[k] for k in f.files}


def _library_to_jpeft(key: str, value: np.ndarray, method: str) -> tuple[str, np.ndarray]:
  """'blocks.0.attn.qkv.hada_w1_a.weight' -> ('encoder/block_0/attn/loha_qkv_w1_a', transposed value).

  jpeft's 2-D factors are the transposes of the library's (kernels [in, out]); OFT's packed triangles and BOFT's
  blocks keep their layout, BOFT's scale [out, 1] is stored flat."""
  _, block, scope, site, name = key.split(".")[:5]
  field = name.split("_", 1)[1].lower()  # oft_R -> r, boft_s -> s, hada_w1_a -> w1_a, lokr_w2 -> w2
  if method in ("loha", "lokr"):
    value = value.T
  elif field == "s":
    value = value.reshape(-1)
  return f"encoder/block_{block}/{scope}/{method}_{site}_{field}", value


def _case(case: str):
  """(model, methods, nested params with the library's weights) for a fixture case."""
  fix = _fixture()
  spec = json.loads(fix[f"{case}/hparams"].item())
  methods = peft.build_methods(spec["method"], {spec["method"]: spec["hparams"]})
  flat = partition.flatten(from_state_dict({k[len("base/"):]: v for k, v in fix.items() if k.startswith("base/")}))
  prefix = f"{case}/adapter/"
  flat.update(_library_to_jpeft(k[len(prefix):], v, spec["method"]) for k, v in fix.items() if k.startswith(prefix))
  model = vit.create_model("mu/8", num_classes=5, methods=methods)
  return model, methods, partition.unflatten(flat)


@pytest.mark.parametrize("case", CASES)
def test_logits_and_merged_weights_match_the_library(case):
  fix = _fixture()
  model, methods, params = _case(case)
  shapes = partition.flatten(jax.eval_shape(model.init, jax.random.key(0), fix["images"])["params"])
  flat = partition.flatten(params)
  assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in shapes.items()}, "same parameters"
  # One program for both (one compilation).
  logits, merged = jax.jit(lambda p, x: (model.apply({"params": p}, x), peft.merge(p, methods)))(
      params, jnp.asarray(fix["images"]))
  np.testing.assert_allclose(np.asarray(logits), fix[f"{case}/logits"], rtol=1e-4, atol=1e-4)

  merged = partition.flatten(merged)
  prefix = f"{case}/merged/"
  compared = 0
  for key in (k for k in fix if k.startswith(prefix)):
    _, block, scope, site, _ = key[len(prefix):].split(".")
    np.testing.assert_allclose(np.asarray(merged[f"encoder/block_{block}/{scope}/{site}/kernel"]), fix[key].T,
                               rtol=1e-5, atol=1e-5, err_msg=key)
    compared += 1
  assert compared == 4  # qkv, proj, fc1, fc2


def test_vit_b16_trainable_counts_match_the_library():
  fix = _fixture()
  counts = {k: json.loads(v.item()) for k, v in fix.items() if k.startswith("count/")}
  assert {c["method"] for c in counts.values()} == {"oft", "boft", "loha", "lokr"}
  for name, case in counts.items():
    methods = peft.build_methods(case["method"], {case["method"]: case["hparams"]})
    model = vit.create_model("B/16", num_classes=1000, methods=methods)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))["params"]
    got = peft.count_params(params, partition.label_params(params, methods))
    assert got["trainable"] - got["head"] == case["trainable"], name


class _Site(nn.Module):
  """One Dense site ('qkv', [1, 16] -> [1, 48]) with the methods' dense hooks: (plain output, hooked output)."""
  methods: tuple

  @nn.compact
  def __call__(self, z):
    y = nn.Dense(48, name="qkv", bias_init=nn.initializers.normal(1.0))(z)
    ctx = base.Context(layer=0, depth=1, width=16, mlp_dim=64, num_heads=2, merge_factor=1.0, deterministic=True)
    out = y
    for method in self.methods:
      out = method.dense(self, "qkv", z, out, ctx)
    return y, out


def test_identity_at_init():
  """Each rotation starts at I and each delta at 0 (the methods' own initialisers, on one small Dense)."""
  z = jax.random.normal(jax.random.key(0), (1, 16))
  for method in ("oft+loha+lokr", "boft"):  # OFT and BOFT each must come first, so they are never composed
    site = _Site(peft.build_methods(method, {"oft": {"block_size": 8}, "loha": {"rank": 2}}))
    variables = jax.jit(site.init)(jax.random.key(1), z)  # jitted: eagerly, each small op would compile alone
    assert {k.split("_")[0] for k in variables["params"] if k != "qkv"} == set(method.split("+"))
    plain, hooked = jax.jit(site.apply)(variables, z)
    np.testing.assert_allclose(hooked, plain, rtol=1e-6, atol=1e-6)


def test_composed_merge_and_merge_factor_zero(images):
  """OFT first (its delta reads the pretrained kernel), then W-independent deltas, then SSF's output scale;
  merge_factor 0 gives the backbone."""
  model, methods, params = init("oft+loha+lokr+ssf", {"oft": {"block_size": 8}, "loha": {"rank": 2}})
  plain_model = make("linear")[0]
  plain = apply(plain_model, partition.unflatten(plain_params()), images)
  np.testing.assert_allclose(apply(model, params, images, 0.0), plain, rtol=1e-5, atol=1e-5)
  merged = jax.jit(lambda p: peft.merge(p, methods, 0.6))(params)  # jitted: one compilation, not one per op
  np.testing.assert_allclose(apply(plain_model, merged, images), apply(model, params, images, 0.6),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method,config,match", [
    ("oft", {"block_size": 0}, r"block_size=0 is invalid, it must be an integer >= 1"),
    ("boft", {"block_size": 3, "butterfly_factor": 2}, r"block_size=3 is invalid, it must be even"),
    ("loha", {"targets": ("qkv", "fc3")}, r"targets=\('qkv', 'fc3'\) is invalid"),
    ("lokr", {"decompose_factor": 0}, r"decompose_factor=0 is invalid"),
    ("oft", {"block_size": 5}, r"block_size=5 does not divide the input width 32 of the Dense 'qkv'"),
    ("boft", {"block_size": 8, "butterfly_factor": 4}, r"does not divide the input width 32"),
])
def test_bad_hyperparameters_are_named(method, config, match):
  """Impossible values fail at build time; ones the model's widths rule out when the model is built."""
  with pytest.raises(ValueError, match=match):
    model, _ = make(method, {method: config})
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))

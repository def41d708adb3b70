"""Building methods from configs, clear errors for bad input, and exact labelling of parameter paths."""
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from .conftest import init, make
from jpeft import peft
from jpeft.peft import partition


def test_build_from_config_dict_and_roundtrip():
  config = ml_collections.ConfigDict({"lora": {"rank": 4}, "selective": {"blocks": [0, 1]},
                                      "adapter": {"bottleneck": 2}})  # adapter: not selected, ignored
  methods = peft.build_methods("lora+selective", config)
  assert [m.name for m in methods] == ["lora", "selective"]
  assert methods[0].rank == 4 and methods[1].blocks == (0, 1)
  described = peft.methods_config(methods)
  assert peft.build_methods(described["method"], described["peft"]) == methods


def test_order_sensitive_methods_compose_where_forward_and_merge_agree():
  assert [m.name for m in peft.build_methods("dora+lora+ia3")] == ["dora", "lora", "ia3"]
  assert [m.name for m in peft.build_methods("boft+ssf")] == ["boft", "ssf"]


def test_every_grid_value_builds():
  for name, cls in peft.registry().items():
    for field, values in cls.grid.items():
      for value in values:
        assert getattr(peft.build_methods(name, {name: {field: value}})[0], field) == value


@pytest.mark.parametrize("method,config,match", [
    ("lorra", {}, r"Unknown PEFT method 'lorra'.*'lora'"),
    ("lora+", {}, r"malformed"),
    ("lora+lora", {}, r"'lora' appears twice"),
    ("lora", {"lora": {"r": 8}}, r"\['r'\].*Valid fields: \['alpha', 'dropout', 'init', 'rank', 'scaling'\]"),
    ("lora", {"lora": {"rank": 0}}, r"rank=0 is invalid"),
    ("fact_tt", {"fact_tt": {"rank": 2.5}}, r"rank=2.5 is invalid"),
    ("vpt_deep", {"vpt_deep": {"num_tokens": -5}}, r"num_tokens=-5 is invalid"),
    ("vqt", {"vqt": {"num_tokens": 0}}, r"num_tokens=0 is invalid"),
    ("dora", {"dora": {"targets": ("qkv", "head")}}, r"targets=\('qkv', 'head'\) is invalid.*distinct Dense"),
    ("adapter", {"adapter": {"dropout": 1.5}}, r"dropout=1.5 is invalid"),
    ("repadapter", {"repadapter": {"bottleneck": 7}}, r"bottleneck=7 is invalid.*divisible"),
    ("convpass", {"convpass": {"conv_init": "zeros"}}, r"conv_init='zeros' is invalid.*identity"),
    ("adaptformer", {"adaptformer": {"scale": float("nan")}}, r"scale=nan is invalid"),
    ("selective", {"selective": {"blocks": [-1]}}, r"blocks=\(-1,\) is invalid"),
    ("selective", {"selective": {"parts": ["attention"]}}, r"parts=\('attention',\) is invalid"),
    ("lora+dora", {}, r"'dora' must come first.*'dora\+lora' instead"),
    ("ssf+oft+bitfit", {}, r"'oft' must come first.*'oft\+ssf\+bitfit' instead"),
    ("ia3+lora", {}, r"'ia3' must come last.*'lora\+ia3' instead"),
    ("oft+boft", {}, r"\['oft', 'boft'\].*cannot be combined"),
])
def test_bad_input_raises_a_clear_error(method, config, match):
  with pytest.raises(ValueError, match=match):
    peft.build_methods(method, config)


def test_selective_block_beyond_depth_is_rejected_at_init():
  model, _ = make("selective", {"selective": {"blocks": (1, 2)}})  # mu has blocks 0 and 1
  with pytest.raises(ValueError, match=r"blocks=\(1, 2\) is invalid.*\[0, 1\]"):
    model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_selective_matches_block_indices_exactly():
  (method,) = peft.build_methods("selective", {"selective": {"blocks": (1,), "parts": ("attn", "ln")}})
  label = lambda path: method.label(tuple(path.split("/")))
  assert label("encoder/block_1/attn/qkv/kernel") == peft.BACKBONE
  assert label("encoder/block_1/ln2/scale") == peft.BACKBONE
  for other in ("encoder/block_10/attn/qkv/kernel", "encoder/block_11/ln1/bias", "encoder/block_1/mlp/fc1/bias",
                "encoder/block_0/attn/proj/kernel"):
    assert label(other) is None, other


def test_labels_of_a_composed_method():
  _, methods, params = init("lora+bitfit+full")
  labels = partition.label_params(params, methods)
  assert labels["head/kernel"] == peft.HEAD
  assert labels["encoder/block_0/attn/lora_a/kernel"] == peft.PEFT  # 'full' does not demote inserted modules
  assert labels["encoder/block_1/mlp/fc2/kernel"] == peft.BACKBONE
  _, methods, params = init("lora+bitfit")
  labels = partition.label_params(params, methods)
  assert labels["encoder/block_1/mlp/fc2/bias"] == peft.BACKBONE
  assert labels["encoder/block_1/mlp/fc2/kernel"] == peft.FROZEN
  assert labels["encoder/block_0/ln1/scale"] == peft.FROZEN


def test_make_optimizer_names_a_missing_multiplier():
  _, methods, params = init("bitfit")
  with pytest.raises(ValueError, match=r"\['backbone'\]"):
    partition.make_optimizer(partition.label_params(params, methods), lambda m: None, {"head": 1.0})


@pytest.mark.parametrize("method,config,frozen", [
    ("full+vera", {"vera": {"rank": 4}}, ("encoder/vera_a", "encoder/vera_b")),
    ("full+pvera", {"pvera": {"rank": 4}}, ("encoder/pvera_a", "encoder/pvera_b")),
    ("lora+full", {"lora": {"rank": 3, "init": "pissa"}},
     ("encoder/block_0/attn/lora_principal_a", "encoder/block_1/attn/lora_principal_b")),
])
def test_full_does_not_unfreeze_parameters_frozen_by_definition(method, config, frozen):
  # VeRA's shared random projections and PiSSA's principal factors are derived, never trained: 'full', which
  # claims every path, must leave them frozen (and out of the optimizer), while training the backbone.
  _, methods, params = init(method, config)
  labels = partition.label_params(params, methods)
  assert {path: labels[path] for path in frozen} == dict.fromkeys(frozen, peft.FROZEN)
  assert labels["encoder/block_1/mlp/fc2/kernel"] == peft.BACKBONE

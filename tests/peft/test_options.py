"""The study's method space as options: VPT-shallow without carried prompts, VPT-deep in the last blocks,
finer selective parts, and the wiring of Adapter / Convpass / RepAdapter (position, style, learnable scale).

Each variant is checked against the numpy reference (reference.py), which wires the modules from the spec's
list of wirings; counts for ViT-B/16 are in test_counts.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import HEADS, HPARAMS, IMAGE, PATCH, apply, init, make, plain_params
from .reference import Reference
from jpeft import peft
from jpeft.peft import partition
from jpeft.sweep import grid

# (method, its options on top of HPARAMS): every style, a single sublayer, the learnable scale.
VARIANTS = [
    ("vpt_shallow", {"keep_prompts": False}),
    ("vpt_deep", {"num_layers": 1}),
    ("adapter", {"style": "parallel_pre_ln"}),
    ("adapter", {"style": "parallel_post_ln", "sublayers": ("attn",)}),
    ("adapter", {"style": "sequential_before", "learnable_scale": True}),
    # Adapter+: post-adapter after the MLP's residual sum, channel-wise scale, GELU (drop path: identity in eval)
    ("adapter", {"style": "post", "sublayers": ("mlp",), "learnable_scale": "channel", "nonlinearity": "gelu",
                 "drop_path": 0.1}),
    ("convpass", {"style": "post", "learnable_scale": "channel"}),
    ("convpass", {"style": "sequential_after", "learnable_scale": True}),
    ("convpass", {"style": "sequential_before", "sublayers": ("mlp",)}),
    ("repadapter", {"style": "sequential_after"}),
    ("repadapter", {"style": "parallel_post_ln"}),
    ("repadapter", {"style": "parallel_pre_ln", "sublayers": ("attn",), "learnable_scale": True}),
]


def _config(method: str, options: dict) -> dict:
  return {**HPARAMS, method: {**HPARAMS[method], **options}}


@pytest.mark.parametrize("method,options", VARIANTS, ids=[f"{m}-{o}" for m, o in VARIANTS])
def test_variant_forward_matches_reference(method, options, images):
  config = _config(method, options)
  model, _, params = init(method, config)
  for merge_factor in (1.0, 0.6):
    want = Reference(params, method, config, merge_factor, HEADS, PATCH)(images)
    np.testing.assert_allclose(apply(model, params, images, merge_factor), want, rtol=2e-4, atol=2e-4,
                               err_msg=f"{method} {options} at merge_factor={merge_factor}")
  # The option changes what is computed: where the published variant can run on these parameters, it gives
  # other logits.
  default_model, _ = make(method)
  flat = partition.flatten(params)
  default_shapes = partition.flatten(jax.eval_shape(default_model.init, jax.random.key(0), images)["params"])
  if all(k in flat and flat[k].shape == s.shape for k, s in default_shapes.items()):
    assert np.abs(apply(default_model, params, images) - apply(model, params, images)).max() > 1e-3


def test_vpt_deep_prompts_only_the_last_blocks():
  _, _, params = init("vpt_deep", _config("vpt_deep", {"num_layers": 1}))
  assert partition.flatten(params)["encoder/vpt_deep_prompts"].shape == (1, 3, 32)
  model, _ = make("vpt_deep", _config("vpt_deep", {"num_layers": 3}))  # mu has 2 blocks
  with pytest.raises(ValueError, match=r"num_layers=3 is invalid.*at most the model's depth 2"):
    model.init(jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)))


@pytest.mark.parametrize("method,options,match", [
    ("adapter", {"style": "parallel"}, r"style='parallel' is invalid.*'parallel_pre_ln'"),
    ("convpass", {"sublayers": ("attention",)}, r"sublayers=\('attention',\) is invalid"),
    ("repadapter", {"sublayers": ("mlp", "mlp")}, r"sublayers=\('mlp', 'mlp'\) is invalid.*distinct"),
    ("repadapter", {"learnable_scale": "yes"}, r"learnable_scale='yes' is invalid"),
    ("adapter", {"learnable_scale": "channels"}, r"learnable_scale='channels' is invalid.*'channel'"),
    ("adapter", {"init": "kaiming"}, r"init='kaiming' is invalid"),
    ("adapter", {"nonlinearity": "silu"}, r"nonlinearity='silu' is invalid"),
    ("adapter", {"drop_path": 1.0}, r"drop_path=1.0 is invalid"),
    ("vpt_deep", {"num_layers": -1}, r"num_layers=-1 is invalid"),
    ("vpt_shallow", {"keep_prompts": 0}, r"keep_prompts=0 is invalid"),
    ("selective", {"parts": ("qkv", "fc3")}, r"parts=\('qkv', 'fc3'\) is invalid.*'fc1'"),
])
def test_bad_option_raises_a_clear_error(method, options, match):
  with pytest.raises(ValueError, match=match):
    peft.build_methods(method, {method: options})


def test_learnable_scale_starts_at_one(images):
  config = _config("adapter", {"learnable_scale": True})
  _, _, params = init("adapter", config, at_init=True)
  scales = {k: v for k, v in partition.flatten(params).items() if k.endswith("_scale")}
  assert sorted(scales) == ["encoder/block_0/adapter_attn_scale", "encoder/block_0/adapter_mlp_scale",
                            "encoder/block_1/adapter_attn_scale", "encoder/block_1/adapter_mlp_scale"]
  assert all(np.shape(v) == () and float(v) == 1.0 for v in scales.values())


@pytest.mark.parametrize("method", ["adapter", "repadapter"])  # Convpass shares Adapter's scaling code
def test_scale_folds_into_merge_factor_with_a_learnable_scale(method, images):
  """The sweep runs scale s as scale 1 with merge_factor s (jpeft/sweep/grid.py): logits and every gradient
  must be the same with a learnable scale."""
  scaled, _, params = init(method, _config(method, {"scale": 2.5, "learnable_scale": True}))
  unit, _ = make(method, _config(method, {"scale": 1.0, "learnable_scale": True}))

  def loss_and_grads(model, merge_factor):
    loss = lambda p: jnp.mean(model.apply({"params": p}, images, merge_factor=merge_factor) ** 2)
    return jax.jit(jax.value_and_grad(loss))(params)

  (loss_a, grads_a), (loss_b, grads_b) = loss_and_grads(scaled, 0.8), loss_and_grads(unit, 0.8 * 2.5)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  for (path, a), b in zip(partition.flatten(grads_a).items(), partition.flatten(grads_b).values()):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6, err_msg=path)
  assert any(np.abs(g).max() > 0 for k, g in partition.flatten(grads_a).items() if k.endswith(f"{method}_attn_scale"))


@pytest.mark.parametrize("method,options", [
    ("repadapter", {"style": "sequential_after", "learnable_scale": True, "sublayers": ("mlp",)}),
    ("repadapter", {"learnable_scale": True}),
    ("repadapter+difffit", {"style": "sequential_after"}),  # both rescale proj / fc2's output: order matters
    ("ssf+fact_tk+repadapter", {"style": "sequential_after"}),
])
def test_repadapter_sequential_wirings_merge_exactly(method, options, images):
  model, methods, params = init(method, _config("repadapter", options))
  for merge_factor in (1.0, 0.6):
    merged = partition.flatten(peft.merge(params, methods, merge_factor))
    assert set(merged) == set(plain_params())
    plain_model, _ = make("linear")
    np.testing.assert_allclose(apply(plain_model, partition.unflatten(merged), images),
                               apply(model, params, images, merge_factor), rtol=1e-4, atol=1e-4,
                               err_msg=f"{method} {options} at merge_factor={merge_factor}")


@pytest.mark.parametrize("style", ["parallel_pre_ln", "parallel_post_ln"])
def test_repadapter_parallel_wirings_refuse_to_merge(style):
  _, methods, params = init("repadapter", _config("repadapter", {"style": style}))
  with pytest.raises(ValueError, match=rf"style='{style}' is not re-parameterisable.*sequential_before"):
    peft.merge(params, methods)


@pytest.mark.parametrize("parts,selected", [
    (("qkv",), {"attn/qkv/kernel", "attn/qkv/bias"}),
    (("proj", "fc1"), {"attn/proj/kernel", "attn/proj/bias", "mlp/fc1/kernel", "mlp/fc1/bias"}),
    (("fc2", "ln"), {"mlp/fc2/kernel", "mlp/fc2/bias", "ln1/scale", "ln1/bias", "ln2/scale", "ln2/bias"}),
])
def test_selective_finer_parts_select_exactly_their_dense(parts, selected):
  _, methods, params = init("selective", {"selective": {"blocks": (1,), "parts": parts}})
  labels = partition.label_params(params, methods)
  assert {p for p, group in labels.items() if group == peft.BACKBONE} == {f"encoder/block_1/{s}" for s in selected}


def test_sweep_grid_accepts_the_new_fields():
  """`expand` checks a grid's fields against the method's dataclass and builds every shape."""
  entries = {"lr": (1e-3,), "wd": (1e-4,), "seeds": (42,),
             "adapter": {"style": ("sequential_after", "parallel_post_ln"), "learnable_scale": (False, True),
                         "scale": (0.1, 1.0)}}
  trials = grid.expand("dtd", "adapter", entries)
  assert len(trials) == 8
  assert len(grid.shape_groups(trials)) == 4  # the scale rides on merge_factor, learnable scale or not
  for method, field, values in [("vpt_deep", "num_layers", (0, 6)), ("vpt_shallow", "keep_prompts", (True, False)),
                                ("selective", "parts", (("qkv",), ("fc1", "fc2"))),
                                ("repadapter", "sublayers", (("attn",), ("attn", "mlp")))]:
    trials = grid.expand("dtd", method, {"lr": (1e-3,), "wd": (1e-4,), "seeds": (42,), method: {field: values}})
    assert [dict(t.hparams)[f"{method}.{field}"] for t in trials] == list(values)


def test_channel_scale_starts_at_one_per_channel_and_folds_into_repadapter(images):
  """learnable_scale='channel': a [D] gain per module, ones at init; RepAdapter's merge folds it exactly."""
  _, _, params = init("adapter", _config("adapter", {"learnable_scale": "channel", "sublayers": ("mlp",)}),
                      at_init=True)
  scales = {k: v for k, v in partition.flatten(params).items() if k.endswith("_scale")}
  assert sorted(scales) == ["encoder/block_0/adapter_mlp_scale", "encoder/block_1/adapter_mlp_scale"]
  assert all(np.shape(v) == (32,) and np.all(np.asarray(v) == 1.0) for v in scales.values())
  for style in ("sequential_before", "sequential_after"):
    config = _config("repadapter", {"style": style, "learnable_scale": "channel"})
    model, methods, params = init("repadapter", config)  # random gains, not ones
    merged = jax.jit(lambda p: peft.merge(p, methods, 0.7))(params)
    np.testing.assert_allclose(apply(make("linear")[0], merged, images), apply(model, params, images, 0.7),
                               rtol=2e-4, atol=2e-4, err_msg=style)


def test_adapter_plus_initialisation_and_drop_path(images):
  """init='houlsby': kernels N(0, 0.01^2) truncated at +-2 std (Adapter+'s code), biases 0; drop_path drops
  whole examples' module outputs in training only."""
  hp = {"bottleneck": 64, "style": "post", "sublayers": ("mlp",), "learnable_scale": "channel", "scale": 1.0,
        "init": "houlsby", "nonlinearity": "gelu", "dropout": 0.0, "drop_path": 0.5}
  model, _, params = init("adapter", {"adapter": hp}, at_init=True)
  flat = partition.flatten(params)
  kernels = np.concatenate([np.ravel(flat[f"encoder/block_{i}/adapter_mlp_{d}/kernel"]) for i in (0, 1)
                            for d in ("down", "up")])
  assert np.abs(kernels).max() <= 0.02 + 1e-7
  np.testing.assert_allclose(kernels.std(), 0.01 * 0.8796, rtol=0.05)  # a N(0, 1) cut at +-2 has std 0.8796
  assert not any(np.any(flat[f"encoder/block_{i}/adapter_mlp_{d}/bias"]) for i in (0, 1) for d in ("down", "up"))
  # Training mode: with rate 0.5, some examples keep the module (x2) and some lose it; eval: deterministic.
  model_nodrop, _ = make("adapter", {"adapter": {**hp, "drop_path": 0.0}})
  big = {k: (v * 100 if "adapter" in k and k.endswith("kernel") else v) for k, v in flat.items()}
  big = partition.unflatten(big)
  x = jnp.concatenate([images] * 4)
  train = np.asarray(jax.jit(lambda p, x, k: model.apply({"params": p}, x, train=True, rngs={"dropout": k}))(
      big, x, jax.random.key(5)))
  evaluated = apply(model, big, x)
  np.testing.assert_allclose(evaluated, apply(model_nodrop, big, x), rtol=1e-5, atol=1e-5)
  assert np.abs(train - evaluated).max() > 1e-3

"""The grid, scale folding, selection and the tables: no training, fast."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft import config_base, peft
from jpeft.models import vit
from jpeft.sweep import grid, protocol, tables


def _grid(**entries):
  return config_base.apply_overrides(grid.default_grid(), entries)


def test_expand_is_the_product_and_groups_by_shape():
  trials = grid.expand("dtd", "adapter", _grid(seeds=(1, 2)))
  spec = peft.registry()["adapter"].grid
  assert len(trials) == 2 * 2 * len(spec["bottleneck"]) * len(spec["scale"]) * 2
  assert len({t.key for t in trials}) == len(trials)
  groups = grid.shape_groups(trials)
  # scale is folded into merge_factor, so only the bottleneck changes shapes.
  assert sorted(dict(g[0].hparams)["adapter.bottleneck"] for g in groups) == sorted(spec["bottleneck"])
  for g in groups:
    assert len({dict(t.hparams)["adapter.bottleneck"] for t in g}) == 1
    assert {t.merge_multiplier() for t in g} == {float(s) for s in spec["scale"]}
  assert len(grid.shape_groups(grid.expand("dtd", "lora", _grid()))) == len(peft.registry()["lora"].grid["rank"])


def test_scale_is_not_folded_when_methods_are_combined():
  trials = grid.expand("dtd", "adapter+bitfit", _grid(**{"adapter.scale": (0.1, 1.0), "adapter.bottleneck": (4,)}))
  assert len(grid.shape_groups(trials)) == 2  # merge_factor would also scale bitfit: scales get own programs
  assert all(t.merge_multiplier() == 1.0 for t in trials)
  assert trials[0].peft_overrides(fold=True)["adapter"]["scale"] == trials[0].peft_overrides(fold=False)["adapter"]["scale"]


@pytest.mark.parametrize("entry,value,needle", [
    ("lr", (0.0,), "'lr' has the value 0.0"),
    ("wd", (-1e-4,), "'wd' has the value -0.0001"),
    ("seeds", (1.5,), "'seeds' has the value 1.5"),
    ("lr", (), "'lr' is empty"),
    ("lora.rank", (0,), "rank=0"),
])
def test_bad_grid_values_are_named(entry, value, needle):
  with pytest.raises(grid.GridError, match=needle.replace("(", r"\(").replace(".", r"\.")):
    grid.expand("dtd", "lora", _grid(**{entry: value}))


def test_final_seeds_default_to_the_tuning_seeds_and_are_checked():
  assert grid.final_seeds(_grid(seeds=(1, 2))) == (1, 2)
  assert grid.final_seeds(_grid(seeds=(1,), final_seeds=(1, 7, 7))) == (1, 7)
  assert grid.final_seeds({"seeds": (3,)}) == (3,)  # a grid made by hand, without the field
  with pytest.raises(grid.GridError, match="'final_seeds' has the value -1"):
    grid.final_seeds(_grid(final_seeds=(-1,)))


def test_unknown_grid_field_and_method_are_named():
  g = _grid()
  g.lora.beta = (1,)  # (lora.alpha is a field since LoRA's scaling options)
  with pytest.raises(grid.GridError, match="'lora.beta' names no hyperparameter"):
    grid.expand("dtd", "lora", g)
  with pytest.raises(grid.GridError, match="Unknown PEFT method 'lorra'"):
    grid.expand("dtd", "lorra", _grid())


@pytest.mark.parametrize("name", sorted(n for n, c in peft.registry().items() if "scale" in c.grid))
def test_folding_scale_into_merge_factor_is_exact(name):
  """The premise of folding: method at scale s and merge factor m == method at scale 1 and merge factor s*m.
  Parameters are perturbed so zero-initialised up-projections do not hide a wrong scale."""
  cls = peft.registry()[name]
  small = {k: v[0] for k, v in cls.grid.items() if k != "scale"}
  if "bottleneck" in small:
    small["bottleneck"] = 4
  if "rank" in small:
    small["rank"] = 4
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3))

  def logits(scale, merge_factor, params=None):
    model = vit.create_model("mu/8", num_classes=3, methods=peft.build_methods(name, {name: dict(small, scale=scale)}))
    if params is None:
      params = model.init(jax.random.PRNGKey(0), images[:1])["params"]
      leaves, tree = jax.tree.flatten(params)
      keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
      params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return model.apply({"params": params}, images, merge_factor=jnp.float32(merge_factor)), params

  scaled, params = logits(0.1, 0.5)
  folded, _ = logits(1.0, 0.05, params)
  unscaled, _ = logits(1.0, 0.5, params)
  np.testing.assert_allclose(scaled, folded, rtol=1e-5, atol=1e-6)
  assert not np.allclose(scaled, unscaled, atol=1e-4)  # the scale really matters here


def _row(config, seed, accuracy, diverged=False):
  return dict(config_key=config, seed=seed, accuracy=accuracy, diverged=diverged)


def test_select_means_over_seeds_skips_diverged_and_breaks_ties_by_order():
  rows = [_row("a", 1, 0.9), _row("a", 2, 0.48), _row("b", 1, 0.7), _row("b", 2, 0.69),
          _row("c", 1, 0.99), _row("c", 2, 0.99, diverged=True)]
  assert protocol.select(rows) == "b"  # a: best single run, lower mean (0.69 < 0.695); c diverged once
  assert protocol.select([_row("x", 1, 0.5), _row("y", 1, 0.5)]) == "x"
  assert protocol.select([_row("x", 1, 0.5, diverged=True)]) is None


def test_table_group_means_and_study_columns(tmp_path):
  accuracies = {"dtd": 0.6, "cifar100": 0.8, "eurosat": 0.9, "clevr_count": 0.5, "dsprites_loc": 0.7}
  summaries = [dict(task=t, method="lora", test_accuracy=a, trainable_params=1000) for t, a in accuracies.items()]
  summaries.append(dict(task="dtd", method="mymethod", test_accuracy=0.55, trainable_params=10))
  header, rows = tables.build_table(summaries)
  lora = dict(zip(header, rows[0]))
  assert lora["natural mean"] == pytest.approx(100 * np.mean([0.6, 0.8]))
  assert lora["specialized mean"] == pytest.approx(90.0)
  assert lora["structured mean"] == pytest.approx(100 * np.mean([0.5, 0.7]))
  assert lora["mean of 5"] == pytest.approx(100 * np.mean(list(accuracies.values())))
  assert [lora[f"study {g}"] for g in tables.GROUPS] + [lora["study mean of 19"]] == list(tables.STUDY["lora"])
  mine = dict(zip(header, rows[1]))
  assert mine["dtd"] == pytest.approx(55.0) and mine["cifar100"] is None and mine["mean of 5"] is None
  assert mine["study natural"] is None
  assert header.index("cifar100") < header.index("eurosat") < header.index("clevr_count")
  paths = tables.write_all(summaries, str(tmp_path))
  markdown = open(paths["results.md"]).read()
  assert "| lora | " in markdown and "| 80.5 |" in markdown  # cifar100 80.0 and study natural 80.5

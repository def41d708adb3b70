"""configs/vtab_adapter_plus.py: the paper's module, per-task bottleneck and recipe; its ViT-B/16 counts."""
import jax
import jax.numpy as jnp
import pytest

from jpeft import peft
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.train import config_checks
from tests.helpers import load_module

CONFIG = load_module("configs/vtab_adapter_plus.py")


def _trainable_without_head(hparams: dict) -> int:
  methods = peft.build_methods("adapter", {"adapter": hparams})
  model = vit.create_model("B/16", num_classes=10, methods=methods)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
  counts = peft.count_params(params, partition.label_params(params, methods))
  return counts["trainable"] - counts["head"]


@pytest.mark.parametrize("arg,task,bottleneck", [("dtd", "dtd", 2), ("resisc45", "resisc45", 8),
                                                 ("resisc45,1-32", "resisc45", 32), ("cifar100,1-32", "cifar100", 1)])
def test_config_picks_the_paper_s_bottleneck_and_recipe(arg, task, bottleneck):
  config = CONFIG.get_config(arg)
  config_checks.validate_config(config)
  assert config.task == task and config.mode == "final" and config.method == "adapter"
  (method,) = peft.build_methods(config.method, config.peft)
  assert (method.bottleneck, method.style, method.sublayers, method.learnable_scale, method.scale, method.init,
          method.nonlinearity, method.dropout, method.drop_path) == (
              bottleneck, "post", ("mlp",), "channel", 1.0, "houlsby", "gelu", 0.0, 0.1)
  assert (config.optim.lr, config.optim.wd, config.optim.warmup_start_lr, config.optim.min_lr) == (
      1e-3, 1e-4, 1e-5, 1e-6)
  assert config.data.normalization == "inception" and config.model.drop_path_rate == 0.1


def test_every_vtab_task_has_a_bottleneck_and_bad_arguments_are_named():
  from jpeft.data.vtab import VTAB_TASKS
  assert all(set(ranks) == set(VTAB_TASKS) for ranks in CONFIG.RANKS.values())
  with pytest.raises(ValueError, match=r"'dtdd' is not '<VTAB task>\[,<rank grid>\]'"):
    CONFIG.get_config("dtdd")
  with pytest.raises(ValueError, match=r"'dtd,1-16' is not"):
    CONFIG.get_config("dtd,1-16")


def test_vit_b16_counts():
  """Per block (the MLP only): Down 768 r + r, Up r 768 + 768, channel scale 768 (r = 8: 165,984)."""
  for r in (1, 8, 32):
    hparams = {**CONFIG.ADAPTER_PLUS, "bottleneck": r}
    assert _trainable_without_head(hparams) == 12 * (768 * r + r + r * 768 + 768 + 768)

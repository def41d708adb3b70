"""configs/clip_imagenet.py builds, for every method it names, a config that passes the config checks (no data,
no weights, no device work) and carries the study's protocol."""

import pytest

from jpeft.data import shift
from jpeft.train import config_checks
from jpeft.train.splits import mode_splits
from tests.helpers import load_module

clip_imagenet = load_module("configs/clip_imagenet.py")


@pytest.mark.parametrize("method", list(clip_imagenet.METHODS))
def test_every_method_builds_a_valid_config(method):
  config = clip_imagenet.get_config(method)
  config_checks.validate_config(config)
  assert config.method == method
  for name, value in clip_imagenet.METHODS[method].items():
    assert config.peft[method][name] == value


def test_the_protocol():
  config = clip_imagenet.get_config("lora")
  (train, train_spec), (evaluated, eval_spec) = mode_splits(config)
  assert (train, evaluated, eval_spec) == ("train100shot", "test", "validation")
  assert train_spec == shift.imagenet_kshot(100)  # never drawn from 'val', which early stopping watches
  assert (config.early_stopping.split, config.early_stopping.patience, config.eval_every_epochs) == ("val", 10, 1)
  assert tuple(config.shift_tasks) == ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
  assert (config.head_init, config.model.style, config.data.normalization) == ("zeroshot", "clip", "clip")
  assert (config.data.augment, config.data.random_erasing, config.data.eval_resize) == ("rrc+hflip+randaug", 0.25,
                                                                                         "square")
  assert (config.optim.lr, config.optim.wd, config.optim.batch_size, config.optim.epochs) == (3e-5, 5e-3, 256, 100)
  with pytest.raises(ValueError, match="no setting for method 'vqt'"):
    clip_imagenet.get_config("vqt")

"""Every registered method has configs/vtab_<method>.py, built on the base config (jpeft/config_base.py), with every field."""

import pytest

from jpeft import peft
from tests.helpers import load_module


def _load(name):
  return load_module(f"configs/vtab_{name}.py").get_config()


@pytest.mark.parametrize("name", sorted(peft.registry()))
def test_vtab_config_builds_its_method(name):
  config = _load(name)
  assert config.method == name and config.model.variant == "B/16"
  methods = peft.build_methods(config.method, config.peft)
  assert methods == (peft.registry()[name](),)
  # Every hyperparameter is present, so each can be overridden from the command line (configs are locked).
  assert set(config.peft[name]) == set(methods[0].hparams())

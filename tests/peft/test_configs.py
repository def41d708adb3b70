"""Every registered method has configs/vtab_<method>.py, built on the base config (jpeft/config_base.py), with every field."""
import importlib.util
import os

import pytest

from jpeft import peft

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def _load(name):
  spec = importlib.util.spec_from_file_location(f"vtab_{name}", os.path.join(CONFIGS, f"vtab_{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("name", sorted(peft.registry()))
def test_vtab_config_builds_its_method(name):
  config = _load(name)
  assert config.method == name and config.model.variant == "B/16"
  methods = peft.build_methods(config.method, config.peft)
  assert methods == (peft.registry()[name](),)
  # Every hyperparameter is present, so each can be overridden from the command line (configs are locked).
  assert set(config.peft[name]) == set(methods[0].hparams())

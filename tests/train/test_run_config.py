"""The one config comparison that resumed runs, eval mode and sweeps share (`jpeft.train.run_config`)."""
import json

import pytest

from jpeft.train import run_config
from jpeft.train.errors import ConfigError
from tests.helpers import load_config


def _saved(config, drop=()):
  saved = json.loads(config.to_json())
  for field in drop:
    section, name = field.split(".")
    del saved[section][name]
  return json.dumps(saved)


def test_every_differing_field_is_named_with_both_values():
  saved = _saved(load_config({"optim.epochs": 3, "optim.lr": 1e-2}))
  with pytest.raises(ConfigError, match=r"optim.epochs = 3, optim.lr = 0.01, but this config has "
                                        r"optim.epochs = 4, optim.lr = 0.001"):
    run_config.check_same_run(load_config({"optim.epochs": 4, "optim.lr": 1e-3}), saved, "w")


def test_a_field_added_later_matches_its_old_behaviour_only():
  """A checkpoint written before optim.schedule_granularity existed computed 'step': it resumes under 'step' and
  is refused under 'epoch_lagged'."""
  saved = _saved(load_config({}), drop=("optim.schedule_granularity",))
  run_config.check_same_run(load_config({"optim.schedule_granularity": "step"}), saved, "w")
  with pytest.raises(ConfigError, match="optim.schedule_granularity = 'step'.*'epoch_lagged'"):
    run_config.check_same_run(load_config({"optim.schedule_granularity": "epoch_lagged"}), saved, "w")


def test_eval_may_change_only_what_evaluation_does_not_depend_on():
  saved = _saved(load_config({"mode": "final", "optim.batch_size": 8}))
  run_config.check_same_run(load_config({"mode": "eval", "optim.batch_size": 4}), saved, "w",
                            may_differ=run_config.EVAL_MAY_DIFFER)
  with pytest.raises(ConfigError, match="model.variant"):
    run_config.check_same_run(load_config({"mode": "eval", "model.variant": "mu/16"}), saved, "w",
                              may_differ=run_config.EVAL_MAY_DIFFER)

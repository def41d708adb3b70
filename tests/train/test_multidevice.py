"""Data parallelism over 4 virtual CPU devices gives the metrics of one device."""
import json
import os
import subprocess
import sys

import numpy as np

from .conftest import REPO, load_config, tiny_overrides
from jpeft.train import trainer

_SCRIPT = """
import json
import jax
from tests.train.conftest import load_config
from jpeft.train import trainer
assert jax.device_count() == 4, jax.devices()
result = trainer.run(load_config(json.loads({overrides!r})), {workdir!r})
"""


def test_four_devices_match_one(folder_root, tmp_path):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 2})
  one = trainer.run(load_config(overrides), str(tmp_path / "one"))

  script = _SCRIPT.format(overrides=json.dumps(overrides),
                          workdir=str(tmp_path / "four"))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  four = json.loads((tmp_path / "four" / "result.json").read_text())

  assert one["devices_per_launch"] == [1] and four["devices_per_launch"] == [4]
  assert four["steps"] == one["steps"]
  for a, b in zip(one["evals"], four["evals"]):
    assert a["accuracy"] == b["accuracy"]
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
  np.testing.assert_allclose(np.load(tmp_path / "four" / "logits_val200.npy"),
                             np.load(tmp_path / "one" / "logits_val200.npy"), rtol=1e-4, atol=1e-4)

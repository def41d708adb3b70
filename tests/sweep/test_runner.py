"""The vmapped runner: a shared-batch chunk equals the trainer, the trial axis shards over devices."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .conftest import REPO, load_config, tiny_overrides
from jpeft.sweep import grid, runner
from jpeft.train import trainer
from jpeft.train.errors import ConfigError


def _trials(lrs, seeds, method="lora", hparams=(("lora.rank", 2),)):
  return [grid.Trial("dtd", method, lr, 1e-4, hparams, seed) for lr in lrs for seed in seeds]


def test_shared_batch_chunk_with_folded_scales_equals_trainer(folder_root, tmp_path):
  """One seed: the chunk shares each batch across trials; adapter scales ride on the traced merge_factor
  (built at scale 1). The scale-0.1 trial still ends where the trainer (built at scale 0.1) ends."""
  config = load_config(tiny_overrides(folder_root))
  trials = [grid.Trial("dtd", "adapter", 3e-2, 1e-4, (("adapter.bottleneck", 4), ("adapter.scale", s)), 42)
            for s in (1.0, 0.1)]
  rows = runner.run_trials(config, trials, "tune", trial_batch=2)
  assert [r["chunk_trials"] for r in rows] == [2, 2]
  assert rows[0]["loss"] != rows[1]["loss"]  # the scale is per trial
  alone = trainer.run(grid.trial_config(config, trials[1], "tune", fold=False), str(tmp_path))
  for mine, theirs in zip(rows[1]["evals"], alone["evals"]):
    np.testing.assert_allclose(mine["loss"], theirs["loss"], rtol=1e-4)
    assert mine["accuracy"] == theirs["accuracy"]


def test_tune_and_final_share_one_program_and_final_equals_trainer(folder_root, tmp_path):
  """The schedule's length is traced: after tuning, the final stage (more steps per epoch) compiles nothing
  new, and its trial ends where `trainer.run` in 'final' mode ends."""
  config = load_config(tiny_overrides(folder_root))
  trials = _trials([3e-2], [42])
  runners = {}
  tune = runner.run_trials(config, trials, "tune", trial_batch=1, runners=runners)
  final = runner.run_trials(config, trials, "final", trial_batch=1, runners=runners)
  (group,) = runners.values()
  assert group._train._cache_size() == 1 and group._eval._cache_size() == 1
  assert final[0]["steps"] > tune[0]["steps"] and final[0]["eval_split"] == "test"
  alone = trainer.run(grid.trial_config(config, trials[0], "final", fold=False), str(tmp_path))
  assert alone["steps"] == final[0]["steps"]
  for mine, theirs in zip(final[0]["evals"], alone["evals"]):
    np.testing.assert_allclose(mine["loss"], theirs["loss"], rtol=1e-4)
    assert mine["accuracy"] == theirs["accuracy"]


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_trial_batch_is_named(folder_root, bad):
  with pytest.raises(ConfigError, match=f"trial_batch={bad!r} is not usable"):
    runner.run_trials(load_config(tiny_overrides(folder_root)), _trials([1e-3], [0]), "tune", trial_batch=bad)


def test_trial_axis_shards_over_devices(folder_root):
  """On 2 CPU devices (`--cpu_devices=2`), 3 trials (padded to 4) give the same results as on one device."""
  script = textwrap.dedent(f"""
      import json
      import jax
      from jpeft import cli
      cli.set_cpu_devices(2)
      from tests.sweep.conftest import load_config, tiny_overrides
      from jpeft.sweep import grid, runner
      assert jax.device_count() == 2
      config = load_config(tiny_overrides({folder_root!r}))
      config.optim.epochs = 1
      config.optim.warmup_epochs = 0
      trials = [grid.Trial("dtd", "lora", lr, 1e-4, (("lora.rank", 2),), 42) for lr in (1e-3, 1e-2, 3e-2)]
      out = {{}}
      for n in (1, 2):
        mesh = runner.make_trial_mesh(jax.devices()[:n])
        out[n] = [(r["loss"], r["accuracy"]) for r in runner.run_trials(config, trials, "tune", 3, mesh=mesh)]
      print(json.dumps(out))
  """)
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert len(out["2"]) == 3
  np.testing.assert_allclose(np.array(out["2"]), np.array(out["1"]), rtol=1e-4)

"""A sweep launched as two processes joined by jax.distributed (CPU, one device each) trains the trials of a
one-process sweep: the trial axis is split over both processes' devices, and only process 0 writes."""
import json
import os
import sys

import numpy as np

from .conftest import REPO, load_config, tiny_overrides
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import protocol
from tests.helpers import free_port, run_processes


def _rows(workdir) -> dict:
  with open(os.path.join(workdir, "trials.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {r["key"]: r for r in rows}


def test_two_process_sweep_matches_one(folder_root, tmp_path):
  overrides = dict(tiny_overrides(folder_root), **{"optim.epochs": 1})
  one_dir = str(tmp_path / "one")
  grid = grid_lib.default_grid()  # the CLI's --grid flags below, in process
  grid.lr, grid.wd, grid.seeds = (1e-3, 1e-2), (1e-4,), (42,)
  grid.lora.rank = (4,)
  protocol.run_sweep(load_config(overrides), ["dtd"], ["lora"], grid, one_dir,
                     trial_batch=2, final=False, log=lambda _: None)

  two_dir = str(tmp_path / "two")
  distributed = {"distributed.enabled": True, "distributed.coordinator_address": f"127.0.0.1:{free_port()}",
                 "distributed.num_processes": 2}
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
  env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  args = [sys.executable, "-m", "jpeft.sweep", f"--config={os.path.join(REPO, 'jpeft', 'config_base.py')}",
          *[f"--config.{k}={v}" for k, v in dict(overrides, **distributed).items()], "--tasks=dtd",
          "--methods=lora", f"--workdir={two_dir}", "--trial_batch=2", "--nofinal", "--grid.lr=1e-3,1e-2",
          "--grid.wd=1e-4", "--grid.seeds=42", "--grid.lora.rank=4"]
  outputs = run_processes(args, 2, env, REPO)

  one, two = _rows(one_dir), _rows(two_dir)
  assert len(one) == 2 and one.keys() == two.keys()
  with open(os.path.join(two_dir, "trials.jsonl")) as f:
    assert len([line for line in f if line.strip()]) == 2  # written once (by process 0), not once per process
  for key in one:
    a, b = one[key], two[key]
    assert a["accuracy"] == b["accuracy"] and a["nonfinite_steps"] == b["nonfinite_steps"] == 0
    np.testing.assert_allclose([e["loss"] for e in b["evals"]], [e["loss"] for e in a["evals"]], rtol=1e-5)
    np.testing.assert_allclose(np.load(os.path.join(two_dir, b["predictions"]))["logits"],
                               np.load(os.path.join(one_dir, a["predictions"]))["logits"], rtol=1e-5, atol=1e-5)
  # Both processes selected the same setting (process 1 prints what it computed; only process 0 writes).
  summary = [line for line in outputs[0][0].splitlines() if line.startswith("dtd/lora:")]
  assert summary and summary == [line for line in outputs[1][0].splitlines() if line.startswith("dtd/lora:")]

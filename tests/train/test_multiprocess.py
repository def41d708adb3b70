"""Two processes joined by jax.distributed (CPU, Gloo collectives over 127.0.0.1) train the run of one process.

Each process has one CPU device, so the global batch is split over the two processes: this checks the mesh over
all processes' devices, batches assembled from every process's rows, replicated state placed from each
process and the collective checkpoint write.
"""
import json
import os
import subprocess
import sys

import numpy as np

from .conftest import REPO, cli_args, load_config, tiny_overrides
from jpeft.train import trainer
from tests.helpers import free_port, run_processes


def test_two_processes_match_one(folder_root, tmp_path):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 2})
  one = trainer.run(load_config(overrides), str(tmp_path / "one"))

  workdir = tmp_path / "two"
  distributed = {"distributed.enabled": True, "distributed.coordinator_address": f"127.0.0.1:{free_port()}",
                 "distributed.num_processes": 2}
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
  env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  outputs = run_processes([sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
                           *cli_args(dict(overrides, **distributed))], 2, env, REPO)
  two = json.loads((workdir / "result.json").read_text())

  assert one["devices_per_launch"] == [1] and two["devices_per_launch"] == [2]
  assert two["steps"] == one["steps"] == 2 * (64 // 16)
  for a, b in zip(one["evals"], two["evals"], strict=True):
    assert (a["epoch"], a["accuracy"]) == (b["epoch"], b["accuracy"])
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
  np.testing.assert_allclose(np.load(workdir / "logits_val200.npy"), np.load(tmp_path / "one" / "logits_val200.npy"),
                             rtol=1e-5, atol=1e-5)
  # Process 1 computed the same result (it prints it; only process 0 writes files).
  assert f"val200 accuracy: {two['method']} {two['accuracy']:.3f}" in outputs[1][0]


def test_distributed_without_a_cluster_or_coordinator_is_one_clear_error(tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI_", "TPU_"))}
  env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py",
                         "--config.distributed.enabled=True", f"--workdir={tmp_path / 'run'}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert "jpeft: error: --config.distributed.enabled=True, but jax.distributed could not start" in proc.stderr
  assert "--config.distributed.coordinator_address=" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "run").exists()

"""The persistent compilation cache: a second run of the same program compiles nothing, says so, and gives the
same numbers; the off switch writes nothing."""
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft import cli
from tests.helpers import REPO, cli_args, write_folder_task

_SUMMARY = re.compile(r"^compilation: (\d+) programs? compiled, (\d+) loaded (.*), [\d.]+ s$", re.MULTILINE)


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("vtab_folder"))
  write_folder_task(root, noise=40)
  return root


def _run(folder_root: str, workdir, flags=(), env_cache: str = "", hash_seed: int = 0) -> tuple[int, int, str]:
  """Trains a tiny LoRA run through the CLI; returns (compiled, loaded, where) from its log line."""
  overrides = {"task": "dtd", "data.source": "folder", "data.folder_root": folder_root, "data.image_size": 32,
               "model.variant": "mu/8", "pretrained.name": "", "method": "lora", "optim.batch_size": 16,
               "optim.epochs": 1, "optim.warmup_epochs": 0, "eval_every_epochs": 1, "checkpoint_every_epochs": 1}
  cmd = [sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
         *cli_args(overrides), *flags]
  # Python's string hashing differs per process unless pinned; each run pins its own so that a program whose
  # computation depends on set or dict order (another cache key) shows up here.
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, PYTHONHASHSEED=str(hash_seed),
             **{cli.COMPILATION_CACHE_ENV: env_cache})
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summaries = _SUMMARY.findall(proc.stdout)
  assert len(summaries) == 1, proc.stdout
  compiled, loaded, where = summaries[0]
  return int(compiled), int(loaded), where


def _outputs(workdir) -> tuple[float, np.ndarray]:
  result = json.loads((workdir / "result.json").read_text())
  return result["accuracy"], np.load(workdir / "logits_val200.npy")


def test_second_run_loads_every_program_from_the_cache_and_matches_the_first(folder_root, tmp_path):
  cache = tmp_path / "xla"
  # The first run finds the directory in the environment, the second in the flag: the same cache.
  compiled, loaded, where = _run(folder_root, tmp_path / "first", env_cache=str(cache))
  assert compiled > 0 and loaded == 0 and where == f"from the cache ({cache})"
  assert len(os.listdir(cache)) == compiled  # every program is saved, however small

  compiled_again, loaded_again, _ = _run(folder_root, tmp_path / "second", flags=[f"--compilation_cache={cache}"],
                                         hash_seed=1)
  assert (compiled_again, loaded_again) == (0, compiled)
  accuracy, logits = _outputs(tmp_path / "first")
  accuracy_again, logits_again = _outputs(tmp_path / "second")
  assert accuracy_again == accuracy and np.array_equal(logits_again, logits)


def test_empty_flag_turns_the_cache_off(folder_root, tmp_path):
  cache = tmp_path / "xla"
  compiled, loaded, where = _run(folder_root, tmp_path / "run", flags=["--compilation_cache="],
                                 env_cache=str(cache))
  assert compiled > 0 and loaded == 0 and where == "(cache off)"
  assert not cache.exists()


def test_the_block_counts_its_own_programs_and_leaves_jax_as_it_found_it(tmp_path):
  before = jax.config.jax_compilation_cache_dir
  with cli.compilation_cache(str(tmp_path / "xla")) as count:
    jax.jit(lambda x: x * 3 + 1)(jnp.ones(7)).block_until_ready()
  assert count.compiled >= 1 and count.loaded == 0
  assert len(os.listdir(tmp_path / "xla")) == count.compiled
  assert jax.config.jax_compilation_cache_dir == before
  counted = count.programs
  jax.jit(lambda x: x * 5 - 1)(jnp.ones(9)).block_until_ready()  # after the block: neither counted nor saved
  assert count.programs == counted and len(os.listdir(tmp_path / "xla")) == counted

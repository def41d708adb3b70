"""Helpers shared by the training and sweep tests: a tiny learnable task in the processed-folder layout, and
configs built from the base config (jpeft/config_base.py) as the CLI would build them."""
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from jpeft import config_base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_module(relative_path: str):
  """A repository file that is not part of the package (an experiments script, a config file) as a module."""
  name = os.path.splitext(os.path.basename(relative_path))[0]
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relative_path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
NUM_CLASSES = 4  # labels used out of dtd's 47; enough to see learning
SPLIT_SIZES = {"train800": 64, "val200": 32, "train800val200": 96, "test": 48}


def write_folder_task(root: str, noise: float) -> None:
  """<root>/dtd/{images, train800.txt, ...}: 16x16 images whose colour encodes the class, plus Gaussian
  pixel noise of std `noise` (more noise: short trainings land at more different accuracies)."""
  task_dir = os.path.join(root, "dtd")
  os.makedirs(os.path.join(task_dir, "images"))
  rng = np.random.default_rng(0)
  colours = rng.uniform(0, 255, (NUM_CLASSES, 3))
  index = 0
  for split, size in SPLIT_SIZES.items():
    lines = []
    for _ in range(size):
      label = index % NUM_CLASSES
      image = np.clip(colours[label] + rng.normal(0, noise, (16, 16, 3)), 0, 255).astype(np.uint8)
      name = f"images/{index}.png"
      tf.io.write_file(os.path.join(task_dir, name), tf.io.encode_png(image))
      lines.append(f"{name} {label}")
      index += 1
    with open(os.path.join(task_dir, f"{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")


def load_config(overrides: dict):
  """The base config with `overrides` applied (the in-process twin of --config.x=... flags)."""
  return config_base.apply_overrides(config_base.get_config(), overrides)


def cli_args(config_overrides: dict) -> list[str]:
  """--config.x=value flags for `python -m jpeft.main` / `python -m jpeft.sweep`."""
  return [f"--config.{k}={'' if v is None else v}" for k, v in config_overrides.items()]


def free_port() -> int:
  """A TCP port on 127.0.0.1 free now (for a jax.distributed coordinator)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(args: list[str], num_processes: int, env: dict, cwd: str, timeout: int = 400) -> list:
  """Runs `args` + --config.distributed.process_id=<i> for each i at once; asserts every one exits 0.
  Returns each process's (stdout, stderr)."""
  procs = [subprocess.Popen(args + [f"--config.distributed.process_id={i}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(num_processes)]
  try:
    outputs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      p.kill()  # no-op for a finished process; a hung one must not outlive the test
  for p, (_, stderr) in zip(procs, outputs):
    assert p.returncode == 0, stderr[-3000:]
  return outputs


def run_programs(commands: list[list[str]], cwd: str = REPO, env: dict = None, timeout: int = 600,
                 waves: list[int] = None) -> list[subprocess.CompletedProcess]:
  """Runs each command line (the arguments after `python`: ['-m', 'jpeft.main', ...] or [script, ...]) as its own
  program, in `cwd` with `env`, and returns what `subprocess.run([python, *command], capture_output=True,
  text=True)` would: exit code, stdout, stderr. One child process pays the imports (JAX, TensorFlow) once and
  forks per command (tests/program_runner.py), which saves seconds a command in the error-message tests.
  The commands run one after the other; with `waves` (one int per command) those of one wave run at once, waves
  in increasing order. Each result also has `.pid`, the process id the command ran under, and `.seconds`, its
  wall time."""
  env = dict(os.environ, PYTHONPATH=REPO) if env is None else env
  with tempfile.TemporaryDirectory() as tmp:
    cases, results = os.path.join(tmp, "cases.json"), os.path.join(tmp, "results.json")
    with open(cases, "w") as f:
      json.dump([{"args": list(map(str, c)), "cwd": str(cwd), **({} if waves is None else {"wave": waves[i]})}
                 for i, c in enumerate(commands)], f)
    runner = subprocess.run([sys.executable, os.path.join(REPO, "tests", "program_runner.py"), cases, results],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert runner.returncode == 0, runner.stderr[-3000:]
    with open(results) as f:
      done = []
      for c, r in zip(commands, json.load(f)):
        done.append(subprocess.CompletedProcess([sys.executable, *c], r["returncode"], r["stdout"], r["stderr"]))
        done[-1].seconds, done[-1].pid = r["seconds"], r["pid"]
      return done


MISSING_CONFIG = "configs/no_such_config.py"


def missing_config_error(program: str) -> str:
  """What `program` (jpeft, jpeft.sweep) prints for --config=MISSING_CONFIG run in the repository."""
  return (f"{program}: error: --config={MISSING_CONFIG}: no such file. Relative paths start from the current "
          f"directory ({REPO})")


def bad_config_files(folder, contents: list) -> list[str]:
  """The --config path of each bad-config case: MISSING_CONFIG (no such file) where the content is None, else a
  file `folder`/config{i}.py holding that content (a broken config file)."""
  paths = []
  for i, content in enumerate(contents):
    path = MISSING_CONFIG
    if content is not None:
      path = os.path.join(str(folder), f"config{i}.py")
      with open(path, "w") as f:
        f.write(content)
    paths.append(path)
  return paths


def run_cases(cases: dict) -> dict:
  """{case: (completed process, its workdir, config path)} of {case: (command line, workdir, config path)}: each
  command line runs as its own program, all in one child process that imports JAX and TensorFlow once
  (`run_programs`); the bad-input fixtures of the CLI tests."""
  procs = run_programs([args for args, _, _ in cases.values()])
  return {key: (proc, workdir, path) for (key, (_, workdir, path)), proc in zip(cases.items(), procs)}

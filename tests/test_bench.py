"""jpeft.bench: the measuring code runs, and its FLOP count sees what PEFT skips."""
import os
import pathlib
import subprocess
import sys

import pytest

from jpeft.bench import measure, mfu, profile

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _mini(method: str):
  config = mfu.case_config("mu/8", method, "float32", batch_size=4, image_size=32, remat=False)
  config.task = "mini_count"
  return config


def test_train_loop_times_steps_and_counts_flops():
  lora, full = measure.TrainLoop(_mini("lora")), measure.TrainLoop(_mini("full"))
  times = lora.run(2)
  assert len(times) == 2 and all(t > 0 for t in times)
  assert lora.trainable < full.trainable == full.total
  # Frozen weights get no gradient: no weight-gradient matmuls, so fewer FLOPs than full fine-tuning.
  assert 0 < lora.gflops_per_image < full.gflops_per_image
  assert measure.program_mb(lora.compiled) > 0


def test_profile_sorts_every_traced_op_into_a_kind():
  loop = measure.TrainLoop(_mini("lora"))
  loop.run(1)
  kinds_of_ops = profile.classify_hlo(loop.compiled.as_text())
  kinds = set(kinds_of_ops.values())
  assert {"matmul", "attention", "LayerNorm", "GELU", "dropout", "optimizer update"} <= kinds <= set(profile.KINDS)
  result = profile.profile_loop(loop, steps=1)
  assert result["step_s"] > 0 and result["op_s"] > 0 and result["kinds"]["matmul"] > 0
  assert all(kinds_of_ops[name] == kind for name, kind, _ in result["top_ops"])


@pytest.mark.parametrize("kind,dtype,peak", [("NVIDIA H200", "bfloat16", 989.4), ("NVIDIA H100 PCIe", "float32", 378.0),
                                             ("TPU v5 lite", "bfloat16", 197.0), ("cpu", "float32", None)])
def test_peak_lookup(kind, dtype, peak):
  assert mfu.peak_tflops(kind, dtype) == peak


_DEVICES_SCRIPT = """
import jax
from jpeft.bench import measure, mfu
assert jax.device_count() == 2, jax.devices()
config = mfu.case_config("mu/8", "lora", "float32", batch_size=4, image_size=32, remat=False)
config.task = "mini_count"
loop = measure.TrainLoop(config, jax.devices()[:1])
assert loop.summary.split(" on ")[1].startswith("1x"), loop.summary
assert len(loop.run(1)) == 1
assert {d for s in jax.tree.leaves(loop.compiled.input_shardings) for d in s.device_set} == {jax.devices()[0]}
"""


def test_train_loop_on_a_subset_of_devices():
  """With 2 devices, `devices=[first]` trains on that one alone (experiments/cpu_levers.py compares one- and
  two-device steps in one process); all devices, the default, is tests/train/test_multidevice.py's."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT], cwd=_REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]

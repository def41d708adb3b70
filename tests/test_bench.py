"""jpeft.bench: the measuring code runs, and its FLOP count sees what PEFT skips."""
import pytest

from jpeft.bench import measure, mfu, profile


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

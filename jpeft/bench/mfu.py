"""Model FLOPs utilisation of the train step, for every method x dtype x batch size asked, in one command.

  python -m jpeft.bench.mfu                       # ViT-B/16, lora and full, float32 and bfloat16, batch 64
  python -m jpeft.bench.mfu --methods=lora,full,linear --dtypes=bfloat16 --batch_sizes=64,128 --out=mfu.json
  python -m jpeft.bench.mfu --methods=lora --dtypes=bfloat16 --attentions=einsum,xla,cudnn   # model.attention

Each case builds the study's recipe (`jpeft.config_base.get_config(<method>)`, with random weights: speed does
not depend on them) and times its compiled train step on every local device (see jpeft/bench/measure.py).
MFU = XLA's FLOP count of the lowered step / median step time / (the devices' dense peak for the compute
dtype). XLA counts the FLOPs the program executes: a PEFT step skips the frozen weights' gradient matmuls
(about a third of full fine-tuning's), so compare methods by images/s and MFU together.

`--attentions` times each attention implementation (`model.attention`: einsum, xla, cudnn) in every case.

Peaks (dense TFLOP/s per device) are looked up from `jax.devices()[0].device_kind` in `PEAK_TFLOPS`; float32 uses
the TF32 tensor-core peak on NVIDIA GPUs, XLA's default precision for float32 matmuls there. For a device not
in the table (or a CPU) pass --peak_tflops; without it MFU is printed as n/a.
"""
from __future__ import annotations

import json
import math
import statistics
from typing import Optional

import jax
from absl import flags

from jpeft import cli, config_base
from jpeft.bench import measure

# device_kind substring -> dense peak TFLOP/s per device for {bfloat16, float32}; the first match wins.
PEAK_TFLOPS = (
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100", {"bfloat16": 989.4, "float32": 494.7}),  # SXM
    ("H200", {"bfloat16": 989.4, "float32": 494.7}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("L4", {"bfloat16": 121.0, "float32": 60.0}),
    ("TPU v6", {"bfloat16": 918.0, "float32": 918.0}),  # TPU float32 matmuls run as bf16 passes by default
    ("TPU v5p", {"bfloat16": 459.0, "float32": 459.0}),
    ("TPU v5", {"bfloat16": 197.0, "float32": 197.0}),  # v5e ("TPU v5 lite")
    ("TPU v4", {"bfloat16": 275.0, "float32": 275.0}),
)

def peak_tflops(device_kind: str, dtype: str) -> Optional[float]:
  """Dense peak TFLOP/s of one device of `device_kind` for compute `dtype`, or None if unknown."""
  for kind, peaks in PEAK_TFLOPS:
    if kind.lower() in device_kind.lower():
      return peaks.get(dtype)
  return None


def case_config(variant: str, method: str, dtype: str, batch_size: int, image_size: int, remat: bool,
                attention: str = "einsum"):
  config = config_base.get_config(method)
  config.model.variant = variant
  config.model.attention = attention
  config.model.dtype = dtype
  config.model.remat = remat
  config.optim.batch_size = batch_size
  config.data.image_size = image_size
  return config


def main(argv) -> None:
  del argv
  kind = jax.devices()[0].device_kind
  print(f"{jax.device_count()}x {kind} ({jax.default_backend()}), jax {jax.__version__}")
  header = (f"{'variant':<7} {'method':<8} {'dtype':<9} {'attention':<9} {'batch':>5} {'trainable':>11} "
            f"{'compile_s':>9} {'images/s':>9} {'TFLOP/s':>8} {'peak':>7} {'MFU':>6} {'step_MB':>9} {'peak_MB':>9}")
  print(header)
  rows = []
  for variant in _VARIANTS.value:
    for method in _METHODS.value:
      for dtype, attention in [(d, a) for d in _DTYPES.value for a in _ATTENTIONS.value]:
        for batch_size in map(int, _BATCH_SIZES.value):
          config = case_config(variant, method, dtype, batch_size, _IMAGE_SIZE.value, _REMAT.value, attention)
          loop = measure.TrainLoop(config)
          loop.run(_WARMUP.value)
          images_per_s = batch_size / statistics.median(loop.run(_STEPS.value))
          tflops = loop.gflops_per_image * images_per_s / 1e3
          program_mb, peak_mb = measure.program_mb(loop.compiled), measure.peak_mb(loop.compiled)
          peak = _PEAK.value or peak_tflops(kind, dtype)
          mfu = tflops / (peak * jax.device_count()) if peak else math.nan
          row = dict(variant=variant, method=method, dtype=dtype, attention=attention, batch_size=batch_size,
                     remat=_REMAT.value,
                     trainable=loop.trainable, total=loop.total, device_kind=kind, devices=jax.device_count(),
                     compile_s=loop.compile_s, images_per_s=images_per_s, tflops=tflops, peak_tflops=peak,
                     mfu=mfu, program_mem_mb=program_mb, peak_mem_mb=peak_mb)
          rows.append(row)
          print(f"{variant:<7} {method:<8} {dtype:<9} {attention:<9} {batch_size:>5} {loop.trainable:>11,} "
                f"{loop.compile_s:>9.1f} {images_per_s:>9.1f} {tflops:>8.1f} "
                f"{peak or math.nan:>7.1f} {'n/a' if math.isnan(mfu) else f'{mfu:.1%}':>6} "
                f"{program_mb:>9.0f} {peak_mb:>9.0f}", flush=True)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  # Flags only when run as a program: tests import this module beside other CLIs with an --out flag.
  _VARIANTS = flags.DEFINE_list("variants", ["B/16"], "ViT variants, e.g. S/16,B/16,L/16.")
  _METHODS = flags.DEFINE_list("methods", ["lora", "full"], "PEFT methods (registered names).")
  _DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes (parameters stay float32).")
  _BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64"], "Global batch sizes.")
  _ATTENTIONS = flags.DEFINE_list("attentions", ["einsum"], "model.attention values: einsum (written out), xla "
                                  "or cudnn (jax.nn.dot_product_attention; cudnn: NVIDIA GPUs in bfloat16 only).")
  _IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
  _REMAT = flags.DEFINE_bool("remat", False, "Recompute each block's activations in the backward pass "
                             "(config.model.remat: less memory, about a third more FLOPs).")
  _STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per case.")
  _WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
  _PEAK = flags.DEFINE_float("peak_tflops", None, "Dense peak TFLOP/s per device for the compute dtype; "
                             "default: looked up from the device kind (see PEAK_TFLOPS).")
  _OUT = flags.DEFINE_string("out", None, "Also write the rows as JSON to this file.")
  cli.run_program(main, "jpeft.bench.mfu")

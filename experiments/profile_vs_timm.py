"""Where jpeft's and timm's train steps spend their time, per op kind, side by side (issue 13's profile table).

  python experiments/profile_vs_timm.py --cases=S/16:8,S/16:32  # ViT-S/16 LoRA and full, batch 8 and 32, on CPU
  python experiments/profile_vs_timm.py --cases=B/16:8 --methods=lora --out=/tmp/profile.json

The same steps as `experiments/bench_vs_timm.py` (its TimmStep and jpeft loop). jpeft's side comes from the JAX
profiler (`jpeft.bench.profile`: trace events per HLO op, sorted into kinds from the optimized HLO); timm's from
torch's profiler (each aten op's self time, sorted by name; everything under `Optimizer.*` is the optimizer).
Milliseconds per step; `ops` is their sum, which on CPU can exceed the step's wall time for jpeft, whose thunk
runtime runs independent ops on several threads at once (torch runs one op at a time, each on all threads).
`matmul-bound` is the time of the step's own matmuls (`experiments/matmul_bound.py`: every matmul of the step,
each shape timed alone in XLA and in torch, the best of --repeats runs): how fast the step could be if
everything but the matmuls were free, at the speed each framework reaches on these shapes.
"""
import collections
import json

import bench_vs_timm  # first: imports torch before JAX (see there)
from bench_vs_timm import torch
import matmul_bound
import numpy as np
from absl import app, flags

from jpeft import cli
from jpeft.bench import profile

# --cases, --methods and --out are bench_vs_timm's flags, --repeats matmul_bound's (defined on import).
_STEPS = flags.DEFINE_integer("steps", 3, "Profiled steps per side (after 2 warmup steps).")
FLAGS = flags.FLAGS

_TORCH_KINDS = (  # (kind, substrings of aten op names), first match wins
    ("attention", ("scaled_dot_product", "attention", "softmax", "bmm")),
    ("matmul", ("aten::mm", "addmm", "convolution", "aten::linear", "aten::matmul")),
    ("LayerNorm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("dropout", ("dropout", "bernoulli", "uniform_", "aten::rand")),
    ("transposes/copies", ("copy_", "clone", "contiguous", "aten::cat", "aten::t", "transpose", "permute", "view",
                           "reshape", "expand", "as_strided", "unbind", "select", "slice", "split", "stack",
                           "empty", "zeros", "fill_", "zero_", "flatten", "unsqueeze", "squeeze")),
)


def _torch_kind(event) -> str:
  parent = event
  while parent is not None:
    if parent.name.startswith("Optimizer."):
      return "optimizer update"
    parent = parent.cpu_parent
  for kind, names in _TORCH_KINDS:
    if any(name in event.name for name in names):
      return kind
  return "other"


def profile_timm(side, steps: int) -> dict:
  """Op-kind profile of a bench_vs_timm.TimmStep: dict(step_s, op_s, kinds={kind: seconds per step})."""
  step_s = float(np.median(side.run(steps)))
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    side.run(steps)
  kinds = collections.Counter({kind: 0.0 for kind in profile.KINDS})
  for event in prof.events():
    kinds[_torch_kind(event)] += event.self_cpu_time_total * 1e-6 / steps
  return dict(step_s=step_s, op_s=sum(kinds.values()), kinds=dict(kinds))


def main(argv) -> None:
  del argv
  if torch is None:
    raise SystemExit(f"profile_vs_timm needs torch and timm ({bench_vs_timm.TORCH_LINE}); for jpeft's side alone "
                     "run python -m jpeft.bench.profile --config=<config>.")
  rows = []
  for case in FLAGS.cases:
    variant, batch_size = case.split(":")[0], int(case.split(":")[1])
    for method in FLAGS.methods:
      loop = bench_vs_timm.jpeft_loop(variant, method, batch_size, "float32")
      loop.run(2)
      jpeft_side = profile.profile_loop(loop, _STEPS.value)
      flops = jpeft_side.pop("flops")
      del loop
      timm = bench_vs_timm.TimmStep(variant, method, batch_size, "float32")
      timm.run(2)
      timm_side = profile_timm(timm, _STEPS.value)
      del timm
      bound, _ = matmul_bound.bound_seconds(matmul_bound.step_matmuls(variant, batch_size, method), FLAGS.repeats)
      jpeft_side["matmul_bound_s"], timm_side["matmul_bound_s"] = bound["xla"], bound["torch"]
      rows.append(dict(variant=variant, batch_size=batch_size, method=method, gflops_per_step=flops / 1e9,
                       jpeft=jpeft_side, timm=timm_side))
      print(f"\n{variant} batch {batch_size} {method}: {flops / 1e9:.0f} GFLOP per step; ms per step")
      print(f"{'kind':<20} {'jpeft':>8} {'timm':>8}")
      for kind in profile.KINDS:
        print(f"{kind:<20} {jpeft_side['kinds'][kind] * 1e3:>8.0f} {timm_side['kinds'][kind] * 1e3:>8.0f}")
      for label, key in (("ops (sum)", "op_s"), ("step (wall)", "step_s"), ("matmul-bound", "matmul_bound_s")):
        print(f"{label:<20} {jpeft_side[key] * 1e3:>8.0f} {timm_side[key] * 1e3:>8.0f}", flush=True)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "profile_vs_timm"))

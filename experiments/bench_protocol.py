"""Benchmark: the study's tuning protocol for one (task, method), end to end, three ways in one run.

  python experiments/bench_protocol.py --out=experiments/results/bench_protocol_cpu/mini_count_lora.json
      [--task=mini_count] [--method=lora] [--epochs=10] [--lr=1e-3,1e-2] [--wd=1e-4] [--rank=8]
      [--final_seeds=42,43] [--trial_batch=8|auto] [--variant=mini/8] [--image_size=32] [--dtype=float32]
      [--torch_python=/path/to/venv/bin/python] [--sides=sweep,sequential,torch] [--data=synthetic]

What a user waits for: every grid trial trained on train800 and evaluated on val200 ("tune"), the best setting
by val200 accuracy retrained on train800val200 with every final seed and evaluated on test ("final"). The sides:
  sweep       jpeft's sweep engine (`jpeft.sweep.protocol.run_sweep`): trials of one shape trained together,
              `--trial_batch` per compiled program, hyperparameters traced (one program for every lr and wd);
  sequential  the same engine one trial at a time (`trial_batch=1`): what running jpeft trial by trial costs,
              programs still reused across trials;
  torch       a PyTorch loop doing what the study's code does: a timm ViT with the same weights and the same
              method (lora: the study's shared A, B on the fused qkv; linear; full), AdamW with the same
              warmup-cosine per step, the same arrays, epochs, batch size and seeds, one trial after another.
              Runs in `--torch_python` (a venv with torch and timm; jpeft never imports torch), skipped without it.
Each side starts from an empty compilation cache, so its compile time is its own and is reported apart; data
loading (TFDS -> arrays) is measured once apart too, as every side reads the same arrays. Default size: the
mini study's own protocol (the shipped mini/8 backbone, a Mini VTAB task, 2 lr x 1 wd x rank 8, 10 epochs, final
seeds 42 and 43: what users run offline). `--variant=S/16 --image_size=64` times a larger ViT from random
weights (timing only: accuracies are then meaningless). `--data=synthetic` trains on a VTAB-shaped task made in
memory (`jpeft.data.synthetic`: 800/200/test gratings at --image_size; --task is ignored): nothing reads TFDS or
imports TensorFlow (experiments/device_check.sh). Writes one JSON with every side's stage times,
selections and test accuracies, and prints a table of the ratios (torch / jpeft: above 1 means jpeft is faster).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from jpeft import cli, config_base
from jpeft.data import synthetic
from jpeft.data import tasks as tasks_lib
from jpeft.export import timm_architecture
from jpeft.checkpoints import statedict
from jpeft.peft import partition
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import fit, protocol
from jpeft.train import model_setup, splits
from jpeft.train.errors import ConfigError

TORCH_METHODS = ("lora", "linear", "full")
_TORCH_LOOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_protocol_torch.py")


def base_config(args) -> "ml_collections.ConfigDict":
  """The mini study's base config (the demo's) at the benchmark's size."""
  config = config_base.demo_config()
  config.task, config.method = args.task, args.method
  config.optim.epochs = args.epochs
  config.optim.warmup_epochs = min(1, args.epochs)
  config.eval_every_epochs = args.epochs
  config.data.image_size = args.image_size
  config.model.dtype = args.dtype
  if args.variant != config.model.variant:  # no pretrained file of another size offline: random weights
    config.model.variant = args.variant
    config.pretrained.name = config.pretrained.path = ""
  return config


def protocol_grid(args) -> dict:
  grid = grid_lib.default_grid()
  grid.lr, grid.wd = tuple(args.lr), tuple(args.wd)
  grid.final_seeds = tuple(args.final_seeds)
  if args.method == "lora":
    grid.lora.rank = (args.rank,)
  return grid


def run_jpeft(config, grid, trial_batch, workdir: str, cache_dir: str, data) -> dict:
  """One side through the sweep engine; stage walls from the engine's stage messages."""
  marks = []

  def log(message: str) -> None:
    marks.append((time.perf_counter(), message))
    print(f"  [{time.perf_counter() - start:7.1f} s] {message}", flush=True)

  with cli.compilation_cache(cache_dir) as compiles:
    start = time.perf_counter()
    summary = protocol.run_sweep(config, [config.task], [config.method], grid, workdir, trial_batch, log=log,
                                 data=None if data is None else dict(data))[0]
    end = time.perf_counter()
  final_start = next(t for t, m in marks if ": selected " in m)
  return dict(tune_s=final_start - start, final_s=end - final_start, total_s=end - start,
              compile_s=compiles.seconds, programs=compiles.programs, selected=summary["selected"],
              val_accuracy=summary["val_accuracy"], test_accuracy=summary["test_accuracy"])


def load_arrays(config, args) -> tuple[dict, float]:
  """({split name: {'image', 'label'}} of every split the protocol reads, the seconds loading or making them)."""
  task = tasks_lib.get_task(config.task)
  start = time.perf_counter()
  if args.data == "synthetic":
    arrays = synthetic.make_splits(config.data.image_size, task.num_classes, args.test_size)
  else:
    arrays = {name: splits.load_split(config, task, spec)
              for mode in ("tune", "final") for name, spec in splits.mode_splits(config, mode)}
  return arrays, time.perf_counter() - start


def write_torch_inputs(config, arrays: dict, path: str) -> None:
  """The splits' `arrays`, the backbone as a timm state dict and the architecture, in one .npz for the torch
  side."""
  task = tasks_lib.get_task(config.task)
  arrays = {f"{name}/{key}": split[key] for name, split in arrays.items() for key in ("image", "label")}
  linear = config.copy_and_resolve_references()
  linear.method, linear.peft = "linear", {}
  setup = model_setup.build(linear)  # the plain ViT with the backbone loaded and a zero head
  params = partition.combine(setup.trainable, setup.frozen)
  weights = {f"weight/{k}": v for k, v in statedict.to_timm(params).items()}
  name, kwargs = timm_architecture(config.model.variant, config.model.style, config.data.image_size,
                                   task.num_classes)
  np.savez(path, **arrays, **weights, architecture=json.dumps(dict(name=name, kwargs=kwargs)))


def run_torch(torch_python: str, inputs: str, config, grid, out: str) -> dict:
  optim = config.optim
  spec = dict(inputs=inputs, method=config.method, rank=grid.lora.rank[0] if config.method == "lora" else None,
              lora_dropout=config.peft.lora.get("dropout", 0.0) if config.method == "lora" else 0.0,
              lrs=list(grid.lr), wds=list(grid.wd), seeds=list(grid.seeds), final_seeds=list(grid.final_seeds),
              epochs=optim.epochs, warmup_epochs=optim.warmup_epochs, batch_size=optim.batch_size,
              warmup_start_lr=optim.warmup_start_lr, min_lr=optim.min_lr, betas=[optim.b1, optim.b2],
              eps=optim.eps, threads=os.cpu_count(), dtype=config.model.dtype, out=out)
  proc = subprocess.run([torch_python, _TORCH_LOOP, json.dumps(spec)], text=True)
  if proc.returncode != 0:
    raise SystemExit(f"bench_protocol: error: the torch side failed (exit {proc.returncode}; its output is above).")
  with open(out) as f:
    return json.load(f)


def ratios_table(result: dict) -> str:
  sides = [s for s in ("sweep", "sequential", "torch") if s in result["sides"]]
  lines = ["| side | tune s | final s | total s | compile s | programs | selected | test acc |",
           "|---|---|---|---|---|---|---|---|"]
  for side in sides:
    r = result["sides"][side]
    lines.append(f"| {side} | {r['tune_s']:.1f} | {r['final_s']:.1f} | {r['total_s']:.1f} | "
                 f"{r.get('compile_s', 0.0):.1f} | {r.get('programs', '-')} | {json.dumps(r['selected'])} | "
                 f"{r['test_accuracy']:.3f} |")
  lines.append("")
  for other in sides[1:]:
    for stage in ("tune_s", "final_s", "total_s"):
      lines.append(f"{other} / sweep, {stage[:-2]}: {result['sides'][other][stage] / result['sides']['sweep'][stage]:.2f}x")
  return "\n".join(lines)


def ints(text: str) -> list[int]:
  """A comma-separated flag value as integers: '42,43' -> [42, 43]."""
  return [int(x) for x in text.split(",")]


def floats(text: str) -> list[float]:
  """A comma-separated flag value as floats: '1e-3,1e-2' -> [0.001, 0.01]."""
  return [float(x) for x in text.split(",")]


def add_common_arguments(parser: argparse.ArgumentParser, final_seeds: list[int]) -> None:
  """The flags this benchmark shares with experiments/bench_pad_shapes.py: --out, --task, --epochs, --lr, --wd and
  --final_seeds (default `final_seeds`)."""
  parser.add_argument("--out", required=True, help="result JSON (refused if it exists)")
  parser.add_argument("--task", default="mini_count")
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--lr", type=floats, default=[1e-3, 1e-2])
  parser.add_argument("--wd", type=floats, default=[1e-4])
  parser.add_argument("--final_seeds", type=ints, default=final_seeds)


def trial_batch_arg(text: str):
  try:
    return fit.parse_trial_batch(text)
  except ConfigError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_common_arguments(parser, final_seeds=[42, 43])
  parser.add_argument("--method", default="lora")
  parser.add_argument("--rank", type=int, default=8, help="LoRA rank (method lora)")
  parser.add_argument("--trial_batch", type=trial_batch_arg, default=8,
                      help="trials per compiled program (sweep side), or 'auto' (as many as fit in memory)")
  parser.add_argument("--variant", default="mini/8")
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="compute dtype of both frameworks (bfloat16: torch autocast, jpeft's model.dtype)")
  parser.add_argument("--sides", default="sweep,sequential,torch")
  parser.add_argument("--torch_python", default="", help="a Python with torch and timm (the torch side)")
  parser.add_argument("--data", default="task", choices=("task", "synthetic"),
                      help="task: --task's data; synthetic: a VTAB-shaped task made in memory (no TensorFlow)")
  parser.add_argument("--test_size", type=int, default=500, help="test images of --data=synthetic")
  args = parser.parse_args()
  sides = args.sides.split(",")
  unknown = set(sides) - {"sweep", "sequential", "torch"}
  if unknown or "sweep" not in sides:
    sys.exit(f"bench_protocol: error: --sides={args.sides}: name 'sweep' and any of 'sequential', 'torch'.")
  if "torch" in sides and args.method not in TORCH_METHODS:
    sys.exit(f"bench_protocol: error: --method={args.method}: the torch side has {TORCH_METHODS}; drop 'torch' "
             "from --sides to time the jpeft sides alone.")
  if os.path.exists(args.out):
    sys.exit(f"bench_protocol: error: --out={args.out} exists; name a new file (results are never overwritten).")
  cli.quiet_logging_unless_asked()
  if args.data == "synthetic":
    args.task = synthetic.register(test_size=args.test_size).name
  config, grid = base_config(args), protocol_grid(args)
  result = dict(task=args.task, method=args.method, variant=args.variant, image_size=args.image_size,
                dtype=args.dtype, epochs=args.epochs, data=args.data,
                grid=dict(lr=args.lr, wd=args.wd, rank=args.rank, final_seeds=args.final_seeds),
                trial_batch=args.trial_batch, cpu_count=os.cpu_count(), sides={})
  try:
    import jax
    result["device"] = str(jax.devices()[0].device_kind)
    with tempfile.TemporaryDirectory() as tmp:
      arrays, result["data_s"] = load_arrays(config, args)
      # In memory (synthetic): the sides read the arrays made here; else each loads its task's data itself.
      cache = (splits.in_memory_cache(config, tasks_lib.get_task(config.task), arrays)
               if args.data == "synthetic" else None)
      for side, trial_batch in (("sweep", args.trial_batch), ("sequential", 1)):
        if side in sides:
          print(f"{side}: trial_batch={trial_batch}", flush=True)
          result["sides"][side] = run_jpeft(config, grid, trial_batch, os.path.join(tmp, side),
                                            os.path.join(tmp, f"xla_{side}"), cache)
      if "torch" in sides:
        if not args.torch_python:
          print("torch: skipped (no --torch_python)")
        else:
          print("torch: one trial after another", flush=True)
          inputs = os.path.join(tmp, "inputs.npz")
          write_torch_inputs(config, arrays, inputs)
          result["sides"]["torch"] = run_torch(args.torch_python, inputs, config, grid, os.path.join(tmp, "t.json"))
  except cli.USER_ERRORS as e:
    sys.exit(f"bench_protocol: error: {e}")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "x") as f:
    json.dump(result, f, indent=1)
  print(ratios_table(result))
  print("written:", args.out)


if __name__ == "__main__":
  main()

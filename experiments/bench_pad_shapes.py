"""Benchmark: grid.pad_shapes on and off, side by side in one run, on a grid with several shape values.

  python experiments/bench_pad_shapes.py --out=experiments/results/pad_shapes_cpu/mini_count_lora.json
      [--task=mini_count] [--method=lora] [--ranks=2,4,8,16] [--epochs=10] [--lr=1e-3,1e-2] [--wd=1e-4]
      [--final_seeds=42] [--trial_batch=8] [--sides=off,on]

Each side runs the study's protocol (`jpeft.sweep.protocol.run_sweep`: every trial on train800 -> val200,
selection, the final retrain on train800val200 -> test) for one (task, method) on the mini study's base config
(`experiments/bench_protocol.py`'s), with the method's shape field over `--ranks` (LoRA and DoRA: rank; the
bottleneck adapters: bottleneck, with their dropout set to 0 so that padding applies), from an empty compilation
cache of its own. 'off' trains one program per shape, 'on' pads every shape to the largest (one program).
`--sides=off,on,on,off` repeats them to see the machine's drift. Writes one JSON with each side's walls, CPU
seconds, compiled programs, compile seconds, selection and accuracies, and prints the ratios (off / on: above 1
means padding is faster).
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_protocol  # noqa: E402  (the protocol benchmark's flags, base config and timed sweep)

FIELDS = {"lora": "rank", "dora": "rank", "adapter": "bottleneck", "pfeiffer": "bottleneck",
          "adaptformer": "bottleneck", "convpass": "bottleneck"}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  bench_protocol.add_common_arguments(parser, final_seeds=[42])
  parser.add_argument("--method", default="lora", choices=sorted(FIELDS))
  parser.add_argument("--ranks", type=bench_protocol.ints, default=[2, 4, 8, 16])
  parser.add_argument("--trial_batch", type=int, default=8)
  parser.add_argument("--sides", default="off,on")
  args = parser.parse_args()
  if os.path.exists(args.out):
    sys.exit(f"bench_pad_shapes: error: {args.out} exists; pass another --out.")
  bench_args = argparse.Namespace(task=args.task, method=args.method, epochs=args.epochs, image_size=32,
                                  dtype="float32", variant="mini/8")
  config = bench_protocol.base_config(bench_args)
  field = FIELDS[args.method]
  if field == "bottleneck":
    with config.unlocked():
      config.peft[args.method] = {"dropout": 0.0}  # a bottleneck dropout mask would make padding inexact
  sides = []
  with tempfile.TemporaryDirectory() as tmp:
    for i, side in enumerate(args.sides.split(",")):
      grid = bench_protocol.protocol_grid(argparse.Namespace(lr=args.lr, wd=args.wd, final_seeds=args.final_seeds,
                                                             method="", rank=None))
      grid[args.method][field] = tuple(args.ranks)
      grid.pad_shapes = side == "on"
      print(f"side {i}: pad_shapes {side}", flush=True)
      cpu = time.process_time()  # CPU seconds of this process: less sensitive than walls to others' load
      result = bench_protocol.run_jpeft(config, grid, args.trial_batch, os.path.join(tmp, f"w{i}"),
                                        os.path.join(tmp, f"cache{i}"), data=None)  # None: the task from TFDS
      sides.append(dict(side=side, cpu_s=time.process_time() - cpu, **result))
      print(json.dumps(sides[-1]), flush=True)
  mean = lambda side, key: sum(s[key] for s in sides if s["side"] == side) / sum(s["side"] == side for s in sides)
  keys = ("total_s", "cpu_s", "tune_s", "final_s", "compile_s", "programs")
  ratios = {key: mean("off", key) / mean("on", key) for key in keys}
  out = dict(args=vars(args), sides=sides, ratios_off_over_on=ratios)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1)
  print("off / on (above 1: padding faster): " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))


if __name__ == "__main__":
  main()

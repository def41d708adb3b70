"""jpeft's train step against timm's doing the same step, side by side in one process.

  python experiments/bench_vs_timm.py                                  # the six CPU cases of issue 13
  python experiments/bench_vs_timm.py --cases=B/16:64 --dtype=bfloat16  # on a GPU (torch on CUDA)

Both sides train the same ViT (random init) on the same synthetic batch: AdamW (lr 1e-3, wd 1e-4), drop path 0.1,
cross-entropy over 100 classes, 224 px; `lora` is the study's LoRA (rank 8 on the fused qkv, dropout 0.1) plus
the head, `full` trains everything. The two sides alternate in rounds (--rounds x --steps_per_round timed steps
each, after one untimed round), so load from other processes hits both alike; each side's images/s is the
median over its steps, and the ratio is jpeft / timm. torch and timm are optional: without them the timm side
is skipped with a message. jpeft never imports torch; this script does, in the same process, only when present.
On a GPU, bfloat16 means jpeft's `model.dtype=bfloat16` (float32 master weights) and torch autocast to bf16.
"""
import json
import os
import statistics
import sys
import time

try:  # before JAX and TensorFlow: timm pulls in triton, which crashed when loaded after them (torch 2.14)
  import timm
  import torch
  TORCH_LINE = f"torch {torch.__version__}, timm {timm.__version__}"
except ImportError as e:
  torch, TORCH_LINE = None, f"timm side skipped: {e} (pip install torch timm to compare)"
import jax
from absl import app, flags

from jpeft import cli, config_base
from jpeft.bench import measure

_CASES = flags.DEFINE_list("cases", ["S/16:8", "S/16:32", "B/16:8"], "variant:batch pairs.")
_METHODS = flags.DEFINE_list("methods", ["lora", "full"], "lora and/or full.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of both sides.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating rounds per case.")
_STEPS = flags.DEFINE_integer("steps_per_round", 4, "Timed steps per side per round.")
_OUT = flags.DEFINE_string("out", None, "Also write the rows as JSON to this file.")

TIMM_NAMES = {"Ti/16": "vit_tiny_patch16_224", "S/16": "vit_small_patch16_224",
              "B/16": "vit_base_patch16_224", "L/16": "vit_large_patch16_224"}
NUM_CLASSES, IMAGE_SIZE, LORA_RANK = 100, 224, 8


class TimmStep:
  """timm's ViT with the same method and optimizer; `run(n)` returns the seconds of n train steps."""

  def __init__(self, variant: str, method: str, batch_size: int, dtype: str):
    self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = timm.create_model(TIMM_NAMES[variant], pretrained=False, num_classes=NUM_CLASSES, drop_path_rate=0.1)
    if method == "lora":
      model.requires_grad_(False)
      for block in model.blocks:
        block.attn.qkv = _lora_qkv(block.attn.qkv, LORA_RANK)
      model.head.requires_grad_(True)
    self.model = model.to(self.device).train()
    self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                                       weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    self.images = torch.rand(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen).to(self.device)
    self.labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=gen).to(self.device)
    self.autocast = dtype == "bfloat16"

  def run(self, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
        loss = torch.nn.functional.cross_entropy(self.model(self.images), self.labels)
      self.optimizer.zero_grad(set_to_none=True)
      loss.backward()
      self.optimizer.step()
      if self.device.type == "cuda":
        torch.cuda.synchronize()
      else:
        loss.item()
      times.append(time.perf_counter() - start)
    return times


def _lora_qkv(qkv, rank: int):
  """qkv(z) + B(A(dropout(z))), A kaiming-uniform and B zero as jpeft's LoRA (scale 1)."""

  class LoRAQKV(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.qkv = qkv
      self.lora_a = torch.nn.Linear(qkv.in_features, rank, bias=False)
      self.lora_b = torch.nn.Linear(rank, qkv.out_features, bias=False)
      torch.nn.init.zeros_(self.lora_b.weight)
      self.dropout = torch.nn.Dropout(0.1)

    def forward(self, z):
      return self.qkv(z) + self.lora_b(self.lora_a(self.dropout(z)))

  return LoRAQKV()


def jpeft_config(variant: str, method: str, batch_size: int, dtype: str):
  """The base recipe for `method` set to the timm side's step."""
  config = config_base.get_config(method)
  config.task = "cifar100"  # 100 classes, as the timm side; no data is read
  config.model.variant, config.model.dtype, config.model.drop_path_rate = variant, dtype, 0.1
  config.optim.batch_size, config.data.image_size = batch_size, IMAGE_SIZE
  return config


def jpeft_loop(variant: str, method: str, batch_size: int, dtype: str) -> measure.TrainLoop:
  return measure.TrainLoop(jpeft_config(variant, method, batch_size, dtype))


def check_out_path(path) -> None:
  """Fails before any measuring when --out cannot be written as a file (minutes of benchmark would be lost)."""
  if not path:
    return
  if os.path.isdir(path):
    sys.exit(f"bench: error: --out={path} is a directory; --out takes a JSON file's path, e.g. "
             f"--out={os.path.join(path, 'rows.json')}.")
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    sys.exit(f"bench: error: the directory of --out={path} ({parent}) does not exist; create it first.")


def main(argv) -> None:
  del argv
  check_out_path(_OUT.value)
  print(f"jax {jax.__version__} on {jax.device_count()}x {jax.devices()[0].device_kind}; {TORCH_LINE}")
  print(f"{'case':<12} {'method':<6} {'jpeft img/s':>12} {'timm img/s':>11} {'ratio':>6} {'jpeft compile_s':>16}")
  rows = []
  for case in _CASES.value:
    variant, batch_size = case.split(":")[0], int(case.split(":")[1])
    for method in _METHODS.value:
      jpeft_side = jpeft_loop(variant, method, batch_size, _DTYPE.value)
      timm_side = TimmStep(variant, method, batch_size, _DTYPE.value) if torch else None
      sides = {"jpeft": jpeft_side, "timm": timm_side}
      times = {"jpeft": [], "timm": []}
      for round_index in range(_ROUNDS.value + 1):
        for name, side in sides.items():
          if side is not None:
            spent = side.run(_STEPS.value)
            if round_index:  # round 0 warms up (autotuning, allocator, caches)
              times[name] += spent
      speed = {name: batch_size / statistics.median(t) if t else None for name, t in times.items()}
      ratio = speed["jpeft"] / speed["timm"] if speed["timm"] else None
      rows.append(dict(variant=variant, batch_size=batch_size, method=method, dtype=_DTYPE.value,
                       jpeft_images_per_s=speed["jpeft"], timm_images_per_s=speed["timm"], ratio=ratio,
                       jpeft_compile_s=jpeft_side.compile_s, device_kind=jax.devices()[0].device_kind))
      timm_text = f"{speed['timm']:>11.1f}" if speed["timm"] else f"{'-':>11}"
      ratio_text = f"{ratio:>5.2f}x" if ratio else f"{'-':>6}"
      print(f"{variant + ' b' + str(batch_size):<12} {method:<6} {speed['jpeft']:>12.1f} {timm_text} {ratio_text} "
            f"{jpeft_side.compile_s:>16.1f}", flush=True)
      del jpeft_side, timm_side, sides
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "bench_vs_timm"))

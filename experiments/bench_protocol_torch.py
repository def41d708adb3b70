"""The torch side of experiments/bench_protocol.py: the study's protocol as its PyTorch code runs it.

  <python with torch and timm> experiments/bench_protocol_torch.py '<JSON spec>'

Run by bench_protocol.py (never imported by jpeft). The spec names an .npz holding every split's arrays
(`<split>/image` f32 [N, H, W, 3], `<split>/label`), the backbone as a timm state dict (`weight/<key>`) and the
timm architecture; the method, grid, epochs, batch size and optimizer settings. One trial after another, as the
study's code: a timm ViT with the backbone loaded, the method's trainable parameters (lora: one shared A [D, r],
B [r, 3D] on each block's fused qkv, A as a torch Linear initialises it, B zero; linear: the head; full:
everything), a zero head, AdamW over the trainable parameters with linear warmup from warmup_start_lr then
cosine to min_lr, stepped every optimizer step (jpeft's 'step' granularity), drop_last batches in the same
per-(seed, epoch) order as jpeft (`jpeft.train.splits.epoch_order`), evaluation at the last epoch. On a CUDA
device when torch sees one (the data moved there once), in bfloat16 autocast when the spec's dtype is bfloat16
(as jpeft's model.dtype: float32 master weights). Writes the stage times, the selection and the test accuracy
as JSON to the spec's `out`.
"""
import json
import math
import sys
import time

import numpy as np
import timm
import torch
from torch import nn

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def epoch_order(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """As jpeft.train.splits.epoch_order (same batches for the same seed and epoch)."""
  order = np.random.default_rng((seed, epoch)).permutation(num_examples)
  steps = num_examples // batch_size
  return np.sort(order[:steps * batch_size].reshape(steps, batch_size), axis=1).reshape(-1)


class LoRAQKV(nn.Module):
  """qkv(x) + B(A(dropout(x))): the study's LoRA on the fused qkv."""

  def __init__(self, qkv: nn.Linear, rank: int, dropout: float):
    super().__init__()
    self.qkv = qkv
    self.lora_a = nn.Linear(qkv.in_features, rank, bias=False)
    self.lora_b = nn.Linear(rank, qkv.out_features, bias=False)
    nn.init.zeros_(self.lora_b.weight)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    return self.qkv(x) + self.lora_b(self.lora_a(self.dropout(x)))


def build(spec, weights, architecture, seed: int):
  torch.manual_seed(seed)
  model = timm.create_model(architecture["name"], pretrained=False, **architecture["kwargs"])
  missing = model.load_state_dict(weights, strict=False)
  assert not missing.unexpected_keys, missing.unexpected_keys
  nn.init.zeros_(model.head.weight)
  nn.init.zeros_(model.head.bias)
  for p in model.parameters():
    p.requires_grad = spec["method"] == "full"
  if spec["method"] == "lora":
    for block in model.blocks:
      block.attn.qkv = LoRAQKV(block.attn.qkv, spec["rank"], spec["lora_dropout"])
      for p in (block.attn.qkv.lora_a.weight, block.attn.qkv.lora_b.weight):
        p.requires_grad = True
  for p in model.head.parameters():
    p.requires_grad = True
  return model


def train_and_evaluate(spec, data, weights, architecture, train: str, evaluate: str, lr: float, wd: float,
                       seed: int) -> float:
  """One trial: trains on split `train`, returns the accuracy on `evaluate` at the last epoch."""
  model = build(spec, weights, architecture, seed).to(DEVICE)
  params = [p for p in model.parameters() if p.requires_grad]
  optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=tuple(spec["betas"]), eps=spec["eps"])
  images, labels = data[f"{train}/image"], data[f"{train}/label"]
  batch = spec["batch_size"]
  steps_per_epoch = len(labels) // batch
  warmup, total = spec["warmup_epochs"] * steps_per_epoch, spec["epochs"] * steps_per_epoch
  start_lr, min_lr = spec["warmup_start_lr"], spec["min_lr"]

  def lr_at(step):
    if step < warmup:
      return start_lr + (lr - start_lr) * step / max(warmup, 1)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))

  step = 0
  model.train()
  for epoch in range(spec["epochs"]):
    order = epoch_order(len(labels), batch, seed, epoch)
    for i in range(0, len(order), batch):
      index = torch.from_numpy(order[i:i + batch]).to(DEVICE)
      for group in optimizer.param_groups:
        group["lr"] = lr_at(step)
      with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=spec["dtype"] == "bfloat16"):
        loss = nn.functional.cross_entropy(model(images[index]), labels[index])
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
      step += 1
  model.eval()
  correct = 0
  with torch.no_grad():
    eval_images, eval_labels = data[f"{evaluate}/image"], data[f"{evaluate}/label"]
    for i in range(0, len(eval_labels), 256):
      with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=spec["dtype"] == "bfloat16"):
        correct += int((model(eval_images[i:i + 256]).argmax(-1) == eval_labels[i:i + 256]).sum())
  return correct / len(eval_labels)


def main() -> None:
  spec = json.loads(sys.argv[1])
  torch.set_num_threads(spec["threads"])
  raw = np.load(spec["inputs"])
  architecture = json.loads(str(raw["architecture"]))
  weights = {k[len("weight/"):]: torch.from_numpy(raw[k]) for k in raw.files if k.startswith("weight/")}
  data = {}
  for key in raw.files:
    if key.endswith("/image"):  # NHWC -> NCHW, as timm takes images
      data[key] = torch.from_numpy(np.ascontiguousarray(raw[key].transpose(0, 3, 1, 2))).to(DEVICE)
    elif key.endswith("/label"):
      data[key] = torch.from_numpy(raw[key].astype(np.int64)).to(DEVICE)
  start = time.perf_counter()
  tune = {}
  for lr in spec["lrs"]:
    for wd in spec["wds"]:
      accuracies = [train_and_evaluate(spec, data, weights, architecture, "train800", "val200", lr, wd, seed)
                    for seed in spec["seeds"]]
      tune[(lr, wd)] = float(np.mean(accuracies))
      print(f"  torch tune lr={lr} wd={wd}: val200 {tune[(lr, wd)]:.3f}", flush=True)
  (lr, wd), val = max(tune.items(), key=lambda item: item[1])  # ties: the first in grid order
  final_start = time.perf_counter()
  tests = [train_and_evaluate(spec, data, weights, architecture, "train800val200", "test", lr, wd, seed)
           for seed in spec["final_seeds"]]
  if DEVICE.type == "cuda":
    torch.cuda.synchronize()
  end = time.perf_counter()
  selected = dict(lr=lr, wd=wd, **({"rank": spec["rank"]} if spec["method"] == "lora" else {}))
  result = dict(tune_s=final_start - start, final_s=end - final_start, total_s=end - start, selected=selected,
                val_accuracy=val, test_accuracy=float(np.mean(tests)), torch=torch.__version__,
                timm=timm.__version__, threads=torch.get_num_threads(), device=str(DEVICE))
  with open(spec["out"], "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main()

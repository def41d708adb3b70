"""Houlsby adapter: sequential-after bottlenecks on both sublayers.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).

  python -m jpeft.main --config=configs/vtab_adapter.py --config.task=dtd --workdir=runs/dtd_adapter

Hyperparameters: every field of the method under peft.adapter (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.adapter.bottleneck in (4, 8, 16, 32)
  peft.adapter.scale in (0.01, 0.1, 1, 10)
e.g. --config.optim.lr=1e-2 --config.peft.adapter.bottleneck=32

Wiring (default: sequential_after on attn and mlp, the published one):
  --config.peft.adapter.sublayers='("mlp",)'      sublayers with a module: attn, mlp
  --config.peft.adapter.style=parallel_post_ln    parallel_pre_ln | parallel_post_ln | sequential_after |
                                                  sequential_before
  --config.peft.adapter.learnable_scale=True      a learned scalar per module (init 1), times scale
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('adapter')
  config.peft.adapter = peft.default_hparams('adapter')
  return config

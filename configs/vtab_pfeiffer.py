"""Pfeiffer adapter: a sequential-after bottleneck on the MLP sublayer, zero-initialised.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).

  python -m jpeft.main --config=configs/vtab_pfeiffer.py --config.task=dtd --workdir=runs/dtd_pfeiffer

Hyperparameters: every field of the method under peft.pfeiffer (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.pfeiffer.bottleneck in (4, 8, 16, 32, 64)
  peft.pfeiffer.scale in (0.01, 0.1, 1, 10)
e.g. --config.optim.lr=1e-2 --config.peft.pfeiffer.bottleneck=64
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('pfeiffer')
  config.peft.pfeiffer = peft.default_hparams('pfeiffer')
  return config

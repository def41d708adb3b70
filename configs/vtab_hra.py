"""HRA: the input of every qkv, proj, fc1, fc2 multiplied by a chain of r Householder reflections (Yuan et al.,
NeurIPS 2024), as the PyTorch peft library's HRA at its defaults (symmetric init: identity at the start).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_hra.py --config.task=dtd --workdir=runs/dtd_hra

Hyperparameters: every field of the method under peft.hra (see jpeft/peft/methods/hra.py); the grid, swept
together with optim.lr and optim.wd:
  peft.hra.rank in (2, 4, 8, 16)     (even ranks start at the identity)
e.g. --config.optim.lr=1e-2 --config.peft.hra.rank=16 --config.peft.hra.apply_gs=True
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('hra')
  config.peft.hra = peft.default_hparams('hra')
  return config

"""LoHa: a Hadamard product of two rank-r deltas, scaled alpha / r, on every qkv, proj, fc1, fc2, as the
PyTorch peft library's LoHa (rank 8, alpha 8 by default).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_loha.py --config.task=dtd --workdir=runs/dtd_loha

Hyperparameters: every field of the method under peft.loha (see jpeft/peft/methods); the VTAB grid,
swept together with optim.lr and optim.wd:
  peft.loha.rank in (1, 2, 4, 8)
e.g. --config.optim.lr=1e-2 --config.peft.loha.rank=4
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('loha')
  config.peft.loha = peft.default_hparams('loha')
  return config

"""LoKr: a Kronecker-product delta (W1 full, W2 rank-r when small), scaled alpha / r, on every qkv, proj,
fc1, fc2, as the PyTorch peft library's LoKr (rank 8, alpha 8, factors near the square root by default).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_lokr.py --config.task=dtd --workdir=runs/dtd_lokr

Hyperparameters: every field of the method under peft.lokr (see jpeft/peft/methods); the VTAB grid,
swept together with optim.lr and optim.wd:
  peft.lokr.rank in (1, 4, 8, 16)
e.g. --config.optim.lr=1e-2 --config.peft.lokr.rank=16
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('lokr')
  config.peft.lokr = peft.default_hparams('lokr')
  return config

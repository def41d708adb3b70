"""OFT: the input of every qkv, proj, fc1, fc2 rotated by a block-diagonal orthogonal matrix (Cayley),
as the PyTorch peft library's OFT at its defaults (block size 32, Cayley-Neumann series of 5 terms).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_oft.py --config.task=dtd --workdir=runs/dtd_oft

Hyperparameters: every field of the method under peft.oft (see jpeft/peft/methods); the VTAB grid,
swept together with optim.lr and optim.wd:
  peft.oft.block_size in (4, 8, 16, 32)
e.g. --config.optim.lr=1e-2 --config.peft.oft.block_size=16
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('oft')
  config.peft.oft = peft.default_hparams('oft')
  return config

"""BOFT: OFT with a butterfly-factorised orthogonal matrix and a per-output scale on every qkv, proj,
fc1, fc2, as the PyTorch peft library's BOFT (block size 4, one butterfly factor by default).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_boft.py --config.task=dtd --workdir=runs/dtd_boft

Hyperparameters: every field of the method under peft.boft (see jpeft/peft/methods); the VTAB grid,
swept together with optim.lr and optim.wd:
  peft.boft.block_size in (4, 8, 16)
  peft.boft.butterfly_factor in (1, 2)
e.g. --config.optim.lr=1e-2 --config.peft.boft.block_size=8 --config.peft.boft.butterfly_factor=2
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('boft')
  config.peft.boft = peft.default_hparams('boft')
  return config

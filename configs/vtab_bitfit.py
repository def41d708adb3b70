"""BitFit: every bias is trained (qkv, proj, fc1, fc2, patch embedding, LayerNorms).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (configs/common.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_bitfit.py --config.task=dtd --workdir=runs/dtd_bitfit

Hyperparameters: every field of the method under peft.bitfit (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  none besides optim.lr and optim.wd
e.g. --config.optim.lr=1e-2
"""
from configs import common
from jpeft import peft


def get_config():
  config = common.get_config('bitfit')
  config.peft.bitfit = peft.default_hparams('bitfit')
  return config

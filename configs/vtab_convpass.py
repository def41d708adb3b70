"""Convpass: parallel convolutional bottlenecks on both sublayers (3x3 conv on the patch grid).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (configs/common.py).

  python -m jpeft.main --config=configs/vtab_convpass.py --config.task=dtd --workdir=runs/dtd_convpass

Hyperparameters: every field of the method under peft.convpass (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.convpass.scale in (0.01, 0.1, 1, 10, 100)
  peft.convpass.bottleneck in (8, 16)
  peft.convpass.conv_init in ('identity', 'xavier')
e.g. --config.optim.lr=1e-2 --config.peft.convpass.scale=100
"""
from configs import common
from jpeft import peft


def get_config():
  config = common.get_config('convpass')
  config.peft.convpass = peft.default_hparams('convpass')
  return config

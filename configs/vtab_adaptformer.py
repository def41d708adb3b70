"""AdaptFormer: a parallel bottleneck on the MLP sublayer, reading the pre-LN stream.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).

  python -m jpeft.main --config=configs/vtab_adaptformer.py --config.task=dtd --workdir=runs/dtd_adaptformer

Hyperparameters: every field of the method under peft.adaptformer (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.adaptformer.bottleneck in (4, 16, 32)
  peft.adaptformer.scale in (0.05, 0.1, 0.2)
e.g. --config.optim.lr=1e-2 --config.peft.adaptformer.bottleneck=32
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('adaptformer')
  config.peft.adaptformer = peft.default_hparams('adaptformer')
  return config

"""Linear probing: the head alone is trained.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_linear.py --config.task=dtd --workdir=runs/dtd_linear

Hyperparameters: every field of the method under peft.linear (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  none besides optim.lr and optim.wd
e.g. --config.optim.lr=1e-2
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('linear')
  config.peft.linear = peft.default_hparams('linear')
  return config

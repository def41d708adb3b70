"""VQT: per-block query tokens whose outputs are pooled with CLS by a learned weighted sum.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).

  python -m jpeft.main --config=configs/vtab_vqt.py --config.task=dtd --workdir=runs/dtd_vqt

Hyperparameters: every field of the method under peft.vqt (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.vqt.num_tokens in (1, 5, 10)
e.g. --config.optim.lr=1e-2 --config.peft.vqt.num_tokens=10
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('vqt')
  config.peft.vqt = peft.default_hparams('vqt')
  return config

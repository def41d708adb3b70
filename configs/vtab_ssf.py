"""SSF: scale and shift after the patch embedding, every LayerNorm and every Dense.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_ssf.py --config.task=dtd --workdir=runs/dtd_ssf

Hyperparameters: every field of the method under peft.ssf (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  none besides optim.lr and optim.wd
e.g. --config.optim.lr=1e-2
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('ssf')
  config.peft.ssf = peft.default_hparams('ssf')
  return config

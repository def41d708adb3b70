"""(IA)^3: learned per-channel scales of the keys, the values and the MLP's hidden activation.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_ia3.py --config.task=dtd --workdir=runs/dtd_ia3

Hyperparameters: none of its own (see jpeft/peft/methods/ia3.py); the VTAB grid:
  none besides optim.lr and optim.wd
e.g. --config.optim.lr=1e-2
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('ia3')
  config.peft.ia3 = peft.default_hparams('ia3')
  return config

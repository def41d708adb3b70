"""DoRA on every Dense of every block (qkv, proj, fc1, fc2): magnitude m and a rank-r LoRA of the direction.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_dora.py --config.task=dtd --workdir=runs/dtd_dora

Hyperparameters: every field of the method under peft.dora (see jpeft/peft/methods/dora.py); the VTAB
grid, swept together with optim.lr and optim.wd (LoRA's ranks, as the study's LoRA):
  peft.dora.rank in (1, 8, 16, 32)
e.g. --config.optim.lr=1e-2 --config.peft.dora.rank=16 --config.peft.dora.targets=qkv
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('dora')
  config.peft.dora = peft.default_hparams('dora')
  return config

"""VeRA on every Dense of every block (qkv, proj, fc1, fc2): shared frozen random A, B; trained vectors d, b.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_vera.py --config.task=dtd --workdir=runs/dtd_vera

Hyperparameters: every field of the method under peft.vera (see jpeft/peft/methods/vera.py); the VTAB
grid, swept together with optim.lr and optim.wd (VeRA's ranks are large: only r + out scalars per Dense train):
  peft.vera.rank in (64, 256, 1024)
e.g. --config.optim.lr=1e-2 --config.peft.vera.rank=1024
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('vera')
  config.peft.vera = peft.default_hparams('vera')
  return config

"""Selective tuning: the chosen parts (attn, mlp, ln) of the chosen blocks are trained.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_selective.py --config.task=dtd --workdir=runs/dtd_selective

Hyperparameters: every field of the method under peft.selective (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  none besides optim.lr and optim.wd
e.g. --config.optim.lr=1e-3 --config.peft.selective.blocks='(10, 11)' --config.peft.selective.parts='("mlp",)'

Parts: attn (qkv + proj), qkv, proj, mlp (fc1 + fc2), fc1, fc2, ln (ln1 + ln2), e.g.
--config.peft.selective.parts='("qkv", "fc2")'.
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('selective')
  config.peft.selective = peft.default_hparams('selective')
  return config

"""VPT-deep: fresh prompts before every block, removed after it.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).

  python -m jpeft.main --config=configs/vtab_vpt_deep.py --config.task=dtd --workdir=runs/dtd_vpt_deep

Hyperparameters: every field of the method under peft.vpt_deep (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.vpt_deep.num_tokens in (5, 10, 50, 100)
e.g. --config.optim.lr=1e-2 --config.peft.vpt_deep.num_tokens=100

Variants: --config.peft.vpt_deep.num_layers=6 prompts only the last 6 blocks (the study's vpt_layer; default
0: every block).
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('vpt_deep')
  config.peft.vpt_deep = peft.default_hparams('vpt_deep')
  return config

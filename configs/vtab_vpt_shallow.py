"""VPT-shallow: prompts inserted once before block 0 and kept through all blocks.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).

  python -m jpeft.main --config=configs/vtab_vpt_shallow.py --config.task=dtd --workdir=runs/dtd_vpt_shallow

Hyperparameters: every field of the method under peft.vpt_shallow (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.vpt_shallow.num_tokens in (5, 10, 50, 100, 200)
e.g. --config.optim.lr=1e-2 --config.peft.vpt_shallow.num_tokens=200

Variants: --config.peft.vpt_shallow.keep_prompts=False removes the prompts after block 0, as the study's
code runs VPT-shallow (default True: carried through every block, as the VPT paper).
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('vpt_shallow')
  config.peft.vpt_shallow = peft.default_hparams('vpt_shallow')
  return config

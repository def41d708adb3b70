"""RoAd: the output of every qkv, proj, fc1, fc2 rotated and scaled pairwise in groups of 64 (2D rotary
adaptation, Liao et al., 2024), as the PyTorch peft library's RoAd at its defaults (variant road_1).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_road.py --config.task=dtd --workdir=runs/dtd_road

Hyperparameters: every field of the method under peft.road (see jpeft/peft/methods/road.py); the grid, swept
together with optim.lr and optim.wd:
  peft.road.variant in ('road_1', 'road_2', 'road_4')     (1x, 2x, 4x the parameters)
e.g. --config.optim.lr=1e-2 --config.peft.road.variant=road_2 --config.peft.road.group_size=32
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('road')
  config.peft.road = peft.default_hparams('road')
  return config

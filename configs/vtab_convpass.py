"""Convpass: parallel convolutional bottlenecks on both sublayers (3x3 conv on the patch grid).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).

  python -m jpeft.main --config=configs/vtab_convpass.py --config.task=dtd --workdir=runs/dtd_convpass

Hyperparameters: every field of the method under peft.convpass (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.convpass.scale in (0.01, 0.1, 1, 10, 100)
  peft.convpass.bottleneck in (8, 16)
  peft.convpass.conv_init in ('identity', 'xavier')
e.g. --config.optim.lr=1e-2 --config.peft.convpass.scale=100

Wiring (default: parallel_post_ln on attn and mlp, the published one):
  --config.peft.convpass.sublayers='("mlp",)'     sublayers with a module: attn, mlp
  --config.peft.convpass.style=sequential_after   parallel_pre_ln | parallel_post_ln | sequential_after |
                                                  sequential_before
  --config.peft.convpass.learnable_scale=True     a learned scalar per module (init 1), times scale
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('convpass')
  config.peft.convpass = peft.default_hparams('convpass')
  return config

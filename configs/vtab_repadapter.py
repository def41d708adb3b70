"""RepAdapter: linear sequential-before adapters on both sublayers, merged into qkv / fc1 after training.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_repadapter.py --config.task=dtd --workdir=runs/dtd_repadapter

Hyperparameters: every field of the method under peft.repadapter (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.repadapter.bottleneck in (8, 16, 32)
  peft.repadapter.scale in (0.1, 0.5, 1, 5, 10)
e.g. --config.optim.lr=1e-2 --config.peft.repadapter.bottleneck=32

Wiring (default: sequential_before on attn and mlp, the published one):
  --config.peft.repadapter.sublayers='("mlp",)'   sublayers with a module: attn, mlp
  --config.peft.repadapter.style=sequential_after parallel_pre_ln | parallel_post_ln | sequential_after |
                                                  sequential_before
  --config.peft.repadapter.learnable_scale=True   a learned scalar per module (init 1), times scale
Merging needs a sequential style (sequential_before folds into qkv / fc1, sequential_after into proj / fc2);
the parallel styles are not re-parameterisable.
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('repadapter')
  config.peft.repadapter = peft.default_hparams('repadapter')
  return config

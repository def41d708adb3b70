"""FacT-TT: weight deltas factorised through shared U, V and per-block cores.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_fact_tt.py --config.task=dtd --workdir=runs/dtd_fact_tt

Hyperparameters: every field of the method under peft.fact_tt (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.fact_tt.rank in (8, 16, 32)
  peft.fact_tt.scale in (0.01, 0.1, 1, 10, 100)
e.g. --config.optim.lr=1e-2 --config.peft.fact_tt.rank=32
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('fact_tt')
  config.peft.fact_tt = peft.default_hparams('fact_tt')
  return config

"""FacT-TK: weight deltas factorised through shared U, V and one core tensor.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_fact_tk.py --config.task=dtd --workdir=runs/dtd_fact_tk

Hyperparameters: every field of the method under peft.fact_tk (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.fact_tk.rank in (16, 32, 64)
  peft.fact_tk.scale in (0.01, 0.1, 1, 10, 100)
e.g. --config.optim.lr=1e-2 --config.peft.fact_tk.rank=64
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('fact_tk')
  config.peft.fact_tk = peft.default_hparams('fact_tk')
  return config

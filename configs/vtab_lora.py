"""LoRA on the fused qkv: qkv(z) + s * B(A(drop(z))), s = merge_factor.

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_lora.py --config.task=dtd --workdir=runs/dtd_lora

Hyperparameters: every field of the method under peft.lora (see jpeft/peft/methods); the spec's VTAB
grid, swept together with optim.lr and optim.wd:
  peft.lora.rank in (1, 8, 16, 32)
e.g. --config.optim.lr=1e-2 --config.peft.lora.rank=32

Options (the PyTorch PEFT library's; the defaults are the study's LoRA, see jpeft/peft/methods/lora.py):
  --config.peft.lora.scaling=rslora --config.peft.lora.alpha=16   study (s = 1) | alpha_over_r | rslora
  --config.peft.lora.init=pissa                                    study | gaussian | pissa | olora
  --config.optim.lr_mult.peft_b=16                                 LoRA+: B trained at 16 x A's learning rate
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('lora')
  config.peft.lora = peft.default_hparams('lora')
  return config

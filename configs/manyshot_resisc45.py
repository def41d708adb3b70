"""Many-shot RESISC45 (the study's protocol, jpeft/data/manyshot.py): one size, one run.

  python -m jpeft.main --config=configs/manyshot_resisc45.py:train225 --config.method=lora \
      --config.peft.lora.rank=16 --config.optim.lr=1e-3 --workdir=runs/resisc_train225_lora

The part after ':' is the size: train225, train450, train900 (5, 10, 20 per class: five 80/20 tuning splits,
averaged by the sweep), train2250, train4500, train9000 (50, 100, 200 per class: one 90/10 split) or full (the
25,200-image pool: 22,680 / 2,520); 40 epochs, 5 warmup. Test: 140 per class drawn from all 31,500 images, never
in the pool. --config.mode=tune --config.data.tune_split=<j> trains on tuning split j and evaluates its val.
The study's grid, for
experiments/many_shot.py: --grid.lr=5e-4,1e-3 --grid.wd=1e-4,1e-3 (drop path {0, 0.1, 0.2}: one sweep per value,
--config.model.drop_path_rate). Data stream from disk (in_memory=False); train augmentation RandomResizedCrop 224
+ h-flip + v-flip in the final run only; eval resize 256 + centre crop 224; mean = std = 0.5.
"""
from jpeft import config_base


def get_config(size: str = "full"):
  return config_base.manyshot_config("resisc45", size or "full")

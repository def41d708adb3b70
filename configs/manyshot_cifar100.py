"""Many-shot CIFAR-100 (the study's protocol, jpeft/data/manyshot.py): one size, one run.

  python -m jpeft.main --config=configs/manyshot_cifar100.py:train500 --config.method=lora \
      --config.peft.lora.rank=16 --config.optim.lr=1e-3 --workdir=runs/c100_train500_lora

The part after ':' is the size: train500, train1k (5, 10 per class; 100 epochs, 10 warmup), train5k, train10k
(50, 100 per class) or full (50,000; 40 epochs, 4 warmup). mode 'final' trains on the size's subset and tests on
CIFAR-100 test; --config.mode=tune --config.data.tune_split=<j> trains on tuning split j and evaluates its val
(train500 and train1k have five, averaged by the sweep). Your own subset (e.g. the study's index files, in
torchvision's CIFAR order): --config.data.subset_index_file=<file.npy>. The study's grid, for
experiments/many_shot.py: --grid.lr=5e-4,1e-3 --grid.wd=1e-4,1e-3 (drop path {0, 0.1, 0.2}: one sweep per value,
--config.model.drop_path_rate). Data stream from disk (in_memory=False); train augmentation RandomResizedCrop 224
+ h-flip in the final run only; eval resize 256 + centre crop 224; mean = std = 0.5.
"""
from jpeft import config_base


def get_config(size: str = "full"):
  return config_base.manyshot_config("cifar100", size or "full")

"""The offline demo: LoRA on a Mini VTAB task with the small backbone shipped in the package.

  python -m jpeft.main --config=configs/demo.py

Needs no network and no GPU: the task's TFDS files are generated into `data.data_dir` (TFDS default
~/tensorflow_datasets) in seconds on first use, and the backbone is `jpeft/assets/mini-ViT_8.npz`, a
`mini/8` ViT pre-trained by `experiments/pretrain_mini.py` on two separate generated tasks (a stand-in
for ImageNet-21K, not a substitute). Trains on train800val200 and reports test accuracy ('final'
mode), then does the same with linear probing (`compare_methods`) for reference.

Expected (measured 2026-11-30 in a fresh venv on 2 CPU cores; 104 s, trainings 71 s + 23 s):
  mini_count test accuracy: lora 0.463 | linear 0.364
(another CPU's floating-point summation order moves these by a few points)
(LoRA on a randomly initialised backbone, same recipe: 0.242, measured 2026-11-26). Results land in runs/demo/ and
runs/demo/linear/. Shortened runs (CI, tests/mini/test_demo.py) override the epochs, e.g.
--config.optim.epochs=2 --config.optim.warmup_epochs=0. The recipe itself is `jpeft.config_base.demo_config`
(in the package, so this file loads from any directory).
"""
from jpeft import config_base


def get_config():
  return config_base.demo_config()

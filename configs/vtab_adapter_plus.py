"""Adapter+ (Steitz and Roth, "Adapters Strike Back", CVPR 2024) on VTAB-1K: jpeft's `adapter` wired and trained
as the paper's code (github.com/visinf/adapter_plus, conf/adapter/adapter_plus.yaml, conf/train/, conf/data/).

  python -m jpeft.main --config=configs/vtab_adapter_plus.py:dtd --workdir=runs/dtd_adapter_plus
  python -m jpeft.main --config=configs/vtab_adapter_plus.py:resisc45,1-32 --workdir=runs/resisc45_adapter_plus32

The argument is the VTAB task, optionally followed by the rank grid the per-task bottleneck comes from:
'1-8' (default; the paper's "Adapter+ r in [1..8]") or '1-32' ("r in [1..32]"); it sets config.task too, so
pass the task here and not through --config.task (that would keep the other task's bottleneck).

Module (the paper's Sec. 4 choices): one adapter per block, after the MLP's residual sum ('post': the block's
output x becomes x + DP_a(c * Up(GELU(Down x))), and the next block reads that), no LayerNorm inside,
biases, Houlsby initialisation (kernels N(0, 0.01^2) truncated at +-2 std, biases 0), a learnable channel-wise
scale c [D] initialised to 1 and no fixed scale (scale = 1), no dropout, stochastic depth 0.1 on the adapter's
output (DP_a), and the ViT's own drop path 0.1.
Recipe (the paper's code): AdamW, lr 1e-3, weight decay 1e-4, batch 64, 100 epochs, 10 of linear warmup from
lr / 100 then cosine to lr / 1000, trained on train800val200 and evaluated on test (mode 'final'), inputs
normalised to [-1, 1] (timm's mean = std = 0.5 of the IN-21K ViT-B/16). Differences: the paper's code exempts
biases and the channel scales from weight decay (jpeft decays every trainable parameter) and steps its schedule
once per epoch (jpeft: every step, config.optim.schedule_granularity='step'); it averages three seeds.
The paper reports 77.6 (mean of the three VTAB group means) for r in [1..8] and 77.9 for r in [1..32].
"""
from jpeft import config_base, peft

# The paper's per-task bottleneck (conf/experiment/vtab/adapter_plus_dim1-8.yaml and _dim1-32.yaml), by jpeft's
# task names.
RANKS = {
    "1-8": {"cifar100": 1, "caltech101": 4, "dtd": 2, "oxford_flowers102": 1, "oxford_iiit_pet": 8, "svhn": 8,
            "sun397": 1, "patch_camelyon": 8, "eurosat": 2, "resisc45": 8, "diabetic_retinopathy": 8,
            "clevr_count": 4, "clevr_dist": 8, "dmlab": 8, "kitti": 8, "dsprites_loc": 8, "dsprites_ori": 4,
            "smallnorb_azi": 8, "smallnorb_ele": 8},
    "1-32": {"cifar100": 1, "caltech101": 4, "dtd": 2, "oxford_flowers102": 1, "oxford_iiit_pet": 8, "svhn": 16,
             "sun397": 1, "patch_camelyon": 16, "eurosat": 2, "resisc45": 32, "diabetic_retinopathy": 32,
             "clevr_count": 4, "clevr_dist": 8, "dmlab": 8, "kitti": 8, "dsprites_loc": 32, "dsprites_ori": 4,
             "smallnorb_azi": 32, "smallnorb_ele": 8},
}

ADAPTER_PLUS = dict(style="post", sublayers=("mlp",), learnable_scale="channel", scale=1.0, init="houlsby",
                    nonlinearity="gelu", dropout=0.0, drop_path=0.1)


def get_config(arg: str = "dtd"):
  task, _, grid = arg.partition(",")
  grid = grid or "1-8"
  if grid not in RANKS or task not in RANKS[grid]:
    raise ValueError(f"configs/vtab_adapter_plus.py: '{arg}' is not '<VTAB task>[,<rank grid>]' with a task from "
                     f"{sorted(RANKS['1-8'])} and a grid from {sorted(RANKS)}, e.g. "
                     "--config=configs/vtab_adapter_plus.py:dtd or :resisc45,1-32.")
  config = config_base.get_config("adapter")
  config.task = task
  config.mode = "final"
  config.peft.adapter = {**peft.default_hparams("adapter"), **ADAPTER_PLUS, "bottleneck": RANKS[grid][task]}
  config.data.normalization = "inception"
  config.model.drop_path_rate = 0.1
  config.optim.lr = 1e-3
  config.optim.wd = 1e-4
  config.optim.batch_size = 64
  config.optim.epochs = 100
  config.optim.warmup_epochs = 10
  config.optim.warmup_start_lr = config.optim.lr / 100
  config.optim.min_lr = config.optim.lr / 1000
  return config

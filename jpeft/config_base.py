"""The configs jpeft runs start from: the study's VTAB-1K recipe (Mai et al., CVPR 2025) and the offline demo.

They live in the package so that a config file loads from any directory: method configs
(`configs/vtab_<method>.py`, or your own file anywhere) call `config_base.get_config(<method>)` and set
`peft.<method>`; `configs/demo.py` returns `demo_config()`. Any field is overridable on the command line, e.g.
  python -m jpeft.main --config=configs/vtab_lora.py --config.task=dtd --config.optim.lr=1e-2
"""
import os
from typing import Any, Mapping

import ml_collections

# The small backbone shipped in the package (jpeft/assets), resolved from wherever jpeft is installed.
MINI_BACKBONE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "mini-ViT_8.npz")


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Sets each dotted entry of `overrides` on `config` in place and returns `config`: {'optim.lr': 0.1} sets
  config.optim.lr, {'lora.rank': (4, 8)} a grid's lora.rank (the in-process twin of --config.x= / --grid.x=
  flags). Copy `config` first to keep it unchanged; a missing parent raises KeyError."""
  for name, value in overrides.items():
    *parents, field = name.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[field] = value
  return config


def get_config(method: str = "linear") -> ml_collections.ConfigDict:
  """The study's recipe with `method` set and no method hyperparameters (config.peft is empty)."""
  config = ml_collections.ConfigDict()
  config.seed = 42
  # tune: train on train800, evaluate val200; final: train on train800val200, evaluate test; eval: a saved run.
  config.mode = "tune"
  config.task = "dtd"

  config.data = ml_collections.ConfigDict()
  config.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir
  config.data.source = "tfds"  # tfds | folder (the NOAH / V-PETL "processed" layout)
  config.data.folder_root = ml_collections.FieldReference(None, field_type=str)
  # Folder sources decode every image once before training: a missing, non-image or corrupt file stops the run
  # with one line naming it (and its line in the list file). True leaves such files out instead, printing them
  # and recording them in result.json's skipped_images (jpeft/data/bad_images.py).
  config.data.skip_bad_images = False
  config.data.image_size = 224
  config.data.normalization = "none"  # none ([0, 1], the study) | inception | imagenet | clip
  config.data.in_memory = True  # VTAB-1K splits fit in device memory: load once, never wait on the host
  config.data.augment = ml_collections.FieldReference(None, field_type=str)
  config.data.augment_final_only = False  # the many-shot recipe: tune without augmentation, augment the final run
  config.data.center_crop = False  # eval (and unaugmented) images: resize short side to 256/224 x, centre crop
  config.data.eval_resize = "short_side"  # with center_crop: short_side | square (256x256 first: the CLIP runs)
  # Training augmentation besides `augment`'s tokens (jpeft/data/preprocess.py), on streamed splits: the policy
  # of the 'randaug' token in timm's syntax, colour jitter strength (brightness, contrast, saturation; 0 = off)
  # and the probability of random erasing (timm's 'pixel' mode, one box; 0 = off).
  config.data.randaugment = "rand-m9-mstd0.5-inc1"
  config.data.color_jitter = 0.0
  config.data.random_erasing = 0.0
  # Many-shot (jpeft/data/manyshot.py): '' = the VTAB-1K splits; else a size of the task's protocol ('train500',
  # 'full'): tune trains on tuning split `tune_split` of that subset and evaluates its val, final trains on the
  # subset and evaluates test. subset_index_file: a .npy of training-set indices replacing the seeded draw.
  config.data.subset = ""
  config.data.tune_split = 0
  config.data.subset_index_file = ml_collections.FieldReference(None, field_type=str)
  # Streamed splits (in_memory=False) are decoded once into uint8 .npy files here (None: <tmp>/jpeft_stream).
  config.data.stream_cache_dir = ml_collections.FieldReference(None, field_type=str)

  config.model = ml_collections.ConfigDict()
  config.model.variant = "B/16"
  config.model.style = "vit"  # vit | clip | dinov2 (LayerScale; see docs/how-to/checkpoints.md)
  config.model.drop_path_rate = 0.1
  config.model.dtype = "float32"  # bfloat16 computes in bf16 with float32 master weights
  # Recompute each block's activations in the backward pass (jax.checkpoint): activation memory of one block
  # instead of all, for about a third more FLOPs. Same numbers; for large backbones or batches.
  config.model.remat = False
  # einsum (written out, [B, H, T, T] logits kept) | xla | cudnn (jax.nn.dot_product_attention; cudnn: NVIDIA GPUs,
  # bfloat16 only). The same math in another summation order: results agree to float tolerance, not bit for bit.
  config.model.attention = "einsum"
  config.model.projection_dim = ml_collections.FieldReference(None, field_type=int)

  # The pretrained backbone: a path or a known name (see jpeft/checkpoints).
  config.pretrained = ml_collections.ConfigDict()
  config.pretrained.name = "ViT-B_16"  # ImageNet-21K ViT-B/16, the study's backbone
  config.pretrained.path = ml_collections.FieldReference(None, field_type=str)

  # Start from another run's trained state (jpeft/train/reuse.py): its PEFT parameters, its head when the class
  # counts match (head=False: a new head), and with optimizer=True its AdamW state. '' = the pretrained backbone.
  # allow_unfinished=True also takes a run that did not reach its last step (result.json records the step taken).
  # Or (peft=DIR) from a PyTorch PEFT adapter of the run's method (jpeft/export/peft_import.py).
  config.init_from = ml_collections.ConfigDict(dict(workdir="", head=True, optimizer=False,
                                                    allow_unfinished=False, peft=""))

  config.method = method  # a registered method, or several joined by '+', e.g. 'lora+bitfit'
  config.peft = ml_collections.ConfigDict()  # per-method hyperparameters: config.peft.lora.rank = 8
  config.merge_factor = 1.0
  # The head's initial weights. random: the model's initialiser (zeros, the VTAB study); upstream: the checkpoint's
  # classifier mapped to the task's classes (`Task.upstream_classes`), a zero-shot head; zeroshot: CLIP's zero-shot
  # head (visual projection, L2 normalisation, class text embeddings x logit scale; needs model.projection_dim;
  # see jpeft/zeroshot), built from `zeroshot.*`. WiSE-FT (`jpeft.wise`) interpolates towards the starting head.
  config.head_init = "random"
  config.zeroshot = ml_collections.ConfigDict()
  config.zeroshot.checkpoint = ml_collections.FieldReference(None, field_type=str)  # a whole CLIP; default: pretrained
  config.zeroshot.classnames = "imagenet"  # built-in list or a file, one class name per line in label order
  config.zeroshot.templates = "openai_imagenet"  # built-in list or a file, one template with '{}' per line

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 1e-3
  config.optim.wd = 1e-4
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.batch_size = 64
  config.optim.epochs = 100
  config.optim.warmup_epochs = 10
  config.optim.warmup_start_lr = 1e-6
  config.optim.min_lr = 1e-5
  # step: the lr changes every step (default: a smooth curve, kept so earlier results stay comparable);
  # epoch_lagged: the study's exact values, its timm scheduler stepped once after each epoch, so epoch e trains
  # with epoch e-1's lr (epochs 0 and 1 both at warmup_start_lr). They differ by <= 0.19 x lr at single steps.
  config.optim.schedule_granularity = "step"
  config.optim.lr_mult = ml_collections.ConfigDict({"head": 1.0, "peft": 1.0, "peft_b": 1.0, "backbone": 1.0})
  config.optim.nan_policy = "stop"  # stop | skip (skip the batch, as the study's code did)
  # With skip: the run warns when any step was skipped, and fails (keeping its final checkpoint) when more than
  # this fraction of its steps were: such a model is not what the recipe trains.
  config.optim.max_skipped_fraction = 0.1

  config.log_every_steps = 10
  config.checkpoint_every_epochs = 10
  config.checkpoint_max_to_keep = 2
  # Evaluating the test split costs more than an epoch of VTAB-1K training, so not every epoch by default.
  config.eval_every_epochs = 10
  config.eval_split = ""  # mode 'eval' only: the split to evaluate; '' = the trained mode's eval split
  # Tasks in the same label space whose 'test' split the final evaluation also scores, each on the classes it
  # covers (distribution shifts: ('imagenet_v2', 'imagenet_sketch', 'imagenet_a', 'imagenet_r')).
  config.shift_tasks = ()
  # Early stopping (jpeft/train/early_stopping.py): stop after `patience` evaluations (one every
  # eval_every_epochs) without improvement of `metric` (accuracy | loss) on `split` ('' = the mode's eval split;
  # else a split of the task held out of training, e.g. imagenet's 'val'), and report the best parameters.
  config.early_stopping = ml_collections.ConfigDict(dict(patience=0, metric="accuracy", split=""))

  # Multi-host data parallelism: jax.distributed.initialize(...) before anything touches a device.
  # None values are auto-detected on TPU pods and SLURM / Open MPI clusters.
  config.distributed = ml_collections.ConfigDict()
  config.distributed.enabled = False
  config.distributed.coordinator_address = ml_collections.FieldReference(None, field_type=str)
  config.distributed.num_processes = ml_collections.FieldReference(None, field_type=int)
  config.distributed.process_id = ml_collections.FieldReference(None, field_type=int)
  # Parameter layout (jpeft.train.sharding): the devices form a 'data' x 'param' mesh with param_axis_size
  # devices along 'param'. 1 replicates every parameter (pure data parallelism); P > 1 splits each parameter and
  # optimizer moment of >= min_shard_size elements into P slices (FSDP-style), for backbones too large to
  # replicate (ViT-L/H). Batches are split over all devices either way; results agree up to float rounding.
  config.sharding = ml_collections.ConfigDict()
  config.sharding.param_axis_size = 1
  config.sharding.min_shard_size = 2**16
  config.save_merged = False  # also write the merged full model at the end (re-parameterisable methods)
  # A run started again after it finished returns its result.json unchanged; True evaluates its final
  # checkpoint again and rewrites result.json and the predictions (e.g. after adding shift_tasks).
  config.reevaluate = False
  return config


def demo_config() -> ml_collections.ConfigDict:
  """The offline demo (`configs/demo.py`): LoRA on the Mini VTAB task mini_count with the shipped `mini/8`
  backbone, 'final' mode, linear probing beside it (`compare_methods`). Also the base of
  experiments/mini_study.py."""
  config = get_config("lora")
  config.mode = "final"
  config.task = "mini_count"
  config.compare_methods = ("linear",)

  config.data.image_size = 32  # Mini VTAB's native size: no resizing
  config.model.variant = "mini/8"
  config.model.drop_path_rate = 0.0
  config.pretrained.name = ""
  config.pretrained.path = MINI_BACKBONE

  config.peft.lora = dict(rank=8, dropout=0.0)

  config.optim.batch_size = 64
  config.optim.epochs = 30
  config.optim.warmup_epochs = 3
  config.optim.lr = 1e-2
  config.optim.wd = 1e-4

  config.log_every_steps = 15
  config.eval_every_epochs = 30
  config.checkpoint_every_epochs = 30
  return config


def manyshot_config(task: str, size: str, method: str = "linear") -> ml_collections.ConfigDict:
  """The study's many-shot recipe for `task` at `size` (`jpeft.data.manyshot`: 'train500', ..., 'full'):
  streamed data, batch 64, the size's epochs and warmup, the dataset's augmentation in the final run only,
  its normalisation and eval crop. Tuning splits: `data.tune_split`; the grid is the sweep's."""
  from jpeft.data import manyshot  # pylint: disable=g-import-not-at-top  # configs load without TensorFlow otherwise
  protocol = manyshot.get_many_shot(task)
  recipe = protocol.size(size)
  config = get_config(method)
  config.mode = "final"
  config.task = task
  config.data.subset = size
  config.data.in_memory = False  # 50,000 images at 224 do not fit in device memory: stream them
  config.data.augment = protocol.augment
  config.data.augment_final_only = True
  config.data.normalization = protocol.normalization
  config.data.center_crop = protocol.center_crop
  config.optim.batch_size = 64
  config.optim.epochs = recipe.epochs
  config.optim.warmup_epochs = recipe.warmup_epochs
  config.eval_every_epochs = recipe.epochs
  config.checkpoint_every_epochs = 5
  return config

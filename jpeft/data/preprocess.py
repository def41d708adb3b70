"""Per-example image preprocessing: resize, crops, flips, value range. Pure TF, graph-safe.

Input everywhere: `image` uint8 [H, W, 3] of any size. Output of `preprocess_image`:
float32 [size, size, 3] in the range of the chosen normalisation.

Randomness uses stateless ops seeded by a per-example `seed` (int32 [2]) so a given
(seed, example position) always gets the same augmentation, independent of threading.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence


from jpeft.data.quiet_tf import tf
from jpeft.data.errors import DataError

# name -> (mean, std) applied to [0, 1] pixels; None = keep [0, 1] (the study's VTAB setting).
NORMALIZATIONS = {
    'none': None,
    'inception': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # -> [-1, 1]
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'clip': ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}

# Augmentation tokens, combined with '+', e.g. 'rrc+hflip+vflip' or 'rrc+hflip+randaug'.
AUGMENT_OPS = ('rrc', 'hflip', 'vflip', 'randaug')
RESIZE_METHODS = ('bicubic', 'bilinear', 'nearest', 'area', 'lanczos3')

# Eval crop ratio: resize to 256 then centre-crop 224 (scaled to other sizes).
CENTER_CROP_FRACTION = 224 / 256
# How the centre-crop eval resizes first: the short side to 256, keeping the aspect ratio (torchvision
# Resize(256), the many-shot runs), or the whole image to 256x256 (Resize((256, 256)), the study's CLIP runs).
EVAL_RESIZES = ('short_side', 'square')


@dataclasses.dataclass(frozen=True)
class TrainAugment:
  """Training augmentation besides the `augment` tokens (config.data.randaugment / color_jitter /
  random_erasing): the 'randaug' token's policy (timm syntax, `jpeft.data.randaugment`), colour jitter strength
  (`jpeft.data.color_jitter`; 0 = off) and random erasing probability (`jpeft.data.random_erasing`; 0 = off).
  Jitter and erasing apply to every augmented (training) image."""
  randaugment: str = 'rand-m9-mstd0.5-inc1'
  color_jitter: float = 0.0
  random_erasing: float = 0.0

  @classmethod
  def from_config(cls, data_config) -> 'TrainAugment':
    return cls(data_config.randaugment, data_config.color_jitter, data_config.random_erasing)


def check_normalization(name: str) -> None:
  if name not in NORMALIZATIONS:
    raise DataError(f"Unknown normalization '{name}'. Use one of "
                    f"{', '.join(NORMALIZATIONS)}: 'none' keeps pixels in [0, 1] (the study's "
                    f"VTAB setting), 'inception' maps to [-1, 1], 'imagenet' and 'clip' "
                    f"subtract those models' mean and divide by their std.")


def parse_augment(augment: Optional[str]) -> tuple[str, ...]:
  """'rrc+hflip' -> ('rrc', 'hflip'); None or '' -> (). DataError on unknown tokens."""
  if not augment:
    return ()
  ops = tuple(t.strip() for t in augment.split('+') if t.strip())
  bad = [t for t in ops if t not in AUGMENT_OPS]
  if bad:
    raise DataError(f"Unknown augmentation {bad} in augment='{augment}'. Combine tokens from "
                    f"{', '.join(AUGMENT_OPS)} with '+', e.g. 'rrc+hflip' for many-shot "
                    f"training or 'rrc+hflip+randaug' for the CLIP runs; None for no "
                    f"augmentation (the study's VTAB-1K setting).")
  return ops


def resize(image: tf.Tensor, size: Sequence[int], method: str = 'bicubic') -> tf.Tensor:
  """uint8/float [H, W, 3] -> float32 [size[0], size[1], 3] in [0, 255].

  Antialiased (as PIL, which the study's torchvision pipeline used) and clipped, because
  bicubic overshoots outside [0, 255].
  """
  out = tf.image.resize(tf.cast(image, tf.float32), size, method=method, antialias=True)
  return tf.clip_by_value(out, 0.0, 255.0)


def resize_short_side(image: tf.Tensor, short: int, method: str = 'bicubic') -> tf.Tensor:
  """Resize keeping aspect ratio so the shorter side is `short` (torchvision Resize(int))."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.cast(short, tf.float32) / tf.reduce_min(shape)
  new = tf.cast(tf.round(shape * scale), tf.int32)
  new = tf.maximum(new, short)  # Rounding must not leave the short side below `short`.
  return resize(image, new, method)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """Central [size, size] window of an image at least that large."""
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  top, left = (h - size) // 2, (w - size) // 2
  return image[top:top + size, left:left + size]


def random_resized_crop(image: tf.Tensor, seed: tf.Tensor, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> tf.Tensor:
  """Inception-style crop (torchvision RandomResizedCrop sampling), not yet resized."""
  shape = tf.shape(image)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale,
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  return tf.slice(image, begin, crop_size)


def normalize(image: tf.Tensor, normalization: str = 'none') -> tf.Tensor:
  """float32 [..., 3] in [0, 255] -> [0, 1], then (x - mean) / std for the chosen mode."""
  check_normalization(normalization)
  image = tf.cast(image, tf.float32) / 255.0
  stats = NORMALIZATIONS[normalization]
  if stats is None:
    return image
  mean, std = stats
  return (image - tf.constant(mean)) / tf.constant(std)


def preprocess_image(image: tf.Tensor, *, image_size: int = 224, normalization: str = 'none',
                     train: bool = False, augment: Optional[str] = None,
                     center_crop_eval: bool = False, resize_method: str = 'bicubic',
                     seed: Optional[tf.Tensor] = None, extra: TrainAugment = TrainAugment(),
                     eval_resize: str = 'short_side') -> tf.Tensor:
  """uint8 [H, W, 3] -> float32 [image_size, image_size, 3].

  Args:
    image: decoded image, any size.
    image_size: output side length (the model's input size).
    normalization: key of NORMALIZATIONS; 'none' gives [0, 1].
    train: apply `augment` (ignored when False).
    augment: '+'-joined tokens: 'rrc' random-resized crop, 'hflip' / 'vflip' random flips,
      'randaug' RandAugment (policy `extra.randaugment`). None: plain resize (the study's VTAB-1K recipe).
    center_crop_eval: when not training, resize to image_size * 256 / 224 (see `eval_resize`) and take the
      central crop instead of resizing the whole image (many-shot and CLIP eval).
    resize_method: tf.image.resize method; bicubic as the study.
    seed: int32 [2] stateless seed for the augmentations (required when augmenting).
    extra: colour jitter and random erasing of augmented images, and the RandAugment policy. Order as timm's:
      crop, flips, RandAugment, colour jitter, normalisation, random erasing.
    eval_resize: 'short_side' (keep the aspect ratio) or 'square', before the centre crop.
  """
  ops = parse_augment(augment) if train else ()
  if ops and seed is None:
    raise DataError('preprocess_image needs a `seed` (int32 [2]) when augmenting.')
  seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, 5)) if ops else ())
  size = [image_size, image_size]
  if 'rrc' in ops:
    image = resize(random_resized_crop(image, next(seeds)), size, resize_method)
  elif center_crop_eval and not train:
    short = int(round(image_size / CENTER_CROP_FRACTION))
    if eval_resize not in EVAL_RESIZES:
      raise DataError(f"Unknown eval_resize '{eval_resize}'. Use one of {', '.join(EVAL_RESIZES)}.")
    image = (resize(image, [short, short], resize_method) if eval_resize == 'square'
             else resize_short_side(image, short, resize_method))
    image = center_crop(image, image_size)
  else:
    image = resize(image, size, resize_method)
  image = tf.ensure_shape(image, size + [3])
  if 'hflip' in ops:
    image = tf.image.stateless_random_flip_left_right(image, next(seeds))
  if 'vflip' in ops:
    image = tf.image.stateless_random_flip_up_down(image, next(seeds))
  if 'randaug' in ops:
    from jpeft.data import randaugment  # pylint: disable=g-import-not-at-top
    stats = NORMALIZATIONS[normalization]
    fill = randaugment.FILL if stats is None else [round(255 * m) for m in stats[0]]  # timm: the mean colour
    image = randaugment.rand_augment(image, next(seeds), randaugment.parse_policy(extra.randaugment), fill)
  # Seeds of their own (not from the split above), so adding them left the other ops' draws unchanged.
  if ops and extra.color_jitter:
    from jpeft.data import color_jitter  # pylint: disable=g-import-not-at-top
    image = color_jitter.color_jitter(image, tf.random.experimental.stateless_fold_in(seed, 1), extra.color_jitter)
  image = normalize(image, normalization)
  if ops and extra.random_erasing:
    from jpeft.data import random_erasing  # pylint: disable=g-import-not-at-top
    image = random_erasing.random_erasing(image, tf.random.experimental.stateless_fold_in(seed, 2),
                                          extra.random_erasing)
  return image

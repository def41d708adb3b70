"""Per-example image preprocessing: resize, crops, flips, value range. Pure TF, graph-safe.

Input everywhere: `image` uint8 [H, W, 3] of any size. Output of `preprocess_image`:
float32 [size, size, 3] in the range of the chosen normalisation.

Randomness uses stateless ops seeded by a per-example `seed` (int32 [2]) so a given
(seed, example position) always gets the same augmentation, independent of threading.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

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
                     seed: Optional[tf.Tensor] = None) -> tf.Tensor:
  """uint8 [H, W, 3] -> float32 [image_size, image_size, 3].

  Args:
    image: decoded image, any size.
    image_size: output side length (the model's input size).
    normalization: key of NORMALIZATIONS; 'none' gives [0, 1].
    train: apply `augment` (ignored when False).
    augment: '+'-joined tokens: 'rrc' random-resized crop, 'hflip' / 'vflip' random flips,
      'randaug' RandAugment(2, 9). None: plain resize (the study's VTAB-1K recipe).
    center_crop_eval: when not training, resize the short side to image_size * 256 / 224
      and take the central crop instead of resizing the whole image (many-shot eval).
    resize_method: tf.image.resize method; bicubic as the study.
    seed: int32 [2] stateless seed for the augmentations (required when augmenting).
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
    image = center_crop(resize_short_side(image, short, resize_method), image_size)
  else:
    image = resize(image, size, resize_method)
  image = tf.ensure_shape(image, size + [3])
  if 'hflip' in ops:
    image = tf.image.stateless_random_flip_left_right(image, next(seeds))
  if 'vflip' in ops:
    image = tf.image.stateless_random_flip_up_down(image, next(seeds))
  if 'randaug' in ops:
    from jpeft.data import randaugment  # pylint: disable=g-import-not-at-top
    image = randaugment.rand_augment(image, next(seeds))
  return normalize(image, normalization)

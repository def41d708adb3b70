"""Colour jitter as torchvision's `ColorJitter(s, s, s)` (brightness, contrast, saturation; no hue), in TF.

Each factor is drawn uniformly from [max(0, 1 - s), 1 + s] and the three adjustments are applied in a random
order, as torchvision does. Works on float32 [H, W, 3] images in [0, 255] with a stateless seed; the blends are
RandAugment's (`jpeft.data.randaugment`), which follow PIL / torchvision: brightness blends with black, contrast
with the mean grey level, saturation with the grey image, each clipped to [0, 255].
"""
from __future__ import annotations


from jpeft.data.quiet_tf import tf
from jpeft.data import randaugment


def color_jitter(image: tf.Tensor, seed: tf.Tensor, strength: float) -> tf.Tensor:
  """float32 [H, W, 3] in [0, 255] -> same shape and range, jittered.

  Args:
    image: the image.
    seed: int32 [2] stateless seed.
    strength: s >= 0 above; 0 returns the image unchanged.
  """
  if not strength:
    return image
  seeds = tf.random.experimental.stateless_split(seed, 2)
  factors = tf.random.stateless_uniform([3], seeds[0], max(0.0, 1.0 - strength), 1.0 + strength)
  order = tf.argsort(tf.random.stateless_uniform([3], seeds[1]))  # a uniform random permutation
  adjustments = (randaugment.brightness, randaugment.contrast, randaugment.color)
  shape = image.shape
  for position in range(3):
    which = order[position]
    image = tf.switch_case(which, [lambda fn=fn, i=i: fn(image, factors[i]) for i, fn in enumerate(adjustments)])
    image = tf.ensure_shape(image, shape)
  return image

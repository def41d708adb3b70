"""Random erasing (Zhong et al., 2020) as timm's `RandomErasing(p, mode='pixel', max_count=1)`, in TF.

With probability `prob`, one box is replaced by standard-normal noise per pixel and channel, in the normalised
image (timm erases after normalisation, so the noise has the data's mean and spread). The box: area a fraction
uniform in [min_area, max_area) of the image, aspect ratio log-uniform in [min_aspect, 1 / min_aspect], sides
rounded; the first of 10 draws that fits inside the image is used, none if none fits (timm's attempts).
"""
from __future__ import annotations

import math
from jpeft.data.quiet_tf import tf


ATTEMPTS = 10


def random_erasing(image: tf.Tensor, seed: tf.Tensor, prob: float, min_area: float = 0.02,
                   max_area: float = 1 / 3, min_aspect: float = 0.3) -> tf.Tensor:
  """float32 [H, W, C] (static H, W) -> same shape, with one box erased with probability `prob`.

  Args:
    image: the normalised image.
    seed: int32 [2] stateless seed.
    prob: probability of erasing; 0 returns the image unchanged.
    min_area, max_area: range of the box's area as a fraction of the image's.
    min_aspect: smallest height / width ratio (the largest is its inverse).
  """
  if not prob:
    return image
  h, w = image.shape[0], image.shape[1]
  seeds = tf.random.experimental.stateless_split(seed, 6)
  erase = tf.random.stateless_uniform([], seeds[0]) < prob
  area = tf.random.stateless_uniform([ATTEMPTS], seeds[1], min_area, max_area) * (h * w)
  aspect = tf.exp(tf.random.stateless_uniform([ATTEMPTS], seeds[2], math.log(min_aspect), -math.log(min_aspect)))
  box_h = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
  box_w = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
  fits = (box_h < h) & (box_w < w)
  first = tf.argmax(tf.cast(fits, tf.int32))  # the first draw that fits (0 if none does)
  box_h, box_w = box_h[first], box_w[first]
  top = tf.random.stateless_uniform([], seeds[3], 0, tf.maximum(h - box_h + 1, 1), tf.int32)
  left = tf.random.stateless_uniform([], seeds[4], 0, tf.maximum(w - box_w + 1, 1), tf.int32)
  rows, cols = tf.range(h), tf.range(w)
  inside = (((rows >= top) & (rows < top + box_h))[:, None] & ((cols >= left) & (cols < left + box_w))[None, :])
  inside &= erase & tf.reduce_any(fits)
  noise = tf.random.stateless_normal(tf.shape(image), seeds[5], dtype=image.dtype)
  return tf.where(inside[:, :, None], noise, image)

"""RandAugment (Cubuk et al., 2020) in TF, timm flavour ('rand-m9-n2', increasing severity).

Works on float32 [H, W, 3] images in [0, 255] (after resizing, before normalisation), with a
stateless seed so a (seed, example) pair always gets the same ops. Each of `num_layers`
layers picks one op uniformly and applies it with probability `prob` at magnitude
`magnitude` (0..10, as timm). Geometric ops fill uncovered pixels with grey 128 (timm).
"""
from __future__ import annotations

import math

import tensorflow as tf

MAX_LEVEL = 10.0
FILL = 128.0


def _blend(degenerate, image, factor):
  """PIL ImageEnhance: degenerate + factor * (image - degenerate), clipped."""
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _grey(image):
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def color(image, factor):
  return _blend(_grey(image), image, factor)


def contrast(image, factor):
  return _blend(tf.fill(tf.shape(image), tf.reduce_mean(_grey(image))), image, factor)


def brightness(image, factor):
  return _blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], 'VALID')[0]
  # PIL keeps the 1-pixel border unchanged.
  degenerate = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  mask = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
  degenerate = mask * degenerate + (1 - mask) * image
  return _blend(degenerate, image, factor)


def posterize(image, bits):
  step = tf.pow(2.0, 8.0 - tf.cast(bits, tf.float32))
  return tf.floor(tf.round(image) / step) * step


def solarize(image, threshold):
  return tf.where(image < threshold, image, 255.0 - image)


def autocontrast(image):
  lo = tf.reduce_min(image, axis=[0, 1])
  hi = tf.reduce_max(image, axis=[0, 1])
  scaled = (image - lo) * 255.0 / tf.maximum(hi - lo, 1e-6)
  return tf.where(hi > lo, tf.clip_by_value(scaled, 0.0, 255.0), image)


def _equalize_channel(channel):
  channel = tf.cast(tf.clip_by_value(tf.round(channel), 0, 255), tf.int32)
  hist = tf.histogram_fixed_width(channel, [0, 255], nbins=256)
  nonzero = tf.boolean_mask(hist, hist > 0)
  step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255
  lut = (tf.cumsum(hist) - hist + step // 2) // tf.maximum(step, 1)
  lut = tf.clip_by_value(lut, 0, 255)
  out = tf.gather(lut, channel)
  return tf.cast(tf.where(step > 0, out, channel), tf.float32)


def equalize(image):
  return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def _transform(image, matrix):
  """Projective transform; `matrix` maps output (x, y) to input coordinates (TF convention)."""
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.cast(matrix, tf.float32)[None],
      output_shape=tf.shape(image)[:2], fill_value=FILL, interpolation='BILINEAR',
      fill_mode='CONSTANT')
  return out[0]


def rotate(image, degrees):
  h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
  a = -degrees * math.pi / 180.0
  cx, cy = (w - 1) / 2, (h - 1) / 2
  cos, sin = tf.cos(a), tf.sin(a)
  return _transform(image, [cos, -sin, cx - cos * cx + sin * cy,
                            sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])


def shear_x(image, level):
  return _transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image, level):
  return _transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def translate_x(image, pixels):
  return _transform(image, [1.0, 0.0, -pixels, 0.0, 1.0, 0.0, 0.0, 0.0])


def translate_y(image, pixels):
  return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, -pixels, 0.0, 0.0])


def _ops(image, magnitude, sign):
  """The op list as zero-argument callables, magnitudes mapped as timm does."""
  m = magnitude / MAX_LEVEL
  size = tf.cast(tf.shape(image)[0], tf.float32)
  enhance = 1.0 + sign * 0.9 * m
  return [
      lambda: image,
      lambda: autocontrast(image),
      lambda: equalize(image),
      lambda: rotate(image, sign * 30.0 * m),
      lambda: solarize(image, 256.0 - 256.0 * m),
      lambda: color(image, enhance),
      lambda: posterize(image, 8 - int(4 * m)),
      lambda: contrast(image, enhance),
      lambda: brightness(image, enhance),
      lambda: sharpness(image, enhance),
      lambda: shear_x(image, sign * 0.3 * m),
      lambda: shear_y(image, sign * 0.3 * m),
      lambda: translate_x(image, sign * 0.45 * m * size),
      lambda: translate_y(image, sign * 0.45 * m * size),
  ]


NUM_OPS = 14


def rand_augment(image: tf.Tensor, seed: tf.Tensor, num_layers: int = 2,
                 magnitude: float = 9.0, prob: float = 0.5) -> tf.Tensor:
  """float32 [H, W, 3] in [0, 255] -> same shape and range, `num_layers` random ops applied.

  Args:
    image: the image.
    seed: int32 [2] stateless seed.
    num_layers: ops applied in sequence (N).
    magnitude: strength in [0, 10] (M).
    prob: probability that each chosen op is applied.
  """
  image = tf.cast(image, tf.float32)
  shape = image.shape
  seeds = tf.random.experimental.stateless_split(seed, 3 * num_layers)
  for layer in range(num_layers):
    which = tf.random.stateless_uniform([], seeds[3 * layer], 0, NUM_OPS, tf.int32)
    apply = tf.random.stateless_uniform([], seeds[3 * layer + 1]) < prob
    sign = tf.where(tf.random.stateless_uniform([], seeds[3 * layer + 2]) < 0.5, -1.0, 1.0)
    augmented = tf.switch_case(which, _ops(image, magnitude, sign))
    image = tf.where(apply, augmented, image)
    image = tf.ensure_shape(image, shape)
  return tf.clip_by_value(image, 0.0, 255.0)

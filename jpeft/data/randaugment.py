"""RandAugment (Cubuk et al., 2020) in TF, as timm's `rand_augment_transform` (the study's CLIP runs used
'rand-m9-mstd0.5-inc1').

Policies are written in timm's syntax: 'rand' then '-'-joined sections m<magnitude> (0..10; default 10),
n<layers> (default 2), p<probability of each layer> (default 0.5), mstd<std of Gaussian noise on the magnitude,
drawn per op; > 100: uniform in [0, m]>, inc<1: the ops whose severity grows with the magnitude>. Each layer picks
one of timm's 15 ops uniformly (with replacement across layers) and applies it with the probability at the
(noisy, clipped to [0, 10]) magnitude, mapped to each op's argument as timm maps it.

Works on float32 [H, W, 3] images in [0, 255] (after resizing, before normalisation), with a stateless seed so a
(seed, example) pair always gets the same ops. Geometric ops fill uncovered pixels with `fill` (timm: the
normalisation's mean colour, grey 128 without one). Unlike timm's PIL ops, geometric ops interpolate bilinearly
(PIL: the run's bicubic) and the arithmetic is in float, not uint8: the ops equal timm's to one grey level where
resampling does not differ (tests/fixtures/make_randaugment_reference.py).
"""
from __future__ import annotations

import dataclasses
import math
from jpeft.data.quiet_tf import tf


MAX_LEVEL = 10.0
FILL = 128.0


@dataclasses.dataclass(frozen=True)
class Policy:
  """A parsed policy string (see the module docstring)."""
  magnitude: float = 10.0
  num_layers: int = 2
  prob: float = 0.5
  magnitude_std: float = 0.0
  increasing: bool = False


def parse_policy(text: str) -> Policy:
  """'rand-m9-mstd0.5-inc1' -> Policy(9.0, 2, 0.5, 0.5, True); ValueError naming a bad section."""
  sections = text.split('-') if isinstance(text, str) else [None]
  if sections[0] != 'rand':
    raise ValueError(f"RandAugment policy {text!r} must start with 'rand', as timm's: e.g. 'rand-m9-mstd0.5-inc1' "
                     "(magnitude 9, magnitude noise std 0.5, severity increasing with magnitude).")
  keys = {'m': ('magnitude', float), 'n': ('num_layers', int), 'p': ('prob', float),
          'mstd': ('magnitude_std', float), 'inc': ('increasing', lambda v: bool(int(v)))}
  values = {}
  for section in sections[1:]:
    key = section.rstrip('0123456789.')
    if key not in keys or key == section:
      raise ValueError(f"Unknown section {section!r} of RandAugment policy {text!r}: use m<magnitude>, n<layers>, "
                       "p<probability>, mstd<std> and inc<0|1>, e.g. 'rand-m9-mstd0.5-inc1'.")
    name, cast = keys[key]
    values[name] = cast(section[len(key):])
  policy = Policy(**values)
  if not (0 <= policy.magnitude <= MAX_LEVEL and policy.num_layers >= 0 and 0 <= policy.prob <= 1
          and policy.magnitude_std >= 0):
    raise ValueError(f"RandAugment policy {text!r} is out of range: magnitude in [0, 10], layers >= 0, "
                     "probability in [0, 1], mstd >= 0.")
  return policy


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


def invert(image):
  return 255.0 - image


def solarize_add(image, addition, threshold=128.0):
  return tf.where(image < threshold, tf.minimum(image + addition, 255.0), image)


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


def _transform(image, matrix, fill=FILL):
  """Projective transform; `matrix` maps output (x, y) to input coordinates (TF convention). Uncovered pixels
  become `fill` (a scalar or one value per channel): the transform is linear, so transforming image - fill with
  zero fill and adding fill back fills per channel."""
  fill = tf.cast(fill, tf.float32)
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=(image - fill)[None], transforms=tf.cast(matrix, tf.float32)[None],
      output_shape=tf.shape(image)[:2], fill_value=0.0, interpolation='BILINEAR', fill_mode='CONSTANT')
  return out[0] + fill


def rotate(image, degrees, fill=FILL):
  h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
  a = degrees * math.pi / 180.0  # PIL's direction: counter-clockwise on screen
  cx, cy = (w - 1) / 2, (h - 1) / 2
  cos, sin = tf.cos(a), tf.sin(a)
  return _transform(image, [cos, -sin, cx - cos * cx + sin * cy,
                            sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0], fill)


def shear_x(image, level, fill=FILL):
  return _transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], fill)


def shear_y(image, level, fill=FILL):
  return _transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0], fill)


def translate_x(image, pixels, fill=FILL):
  return _transform(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0, 0.0, 0.0], fill)  # as PIL: content moves left


def translate_y(image, pixels, fill=FILL):
  return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels, 0.0, 0.0], fill)


def _ops(image, magnitude, sign, increasing=True, fill=FILL):
  """timm's op list as zero-argument callables (its `_RAND_INCREASING_TRANSFORMS` or `_RAND_TRANSFORMS`, same
  order), the magnitude (float scalar in [0, 10]) mapped to each op's argument as timm does; `sign` (+-1)
  negates the signed ones."""
  m = tf.cast(magnitude, tf.float32) / MAX_LEVEL
  h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
  bits = tf.floor(4.0 * m)  # posterize: bits kept, 0..4 (severity falls with m) ...
  threshold = tf.minimum(256.0, tf.floor(256.0 * m))  # solarize threshold (severity falls with m) ...
  enhance = 0.1 + 1.8 * m  # enhancement factor in [0.1, 1.9]
  if increasing:  # ... or grows with m
    bits, threshold = 4.0 - bits, 256.0 - threshold
    enhance = tf.maximum(0.1, 1.0 + sign * 0.9 * m)
  return [
      lambda: autocontrast(image),
      lambda: equalize(image),
      lambda: invert(image),
      lambda: rotate(image, sign * 30.0 * m, fill),
      lambda: posterize(image, bits),
      lambda: solarize(image, threshold),
      lambda: solarize_add(image, tf.minimum(128.0, tf.floor(110.0 * m))),
      lambda: color(image, enhance),
      lambda: contrast(image, enhance),
      lambda: brightness(image, enhance),
      lambda: sharpness(image, enhance),
      lambda: shear_x(image, sign * 0.3 * m, fill),
      lambda: shear_y(image, sign * 0.3 * m, fill),
      lambda: translate_x(image, sign * 0.45 * m * w, fill),
      lambda: translate_y(image, sign * 0.45 * m * h, fill),
  ]


NUM_OPS = 15


def rand_augment(image: tf.Tensor, seed: tf.Tensor, policy: Policy = Policy(9.0, 2, 0.5, 0.5, True),
                 fill=FILL) -> tf.Tensor:
  """float32 [H, W, 3] in [0, 255] -> same shape and range, `policy.num_layers` random ops applied.

  Args:
    image: the image.
    seed: int32 [2] stateless seed.
    policy: what to apply (default: the study's 'rand-m9-mstd0.5-inc1').
    fill: colour of pixels geometric ops uncover, scalar or [3] in [0, 255].
  """
  image = tf.cast(image, tf.float32)
  shape = image.shape
  seeds = tf.random.experimental.stateless_split(seed, 4 * policy.num_layers)
  for layer in range(policy.num_layers):
    s = seeds[4 * layer:4 * layer + 4]
    which = tf.random.stateless_uniform([], s[0], 0, NUM_OPS, tf.int32)
    apply = tf.random.stateless_uniform([], s[1]) < policy.prob
    sign = tf.where(tf.random.stateless_uniform([], s[2]) < 0.5, -1.0, 1.0)
    magnitude = tf.constant(policy.magnitude, tf.float32)
    if policy.magnitude_std > 100:  # timm: uniform in [0, m]
      magnitude = tf.random.stateless_uniform([], s[3], 0.0, policy.magnitude)
    elif policy.magnitude_std > 0:
      magnitude += policy.magnitude_std * tf.random.stateless_normal([], s[3])
    magnitude = tf.clip_by_value(magnitude, 0.0, MAX_LEVEL)
    augmented = tf.switch_case(which, _ops(image, magnitude, sign, policy.increasing, fill))
    image = tf.where(apply, augmented, image)
    image = tf.ensure_shape(image, shape)
  return tf.clip_by_value(image, 0.0, 255.0)

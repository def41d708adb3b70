"""Resize, normalisation modes, augmentations and RandAugment."""
import numpy as np
import pytest
import tensorflow as tf

from jpeft import data
from jpeft.data import preprocess, randaugment

SEED = tf.constant([3, 4], tf.int32)


def _image(h=20, w=30, seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize('mode, lo, hi', [
    ('none', 0.0, 1.0), ('inception', -1.0, 1.0),
    ('imagenet', -0.485 / 0.229, (1 - 0.406) / 0.225),
    ('clip', -0.48145466 / 0.26862954, (1 - 0.40821073) / 0.27577711)])
def test_normalization_ranges(mode, lo, hi):
  extremes = tf.constant([[[0, 0, 0], [255, 255, 255]]], tf.uint8)
  out = preprocess.preprocess_image(extremes, image_size=2, normalization=mode).numpy()
  assert out.dtype == np.float32 and out.shape == (2, 2, 3)
  assert out.min() >= lo - 1e-5 and out.max() <= hi + 1e-5
  if mode == 'none':
    np.testing.assert_allclose(preprocess.normalize(tf.constant([0.0, 255.0]), mode), [0, 1])
  if mode == 'inception':
    np.testing.assert_allclose(preprocess.normalize(tf.constant([[0.0] * 3, [255.0] * 3]), mode), [[-1] * 3, [1] * 3])


def test_bicubic_resize_stays_in_range_and_constant_is_exact():
  out = preprocess.preprocess_image(_image(), image_size=48).numpy()
  assert out.shape == (48, 48, 3) and 0.0 <= out.min() and out.max() <= 1.0
  flat = preprocess.preprocess_image(tf.fill([7, 9, 3], tf.constant(51, tf.uint8)), image_size=32)
  np.testing.assert_allclose(flat.numpy(), 0.2, atol=1e-6)


def test_center_crop_eval():
  # A 40x80 image: short side -> round(16 * 256 / 224) = 18, then the central 16x16.
  image = np.zeros((40, 80, 3), np.uint8)
  image[:, 35:45] = 255  # A white vertical bar in the middle survives the crop.
  image[:, :10] = 255    # Bars at the sides are cropped away.
  out = preprocess.preprocess_image(tf.constant(image), image_size=16, center_crop_eval=True)
  assert out.shape == (16, 16, 3)
  col = out.numpy()[8, :, 0]
  assert col[7:9].min() > 0.9 and col[0] < 0.05 and col[-1] < 0.05


def test_augmentations_are_seeded_and_shaped():
  image = _image(40, 50)
  kwargs = dict(image_size=24, train=True, augment='rrc+hflip+vflip+randaug')
  a = preprocess.preprocess_image(image, seed=SEED, **kwargs).numpy()
  b = preprocess.preprocess_image(image, seed=SEED, **kwargs).numpy()
  c = preprocess.preprocess_image(image, seed=tf.constant([5, 6]), **kwargs).numpy()
  assert a.shape == (24, 24, 3) and 0.0 <= a.min() and a.max() <= 1.0
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  # Eval ignores the augmentation.
  plain = preprocess.preprocess_image(image, image_size=24).numpy()
  evald = preprocess.preprocess_image(image, image_size=24, augment='rrc', train=False).numpy()
  np.testing.assert_array_equal(plain, evald)


def test_flip_only_reorders_pixels():
  image = _image(16, 16)
  plain = preprocess.preprocess_image(image, image_size=16).numpy()
  flips = {preprocess.preprocess_image(image, image_size=16, train=True, augment='hflip',
                                       seed=tf.constant([s, 0])).numpy().tobytes()
           for s in range(8)}
  assert flips == {plain.tobytes(), plain[:, ::-1].tobytes()}


def test_bad_augment_and_normalization():
  with pytest.raises(data.DataError, match='Unknown augmentation'):
    preprocess.parse_augment('rrc+cutmix')
  with pytest.raises(data.DataError, match='Unknown normalization'):
    preprocess.normalize(tf.zeros([1, 1, 3]), 'zscore')
  assert preprocess.parse_augment(' rrc + hflip ') == ('rrc', 'hflip')


@pytest.mark.parametrize('op', range(randaugment.NUM_OPS))
def test_every_randaugment_op_keeps_shape_and_range(op):
  image = tf.cast(_image(12, 12), tf.float32)
  out = randaugment._ops(image, 9.0, 1.0)[op]()
  assert out.shape == (12, 12, 3) and out.dtype == tf.float32
  assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 255.0


def test_randaugment_identities():
  image = tf.cast(_image(10, 10), tf.float32)
  for fn in (randaugment.color, randaugment.contrast, randaugment.brightness,
             randaugment.sharpness):
    np.testing.assert_allclose(fn(image, 1.0), image, atol=1e-3)
  np.testing.assert_allclose(randaugment.solarize(image, 256.0), image)
  np.testing.assert_allclose(randaugment.rotate(image, 0.0), image, atol=1e-3)
  np.testing.assert_allclose(randaugment.translate_x(image, 0.0), image, atol=1e-3)
  np.testing.assert_allclose(randaugment.posterize(image, 8), image)
  assert np.all(randaugment.solarize(tf.constant([10.0, 200.0]), 128.0).numpy() == [10.0, 55.0])
  shifted = randaugment.translate_x(image, -3.0).numpy()
  np.testing.assert_allclose(shifted[:, 3:], image.numpy()[:, :-3], atol=1e-3)
  np.testing.assert_allclose(shifted[:, :3], 128.0)
  ramp = np.tile(np.arange(0, 100, 1.0)[:, None, None], [1, 30, 3])  # Values 0..99.
  eq = randaugment.equalize(tf.constant(ramp, tf.float32)).numpy()
  assert eq.min() == 0 and eq.max() > 240  # Stretched over the full range (as PIL).
  assert np.all(np.diff(eq[:, 0, 0]) >= 0)  # Monotone.

"""The CLIP runs' training augmentation: timm's RandAugment policies, colour jitter, random erasing, and the
square eval resize; all seeded, shape- and range-preserving, and identities where their settings say so."""
import numpy as np
import pytest
import tensorflow as tf

from jpeft.data import color_jitter, preprocess, randaugment, random_erasing
from tests.helpers import REPO

SEED = tf.constant([7, 11], tf.int32)


def _image(h=24, w=24, seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.float32))


def test_policy_strings_parse_as_timm_reads_them():
  assert randaugment.parse_policy('rand-m9-mstd0.5-inc1') == randaugment.Policy(9.0, 2, 0.5, 0.5, True)
  assert randaugment.parse_policy('rand-n3-p1') == randaugment.Policy(10.0, 3, 1.0, 0.0, False)
  for bad in ('augmix-m9', 'rand-m9-x1', 'rand-m11', 'rand-p2'):
    with pytest.raises(ValueError, match='RandAugment policy'):
      randaugment.parse_policy(bad)


def test_rand_augment_is_seeded_and_keeps_shape_dtype_range():
  image = _image()
  policy = randaugment.parse_policy('rand-m9-mstd0.5-inc1')
  outs = [randaugment.rand_augment(image, tf.constant([s, 0]), policy, [123, 117, 104]).numpy() for s in range(12)]
  again = randaugment.rand_augment(image, tf.constant([0, 0]), policy, [123, 117, 104]).numpy()
  np.testing.assert_array_equal(outs[0], again)
  assert all(o.shape == (24, 24, 3) and o.dtype == np.float32 and 0 <= o.min() and o.max() <= 255 for o in outs)
  assert len({o.tobytes() for o in outs}) > 6  # different seeds, different ops
  # Probability 0 (or no layers) applies nothing.
  for off in ('rand-m9-p0', 'rand-m9-n0'):
    out = randaugment.rand_augment(image, SEED, randaugment.parse_policy(off))
    np.testing.assert_array_equal(out.numpy(), image.numpy())


# The ops whose argument is the magnitude's (timm's increasing set): at magnitude 0 each is the identity.
MAGNITUDE_OPS = ('rotate', 'solarize', 'solarize_add', 'color', 'contrast', 'brightness', 'sharpness', 'shear_x',
                 'shear_y', 'translate_x', 'translate_y')
OP_NAMES = ('autocontrast', 'equalize', 'invert', 'rotate', 'posterize', 'solarize', 'solarize_add', 'color',
            'contrast', 'brightness', 'sharpness', 'shear_x', 'shear_y', 'translate_x', 'translate_y')


@pytest.mark.parametrize('sign', [1.0, -1.0])
def test_magnitude_zero_is_the_identity_of_the_magnitude_ops(sign):
  image = _image()
  ops = randaugment._ops(image, 0.0, sign, increasing=True)
  assert len(ops) == randaugment.NUM_OPS == len(OP_NAMES)
  for name in MAGNITUDE_OPS:
    np.testing.assert_allclose(ops[OP_NAMES.index(name)]().numpy(), image.numpy(), atol=1e-3, err_msg=name)
  # Increasing severity: posterize keeps 4 bits at magnitude 0 and 1 bit at 9 (timm's 4 - int(4 m / 10)).
  assert set(np.unique(ops[OP_NAMES.index('posterize')]().numpy()) % 16) == {0}
  strong = randaugment._ops(image, 9.0, sign, increasing=True)[OP_NAMES.index('posterize')]().numpy()
  assert set(np.unique(strong)) <= {0.0, 128.0}
  np.testing.assert_array_equal(randaugment.invert(image).numpy(), 255 - image.numpy())


def test_ops_equal_timms_and_torchvisions():
  # tests/fixtures/make_randaugment_reference.py: timm's PIL ops at magnitude 9 (increasing), whole-pixel
  # translations and a 90-degree rotation filled with the CLIP mean colour; torchvision's jitter adjustments.
  ref = np.load(f'{REPO}/tests/fixtures/randaugment_reference.npz')
  image = tf.constant(ref['image'].astype(np.float32))
  sign = 1.0 if ref['enhance'] > 1 else -1.0  # the enhancement sign timm drew
  fill = [123.0, 117.0, 104.0]
  ops = dict(zip(OP_NAMES, randaugment._ops(image, 9.0, sign, increasing=True, fill=fill)))
  ours = {name: ops[name]() for name in OP_NAMES if name not in ('rotate', 'shear_x', 'shear_y', 'translate_x',
                                                                  'translate_y')}
  ours.update(translate_x=randaugment.translate_x(image, 4.0, fill),
              translate_y=randaugment.translate_y(image, -4.0, fill),
              rotate=randaugment.rotate(image, 90.0, fill), jitter_brightness=randaugment.brightness(image, 1.3),
              jitter_contrast=randaugment.contrast(image, 1.3), jitter_saturation=randaugment.color(image, 1.3))
  for name, out in ours.items():
    # PIL and torchvision compute in uint8 (truncating where jpeft rounds a float): one grey level apart.
    np.testing.assert_allclose(np.round(out.numpy()), ref[name], atol=1, err_msg=name)


def test_color_jitter_is_seeded_in_range_and_off_at_zero():
  image = _image()
  np.testing.assert_array_equal(color_jitter.color_jitter(image, SEED, 0.0).numpy(), image.numpy())
  a = color_jitter.color_jitter(image, SEED, 0.4).numpy()
  np.testing.assert_array_equal(a, color_jitter.color_jitter(image, SEED, 0.4).numpy())
  assert a.shape == (24, 24, 3) and 0 <= a.min() and a.max() <= 255 and not np.array_equal(a, image.numpy())
  # On a grey image only brightness acts (contrast and saturation blend grey with itself): factor in [0.6, 1.4].
  grey = tf.fill([8, 8, 3], 100.0)
  ratios = [float(color_jitter.color_jitter(grey, tf.constant([s, 1]), 0.4)[0, 0, 0]) / 100 for s in range(30)]
  assert 0.6 <= min(ratios) < 0.8 and 1.2 < max(ratios) <= 1.4


def test_random_erasing_erases_one_box_of_the_requested_area():
  image = tf.zeros([32, 32, 3])
  np.testing.assert_array_equal(random_erasing.random_erasing(image, SEED, 0.0).numpy(), image.numpy())
  fractions = []
  erase = tf.function(random_erasing.random_erasing)
  np.testing.assert_array_equal(erase(image, SEED, 1.0).numpy(), erase(image, SEED, 1.0).numpy())
  for s in range(30):
    out = erase(image, tf.constant([s, 2]), 1.0).numpy()
    erased = (out != 0).any(-1)
    rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
    assert erased.sum() == len(rows) * len(cols)  # one rectangle
    assert np.ptp(rows) + 1 == len(rows) and np.ptp(cols) + 1 == len(cols)
    fractions.append(erased.mean())
  # Sides are rounded: the area fraction may leave [0.02, 1/3) by up to a side's rounding.
  assert 0.01 <= min(fractions) and max(fractions) <= 1 / 3 + 0.05
  assert max(fractions) - min(fractions) > 0.1  # areas vary
  kept = [float((erase(image, tf.constant([s, 3]), 0.25).numpy() != 0).any()) for s in range(200)]
  assert 0.15 < np.mean(kept) < 0.35  # erased with probability 0.25


def test_preprocess_applies_the_extra_augmentation_only_when_augmenting():
  image = tf.constant(np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8))
  extra = preprocess.TrainAugment(color_jitter=0.4, random_erasing=1.0)
  kwargs = dict(image_size=24, normalization='clip', seed=SEED)
  plain = preprocess.preprocess_image(image, train=True, augment='rrc+hflip', **kwargs).numpy()
  both = preprocess.preprocess_image(image, train=True, augment='rrc+hflip', extra=extra, **kwargs).numpy()
  assert both.shape == plain.shape and not np.array_equal(both, plain)
  # The other ops' draws are unchanged: the crop and flip are the same, only jitter and erasing differ.
  erased = (both != preprocess.preprocess_image(image, train=True, augment='rrc+hflip', extra=preprocess.TrainAugment(
      color_jitter=0.4), **kwargs).numpy()).any(-1)
  assert 0 < erased.mean() < 0.5
  evaluated = preprocess.preprocess_image(image, train=False, augment='rrc+hflip', extra=extra, **kwargs).numpy()
  np.testing.assert_array_equal(evaluated, preprocess.preprocess_image(image, **kwargs).numpy())


def test_square_eval_resize_squashes_before_the_centre_crop():
  # A 40x80 image with white side bars: a square resize (18x18) keeps them inside the 16x16 crop, the short-side
  # resize (18x36) crops them away.
  image = np.zeros((40, 80, 3), np.uint8)
  image[:, :12] = image[:, -12:] = 255
  kwargs = dict(image_size=16, center_crop_eval=True)
  square = preprocess.preprocess_image(tf.constant(image), eval_resize='square', **kwargs).numpy()
  short = preprocess.preprocess_image(tf.constant(image), **kwargs).numpy()
  assert square.shape == short.shape == (16, 16, 3)
  assert short[:, 0].max() < 0.05 and square[:, 0].min() > 0.2

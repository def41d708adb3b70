"""Label derivations on hand-built raw examples with known answers."""
import numpy as np
import pytest
import tensorflow as tf

from jpeft import data
from jpeft.data import vtab


def _image(h=4, w=5, c=3, value=7):
  return tf.fill([h, w, c], tf.constant(value, tf.uint8))


def _clevr(depths):
  n = len(depths)
  return {'image': _image(),
          'objects': {'size': tf.zeros([n], tf.int64),
                      'pixel_coords': tf.constant([[100.0, 50.0, d] for d in depths])}}


def _label(task, example):
  out = data.get_task(task).preprocess(example)
  assert out['image'].dtype == tf.uint8 and out['image'].shape[-1] == 3
  assert out['label'].dtype == tf.int32
  return int(out['label'])


def test_clevr_count_five_objects_is_class_2():
  assert _label('clevr_count', _clevr([9.2, 11.0, 8.7, 12.5, 10.4])) == 2
  assert _label('clevr_count', _clevr([9.0] * 3)) == 0
  assert _label('clevr_count', _clevr([9.0] * 10)) == 7


@pytest.mark.parametrize('closest, expected', [
    (7.5, 0), (8.2, 1), (8.7, 2), (9.3, 3), (9.9, 4), (10.5, 5), (8.0, 0), (8.5, 1)])
def test_clevr_distance_bins(closest, expected):
  # Thresholds 0, 8, 8.5, 9, 9.5, 10, 100: label = last threshold strictly below the depth.
  assert _label('clevr_dist', _clevr([12.0, closest, 11.0, 13.5, 10.8])) == expected


def _kitti(types, depths):
  return {'image': _image(),
          'objects': {'type': tf.constant(types, tf.int64),
                      'location': tf.constant([[1.0, 1.5, z] for z in depths], tf.float32)
                      if depths else tf.zeros([0, 3], tf.float32)}}


@pytest.mark.parametrize('types, depths, expected', [
    ([], [], 3),                      # No object at all -> "no vehicle".
    ([3, 5, 3], [4.0, 6.0, 9.0], 3),  # Pedestrian, cyclist, pedestrian: no vehicle.
    ([0], [5.0], 0),                  # Car at 5 m.
    ([3, 1], [2.0, 12.0], 1),         # Pedestrian closer, but the van at 12 m counts.
    ([2, 0], [30.0, 25.0], 2),        # Truck 30 m, car 25 m -> closest 25 m.
    ([0, 1, 2], [50.0, 7.9, 19.0], 0),
])
def test_kitti_closest_vehicle(types, depths, expected):
  assert _label('kitti', _kitti(types, depths)) == expected


def test_dsprites_bins_and_pixels():
  ex = {'image': tf.constant(np.eye(4, dtype=np.uint8)[..., None]),
        'label_x_position': tf.constant(31, tf.int64),
        'label_orientation': tf.constant(39, tf.int64)}
  loc = data.get_task('dsprites_loc').preprocess(ex)
  assert int(loc['label']) == 15  # 31 // 2
  assert loc['image'].shape == (4, 4, 3)
  assert set(np.unique(loc['image'].numpy())) == {0, 255}  # {0, 1} pixels scaled to 255.
  assert int(data.get_task('dsprites_ori').preprocess(ex)['label']) == 15  # floor(39 / 2.5)
  for x, want in ((0, 0), (1, 0), (2, 1), (17, 8)):
    assert int(vtab.dsprites_location({**ex, 'label_x_position': tf.constant(x)})['label']) == want
  for o, want in ((0, 0), (2, 0), (3, 1), (5, 2), (20, 8)):
    assert int(vtab.dsprites_orientation({**ex, 'label_orientation': tf.constant(o)})['label']) == want


def test_smallnorb_tiles_grey_and_takes_attribute():
  ex = {'image': _image(6, 6, 1, value=9), 'label_azimuth': tf.constant(17, tf.int64),
        'label_elevation': tf.constant(8, tf.int64)}
  azi = data.get_task('smallnorb_azi').preprocess(ex)
  assert azi['image'].shape == (6, 6, 3) and int(azi['label']) == 17
  assert np.all(azi['image'].numpy() == 9)
  assert int(data.get_task('smallnorb_ele').preprocess(ex)['label']) == 8


def test_default_preprocess_keeps_rgb_and_tiles_grey():
  out = data.get_task('dtd').preprocess({'image': _image(), 'label': tf.constant(4, tf.int64)})
  assert out['image'].shape == (4, 5, 3) and int(out['label']) == 4
  grey = data.get_task('dtd').preprocess({'image': _image(c=1), 'label': tf.constant(1)})
  assert grey['image'].shape == (4, 5, 3)

"""Mini VTAB: determinism, labels against the generator's ground truth, and the TFDS / VTAB path."""
import colorsys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy import ndimage

from jpeft.data import DataError, get_task, list_tasks, load_split_arrays
from jpeft.data import mini_vtab
from jpeft.data.mini import upstream

ALL = list(mini_vtab.MINI_TASKS) + [mini_vtab.UPSTREAM.name]


@pytest.mark.parametrize('name', ALL)
def test_same_seed_same_bytes_other_seed_other_bytes(name):
  x1, y1 = mini_vtab.generate(name, 'train', 12, seed=3)
  x2, y2 = mini_vtab.generate(name, 'train', 12, seed=3)
  x3, _ = mini_vtab.generate(name, 'train', 12, seed=4)
  assert x1.dtype == np.uint8 and x1.shape == (12, 32, 32, 3) and y1.shape == (12,)
  assert x1.tobytes() == x2.tobytes() and np.array_equal(y1, y2)
  assert x1.tobytes() != x3.tobytes()


def test_a_shorter_draw_is_a_prefix_and_splits_differ():
  x5, y5 = mini_vtab.generate('mini_count', 'test', 5)
  x9, y9 = mini_vtab.generate('mini_count', 'test', 9)
  assert x5.tobytes() == x9[:5].tobytes() and np.array_equal(y5, y9[:5])
  assert x5.tobytes() != mini_vtab.generate('mini_count', 'train', 5)[0].tobytes()


@pytest.mark.parametrize('name', ALL)
def test_labels_cover_all_classes(name):
  num_classes = mini_vtab.get_mini_task(name).num_classes
  _, labels = mini_vtab.generate(name, 'validation', 40 * num_classes)
  assert labels.min() >= 0 and labels.max() < num_classes
  assert len(np.unique(labels)) == num_classes


def test_count_label_is_number_of_separate_objects():
  for s in mini_vtab.samples('mini_count', 'train', 150):
    _, components = ndimage.label(s.mask, structure=np.ones((3, 3)))
    assert components == s.factors['count'] == s.label + 1


def test_loc_label_is_x_bin_of_the_object_seen_in_the_image():
  for s in mini_vtab.samples('mini_loc', 'train', 150):
    cols = np.nonzero(s.mask.any(axis=0))[0]
    # The drawn object straddles its centre column, and the label is that centre's 3-pixel bin.
    assert cols.min() <= s.factors['x'] <= cols.max() + 1
    assert s.label == min(int((s.factors['x'] - 4.0) // 3.0), 7)


def test_ori_label_matches_the_direction_of_the_drawn_dart():
  checked = 0
  for s in mini_vtab.samples('mini_ori', 'train', 200):
    ys, xs = np.nonzero(s.mask)
    # The dart's centroid lies behind its tip, so centroid -> farthest pixel points along the dart.
    cy, cx = ys.mean(), xs.mean()
    far = np.argmax(np.hypot(xs - cx, ys - cy))
    measured = np.degrees(np.arctan2(-(ys[far] - cy), xs[far] - cx)) % 360  # image y points down
    if min(measured % 45, 45 - measured % 45) < 12:  # too close to a bin edge to judge on 32 px
      continue
    assert int(measured // 45) == s.label, (measured, np.degrees(s.factors['angle']))
    checked += 1
  assert checked > 80


def test_upstream_label_is_shape_hue_and_backdrop_of_the_drawn_scene():
  for s in mini_vtab.samples(mini_vtab.UPSTREAM.name, 'train', 100):
    shape_hue, backdrop = divmod(s.label, 3)
    shape, hue_bin = divmod(shape_hue, 4)
    inner = ndimage.binary_erosion(s.mask)
    r, g, b = np.median(s.image[inner if inner.any() else s.mask], axis=0) / 255.0
    assert int(colorsys.rgb_to_hsv(r, g, b)[0] * 4) % 4 == hue_bin  # measured from the pixels
    assert upstream.UPSTREAM_SHAPES[shape] == s.factors['shape']
    assert ('plain', 'clutter', 'texture')[backdrop] == s.factors['backdrop']


def test_digits_come_from_disjoint_sklearn_ranges_with_their_labels():
  from sklearn.datasets import load_digits
  targets = load_digits().target
  seen = {}
  for split in ('train', 'validation', 'test'):
    seen[split] = set()
    for s in mini_vtab.samples('mini_digits', split, 60):
      assert s.label == targets[s.factors['digit_index']]
      seen[split].add(s.factors['digit_index'])
  assert not seen['train'] & seen['test'] and not seen['train'] & seen['validation']


def test_cells_positive_iff_a_large_nucleus_is_drawn():
  for s in mini_vtab.samples('mini_cells', 'train', 100):
    area = s.mask.sum()
    assert (area >= 15) if s.label else (area == 0)


def test_tasks_registered_with_vtab_splits_and_groups():
  assert set(list_tasks('mini_structured')) == {'mini_count', 'mini_loc', 'mini_ori'}
  assert not set(mini_vtab.MINI_TASKS) & set(list_tasks('natural'))
  task = get_task('mini_textures')
  assert task.builder == 'mini_textures:1.*.*' and task.num_classes == 8
  assert task.split('train800') == 'train[:800]' and task.split('val200') == 'validation[:200]'
  assert task.split('test') == 'test'


def test_bad_names_give_clear_errors():
  with pytest.raises(DataError, match='Unknown Mini VTAB task'):
    list(mini_vtab.samples('mini_nope', 'train', 1))
  with pytest.raises(DataError, match='splits'):
    list(mini_vtab.samples('mini_count', 'val200', 1))


def test_tfds_builder_prepares_offline_and_holds_the_generated_examples(tmp_path):
  mini_vtab.prepare(['mini_loc'], data_dir=str(tmp_path))
  builder = tfds.builder('mini_loc', data_dir=str(tmp_path))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == mini_vtab.SPLIT_SIZES
  stored = list(tfds.as_numpy(builder.as_dataset(split='validation', shuffle_files=False)))
  images, labels = mini_vtab.generate('mini_loc', 'validation')
  assert np.array_equal(np.stack([e['image'] for e in stored]), images)
  assert np.array_equal([e['label'] for e in stored], labels)
  # The VTAB path: val200 = validation[:200], resized to 32 (a no-op) and scaled to [0, 1].
  arrays = load_split_arrays('mini_loc', 'val200', data_dir=str(tmp_path), image_size=32)
  assert np.array_equal(arrays['label'], labels[:200])
  np.testing.assert_allclose(arrays['image'], images[:200] / 255.0, atol=1e-6)

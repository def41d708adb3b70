"""ImageNet's protocol splits (val = 10 train images per class, disjoint from the shots) and the
ImageNet-A/-R class subsets (a clear error, never all 1000 classes, when the label file fails)."""
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jpeft import data
from jpeft.data import shift, tfds_source

CLASSES, PER_CLASS, SIZE = 4, 115, 4  # 115 = 10 val + 100 shots + 5 left over, per class.


def _fake_imagenet_train():
  """Shuffled train examples whose 4x4 image encodes the example's index (R + 256 G)."""
  labels = np.random.default_rng(0).permutation(np.repeat(np.arange(CLASSES), PER_CLASS))
  ids = np.arange(len(labels))
  images = np.zeros([len(labels), SIZE, SIZE, 3], np.uint8)
  images[..., 0] = (ids % 256)[:, None, None]
  images[..., 1] = (ids // 256)[:, None, None]
  return labels, tf.data.Dataset.from_tensor_slices({'image': images, 'label': labels})


def _ids(arrays):
  pixels = np.round(arrays['image'][:, 0, 0] * 255).astype(int)  # normalization 'none': [0, 1]
  return pixels[:, 0] + 256 * pixels[:, 1]


@pytest.fixture
def imagenet_splits(monkeypatch):
  labels, train = _fake_imagenet_train()
  monkeypatch.setattr(tfds_source, '_LABEL_CACHE', {})  # Labels of other tests' mock data.

  def as_dataset_fn(builder, split, **kwargs):
    assert split == 'train', split  # Every split here is a subset of ImageNet train.
    return train

  with tfds.testing.mock_data(as_dataset_fn=as_dataset_fn):
    out = {name: data.load_split_arrays('imagenet', name, image_size=SIZE)
           for name in ('val', 'train16shot', 'train100shot', 'minitrain')}
  return labels, {name: (_ids(a), a['label']) for name, a in out.items()}


def test_val_is_ten_per_class_and_disjoint_from_the_shots(imagenet_splits):
  labels, splits = imagenet_splits
  val_ids, val_labels = splits['val']
  assert np.array_equal(labels[val_ids], val_labels)  # Ids decode to the right examples.
  assert np.bincount(val_labels, minlength=CLASSES).tolist() == [10] * CLASSES
  for name, k in (('train16shot', 16), ('train100shot', 100)):
    ids, shot_labels = splits[name]
    assert np.bincount(shot_labels, minlength=CLASSES).tolist() == [k] * CLASSES
    assert not set(ids) & set(val_ids), name
  rest_ids, _ = splits['minitrain']
  assert sorted(set(rest_ids) | set(val_ids)) == list(range(len(labels)))
  assert len(rest_ids) + len(val_ids) == len(labels)


def test_val_is_fixed_by_its_seed():
  labels, _ = _fake_imagenet_train()
  val = tfds_source.select_subset(labels, shift.IMAGENET_VAL)
  assert np.array_equal(val, tfds_source.select_subset(labels, shift.IMAGENET_VAL))
  other_seed = data.Subset('train', 10, seed=1, per_class=True)
  assert not np.array_equal(val, tfds_source.select_subset(labels, other_seed))
  shots = tfds_source.select_subset(labels, shift.imagenet_kshot(100))
  assert not set(shots) & set(val)


def test_exclude_must_share_the_split():
  with pytest.raises(data.DataError, match="another split.*'train\\[:10\\]'"):
    data.Subset('train', 5, per_class=True, exclude=data.Subset('train[:10]', 1, per_class=True))


@pytest.fixture
def fresh_label_cache():
  shift.imagenet_wnids.cache_clear()
  shift.class_indices.cache_clear()
  yield
  shift.imagenet_wnids.cache_clear()
  shift.class_indices.cache_clear()


def _point_label_file_at(monkeypatch, path):
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(imagenet_common, 'label_names_file', lambda: str(path))


def test_subset_indices_follow_the_label_file(fresh_label_cache):
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common  # pylint: disable=g-import-not-at-top
  with open(imagenet_common.label_names_file()) as f:
    order = f.read().split()
  subset = data.get_task('imagenet_a').class_subset
  assert list(subset) == sorted(order.index(w) for w in shift.IMAGENET_A_WNIDS)


@pytest.mark.parametrize('name', ['imagenet_a', 'imagenet_r'])
def test_unreadable_label_file_is_an_error(name, tmp_path, monkeypatch, fresh_label_cache):
  missing = tmp_path / 'labels.txt'
  _point_label_file_at(monkeypatch, missing)
  task = data.get_task(name)
  assert task.class_subset is not None  # Never "all 1000 classes" in place of the subset.
  with pytest.raises(data.DataError, match=f'{missing}.*reinstall tensorflow-datasets'):
    data.class_mask(name)
  with pytest.raises(data.DataError, match='FileNotFoundError'):
    len(task.class_subset)
  assert data.class_mask('imagenet_v2').all()  # Other tasks are unaffected.


def test_wrong_label_file_content_is_an_error(tmp_path, monkeypatch, fresh_label_cache):
  labels = tmp_path / 'labels.txt'
  _point_label_file_at(monkeypatch, labels)
  labels.write_text('\n'.join(f'n{i:08d}' for i in range(999)))
  with pytest.raises(data.DataError, match='lists 999 ids, not 1000'):
    data.class_mask('imagenet_a')
  shift.imagenet_wnids.cache_clear()
  labels.write_text('\n'.join(f'n{i:08d}' for i in range(1000)))
  with pytest.raises(data.DataError, match=f'lacks the WordNet ids n01498041.*{labels}'):
    data.class_mask('imagenet_a')


def test_missing_tfds_module_is_an_error(monkeypatch, fresh_label_cache):
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets.datasets.imagenet2012.imagenet_common', None)
  with pytest.raises(data.DataError, match='ModuleNotFoundError.*could not be located.*reinstall tensorflow-datasets'):
    data.class_mask('imagenet_r')

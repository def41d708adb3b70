"""All tasks through the real TFDS code path over tfds.testing.mock_data; missing-data errors."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jpeft import data
from jpeft.data import tfds_source, vtab

SIZE = 16  # Small images keep the suite fast; the shapes logic is the same at 224.
OBJECT_TASKS = ('clevr_count', 'clevr_dist', 'kitti')


@pytest.mark.parametrize('name', vtab.VTAB_TASKS)
def test_every_vtab_task_loads(name, objects_as_dataset_fn):
  kwargs = {'as_dataset_fn': objects_as_dataset_fn} if name in OBJECT_TASKS else {}
  task = data.get_task(name)
  with tfds.testing.mock_data(num_examples=6, **kwargs):
    arrays = data.load_split_arrays(name, 'train800val200', image_size=SIZE)
    batch = next(iter(tfds.as_numpy(data.get_dataset(
        name, 'test', batch_size=4, train=True, image_size=SIZE, augment='rrc+hflip'))))
  for out, n in ((arrays, 6), (batch, 4)):
    assert out['image'].shape == (n, SIZE, SIZE, 3)
    assert out['image'].dtype == np.float32 and out['label'].dtype == np.int32
    assert out['image'].min() >= 0.0 and out['image'].max() <= 1.0
    assert out['label'].min() >= 0 and out['label'].max() < task.num_classes


@pytest.mark.parametrize('name', ['imagenet', 'imagenet_v2', 'imagenet_sketch', 'imagenet_a',
                                  'imagenet_r'])
def test_shift_sets_load(name):
  with tfds.testing.mock_data(num_examples=3):
    out = data.load_split_arrays(name, 'test', image_size=SIZE, normalization='clip')
  assert out['image'].shape == (3, SIZE, SIZE, 3) and out['label'].max() < 1000


def test_train_pipeline_repeats_and_drops_remainder():
  with tfds.testing.mock_data(num_examples=5):
    ds = data.get_dataset('dtd', 'train800', batch_size=2, train=True, image_size=SIZE,
                          num_epochs=3)
    shapes = [b['image'].shape[0] for b in tfds.as_numpy(ds)]
    eval_ds = data.get_dataset('dtd', 'test', batch_size=2, train=False, image_size=SIZE)
    eval_sizes = [b['label'].shape[0] for b in tfds.as_numpy(eval_ds)]
    shard = data.load_split_arrays('dtd', 'test', image_size=SIZE)
  assert shapes == [2] * 7  # 15 examples, remainder dropped.
  assert eval_sizes == [2, 2, 1]  # One ordered pass, remainder kept.
  assert shard['image'].shape[0] == 5


def test_sharding_partitions_the_split():
  with tfds.testing.mock_data(num_examples=6):
    full = data.load_split_arrays('dtd', 'test', image_size=SIZE)['label']
    parts = [np.concatenate([b['label'] for b in tfds.as_numpy(data.get_dataset(
        'dtd', 'test', batch_size=8, train=False, image_size=SIZE, shard_index=i,
        num_shards=2))]) for i in range(2)]
  assert sorted(np.concatenate(parts)) == sorted(full)
  assert list(parts[0]) == list(full[0::2])


def test_per_class_subset_selection():
  labels = np.repeat(np.arange(4), 10)
  idx = tfds_source.select_subset(labels, data.Subset('train', 3, seed=1, per_class=True))
  assert len(idx) == 12 and np.all(np.bincount(labels[idx]) == 3)
  again = tfds_source.select_subset(labels, data.Subset('train', 3, seed=1, per_class=True))
  other = tfds_source.select_subset(labels, data.Subset('train', 3, seed=2, per_class=True))
  assert list(idx) == list(again) and list(idx) != list(other)
  uniform = tfds_source.select_subset(labels, data.Subset('train', 7, seed=0))
  assert len(set(uniform)) == 7
  with pytest.raises(data.DataError, match='only 40'):
    tfds_source.select_subset(labels, data.Subset('train', 41))


def test_subset_through_tfds():
  with tfds.testing.mock_data(num_examples=12):
    subset = data.Subset('train', 4, seed=0)
    out = data.load_split_arrays('dtd', subset, image_size=SIZE)
    full = data.load_split_arrays('dtd', 'train', image_size=SIZE)
  assert out['image'].shape[0] == 4
  # Every subset image is one of the full split's images, in split order.
  rows = [int(np.argmin(np.abs(full['image'] - im).sum(axis=(1, 2, 3)))) for im in out['image']]
  assert rows == sorted(rows) and len(set(rows)) == 4
  np.testing.assert_array_equal(full['image'][rows], out['image'])


def test_missing_dataset_without_download(tmp_path):
  with pytest.raises(data.DataError) as e:
    data.get_dataset('dtd', 'train800', batch_size=2, train=False, data_dir=str(tmp_path),
                     download=False)
  msg = str(e.value)
  assert 'dtd' in msg and str(tmp_path) in msg and 'tfds build dtd' in msg


def test_missing_manual_dataset_says_where_to_put_files(tmp_path):
  with pytest.raises(data.DataError) as e:
    data.get_dataset('resisc45', 'train800', batch_size=2, train=False, data_dir=str(tmp_path))
  msg = str(e.value)
  assert str(tmp_path / 'downloads' / 'manual') in msg
  assert 'tfds build resisc45' in msg and 'RESISC45' in msg


def test_bad_arguments():
  with pytest.raises(data.DataError, match="Unknown source 'disk'"):
    data.get_dataset('dtd', 'test', batch_size=2, train=False, source='disk')
  with pytest.raises(data.DataError, match="Unknown normalization 'foo'"):
    data.get_dataset('dtd', 'test', batch_size=2, train=False, normalization='foo')
  with pytest.raises(data.DataError, match='Unknown augmentation'):
    data.get_dataset('dtd', 'test', batch_size=2, train=True, augment='rrc+mixup')
  with pytest.raises(data.DataError, match='Unknown task'):
    data.get_dataset('cifar1000', 'test', batch_size=2, train=False)


def test_num_examples_from_split_table():
  assert data.num_examples('cifar100', 'train800val200') == 1000
  assert data.num_examples('smallnorb_azi', 'test') == 12150

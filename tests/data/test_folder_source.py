"""Processed VTAB-1K folders and plain image folders, and their equivalence with TFDS."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jpeft import data
from jpeft.data import folder_source

SIZE = 16


def _write_png(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tf.io.write_file(path, tf.io.encode_png(image))


def _export_processed(root, task, splits):
  """Writes `task`'s examples in the processed layout: images/<i>.png and one list per split.

  Under mock_data every TFDS split yields the same examples, so one export serves all lists.
  """
  task_dir = os.path.join(root, task)
  ds, _ = data.load_examples(task, splits[0])
  lines = []
  for i, ex in enumerate(tfds.as_numpy(ds)):
    rel = f'images/{i:04d}.png'
    _write_png(os.path.join(task_dir, rel), ex['image'])
    lines.append(f'{rel} {ex["label"]}')
  for split in splits:
    with open(os.path.join(task_dir, f'{split}.txt'), 'w') as f:
      f.write('\n'.join(lines) + '\n')
  return task_dir


def test_processed_folder_equals_tfds(tmp_path):
  root = str(tmp_path)
  with tfds.testing.mock_data(num_examples=5):
    _export_processed(root, 'caltech101', data.VTAB_1K_SPLITS)
    for split in ('train800', 'test'):
      from_tfds = data.load_split_arrays('caltech101', split, image_size=SIZE)
      from_folder = data.load_split_arrays('caltech101', split, source='folder',
                                           folder_root=root, image_size=SIZE)
      np.testing.assert_array_equal(from_tfds['image'], from_folder['image'])
      np.testing.assert_array_equal(from_tfds['label'], from_folder['label'])
  assert from_folder['image'].shape == (5, SIZE, SIZE, 3)
  for split in data.VTAB_1K_SPLITS:
    assert data.num_examples('caltech101', split, source='folder', folder_root=root) == 5


def test_processed_folder_alias_and_grey_images(tmp_path):
  # NOAH names the CIFAR-100 folder 'cifar'; grey-scale PNGs are tiled to RGB.
  task_dir = tmp_path / 'cifar'
  _write_png(str(task_dir / 'a b.png'), np.full((5, 7, 1), 200, np.uint8))  # Space in name.
  (task_dir / 'test.txt').write_text('a b.png 99\n\n')
  out = data.load_split_arrays('cifar100', 'test', source='folder', folder_root=str(tmp_path),
                               image_size=SIZE)
  assert out['image'].shape == (1, SIZE, SIZE, 3) and list(out['label']) == [99]
  np.testing.assert_allclose(out['image'], 200 / 255, atol=1e-6)


def test_image_folder(tmp_path):
  rng = np.random.default_rng(0)
  layout = {'train': {'cat': 2, 'dog': 1, 'zebra': 1}, 'test': {'dog': 2, 'cat': 1}}
  for split, classes in layout.items():
    for cls, n in classes.items():
      for i in range(n):
        _write_png(str(tmp_path / 'pets' / split / cls / f'{i}.png'),
                   rng.integers(0, 256, (9, 11, 3), dtype=np.uint8))
  (tmp_path / 'pets' / 'train' / 'cat' / 'notes.txt').write_text('not an image')
  train = data.load_split_arrays('pets', 'train', source='imagefolder',
                                 folder_root=str(tmp_path), image_size=SIZE)
  test = data.load_split_arrays('pets', 'test', source='imagefolder', folder_root=str(tmp_path),
                                image_size=SIZE, normalization='inception')
  assert list(train['label']) == [0, 0, 1, 2]  # cat, cat, dog, zebra (sorted class names).
  assert list(test['label']) == [0, 1, 1]      # Same indices although 'zebra' is absent.
  assert test['image'].min() >= -1.0 and test['image'].max() <= 1.0
  assert data.num_classes('pets', source='imagefolder', folder_root=str(tmp_path)) == 3
  batch = next(iter(tfds.as_numpy(data.get_dataset(
      'pets', 'train', batch_size=2, train=True, source='imagefolder',
      folder_root=str(tmp_path), image_size=SIZE, augment='rrc+hflip+vflip'))))
  assert batch['image'].shape == (2, SIZE, SIZE, 3)
  epoch = [b['label'] for b in tfds.as_numpy(data.get_dataset(
      'pets', 'train', batch_size=4, train=True, source='imagefolder', num_epochs=1,
      folder_root=str(tmp_path), image_size=SIZE))]
  assert sorted(np.concatenate(epoch)) == [0, 0, 1, 2]  # Shuffled, every file once.


@pytest.mark.parametrize('line, match', [
    ('images/0.png', 'line 2: malformed line'),
    ('images/0.png cat', 'line 2: malformed line'),
    ('images/0.png 12', 'label 12 is outside'),
])
def test_malformed_list_lines(tmp_path, line, match):
  task_dir = tmp_path / 'dtd'
  _write_png(str(task_dir / 'images' / '0.png'), np.zeros((4, 4, 3), np.uint8))
  (task_dir / 'val200.txt').write_text(f'images/0.png 1\n{line}\n')
  with pytest.raises(data.DataError, match=match):
    folder_source.read_list_file(str(task_dir / 'val200.txt'), num_classes=10)
  if 'label 12' not in match:
    with pytest.raises(data.DataError, match='val200.txt'):
      data.load_split_arrays('dtd', 'val200', source='folder', folder_root=str(tmp_path))


def test_folder_errors(tmp_path):
  with pytest.raises(data.DataError, match='folder_root'):
    data.get_dataset('dtd', 'test', batch_size=2, train=False, source='folder')
  with pytest.raises(data.DataError, match=r'tried .*dtd'):
    data.get_dataset('dtd', 'test', batch_size=2, train=False, source='folder',
                     folder_root=str(tmp_path))
  (tmp_path / 'dtd').mkdir()
  (tmp_path / 'dtd' / 'test.txt').write_text('missing.png 0\n')
  with pytest.raises(data.DataError, match="no list file .*train800.txt.*\\['test'\\]"):
    data.get_dataset('dtd', 'train800', batch_size=2, train=False, source='folder',
                     folder_root=str(tmp_path))
  with pytest.raises(data.DataError, match='missing.png, which does not exist'):
    data.get_dataset('dtd', 'test', batch_size=2, train=False, source='folder',
                     folder_root=str(tmp_path))
  with pytest.raises(data.DataError, match="Split 'val' has no folder"):
    (tmp_path / 'mine' / 'train' / 'a').mkdir(parents=True)
    data.get_dataset('mine', 'val', batch_size=2, train=False, source='imagefolder',
                     folder_root=str(tmp_path))


def test_load_split_arrays_disk_cache(tmp_path):
  with tfds.testing.mock_data(num_examples=3):
    first = data.load_split_arrays('dtd', 'val200', image_size=SIZE, cache_dir=str(tmp_path))
  files = sorted(p.name for p in tmp_path.iterdir())
  assert len(files) == 2 and all('dtd_val200_tfds_16_none' in f for f in files)
  again = data.load_split_arrays('dtd', 'val200', image_size=SIZE, cache_dir=str(tmp_path))
  np.testing.assert_array_equal(first['image'], again['image'])  # Read back without TFDS.
  assert again['image'].dtype == np.float32 and again['label'].dtype == np.int32


def test_class_mask():
  class_mask = data.class_mask
  assert class_mask('imagenet_r').sum() == 200 and class_mask('imagenet_r').shape == (1000,)
  assert class_mask('dtd').all()


def _write_jpeg_task(task_dir, n=4):
  """<task_dir>/images/<i>.jpg (8x8, grey level 40 i) listed in test.txt with label i; returns the paths."""
  paths = []
  for i in range(n):
    path = os.path.join(str(task_dir), 'images', f'{i}.jpg')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_jpeg(np.full((8, 8, 3), 40 * i, np.uint8)))
    paths.append(path)
  (task_dir / 'test.txt').write_text(''.join(f'images/{i}.jpg {i}\n' for i in range(n)))
  return paths


def _corrupt(path):
  with open(path, 'rb') as f:
    head = f.read()[:20]  # The JPEG markers survive, the compressed data do not.
  with open(path, 'wb') as f:
    f.write(head + b'\x00' * 200)


def _one_line_error(**kwargs):
  with pytest.raises(data.DataError) as error:
    data.load_split_arrays('dtd', 'test', source='folder', image_size=SIZE, **kwargs)
  assert '\n' not in str(error.value)
  return str(error.value)


def test_corrupt_jpeg_is_named_with_its_list_line(tmp_path):
  paths = _write_jpeg_task(tmp_path / 'dtd')
  _corrupt(paths[1])
  message = _one_line_error(folder_root=str(tmp_path))
  assert f'test.txt): line 2: {paths[1]} cannot be decoded' in message
  assert 'skip_bad_images=True' in message and paths[2] not in message


def test_text_file_named_jpg_is_named(tmp_path):
  paths = _write_jpeg_task(tmp_path / 'dtd')
  with open(paths[2], 'w') as f:
    f.write('not an image\n')
  message = _one_line_error(folder_root=str(tmp_path))
  assert f'line 3: {paths[2]} is not an image file' in message
  # The image-folder layout has no list file: the file alone is named.
  image_dir = tmp_path / 'pets' / 'train' / 'cat'
  image_dir.mkdir(parents=True)
  (image_dir / 'a.jpg').write_text('not an image\n')
  _write_png(str(image_dir / 'b.png'), np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(data.DataError, match=f"in split 'train' .*: {image_dir / 'a.jpg'} is not an image file"):
    data.get_dataset('pets', 'train', batch_size=2, train=True, source='imagefolder', folder_root=str(tmp_path))


def test_listed_missing_file_is_named(tmp_path):
  paths = _write_jpeg_task(tmp_path / 'dtd')
  os.remove(paths[1])  # Neither the first nor the last line, which were the only ones checked before.
  message = _one_line_error(folder_root=str(tmp_path))
  assert f'line 2: {paths[1]} does not exist' in message
  with pytest.raises(data.DataError, match='line 2: .*does not exist'):
    data.num_examples('dtd', 'test', source='folder', folder_root=str(tmp_path))


def test_skip_bad_images_leaves_them_out_and_names_them(tmp_path, caplog):
  paths = _write_jpeg_task(tmp_path / 'dtd', n=5)
  _corrupt(paths[1])
  os.remove(paths[3])
  out = data.load_split_arrays('dtd', 'test', source='folder', folder_root=str(tmp_path), image_size=SIZE,
                               skip_bad_images=True)
  assert list(out['label']) == [0, 2, 4]  # The good images, with their own labels.
  np.testing.assert_allclose(out['image'][:, 0, 0, 0], np.array([0, 80, 160]) / 255, atol=3 / 255)
  warning = '\n'.join(r.getMessage() for r in caplog.records)
  assert '2 bad images of 5' in warning and paths[1] in warning and paths[3] in warning
  examples = data.open_examples('dtd', 'test', source='folder', folder_root=str(tmp_path), skip_bad_images=True)
  assert examples.size == 3 and [(b.path, b.line) for b in examples.skipped] == [(paths[1], 2), (paths[3], 4)]
  assert data.num_examples('dtd', 'test', source='folder', folder_root=str(tmp_path), skip_bad_images=True) == 3

"""A real (not mocked) TFDS builder registered as a task in one line, as mini-VTAB does."""
import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from jpeft import data
from jpeft.data import tasks

SIZES = {'train': 12, 'validation': 5, 'test': 7}


class JpeftTinyTest(tfds.core.GeneratorBasedBuilder):
  """8x8 images whose pixels all equal 10 * label + index, so examples are identifiable."""
  VERSION = tfds.core.Version('1.0.0')

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # As jpeft.data.mini_vtab: TFDS would otherwise resolve the test package with `importlib_resources`,
    # which tensorflow-datasets does not install.
    return epath.Path(__file__)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(8, 8, 3)),
        'label': tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {name: self._generate_examples(name, n) for name, n in SIZES.items()}

  def _generate_examples(self, split, n):
    for i in range(n):
      label = i % 3
      yield f'{split}{i}', {'image': np.full((8, 8, 3), 10 * label + i, np.uint8), 'label': label}


@pytest.fixture
def tiny_task(tmp_path):
  task = data.register_task(data.Task(name='jpeft_tiny_test', builder='jpeft_tiny_test:1.*.*',
                                      num_classes=3, group='mini'), overwrite=True)
  yield task, str(tmp_path)
  tasks._REGISTRY.pop(task.name, None)


def test_registered_builder_end_to_end(tiny_task):
  task, data_dir = tiny_task
  with pytest.raises(data.DataError, match='tfds build jpeft_tiny_test'):
    data.load_split_arrays(task.name, 'test', data_dir=data_dir, download=False)
  train = data.load_split_arrays(task.name, 'train800', data_dir=data_dir, image_size=8)
  assert train['image'].shape == (12, 8, 8, 3)  # train[:800] of a 12-example split.
  both = data.load_split_arrays(task.name, 'train800val200', data_dir=data_dir, image_size=8)
  assert both['image'].shape[0] == 17
  test = data.load_split_arrays(task.name, 'test', data_dir=data_dir, image_size=8)
  # Pixels encode (label, index): the split is the right one, in order, and unchanged.
  pixel = np.round(test['image'][:, 0, 0, 0] * 255).astype(int)
  assert sorted(pixel) == sorted(10 * (i % 3) + i for i in range(7))
  assert set(test['label']) <= {0, 1, 2}
  subset = data.load_split_arrays(task.name, data.Subset('train', 2, seed=0, per_class=True),
                                  data_dir=data_dir, image_size=8)
  assert sorted(np.bincount(subset['label'])) == [2, 2, 2]
  assert data.num_examples(task.name, data.Subset('train', 2, per_class=True),
                           data_dir=data_dir) == 6
  assert data.num_examples(task.name, 'val', data_dir=data_dir) == 5
  assert data.num_examples(task.name, 'train800val200', data_dir=data_dir) == 17


def test_clamp_split():
  from jpeft.data.tfds_source import clamp_split
  sizes = {'train': 12, 'validation': 5}
  assert clamp_split('train[:800]+validation[:200]', sizes) == 'train[:12]+validation[:5]'
  assert clamp_split('train[900:1100]', sizes) == 'train[12:12]'
  assert clamp_split('train[2:4]+test', sizes) == 'train[2:4]+test'
  assert clamp_split('train[:800]', {}) == 'train[:800]'

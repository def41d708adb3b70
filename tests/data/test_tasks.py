"""Task registry and split tables against /work/shared/spec/vtab.md."""
import pytest

from jpeft import data
from jpeft.data import tasks, vtab

# From the spec table: task -> (group, classes, builder, val200, test).
SPEC = {
    'cifar100': ('natural', 100, 'cifar100:3.*.*', 'train[45000:45200]', 'test'),
    'caltech101': ('natural', 102, 'caltech101:3.*.*', 'train[2754:2954]', 'test'),
    'dtd': ('natural', 47, 'dtd:3.*.*', 'validation[:200]', 'test'),
    'oxford_flowers102': ('natural', 102, 'oxford_flowers102:2.*.*', 'validation[:200]', 'test'),
    'oxford_iiit_pet': ('natural', 37, 'oxford_iiit_pet:3.*.*', 'train[2944:3144]', 'test'),
    'svhn': ('natural', 10, 'svhn_cropped:3.*.*', 'train[65931:66131]', 'test'),
    'sun397': ('natural', 397, 'sun397/tfds:4.*.*', 'validation[:200]', 'test'),
    'patch_camelyon': ('specialized', 2, 'patch_camelyon:2.*.*', 'validation[:200]', 'test'),
    'eurosat': ('specialized', 10, 'eurosat/rgb:2.*.*', 'train[16200:16400]', 'train[21600:]'),
    'resisc45': ('specialized', 45, 'resisc45:3.*.*', 'train[18900:19100]', 'train[25200:]'),
    'diabetic_retinopathy': ('specialized', 5, 'diabetic_retinopathy_detection/btgraham-300:3.*.*',
                             'validation[:200]', 'test'),
    'clevr_count': ('structured', 8, 'clevr:3.*.*', 'train[63000:63200]', 'validation'),
    'clevr_dist': ('structured', 6, 'clevr:3.*.*', 'train[63000:63200]', 'validation'),
    'dmlab': ('structured', 6, 'dmlab:2.0.1', 'validation[:200]', 'test'),
    'kitti': ('structured', 4, 'kitti:3.*.*', 'validation[:200]', 'test'),
    'dsprites_loc': ('structured', 16, 'dsprites:2.*.*', 'train[589824:590024]', 'train[663552:]'),
    'dsprites_ori': ('structured', 16, 'dsprites:2.*.*', 'train[589824:590024]', 'train[663552:]'),
    'smallnorb_azi': ('structured', 18, 'smallnorb:2.*.*', 'test[:200]', 'test[12150:]'),
    'smallnorb_ele': ('structured', 9, 'smallnorb:2.*.*', 'test[:200]', 'test[12150:]'),
}


def test_percent_cuts_in_spec_equal_absolute_indices():
  # The spec writes some cuts in percent; our tables use the equivalent absolute indices.
  assert 80 * 27000 // 100 == 21600 and 80 * 31500 // 100 == 25200
  assert 90 * 737280 // 100 == 663552 and 24300 // 2 == 12150
  assert 90 * 3060 // 100 == 2754 and 80 * 3680 // 100 == 2944 and 90 * 73257 // 100 == 65931


@pytest.mark.parametrize('name', sorted(SPEC))
def test_vtab_task_matches_spec(name):
  group, classes, builder, val200, test = SPEC[name]
  task = data.get_task(name)
  assert (task.group, task.num_classes, task.builder) == (group, classes, builder)
  assert task.splits['train800'] == 'train[:800]'
  assert task.splits['val200'] == val200
  assert task.splits['train800val200'] == f'train[:800]+{val200}'
  assert task.splits['test'] == test
  for split, n in (('train800', 800), ('val200', 200), ('train800val200', 1000)):
    assert task.split_sizes[split] == n
  assert {'train', 'val', 'trainval'} <= set(task.splits)


def test_full_splits_do_not_overlap():
  sizes = vtab.TFDS_SPLIT_SIZES
  for name in SPEC:
    task = data.get_task(name)
    raw = sizes[task.dataset_name]
    s = task.split_sizes
    assert s['train'] + s['val'] == s['trainval'], name
    if task.splits['val'].startswith('train'):  # Cut out of TFDS train: train | val | test.
      assert vtab.split_size(task.splits['train'], raw) + s['val'] <= raw['train']
  # CLEVR-distance many-shot: 63k train, 7k val, disjoint, test = TFDS validation.
  clevr = data.get_task('clevr_dist')
  assert clevr.splits['train'] == 'train[:63000]' and clevr.splits['val'] == 'train[63000:]'
  assert clevr.split_sizes['trainval'] == 70000


def test_groups_and_listing():
  assert len(data.list_tasks('natural')) == 7
  assert len(data.list_tasks('specialized')) == 4
  assert len(data.list_tasks('structured')) == 8
  assert set(SPEC) <= set(data.list_tasks())
  assert vtab.VTAB_TASKS == tuple(SPEC) or set(vtab.VTAB_TASKS) == set(SPEC)


def test_shift_sets_have_200_class_masks():
  a, r = data.get_task('imagenet_a'), data.get_task('imagenet_r')
  assert len(a.class_subset) == 200 and len(r.class_subset) == 200
  assert all(0 <= i < 1000 for i in list(a.class_subset) + list(r.class_subset))
  assert a.class_subset != r.class_subset
  assert data.get_task('imagenet_v2').class_subset is None
  assert data.get_task('imagenet').manual_download


def test_unknown_task_lists_known_names():
  with pytest.raises(data.DataError, match="Unknown task 'cifar10'.*cifar100.*clevr_count"):
    data.get_task('cifar10')
  with pytest.raises(ValueError):  # DataError is a ValueError.
    data.get_task('nope')


def test_unknown_split_lists_known_splits():
  with pytest.raises(data.DataError, match="no split 'train1000'.*train800"):
    data.get_task('dtd').split('train1000')


def test_register_simple_task_in_one_line():
  task = data.register_task(data.Task(name='_test_mini', builder='mini_thing', num_classes=3))
  assert data.get_task('_test_mini') is task
  assert task.splits['train800'] == 'train[:800]'
  assert task.splits['val200'] == 'validation[:200]'
  assert task.splits['test'] == 'test'
  data.register_task(task)  # Identical re-registration is fine.
  with pytest.raises(data.DataError, match='already registered'):
    data.register_task(data.Task(name='_test_mini', builder='other', num_classes=3))
  data.register_task(data.Task(name='_test_mini', builder='other', num_classes=3), overwrite=True)
  tasks._REGISTRY.pop('_test_mini')


def test_split_size_parser():
  sizes = {'train': 1000, 'test': 50}
  assert vtab.split_size('train[:800]+test[10:20]', sizes) == 810
  assert vtab.split_size('test[40:]', sizes) == 10
  assert vtab.split_size('train[-100:]', sizes) == 100

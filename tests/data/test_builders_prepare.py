"""Every TFDS builder behind jpeft's VTAB-1K and ImageNet tasks gets past its own imports with
only what setup.py installs.

`download_and_prepare` runs for real (through `tfds_source.make_builder`, as a user's first run
does) against a download manager whose fetching methods raise `_NoNetwork`: that, or TFDS's
manual-directory error for datasets it cannot download, must be what stops it, never an
ImportError. The modules a builder's generation step imports lazily (`tfds.core.lazy_imports.X`)
are imported too, and must be declared in setup.py. Run this file in a fresh
`pip install -e ".[test]"` venv to show that setup.py is complete.
"""
import ast
import importlib
import pathlib
import re
import sys
import types
from importlib import metadata
from unittest import mock

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import dataset_builder
from tensorflow_datasets.core.download import download_manager
from tensorflow_datasets.core.utils import gcs_utils, lazy_imports_utils

from jpeft import data
from jpeft.data import tfds_source

SETUP_PY = pathlib.Path(__file__).resolve().parents[2] / 'setup.py'
GROUPS = ('natural', 'specialized', 'structured', 'shift')
FETCH_METHODS = ('download', 'download_and_extract', 'extract', 'iter_archive',
                 'download_kaggle_data', 'download_checksums')
# TFDS's dataset_builder imports it (lazily) on every Python, while TFDS's own metadata asks for
# it only below 3.9; the prepare test below finds it missing in a fresh venv.
PREPARE_MODULES = ('importlib_resources',)


def _one_task_per_builder() -> list[str]:
  seen, names = set(), []
  for group in GROUPS:
    for name in data.list_tasks(group):
      builder = data.get_task(name).builder
      if builder not in seen:
        seen.add(builder)
        names.append(name)
  return names


TASKS = _one_task_per_builder()


class _NoNetwork(Exception):
  """Raised where the download manager would fetch or unpack files."""


def _refuse(method):
  def fetch(self, *args, **kwargs):
    raise _NoNetwork(method)
  return fetch


@pytest.fixture
def no_network():
  patches = [mock.patch.object(download_manager.DownloadManager, m, _refuse(m))
             for m in FETCH_METHODS]
  patches += [
      mock.patch.object(gcs_utils, '_is_gcs_disabled', True),  # No prepared copy from GCS.
      # ImageNet needs ~150 GB; the tmp dir's free space is not what this test is about.
      mock.patch.object(dataset_builder.utils, 'has_sufficient_disk_space', return_value=True),
  ]
  for p in patches:
    p.start()
  yield
  for p in patches:
    p.stop()


def test_every_builder_is_covered():
  # clevr, dsprites and smallnorb serve two tasks each: 16 VTAB builders and 5 ImageNet sets.
  assert len(TASKS) == 21


@pytest.mark.parametrize('name', TASKS)
def test_download_and_prepare_reaches_the_download(name, tmp_path, no_network):
  task = data.get_task(name)
  with pytest.raises(data.DataError) as info:
    tfds_source.make_builder(task, data_dir=str(tmp_path), download=True)
  cause = info.value.__cause__
  manual_dir_error = (isinstance(cause, AssertionError) and 'Manual directory' in str(cause))
  assert isinstance(cause, _NoNetwork) or manual_dir_error, (
      f'{name}: stopped by {type(cause).__name__}: {cause}')
  assert manual_dir_error == bool(tfds.builder_cls(task.dataset_name).MANUAL_DOWNLOAD_INSTRUCTIONS)


def _builder_modules(task) -> list[types.ModuleType]:
  """The TFDS modules with the builder's code: its class hierarchy's and what they import
  from TFDS's dataset packages (e.g. imagenet_common for the ImageNet sets)."""
  cls = tfds.builder_cls(task.dataset_name)
  modules = [sys.modules[c.__module__] for c in cls.__mro__
             if c.__module__.startswith('tensorflow_datasets.')
             and not c.__module__.startswith('tensorflow_datasets.core')]
  for module in list(modules):
    modules += [v for v in vars(module).values() if isinstance(v, types.ModuleType)
                and v.__name__.startswith(('tensorflow_datasets.datasets.',
                                           'tensorflow_datasets.image_classification.'))]
  return modules


def _lazy_imports(module: types.ModuleType) -> set[str]:
  """Top-level names of the modules `module`'s code imports lazily, imported here."""
  source = pathlib.Path(module.__file__).read_text()
  out = set()
  for attr in set(re.findall(r'lazy_imports\.(\w+)', source)):
    out.add(getattr(tfds.core.lazy_imports, attr).__name__.split('.')[0])
  for attr in set(re.findall(r'lazy_imports_utils import (\w+)', source)):
    lazy_module = getattr(lazy_imports_utils, attr)
    out.add(importlib.import_module(lazy_module.module_name).__name__.split('.')[0])
  return out


def _canonical(requirement: str) -> str:
  return re.split(r'[<>=!~;\[ ]', requirement, maxsplit=1)[0].lower().replace('_', '-')


def _declared_requirements() -> set[str]:
  for node in ast.walk(ast.parse(SETUP_PY.read_text())):
    if isinstance(node, ast.keyword) and node.arg == 'install_requires':
      return {_canonical(r) for r in ast.literal_eval(node.value)}
  raise AssertionError(f'No install_requires in {SETUP_PY}.')


def _assert_declared(module_name: str, declared: set[str], who: str) -> None:
  distributions = {_canonical(d) for d in metadata.packages_distributions().get(module_name, [])}
  assert distributions & declared, (
      f'{who} imports {module_name} (from {sorted(distributions)}), which setup.py does not list')


def test_generation_modules_are_installed_and_declared():
  declared = _declared_requirements()
  found = {}
  for name in TASKS:
    task = data.get_task(name)
    for module in _builder_modules(task):
      for imported in _lazy_imports(module):  # ImportError here: a module missing.
        found.setdefault(imported, set()).add(task.dataset_name)
  # The scan must see what the builders use (svhn_cropped reads .mat files with scipy).
  assert 'svhn_cropped' in found.get('scipy', set()), found
  for imported, builders in found.items():
    _assert_declared(imported, declared, ', '.join(sorted(builders)))
  for imported in PREPARE_MODULES:
    importlib.import_module(imported)
    _assert_declared(imported, declared, "TFDS's download_and_prepare")


@pytest.mark.parametrize('where', ['builder', 'prepare'])
def test_missing_module_is_named(where, tmp_path, no_network):
  missing = ModuleNotFoundError("No module named 'cv2'", name='cv2')
  task = data.get_task('kitti')
  target = (mock.patch.object(tfds, 'builder', side_effect=missing) if where == 'builder' else
            mock.patch.object(download_manager.DownloadManager, 'download', side_effect=missing))
  with target, pytest.raises(data.DataError, match=r"needs the Python module 'cv2'.*pip install"):
    tfds_source.make_builder(task, data_dir=str(tmp_path))

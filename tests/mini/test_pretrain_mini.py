"""experiments/pretrain_mini.py: a second stage starts from an earlier backbone with a new head for its label."""
import json
import os

import numpy as np

import jpeft
from jpeft.data import mini_vtab
from tests.helpers import load_module

pretrain_mini = load_module('experiments/pretrain_mini.py')
ASSET = os.path.join(os.path.dirname(jpeft.__file__), 'assets', 'mini-ViT_8.npz')


def test_geometry_label_covers_its_classes_and_is_seeded():
  images, labels = mini_vtab.generate('mini_upstream_geometry', 'train', 300, seed=3)
  again, labels_again = mini_vtab.generate('mini_upstream_geometry', 'train', 300, seed=3)
  np.testing.assert_array_equal(images, again)
  np.testing.assert_array_equal(labels, labels_again)
  assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8
  assert labels.min() >= 0 and labels.max() < mini_vtab.UPSTREAM_GEOMETRY.num_classes == 144
  assert len(np.unique(labels)) > 100  # 300 draws of 144 classes


def test_second_stage_starts_from_the_given_backbone(tmp_path):
  out = str(tmp_path / 'stage2.npz')
  record = pretrain_mini.main(['--upstream=mini_upstream_geometry', f'--init={ASSET}', '--steps=2',
                               '--warmup_steps=1', '--num_train=64', '--num_test=32', '--batch_size=16',
                               '--lr=1e-9', f'--out={out}'])
  assert record['num_classes'] == 144 and record['init'] == ASSET
  assert record['upstream_task'].startswith('mini_upstream_geometry')
  with open(out.replace('.npz', '.json')) as f:
    assert json.load(f)['init'] == ASSET
  stage1, stage2 = np.load(ASSET), np.load(out)
  # lr 1e-9: the backbone is still the shipped one; the head is new (freshly initialised for 144 classes).
  for key in stage1.files:
    if not key.startswith('head'):
      np.testing.assert_allclose(stage2[key], stage1[key], atol=1e-5, err_msg=key)
  assert stage2['head/kernel'].shape == (128, 144)
  assert np.abs(stage2['head/kernel'] - stage1['head/kernel']).max() > 1e-3

"""experiments/probe_mini.py: frozen features of a mini backbone and the val-selected logistic-regression probe."""
import os

import numpy as np

import jpeft
from jpeft.data import mini_vtab
from tests.helpers import load_module

probe_mini = load_module('experiments/probe_mini.py')
ASSET = os.path.join(os.path.dirname(jpeft.__file__), 'assets', 'mini-ViT_8.npz')


def test_features_of_the_shipped_backbone_at_the_end_and_after_chosen_blocks():
  images, _ = mini_vtab.generate('mini_loc', 'train', 6)
  feats = probe_mini.extractor(ASSET, blocks=(0, 5))(images)
  assert set(feats) == {'cls', 'gap', 'cls_b0', 'gap_b0', 'cls_b5', 'gap_b5'}
  assert all(f.shape == (6, 128) and np.isfinite(f).all() for f in feats.values())
  # The backbone was loaded: a randomly initialised one gives other features.
  assert not np.allclose(probe_mini.extractor('random')(images)['cls'], feats['cls'], atol=1e-3)
  assert probe_mini.extractor('pixels')(images)['pixels'].shape == (6, 32 * 32 * 3)


def test_probe_separates_separable_features_and_is_at_chance_on_noise():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  signal = rng.normal(size=(300, 4)) + 4.0 * labels[:, None]
  split = lambda x: ((x[:100], labels[:100]), (x[100:150], labels[100:150]), (x[150:], labels[150:]))
  assert probe_mini.probe(*split(signal)) == 1.0
  assert probe_mini.probe(*split(rng.normal(size=(300, 4)))) < 0.7

"""The shipped mini backbone: small, in the Google ViT layout, and as accurate upstream as its record says."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import jpeft
from jpeft.checkpoints import load_pretrained
from jpeft.checkpoints.npz import read_arrays
from jpeft.data import mini_vtab
from jpeft.models.vit import create_model

ASSET = os.path.join(os.path.dirname(jpeft.__file__), 'assets', 'mini-ViT_8.npz')


def _record():
  with open(os.path.splitext(ASSET)[0] + '.json') as f:
    return json.load(f)


def test_asset_is_small_and_in_the_google_layout():
  assert os.path.getsize(ASSET) <= 5 * 2**20
  arrays = read_arrays(ASSET)
  assert arrays['Transformer/encoderblock_5/MultiHeadDotProductAttention_1/query/kernel'].shape == (128, 4, 32)
  assert 'Transformer/encoderblock_6/LayerNorm_0/scale' not in arrays  # depth 6
  assert arrays['embedding/kernel'].shape == (8, 8, 3, 128)


def test_asset_loads_through_the_importer_and_reproduces_its_upstream_accuracy():
  record = _record()
  model = create_model(record['variant'], num_classes=record['num_classes'])
  target = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))['params']
  params = load_pretrained(ASSET, target=target, style='vit', keep_head=True)
  # The first 500 of the recorded upstream test images (same generator, seed and split).
  upstream_task = record['upstream_task'].split(':')[0]
  assert mini_vtab.UPSTREAM_TASKS[upstream_task].num_classes == record['num_classes']
  images, labels = mini_vtab.generate(upstream_task, 'test', 500, seed=record['seed'])
  logits = jax.jit(model.apply)({'params': params}, images.astype(np.float32) / 255.0)
  accuracy = float(np.mean(np.argmax(logits, -1) == labels))
  assert accuracy > 10 / record['num_classes']  # far above chance: the weights were really trained
  assert abs(accuracy - record['upstream_test_accuracy']) < 0.05

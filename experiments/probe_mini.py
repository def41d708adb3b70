r"""Linear probe of a mini backbone on every Mini VTAB task: the cheap screen of `experiments/pretrain_mini.py`'s recipes.

Logistic regression on frozen features of train800 (its L2 strength chosen on val200 from {0.01, 0.1, 1}), scored on
test, for two features of each backbone: the CLS token after the final LayerNorm (what the heads read) and the mean
of the patch tokens after it (GAP); `--backbones=pixels` probes the raw pixels, `random` a randomly initialised
`mini/8`. `--blocks=0,2` adds the CLS token and the patch-token mean after those blocks (0-based, before the final
LayerNorm; features 'cls_b0', 'gap_b0', ...), to see where in the depth a task's information is. Writes one CSV row
per (backbone, feature, task):

  python experiments/probe_mini.py --backbones=jpeft/assets/mini-ViT_8.npz,random,pixels --out=/tmp/probe.csv
"""
from __future__ import annotations

import argparse
import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from jpeft.checkpoints import load_pretrained
from jpeft.data import mini_vtab
from jpeft.models.vit import Block, Encoder, create_model


def extractor(backbone: str, blocks: tuple[int, ...] = (), variant: str = 'mini/8'):
  """A function of uint8 images [N, 32, 32, 3] giving {'cls': [N, D], 'gap': [N, D], 'cls_b<k>', 'gap_b<k>' for k
  in blocks} ('pixels': {'pixels': [N, 3072]}). The backbone is loaded and compiled once, for every split and task."""
  if backbone == 'pixels':
    return lambda images: {'pixels': images.reshape(len(images), -1).astype(np.float32) / 255.0}
  model = create_model(variant, num_classes=0)
  dummy = jnp.zeros((1, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(0), dummy)['params']
  if backbone != 'random':
    params = load_pretrained(backbone, target=jax.eval_shape(lambda: params))

  @jax.jit
  def run(x):
    cls, state = model.apply({'params': params}, x.astype(jnp.float32) / 255.0,
                             capture_intermediates=lambda mdl, _: isinstance(mdl, (Encoder, Block)))
    found = state['intermediates']['encoder']
    tokens = found['__call__'][0][0][:, 1:]
    mean, var = tokens.mean(-1, keepdims=True), tokens.var(-1, keepdims=True)
    normed = (tokens - mean) / jnp.sqrt(var + 1e-6) * params['norm']['scale'] + params['norm']['bias']
    out = {'cls': cls, 'gap': normed.mean(1)}
    for k in blocks:
      after = found[f'block_{k}']['__call__'][0]
      out[f'cls_b{k}'], out[f'gap_b{k}'] = after[:, 0], after[:, 1:].mean(1)
    return out

  def features(images: np.ndarray) -> dict[str, np.ndarray]:
    outs = [run(images[i:i + 500]) for i in range(0, len(images), 500)]
    return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}
  return features


def probe(train, val, test) -> float:
  """Test accuracy of logistic regression fitted on `train` = (x, y), C picked on `val`."""
  scaler = StandardScaler().fit(train[0])
  best = None
  for c in (0.01, 0.1, 1.0):
    clf = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(train[0]), train[1])
    acc = clf.score(scaler.transform(val[0]), val[1])
    if best is None or acc > best[0]:
      best = (acc, clf)
  return float(best[1].score(scaler.transform(test[0]), test[1]))


def task_data(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{split: (uint8 images, labels)}: train800, the generated validation 200, test 1000."""
  return {split: mini_vtab.generate(name, split, n) for split, n in (('train', 800), ('validation', 200),
                                                                       ('test', 1000))}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--backbones', required=True, help="comma-separated .npz paths, 'random', 'pixels'")
  parser.add_argument('--tasks', default=','.join(mini_vtab.MINI_TASKS))
  parser.add_argument('--out', required=True, help='CSV path (rows are appended)')
  parser.add_argument('--blocks', default='', help='also probe the tokens after these blocks (0-based), e.g. 1,3')
  args = parser.parse_args(argv)
  blocks = tuple(int(k) for k in args.blocks.split(',') if k)
  # Generated once per run, in memory (43 MB for the 7 tasks): a disk cache keyed by task name would serve stale
  # images after a generator change.
  data = {task: task_data(task) for task in args.tasks.split(',')}
  new = not os.path.exists(args.out)
  with open(args.out, 'a', newline='') as f:
    writer = csv.writer(f)
    if new:
      writer.writerow(['backbone', 'feature', 'task', 'test_accuracy'])
    for backbone in args.backbones.split(','):
      features = extractor(backbone, blocks)
      for task, splits in data.items():
        feats = {s: features(images) for s, (images, _) in splits.items()}
        for kind in feats['train']:
          acc = probe(*[(feats[s][kind], splits[s][1]) for s in ('train', 'validation', 'test')])
          writer.writerow([backbone, kind, task, f'{100 * acc:.1f}'])
          f.flush()
          print(f'{backbone} {kind} {task}: {100 * acc:.1f}', flush=True)


if __name__ == '__main__':
  main()

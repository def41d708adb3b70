r"""Pre-trains the small backbone shipped with jpeft (`jpeft/assets/mini-ViT_8.npz`), in two stages.

A stand-in for ImageNet-21K pre-training, so the whole pipeline (checkpoint import, PEFT, TFDS input,
training, tuning) runs offline in minutes: a `mini/8` ViT (width 128, depth 6, 4 heads, patch 8 on
32x32 images, 1.2M parameters) trained on generated upstream tasks of `jpeft.data.mini_vtab`. None of the Mini
VTAB downstream tasks is seen. Inputs are pixels in [0, 1], as in the study's recipe and the demo config.

The weights are written in the original Google ViT `.npz` layout with `jpeft.checkpoints.save_npz`
(upstream head included), next to a `.json` record of how they were made and their upstream test
accuracy. Stage 1, from scratch on `mini_upstream` (72 classes: shape x hue bin of the main object x kind of
backdrop, with distractor objects; about 19 minutes on one CPU core, 42% upstream test accuracy):

  python experiments/pretrain_mini.py --out=stage1.npz

Stage 2 starts from stage 1's backbone with a new head for `mini_upstream_geometry` (144 classes: which of 48
objects x backdrop, colour a nuisance; a label that does not train from scratch, but after stage 1 gives the
features that make every Mini VTAB task learnable: experiments/results/mini_backbone/; about 27 minutes, 23.5%
upstream test accuracy):

  python experiments/pretrain_mini.py --upstream=mini_upstream_geometry --init=stage1.npz \
      --lr=0.001 --out=jpeft/assets/mini-ViT_8.npz

The loop is deliberately self-contained (plain optax, fresh generated data, no augmentation needed):
it is the recipe of one file, not a use of the jpeft trainer.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jpeft.checkpoints import CheckpointError, load_pretrained, merge_into, save_npz
from jpeft.data import mini_vtab
from jpeft.models.vit import create_model, decode_variant


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='output .npz path (the shipped asset is '
                      'jpeft/assets/mini-ViT_8.npz, stage 2: a stage-1 run must not overwrite it by default)')
  parser.add_argument('--variant', default='mini/8')
  parser.add_argument('--upstream', default=mini_vtab.UPSTREAM.name, choices=sorted(mini_vtab.UPSTREAM_TASKS),
                      help='the upstream label (mini_upstream_geometry: a second stage, with --init)')
  parser.add_argument('--init', default='', help='start the backbone from this .npz (its head is dropped: a new '
                      'head for --upstream); default: random initialisation')
  parser.add_argument('--num_train', type=int, default=80000, help='generated upstream training images')
  parser.add_argument('--num_test', type=int, default=2000, help='generated upstream test images')
  parser.add_argument('--steps', type=int, default=3000)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--lr', type=float, default=2e-3)
  parser.add_argument('--wd', type=float, default=0.05)
  parser.add_argument('--warmup_steps', type=int, default=200)
  parser.add_argument('--clip', type=float, default=1.0, help='global gradient-norm clip (0: none)')
  parser.add_argument('--save_every', type=int, default=0,
                      help='also write <out stem>_step<N>.npz/.json every N steps (0: only the final one)')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if min(args.num_train, args.num_test, args.steps, args.batch_size) <= 0:
    parser.error('--num_train, --num_test, --steps and --batch_size must be positive.')
  if args.warmup_steps >= args.steps:
    parser.error(f'--warmup_steps {args.warmup_steps} must be below --steps {args.steps}.')
  if args.batch_size > args.num_train:
    parser.error(f'--batch_size {args.batch_size} exceeds --num_train {args.num_train}.')
  return args


def evaluate(apply_fn, params, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
  """Top-1 accuracy of `apply_fn(params, uint8 images [B, 32, 32, 3]) -> logits` on the arrays."""
  correct = 0
  for start in range(0, len(images), batch_size):
    logits = apply_fn(params, images[start:start + batch_size])
    correct += int(np.sum(np.argmax(logits, -1) == labels[start:start + batch_size]))
  return correct / len(images)


def main(argv=None) -> dict:
  args = parse_args(argv)
  start = time.time()
  task = mini_vtab.UPSTREAM_TASKS[args.upstream]
  train_x, train_y = mini_vtab.generate(task.name, 'train', args.num_train, seed=args.seed)
  test_x, test_y = mini_vtab.generate(task.name, 'test', args.num_test, seed=args.seed)
  print(f'generated {len(train_x)} train / {len(test_x)} test upstream images in '
        f'{time.time() - start:.0f}s', flush=True)

  model = create_model(args.variant, num_classes=task.num_classes)
  params = model.init(jax.random.PRNGKey(args.seed), jnp.zeros((1,) + train_x.shape[1:]))['params']
  if args.init:  # a later stage: the backbone from an earlier one, a fresh head for this label
    try:
      backbone = load_pretrained(args.init, target=jax.eval_shape(lambda: params))
    except CheckpointError as e:
      raise SystemExit(f'pretrain_mini: error: --init={args.init}: {e}') from None
    params, fresh = merge_into(params, backbone)
    print(f'backbone from {args.init}; fresh: {fresh}', flush=True)
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup_steps, args.steps, args.lr * 0.01)
  tx = optax.adamw(schedule, weight_decay=args.wd)
  if args.clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(args.clip), tx)
  opt_state = tx.init(params)

  def logits_fn(params, images):
    return model.apply({'params': params}, images.astype(jnp.float32) / 255.0)

  @jax.jit
  def train_step(params, opt_state, images, labels):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(logits_fn(p, images), labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  apply_jit = jax.jit(logits_fn)
  rng = np.random.default_rng(args.seed)
  order = rng.permutation(len(train_x))
  cursor, losses = 0, []
  for step in range(1, args.steps + 1):
    if cursor + args.batch_size > len(order):  # new epoch: reshuffle, drop the last partial batch
      order, cursor = rng.permutation(len(train_x)), 0
    idx = order[cursor:cursor + args.batch_size]
    cursor += args.batch_size
    params, opt_state, loss = train_step(params, opt_state, train_x[idx], train_y[idx])
    losses.append(float(loss))
    if step % 100 == 0 or step == args.steps:
      print(f'step {step}/{args.steps}  loss {np.mean(losses[-100:]):.3f}  '
            f'{time.time() - start:.0f}s', flush=True)
    if args.save_every and step % args.save_every == 0 and step < args.steps:
      save(args, params, apply_jit, train_x, train_y, test_x, test_y, start,
           f'{os.path.splitext(args.out)[0]}_step{step}.npz', step)

  return save(args, params, apply_jit, train_x, train_y, test_x, test_y, start, args.out, args.steps)


def save(args, params, apply_jit, train_x, train_y, test_x, test_y, start, out, step) -> dict:
  """Writes `params` to `out` (Google ViT .npz) and its .json record; returns the record."""
  task = mini_vtab.UPSTREAM_TASKS[args.upstream]
  test_acc = evaluate(apply_jit, params, test_x, test_y)
  train_acc = evaluate(apply_jit, params, train_x[:args.num_test], train_y[:args.num_test])
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  save_npz(jax.device_get(params), out, num_heads=decode_variant(args.variant)['num_heads'])
  record = {
      'variant': args.variant, 'image_size': mini_vtab.IMAGE_SIZE, 'input_range': [0.0, 1.0],
      'upstream_task': f'{task.name}: {task.description}', 'num_classes': task.num_classes,
      'num_train_images': args.num_train, 'steps': args.steps, 'saved_at_step': step,
      'batch_size': args.batch_size, 'lr': args.lr, 'wd': args.wd, 'warmup_steps': args.warmup_steps,
      'clip': args.clip, 'seed': args.seed, 'init': args.init,
      'upstream_test_accuracy': round(test_acc, 4), 'upstream_train_accuracy': round(train_acc, 4),
      'num_test_images': args.num_test, 'wall_seconds': round(time.time() - start),
      'command': 'python experiments/pretrain_mini.py ' + ' '.join(
          f'--{k}={v}' for k, v in sorted(vars(args).items())),
  }
  with open(os.path.splitext(out)[0] + '.json', 'w') as f:
    json.dump(record, f, indent=2)
  print(json.dumps(record, indent=2), flush=True)
  return record


if __name__ == '__main__':
  main()

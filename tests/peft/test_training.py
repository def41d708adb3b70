"""Only the trainable subtree is differentiated and has optimizer state."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from .conftest import init
from jpeft import peft
from jpeft.peft import partition

LR_MULT = {"head": 1.0, "peft": 1.0, "peft_b": 1.0, "backbone": 0.1}


def _tx(labels):
  return partition.make_optimizer(labels, lambda mult: optax.adamw(1e-3 * mult, weight_decay=1e-4), LR_MULT)


def _train_step(model, tx):
  def step(trainable, frozen, opt_state, images, labels, rng):
    def loss_fn(t):
      logits = model.apply({"params": partition.combine(t, frozen)}, images, train=True, rngs={"dropout": rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    grads = jax.grad(loss_fn)(trainable)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state
  return step


def _setup(method):
  model, methods, params = init(method)
  labels = partition.label_params(params, methods)
  trainable, frozen = partition.split(params, labels)
  tx = _tx(labels)
  return model, labels, trainable, frozen, tx, tx.init(trainable)


@pytest.mark.parametrize("method", ["lora", "bitfit+ssf", "full", "dora+vera+ia3"])
def test_optimizer_state_covers_exactly_the_trainable_parameters(method):
  _, labels, trainable, frozen, _, state = _setup(method)
  counts = peft.count_params(trainable, labels)
  state_sizes = [x.size for x in jax.tree.leaves(state) if x.ndim > 0]  # Adam's mu and nu, not step counts
  assert sum(state_sizes) == 2 * counts["trainable"]
  assert not set(frozen) & set(trainable) and counts["frozen"] == 0


def test_lora_step_skips_frozen_weight_gradients_and_updates_only_trainable():
  """XLA's cost analysis: the full step also computes every kernel's weight gradient (the third matmul of
  each Dense), the LoRA step only the input gradients, so it costs about two thirds; linear probing needs
  no backward pass through the backbone at all."""
  images = jax.random.uniform(jax.random.key(0), (8, 32, 32, 3))
  labels = jnp.arange(8) % 3
  flops, steps = {}, {}
  for method in ("lora", "full", "linear"):
    model, _, trainable, frozen, tx, state = _setup(method)
    steps[method] = jax.jit(_train_step(model, tx)).lower(trainable, frozen, state, images, labels,
                                                          jax.random.key(0)).compile()
    cost = steps[method].cost_analysis()
    flops[method] = (cost[0] if isinstance(cost, list) else cost)["flops"]
  assert 0.5 < flops["lora"] / flops["full"] < 0.8, flops
  assert flops["linear"] < 0.6 * flops["lora"], flops

  # The compiled LoRA step returns the trainable parameters only, and moves every one of them.
  model, _, trainable, frozen, tx, state = _setup("lora")
  new, _ = steps["lora"](trainable, frozen, state, images, labels, jax.random.key(1))
  assert set(new) == set(trainable)
  assert all(not np.allclose(new[k], trainable[k]) for k in new)


def test_dropout_is_active_in_training_only(images):
  model, _, params = init("lora")
  run = lambda train, key: model.apply({"params": params}, images, train=train, rngs={"dropout": jax.random.key(key)})
  assert not np.allclose(run(True, 0), run(True, 1))  # LoRA's input dropout (drop path is 0 by default)
  np.testing.assert_array_equal(run(False, 0), run(False, 1))

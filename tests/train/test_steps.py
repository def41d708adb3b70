"""The optimizer matches AdamW with the study's schedule, and the train step is pure and vmappable."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jpeft.models import vit
from jpeft.peft import build_methods, partition
from jpeft.train import optim, steps


def _optim_config(**kw):
  config = ml_collections.ConfigDict(dict(lr=1e-3, wd=1e-4, b1=0.9, b2=0.999, eps=1e-8, epochs=100,
                                          warmup_epochs=10, warmup_start_lr=1e-6, min_lr=1e-5,
                                          lr_mult={"head": 1.0, "peft": 1.0, "peft_b": 1.0, "backbone": 1.0},
                                          schedule_granularity="step"))
  config.update(kw)
  return config


def test_schedule_warmup_then_cosine():
  schedule = optim.Schedule(warmup_start_lr=1e-6, min_lr=1e-5)
  s = lambda step, base_lr: schedule(step, base_lr, 100, 1000, 10)
  np.testing.assert_allclose(s(0, 1e-2), 1e-6, rtol=1e-6)
  np.testing.assert_allclose(s(50, 1e-2), (1e-6 + 1e-2) / 2, rtol=1e-5)
  np.testing.assert_allclose(s(100, 1e-2), 1e-5 + 0.5 * (1e-2 - 1e-5) * (1 + np.cos(np.pi * 0.1)), rtol=1e-5)
  np.testing.assert_allclose(s(1000, 1e-2), 1e-5, rtol=1e-5)
  values = [float(s(t, 1e-2)) for t in range(0, 1001, 50)]
  assert values[:3] == sorted(values[:3]) and values[2:] == sorted(values[2:], reverse=True)


def test_schedule_length_is_traced():
  """One jitted schedule serves runs of different lengths (a sweep's tune and final stages share a program)."""
  schedule = jax.jit(optim.Schedule(warmup_start_lr=1e-6, min_lr=1e-5))
  for warmup, total in ((10, 100), (25, 125)):
    for step in (0, warmup // 2, warmup, total // 2, total):
      expected = optim.Schedule(warmup_start_lr=1e-6, min_lr=1e-5)(step, 1e-2, warmup, total, 5)
      np.testing.assert_allclose(schedule(step, 1e-2, jnp.float32(warmup), jnp.float32(total), jnp.float32(5)),
                                 expected, rtol=1e-6)
  assert schedule._cache_size() == 1


def test_adamw_step_equals_optax_adamw():
  params = {"head/kernel": jnp.arange(6.0).reshape(2, 3), "head/bias": jnp.ones(3)}
  grads = jax.tree.map(lambda p: 0.1 * p + 0.3, params)
  tx = optim.make_optimizer(_optim_config(warmup_epochs=0), {k: "head" for k in params})
  hparams = dict(lr=jnp.float32(1e-2), wd=jnp.float32(1e-1), warmup_steps=jnp.float32(0),
                 total_steps=jnp.float32(1000), steps_per_epoch=jnp.float32(10))
  new, _, lr = tx.update(grads, tx.init(params), params, hparams)
  reference = optax.adamw(1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-1)
  updates, _ = reference.update(grads, reference.init(params), params)
  np.testing.assert_allclose(lr, 1e-2, rtol=1e-6)
  for k in params:
    np.testing.assert_allclose(new[k], params[k] + updates[k], rtol=1e-6)


def test_train_step_vmaps_over_trials():
  methods = build_methods("lora", {})
  model = vit.create_model("mu/8", num_classes=5, methods=methods, drop_path_rate=0.1)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
  labels = partition.label_params(params, methods)
  trainable, frozen = partition.split(params, labels)
  tx = optim.make_optimizer(_optim_config(warmup_epochs=0), labels)
  step = steps.make_train_step(model, tx)
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 3)),
           "label": jnp.arange(8, dtype=jnp.int32) % 5}
  trials = [dict(lr=1e-3, wd=1e-4, seed=0), dict(lr=1e-2, wd=1e-3, seed=1)]
  hparams = [dict(lr=jnp.float32(t["lr"]), wd=jnp.float32(t["wd"]), merge_factor=jnp.float32(1.0),
                  warmup_steps=jnp.float32(0), total_steps=jnp.float32(400), steps_per_epoch=jnp.float32(4))
             for t in trials]
  rngs = [jax.random.PRNGKey(t["seed"]) for t in trials]
  stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)

  opt_state = tx.init(trainable)
  vmapped = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None, 0, 0)))
  out_t, _, out_m = vmapped(stack([trainable] * 2), stack([opt_state] * 2), frozen, batch, stack(rngs),
                            stack(hparams))
  for i in range(2):
    single_t, _, single_m = jax.jit(step)(trainable, opt_state, frozen, batch, rngs[i], hparams[i])
    np.testing.assert_allclose(out_m["loss"][i], single_m["loss"], rtol=1e-5)
    for k in single_t:
      np.testing.assert_allclose(out_t[k][i], single_t[k], rtol=1e-5, atol=1e-7, err_msg=k)
  # Different lr -> different updates: the hyperparameters really are traced per trial.
  assert not np.allclose(out_t["head/kernel"][0], out_t["head/kernel"][1])

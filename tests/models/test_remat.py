"""config.model.remat: per-block jax.checkpoint computes the same loss and gradients.

Its memory saving is measured by `python -m jpeft.bench.mfu --remat` on an accelerator: XLA's CPU buffer
assignment does not show it (its temporaries grow slightly with remat on CPU), so it is not asserted here.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft import peft
from jpeft.models import vit


def _loss_fn(method: str, remat: bool):
  # Features (num_classes=0): a fresh head is zero, whose logits would give every backbone gradient 0.
  model = vit.create_model("mu/8", num_classes=0, methods=peft.build_methods(method, {}), drop_path_rate=0.5,
                           depth=4, remat=remat)
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 32, 32, 3)), jnp.float32)
  params = model.init(jax.random.PRNGKey(0), images)["params"]

  def loss(p):
    # Drop path and a traced merge factor go through the rematerialised blocks too.
    features = model.apply({"params": p}, images, train=True, merge_factor=jnp.float32(0.7),
                           rngs={"dropout": jax.random.PRNGKey(1)})
    return jnp.square(features).mean() + features[:, 0].sum()

  return loss, params, images


@pytest.mark.parametrize("method", ["vpt_deep", "fact_tt"])  # inserted tokens; shared arrays in the Context
def test_remat_gives_the_same_loss_and_gradients(method):
  results = []
  for remat in (False, True):
    loss, params, _ = _loss_fn(method, remat)
    results.append(jax.jit(jax.value_and_grad(loss))(params))
  (loss_plain, grads_plain), (loss_remat, grads_remat) = results
  np.testing.assert_allclose(loss_remat, loss_plain, rtol=1e-6)
  assert jax.tree.structure(grads_remat) == jax.tree.structure(grads_plain)
  for a, b in zip(jax.tree.leaves(grads_remat), jax.tree.leaves(grads_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads_plain)) > 1e-3  # not a vacuous comparison


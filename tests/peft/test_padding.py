"""`Method.paddable`: a method built at a larger shape field, given the smaller one's parameters zero-padded,
computes the same output and the same gradients of the real part, and exactly zero gradients of the padding.
With equal starts that is why AdamW trains both alike: zero gradients give zero moments and a zero update, and
decoupled weight decay of a zero is zero (the sweep's end-to-end check: tests/sweep/test_padding.py)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft import peft
from jpeft.models import vit
from jpeft.peft import partition

# method -> (field, settings): every method with a paddable field, with what could break padding switched on.
CASES = {
    "lora": ("rank", dict(scaling="rslora", alpha=3.0, dropout=0.5)),  # scale reads the rank; dropout on z
    "dora": ("rank", dict(dropout=0.5)),  # the column norm of W + A B; dropout on z
    "adapter": ("bottleneck", dict(dropout=0.0, learnable_scale="channel", nonlinearity="gelu", drop_path=0.5)),
    "convpass": ("bottleneck", dict(dropout=0.0, conv_init="xavier")),
}


# Padded through the same code as `adapter` (`_Bottleneck.module` and `paddable`), so not compiled again here.
SAME_AS_ADAPTER = ("adaptformer", "pfeiffer")


def test_every_paddable_method_is_covered_and_dropout_in_the_bottleneck_is_not_padded():
  registry = peft.registry()
  no_dropout = lambda cls: {"dropout": 0.0} if "dropout" in {f.name for f in dataclasses.fields(cls)} else {}
  listed = {name for name, cls in registry.items() if cls(**no_dropout(cls)).paddable()}
  assert listed == set(CASES) | set(SAME_AS_ADAPTER)
  for name in SAME_AS_ADAPTER:
    assert registry[name].module is registry["adapter"].module
    assert registry[name].paddable is registry["adapter"].paddable
  assert peft.registry()["adapter"](dropout=0.1).paddable() == ()  # its mask is drawn at the bottleneck's shape
  assert peft.registry()["lora"](init="pissa").paddable() == ()  # frozen principal factors depend on the rank


@pytest.mark.parametrize("name", CASES)
def test_padded_method_computes_the_same_and_zero_padding_gradients(name):
  field, settings = CASES[name]
  small = peft.registry()[name](**{field: 2, **settings})
  large = dataclasses.replace(small, **{field: 4})
  assert small.paddable() == (field,)
  # One block (padding acts per block), tiny images; only shapes are needed of init, and host-side random values
  # keep the test's compilations to its two gradients.
  make = lambda method: vit.create_model("mu/8", num_classes=3, methods=(method,), depth=1)
  images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype(np.float32)
  shapes_of = lambda method: partition.flatten(jax.eval_shape(
      lambda: make(method).init(jax.random.PRNGKey(0), images, train=False)["params"]))
  # Every parameter random (zero-initialised factors too), so that only the padding is zero.
  rng = np.random.default_rng(2)
  params = {p: 0.3 * rng.normal(size=v.shape).astype(np.float32) for p, v in sorted(shapes_of(small).items())}
  model, shapes = make(small), shapes_of(large)
  padded = {p: np.pad(v, [(0, n - m) for m, n in zip(v.shape, shapes[p].shape)]) for p, v in params.items()}
  grown = [p for p in params if shapes[p].shape != params[p].shape]
  assert grown

  def loss(model, merge_factor):
    def f(flat):
      logits = model.apply({"params": partition.unflatten(flat)}, images, train=True, merge_factor=merge_factor,
                           rngs={"dropout": jax.random.PRNGKey(3)})
      return jnp.sum(jnp.sin(logits)), logits
    return jax.jit(jax.grad(f, has_aux=True))

  grads, logits = jax.device_get(loss(model, 0.7)(params))  # on the host: no eager op compiles below
  padded_grads, padded_logits = jax.device_get(loss(make(large), 0.7 * small.pad_multiplier(large))(padded))
  np.testing.assert_allclose(padded_logits, logits, rtol=1e-5, atol=1e-5)
  for path in params:
    real = padded_grads[path][tuple(slice(0, n) for n in params[path].shape)]
    np.testing.assert_allclose(real, grads[path], rtol=1e-4, atol=1e-5, err_msg=path)
    rest = padded_grads[path].copy()
    rest[tuple(slice(0, n) for n in params[path].shape)] = 0
    assert not rest.any(), f"{path}: the padding gets a gradient"

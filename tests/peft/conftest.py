"""Shared tiny setup: the 'mu/8' ViT (width 32, depth 2, 2 heads, MLP 64) on 32x32 images (a 4x4 grid)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft import peft
from jpeft.models import vit
from jpeft.peft import partition

VARIANT, NUM_CLASSES, IMAGE = "mu/8", 5, 32
HEADS, PATCH = 2, 8

# Small non-default hyperparameters for every method (scales != 1 so a missing factor shows).
HPARAMS = {
    "lora": {"rank": 3},
    "adaptformer": {"bottleneck": 4, "scale": 0.3},
    "adapter": {"bottleneck": 4, "scale": 0.5},
    "pfeiffer": {"bottleneck": 4, "scale": 2.0},
    "convpass": {"bottleneck": 4, "scale": 0.5, "conv_init": "xavier"},
    "repadapter": {"bottleneck": 4, "scale": 0.5},
    "fact_tt": {"rank": 3, "scale": 0.5},
    "fact_tk": {"rank": 3, "scale": 0.5},
    "vpt_deep": {"num_tokens": 3},
    "vpt_shallow": {"num_tokens": 3},
    "vqt": {"num_tokens": 2},
    "selective": {"blocks": (1,), "parts": ("mlp",)},
    "dora": {"rank": 3},
    "vera": {"rank": 4},
    "hra": {"rank": 4},
    "road": {"group_size": 8},  # divides mu's widths (32, 64, 96)
    "fourierft": {"n_frequency": 50, "scaling": 30.0},
    "c3a": {"block_size": 16},
    "glora": {"rank": 4},
    "pvera": {"rank": 4},
}


# Every method with parameters of its own that are not tokens' interplay, initialised together once (one
# compilation) for the initialisation tests; each method's parameters are found by its label.
COMPOSED = "ssf+difffit+vpt_deep+lora+adapter+adaptformer+pfeiffer+convpass+repadapter+fact_tt+fact_tk+vqt"


@pytest.fixture(scope="session")
def composed_init() -> dict:
  """Flat parameters of COMPOSED at initialisation (Convpass with its identity conv)."""
  config = {**HPARAMS, "convpass": {**HPARAMS["convpass"], "conv_init": "identity"}}
  return partition.flatten(init(COMPOSED, config, at_init=True)[2])


@pytest.fixture(scope="session")
def images():
  return jax.random.uniform(jax.random.key(1), (2, IMAGE, IMAGE, 3))


def make(method: str, config=None):
  """(model, methods) for a '+'-joined method string, hyperparameters from HPARAMS unless `config`."""
  methods = peft.build_methods(method, HPARAMS if config is None else config)
  return vit.create_model(VARIANT, num_classes=NUM_CLASSES, methods=methods), methods


def random_params(shapes: dict, seed: int) -> dict:
  """Random values for flat shapes: N(1, 0.2) for scales (LayerNorm, SSF), N(0, 0.2) for the rest, so
  zero-initialised weights (LoRA's B, the head) matter."""
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray((k.endswith("scale") or "gamma" in k) + 0.2 * rng.normal(size=v.shape), jnp.float32)
          for k, v in sorted(shapes.items())}


def _shapes(model) -> dict:
  return partition.flatten(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)))["params"])


@functools.lru_cache(maxsize=None)
def plain_params() -> dict:
  """Random plain-ViT weights (flat), head included; the same for every method."""
  return random_params(_shapes(make("linear")[0]), seed=10)


def init(method: str, config=None, *, at_init: bool = False):
  """(model, methods, nested params): the plain weights of `plain_params` and the method's own parameters,
  random (default) or at their initialisation (`at_init`)."""
  model, methods = make(method, config)
  plain = plain_params()
  if at_init:
    # Jitted: eager initialisation compiles one small program per parameter shape, which is slower.
    own = partition.flatten(jax.jit(model.init)(jax.random.key(2), jnp.zeros((1, IMAGE, IMAGE, 3)))["params"])
  else:
    own = random_params(_shapes(model), seed=20)
  return model, methods, partition.unflatten({**own, **plain})  # plain weights shared by all methods


@functools.lru_cache(maxsize=None)
def _jitted_apply(model):
  return jax.jit(lambda p, x, mf: model.apply({"params": p}, x, train=False, merge_factor=mf))


def apply(model, params, images, merge_factor=1.0):
  """Evaluation-mode logits (numpy); merge_factor is traced, so one compilation serves every value."""
  return np.asarray(_jitted_apply(model)(params, images, jnp.float32(merge_factor)))

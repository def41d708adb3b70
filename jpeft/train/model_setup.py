"""The model, the PEFT methods and the initial parameters a run derives from its config."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from jpeft import checkpoints, peft
from jpeft.data import tasks
from jpeft.models import vit
from jpeft.peft import partition

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run derives from its config before training.

  Attributes:
    task: the `jpeft.data.tasks.Task`.
    model: the linen ViT with the run's methods.
    methods: the PEFT methods.
    labels: flat path -> group ('head' | 'peft' | 'backbone' | 'frozen').
    trainable, frozen: flat {path: array} parameter dicts (host arrays).
    init_params: jitted PRNG key -> the model's freshly initialised (nested) parameters; compiled once here,
      so callers that initialise other seeds (the sweep) reuse the program.
  """
  task: Any
  model: Any
  methods: tuple
  labels: dict
  trainable: dict
  frozen: dict
  init_params: Callable


def pretrained_name(config) -> Optional[str]:
  """The path if set, else the name; None or '' means random init (the from-scratch baseline)."""
  return config.pretrained.path or config.pretrained.name or None


def build_model(config) -> tuple[Any, tuple, Any, Callable]:
  """-> (task, methods, model, init_params) of `config`; init_params: jitted PRNG key -> the model's freshly
  initialised (nested) parameters. Touches no data and no checkpoint (`jpeft.api.summary` counts from it)."""
  task = tasks.get_task(config.task)
  methods = peft.build_methods(config.method, config.peft)
  model = vit.create_model(config.model.variant, style=config.model.style, num_classes=task.num_classes,
                           methods=methods, drop_path_rate=config.model.drop_path_rate,
                           projection_dim=config.model.projection_dim, dtype=DTYPES[config.model.dtype])
  size = config.data.image_size
  init_params = jax.jit(lambda k: model.init(k, jnp.zeros((1, size, size, 3)), train=False)["params"])
  return task, tuple(methods), model, init_params


def build(config) -> Setup:
  """Builds model and methods, initialises the parameters from `config.seed` and loads the backbone."""
  task, methods, model, init_params = build_model(config)
  init_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0)
  params = init_params(init_key)
  name = pretrained_name(config)
  if name:
    # Methods' parameters and the new head keep their initialisation; the backbone comes from the checkpoint.
    loaded = checkpoints.load_pretrained(name, target=params, style=config.model.style)
    params, _ = checkpoints.merge_into(params, loaded)
  labels = partition.label_params(params, methods)
  trainable, frozen = partition.split(params, labels)
  return Setup(task, model, methods, labels, trainable, frozen, init_params)

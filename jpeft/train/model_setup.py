"""The model, the PEFT methods and the initial parameters a run derives from its config."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jpeft import checkpoints, peft, zeroshot
from jpeft.data import tasks
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.train.errors import ConfigError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run derives from its config before training.

  Attributes:
    task: the `jpeft.data.tasks.Task`.
    model: the linen ViT with the run's methods.
    methods: the PEFT methods.
    labels: flat path -> group ('head' | 'peft' | 'peft_b' | 'backbone' | 'frozen').
    trainable, frozen: flat {path: array} parameter dicts (host arrays).
    init_params: jitted PRNG key -> the model's freshly initialised (nested) parameters; compiled once here,
      so callers that initialise other seeds (the sweep) reuse the program.
    loaded: flat paths whose values came from a checkpoint (the pretrained backbone, CLIP's projection, a
      zero-shot head) rather than from init_params: the same for every seed.
  """
  task: Any
  model: Any
  methods: tuple
  labels: dict
  trainable: dict
  frozen: dict
  init_params: Callable
  loaded: frozenset = frozenset()


def pretrained_name(config) -> Optional[str]:
  """The path if set, else the name; None or '' means random init (the from-scratch baseline)."""
  return config.pretrained.path or config.pretrained.name or None


# Checkpoint meta / sweep_config.json key: the SHA-256 of the pretrained file the run's frozen weights came from.
PRETRAINED_DIGEST = "pretrained_sha256"


def _pretrained_file(config) -> str:
  """`pretrained_name(config)` as a local path ('' for random init; need not exist)."""
  name = pretrained_name(config)
  return os.path.expanduser(name) if name else ""


def pretrained_digest(config) -> Optional[str]:
  """SHA-256 (hex) of the pretrained checkpoint when `pretrained_name(config)` is a local file, else None.

  Checkpoints hold the trainable parameters only: a resumed run, WiSE-FT, export and init_from read the frozen
  backbone from that path again, so its bytes are recorded, not only its name. Named checkpoints that jpeft
  downloads are not hashed (each name is one file)."""
  path = _pretrained_file(config)
  if not os.path.isfile(path):
    return None
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 24), b""):
      digest.update(block)
  return digest.hexdigest()


def warn_if_modified_after(config, record: str, what: str) -> None:
  """Warns on stderr when the pretrained file is newer than `record` (a file or folder written when `what`
  happened, before jpeft recorded SHA-256 digests): its content may have changed since, unnoticed."""
  path = _pretrained_file(config)
  if os.path.isfile(path) and os.path.exists(record) and os.path.getmtime(path) > os.path.getmtime(record):
    print(f"warning: {what} before jpeft recorded its backbone's SHA-256, and '{path}' was modified after that: if "
          "its content changed (e.g. jpeft's mini backbone did on 2026-11-30), what was trained there came from "
          "another backbone than the one read now. Use a new --workdir to be sure.", file=sys.stderr)


def check_pretrained(config, meta: Mapping, where: str, digest: Optional[str] = None) -> None:
  """Raises ConfigError when the run in `where` recorded (`meta[PRETRAINED_DIGEST]`) another SHA-256 of its
  pretrained file than that file has now (`digest`, computed if not given). Runs checkpointed before digests
  pass, with a warning on stderr when the file is newer than their last checkpoint."""
  recorded = meta.get(PRETRAINED_DIGEST)
  if not recorded:
    warn_if_modified_after(config, os.path.join(where, "checkpoints"), f"the run in '{where}' was checkpointed")
    return
  digest = digest or pretrained_digest(config)
  if digest and digest != recorded:
    raise ConfigError(
        f"The run in '{where}' was trained on the pretrained checkpoint '{pretrained_name(config)}' when its "
        f"SHA-256 was {recorded[:16]}..., but the file there now hashes to {digest[:16]}...: it has changed since "
        "(a new jpeft's mini backbone, a re-exported checkpoint), and the run's frozen weights would be read from "
        "the new file, mixing two backbones. Put back the file the run was trained on, or train the run again.")


HEAD_INITS = ("random", "upstream", "zeroshot")


def initial_head(config, task) -> Optional[dict]:
  """The head a run starts from by `config.head_init`: None for 'random' (the model's initialiser, from the
  seed); for 'upstream', the pretrained checkpoint's own classifier with each class's columns averaged over the
  upstream classes it stands for (`Task.upstream_classes`; as CLIP averages its prompts' text embeddings): a
  zero-shot head, {'kernel': [D, C], 'bias': [C]}.

  Raises ConfigError naming what is missing: the task's map, or a classifier in the checkpoint."""
  if config.head_init != "upstream":  # 'zeroshot' is built from the CLIP checkpoint after loading (`build`)
    return None
  if not task.upstream_classes:
    raise ConfigError(f"Config field 'head_init' = 'upstream' needs a task that maps its classes to the backbone's "
                      f"upstream classes (Task.upstream_classes), and task '{task.name}' has none: use "
                      "--config.head_init=random, or a task such as 'mini_shapes'.")
  path = pretrained_name(config)
  upstream = checkpoints.read_checkpoint(checkpoints.resolve(path)).get("head") if path else None
  if upstream is None:
    raise ConfigError(f"Config field 'head_init' = 'upstream' needs a pretrained checkpoint with its classifier "
                      f"('head'), but '{path}' has none: point --config.pretrained.path at such a checkpoint, or "
                      "use --config.head_init=random.")
  groups = [list(classes) for classes in task.upstream_classes]
  kernel, bias = np.asarray(upstream["kernel"]), np.asarray(upstream["bias"])
  if max(max(g) for g in groups) >= kernel.shape[1]:
    raise ConfigError(f"Task '{task.name}' maps to upstream class {max(max(g) for g in groups)}, but the "
                      f"classifier of '{path}' has {kernel.shape[1]} classes: it is not the backbone the task's "
                      "upstream_classes refer to. Use --config.head_init=random or that backbone.")
  return {"kernel": jnp.asarray(np.stack([kernel[:, g].mean(1) for g in groups], 1)),
          "bias": jnp.asarray(np.array([bias[g].mean() for g in groups]))}


def build_model(config) -> tuple[Any, tuple, Any, Callable]:
  """-> (task, methods, model, init_params) of `config`; init_params: jitted PRNG key -> the model's freshly
  initialised (nested) parameters. Touches no data and no checkpoint (`jpeft.api.summary` counts from it)."""
  task = tasks.get_task(config.task)
  methods = peft.build_methods(config.method, config.peft)
  model = vit.create_model(config.model.variant, style=config.model.style, num_classes=task.num_classes,
                           methods=methods, drop_path_rate=config.model.drop_path_rate,
                           projection_dim=config.model.projection_dim, dtype=DTYPES[config.model.dtype],
                           remat=bool(config.model.get("remat", False)),
                           attention=config.model.get("attention", "einsum"),
                           normalize_feature=config.head_init == "zeroshot")
  size = config.data.image_size
  init_fn = jax.jit(lambda k: model.init(k, jnp.zeros((1, size, size, 3)), train=False)["params"])
  head = initial_head(config, task)
  # Every seed starts from the same head when it is not random (a sweep initialises its seeds with this).
  init_params = init_fn if head is None else (lambda k: {**init_fn(k), "head": head})
  return task, tuple(methods), model, init_params


def build(config) -> Setup:
  """Builds model and methods, initialises the parameters from `config.seed` and loads the backbone."""
  task, methods, model, init_params = build_model(config)
  init_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0)
  params = init_params(init_key)
  name = pretrained_name(config)
  loaded = set()
  if name:
    # Methods' parameters and the new head keep their initialisation; the backbone comes from the checkpoint.
    backbone = checkpoints.load_pretrained(name, target=params, style=config.model.style)
    params, _ = checkpoints.merge_into(params, backbone)
    loaded |= set(partition.flatten(backbone))
    flat = partition.flatten(params)
    for method in methods:  # what a method derives from the frozen weights (PiSSA's factors) follows the backbone
      flat = method.from_backbone(flat)
    params = partition.unflatten(flat)
  if config.head_init == "zeroshot":
    head = zeroshot.zeroshot_config_head(config, task.num_classes)
    params, _ = checkpoints.merge_into(params, head)
    loaded |= set(partition.flatten(head))
  if config.init_from.get("peft"):  # the adapter replaces the methods' initial parameters (and the head)
    from jpeft.export import peft_import  # pylint: disable=import-outside-toplevel  (jpeft.export imports this)
    params = peft_import.load_into(config, params, methods, task.num_classes)
  labels = partition.label_params(params, methods)
  trainable, frozen = partition.split(params, labels)
  return Setup(task, model, methods, labels, trainable, frozen, init_params, frozenset(loaded))

"""jpeft: parameter-efficient fine-tuning of Vision Transformers in JAX/Flax.

The notebook API (`jpeft.api`): `jpeft.summary`, `jpeft.finetune` -> `jpeft.Run`, `jpeft.make_config`. They
load on first use, so `import jpeft` (and every `python -m jpeft.<program>`) stays free of JAX and TensorFlow.
"""
_API = ("finetune", "make_config", "summary", "Run")


def __getattr__(name: str):
  if name in _API:
    from jpeft import api  # pylint: disable=import-outside-toplevel
    return getattr(api, name)
  raise AttributeError(f"module 'jpeft' has no attribute '{name}'")


def __dir__() -> list[str]:
  return sorted(list(globals()) + list(_API))

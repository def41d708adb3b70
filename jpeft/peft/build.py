"""From a config to method instances: `build_methods('lora+bitfit', config.peft)`."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from jpeft.peft import base


def _plain(value: Any) -> Any:
  """ConfigDict / list values -> hashable plain values (methods are attributes of linen modules)."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, list):
    return tuple(_plain(v) for v in value)
  return value


def build_methods(method: str, peft_config: Optional[Mapping] = None) -> tuple[base.Method, ...]:
  """Parses 'lora' or 'lora+bitfit' and builds each method from `peft_config[name]` (missing: defaults).

  Args:
    method: registered method names joined by '+'; 'linear' trains the head only.
    peft_config: mapping (dict or ConfigDict) name -> {hyperparameter: value}; entries of methods not named in
      `method` are ignored, so one config can hold the hyperparameters of every method.
  Returns:
    The methods, in the order given (the order hooks run in at each insertion point).
  Raises:
    ValueError: unknown or repeated method name, unknown hyperparameter, impossible value.
  """
  names = [n.strip() for n in method.split("+")] if isinstance(method, str) else []
  known = base.registry()
  if not names or any(not n for n in names):
    raise ValueError(f"Method string {method!r} is malformed: expected registered names joined by '+', "
                     f"e.g. 'lora' or 'lora+bitfit'. Registered: {sorted(known)}.")
  methods = []
  for name in names:
    if name not in known:
      raise ValueError(f"Unknown PEFT method '{name}' (in {method!r}). Registered methods: {sorted(known)}.")
    if names.count(name) > 1:
      raise ValueError(f"PEFT method '{name}' appears twice in {method!r}: name each method once.")
    cls = known[name]
    hparams = _plain((peft_config or {}).get(name, None) or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(hparams) - fields)
    if unknown:
      raise ValueError(f"Unknown hyperparameter(s) {unknown} for PEFT method '{name}'. Valid fields: "
                       f"{sorted(fields) or 'none (the method has no hyperparameters)'}.")
    methods.append(cls(**{k: _plain(v) for k, v in hparams.items()}))
  _check_composition_order(names, known, method)
  return tuple(methods)


def _check_composition_order(names: list[str], known: Mapping[str, type], method: str) -> None:
  """A composition whose forward pass and merge would disagree (see `Method.composition_position`) is refused."""
  for want, index in (("first", 0), ("last", len(names) - 1)):
    placed = [n for n in names if known[n].composition_position == want]
    if len(placed) > 1:
      raise ValueError(f"PEFT methods {placed} in {method!r} must each come {want} in a composition (their "
                       "forward pass and their merge only agree there), so they cannot be combined.")
    if placed and names[index] != placed[0]:
      fixed = [n for n in names if n != placed[0]]
      fixed.insert(0 if want == "first" else len(fixed), placed[0])
      raise ValueError(f"PEFT method '{placed[0]}' must come {want} in a composition (its forward pass and its "
                       f"merge only agree there): write {'+'.join(fixed)!r} instead of {method!r}.")


def default_hparams(name: str) -> dict[str, Any]:
  """A registered method's hyperparameters at their defaults: the block a config file sets under peft.<name>
  (every field present, so each can be overridden from the command line)."""
  if name not in base.registry():
    raise ValueError(f"Unknown PEFT method '{name}'. Registered methods: {sorted(base.registry())}.")
  return base.registry()[name]().hparams()


def methods_config(methods: tuple[base.Method, ...]) -> dict[str, Any]:
  """The inverse of `build_methods`: {'method': 'lora+bitfit', 'peft': {'lora': {...}, 'bitfit': {}}}."""
  return {"method": "+".join(m.name for m in methods),
          "peft": {m.name: {k: list(v) if isinstance(v, tuple) else v for k, v in m.hparams().items()}
                   for m in methods}}

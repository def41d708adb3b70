"""Flat '/'-joined views of parameter trees, the form every converter in this package works in.

Flat keys ('encoder/block_0/attn/qkv/kernel') make layout tables and error messages read the same way.
"""
from __future__ import annotations

from typing import Any, Mapping


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested mapping -> {'a/b/c': leaf}. Leaves are anything that is not a Mapping."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, path + "/"))
    else:
      flat[path] = value
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b/c': leaf} -> nested dicts."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = tree
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return tree

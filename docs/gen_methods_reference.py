"""Writes docs/reference/methods.md from the method registry: every method's docstring (its math), defaults,
grid, whether it merges, its WiSE-FT rule, and its ViT-B/16 trainable count (PEFT parameters plus backbone
parameters it unfreezes, head excluded; shapes only, nothing is loaded).

  python docs/gen_methods_reference.py            # rewrites docs/reference/methods.md
tests/docs/test_docs_build.py checks that the committed page names every registered method with its current
defaults and grid, so rerun this after adding or changing a method.
"""
import dataclasses
import inspect
import os
import sys

import jax

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "methods.md")

HEADER = """# Methods

Every method jpeft registers, generated from the registry by `python docs/gen_methods_reference.py`. For each:
its formula and parameters (the class docstring), its hyperparameters with their defaults (set them with
`--config.peft.<method>.<field>=...`), the VTAB grid the sweep searches (beside the shared lr x weight decay),
whether it is **re-parameterisable** (after training its weights fold into the plain ViT's, so inference costs
nothing extra: `jpeft.peft.merge`, `jpeft.export --format=timm`), how WiSE-FT interpolates it, and its
**ViT-B/16 count**: the trainable parameters it adds or unfreezes on ViT-B/16 at its defaults, head excluded.

Methods compose with `+` (`--config.method=lora+bitfit`); DoRA, OFT and BOFT must come first and (IA)3 last,
where their forward pass and merge agree (another order is refused with the order to write). The insertion
points they use are described in [the method contract](../concepts/method-contract.md).

"""


def vit_b16_count(name: str) -> int:
  from jpeft import api, peft  # pylint: disable=import-outside-toplevel
  from jpeft.peft import partition  # pylint: disable=import-outside-toplevel
  from jpeft.train import model_setup  # pylint: disable=import-outside-toplevel
  config = api.make_config("ViT-B_16", name, "dtd")
  _, methods, _, init_params = model_setup.build_model(config)
  shapes = jax.eval_shape(init_params, jax.random.PRNGKey(0))
  counts = peft.count_params(shapes, partition.label_params(shapes, methods))
  return counts["peft"] + counts["backbone"]


def method_section(name: str, cls) -> str:
  doc = inspect.cleandoc(cls.__doc__ or "").strip()
  fields = [f for f in dataclasses.fields(cls) if f.name != "name"]
  defaults = ", ".join(f"`{f.name}={f.default!r}`" for f in fields) or "none"
  grid = ", ".join(f"`{k}` {tuple(v)}" for k, v in cls.grid.items()) or "lr x wd only"
  return "\n".join([
      f"## `{name}`", "", f"`{cls.__module__}.{cls.__qualname__}`", "", doc, "",
      f"- defaults: {defaults}", f"- grid: {grid}",
      f"- re-parameterisable: {'yes' if cls.mergeable else 'no'}; WiSE-FT: `{cls.wise}`",
      f"- ViT-B/16 count: {vit_b16_count(name):,}", ""])


def main() -> None:
  from jpeft import peft  # pylint: disable=import-outside-toplevel
  sections = [method_section(name, cls) for name, cls in sorted(peft.registry().items())]
  with open(OUT, "w") as f:
    f.write(HEADER + "\n".join(sections))
  print(f"wrote {OUT} ({len(sections)} methods)", file=sys.stderr)


if __name__ == "__main__":
  main()

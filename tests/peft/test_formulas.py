"""Each method's forward equals the spec's formula, written independently in float64 numpy (reference.py)."""
import numpy as np
import pytest

from .conftest import HEADS, HPARAMS, PATCH, apply, init
from .reference import Reference

MODULE_METHODS = ["ssf", "difffit", "lora", "adaptformer", "adapter", "pfeiffer", "convpass", "repadapter",
                  "fact_tt", "fact_tk", "vpt_deep", "vpt_shallow", "vqt",
                  # Compositions: prompts in front of Convpass's grid, VQT queries in front of prompts (hidden
                  # from keys), deltas and scales at the same Dense, sequential-before with parallel adapters.
                  "vpt_shallow+convpass", "vpt_deep+vqt+adapter", "lora+ssf+difffit", "repadapter+adaptformer",
                  "fact_tk+pfeiffer+bitfit"]


@pytest.mark.parametrize("name", MODULE_METHODS)
def test_forward_matches_spec_formula(name, images):
  model, _, params = init(name)
  for merge_factor in (1.0, 0.6):
    got = apply(model, params, images, merge_factor)
    want = Reference(params, name, HPARAMS, merge_factor, HEADS, PATCH)(images)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4, err_msg=f"{name} at merge_factor={merge_factor}")
  # The method changes the logits (the comparison above is not between two plain models).
  plain = Reference(params, "linear", HPARAMS, 1.0, HEADS, PATCH)(images)
  assert np.abs(got - plain).max() > 1e-3


@pytest.mark.parametrize("name", ["linear", "full", "bitfit", "layernorm", "selective"])
def test_weight_selection_methods_are_the_plain_vit(name, images):
  model, _, params = init(name)
  np.testing.assert_allclose(apply(model, params, images), Reference(params, name, HPARAMS, 1.0, HEADS, PATCH)(images),
                             rtol=2e-4, atol=2e-4)

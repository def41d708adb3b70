"""Identity at initialisation, merge_factor = 0 giving the backbone, and merging into plain ViT weights."""
import jax
import numpy as np
import pytest

from .conftest import HPARAMS, apply, init, make, plain_params, random_params
from jpeft import peft
from jpeft.models import vit
from jpeft.peft import partition


def _plain_logits(images, params=None):
  model, _ = make("linear")
  return apply(model, partition.unflatten(params or plain_params()), images)


@pytest.mark.parametrize("name", ["lora", "adaptformer", "pfeiffer", "repadapter", "fact_tt", "fact_tk",
                                  "convpass"])
def test_identity_at_init(name, composed_init, images):
  """The method's own initial parameters (from the composed init: same names and initialisers) on the plain
  weights give the plain logits."""
  model, (method,) = make(name, {**HPARAMS, "convpass": {**HPARAMS["convpass"], "conv_init": "identity"}})
  own = {k: v for k, v in composed_init.items() if method.label(tuple(k.split("/"))) in (peft.PEFT, peft.PEFT_B)}
  assert own  # the method did insert parameters
  params = partition.unflatten({**plain_params(), **own})
  np.testing.assert_allclose(apply(model, params, images), _plain_logits(images), rtol=1e-5, atol=1e-5)


def test_identity_at_init_dora_vera_ia3(images):
  """Initialised together (one compilation; each is the identity, so their composition is): DoRA's B and
  magnitude offset, VeRA's lambda_b are 0, (IA)^3's scales 1. The only non-plain frozen weights are VeRA's."""
  model, methods, params = init("dora+vera+ia3", at_init=True)
  flat = partition.flatten(params)
  assert sorted(set(flat) - set(plain_params())) == sorted(
      k for k in flat if any(m.label(tuple(k.split("/"))) == peft.PEFT for m in methods)) + [
          "encoder/vera_a", "encoder/vera_b"]
  np.testing.assert_allclose(apply(model, params, images), _plain_logits(images), rtol=1e-5, atol=1e-5)


def test_identity_at_init_convpass_xavier_conv(images):
  model, _, params = init("convpass", {"convpass": {"conv_init": "xavier"}}, at_init=True)
  np.testing.assert_allclose(apply(model, params, images), _plain_logits(images), rtol=1e-5, atol=1e-5)


def _wise(rule):
  return sorted(name for name, cls in peft.registry().items() if cls.wise == rule)


@pytest.mark.parametrize("name", _wise(peft.base.WISE_MERGE_FACTOR) + ["dora+vera+ia3"])
def test_merge_factor_zero_is_the_backbone(name, images):
  """What WiSE-FT relies on for the methods whose `wise` is merge_factor: 0 removes what they insert."""
  model, _, params = init(name)  # random, non-zero method parameters
  np.testing.assert_allclose(apply(model, params, images, 0.0), _plain_logits(images), rtol=1e-5, atol=1e-5)
  assert np.abs(apply(model, params, images, 1.0) - _plain_logits(images)).max() > 1e-3


def test_wise_rules_say_what_each_method_trains(images):
  """'interpolate' methods train only weights the plain ViT has; methods without a rule (prompts) keep changing
  the output at merge_factor 0, so they have no zero-shot end."""
  assert _wise(peft.base.WISE_INTERPOLATE) == ["bitfit", "full", "layernorm", "linear", "selective"]
  for name in _wise(peft.base.WISE_INTERPOLATE):
    _, _, params = init(name)
    assert set(partition.flatten(params)) == set(plain_params())
  assert _wise(None) == ["vpt_deep", "vpt_shallow"]
  for name in _wise(None):
    model, _, params = init(name)
    assert np.abs(apply(model, params, images, 0.0) - _plain_logits(images)).max() > 1e-3


@pytest.mark.parametrize("method", ["lora", "ssf", "repadapter", "fact_tt", "fact_tk", "bitfit", "layernorm",
                                    "difffit", "full", "linear", "selective", "lora+ssf+difffit",
                                    "repadapter+lora", "ssf+fact_tk+bitfit", "dora+vera+ia3"])
def test_merged_plain_vit_matches_unmerged(method, images):
  model, methods, params = init(method)
  for merge_factor in (1.0, 0.6):
    merged = partition.flatten(peft.merge(params, methods, merge_factor))
    assert set(merged) == set(plain_params()), "merging must leave exactly the plain ViT's parameters"
    np.testing.assert_allclose(_plain_logits(images, merged), apply(model, params, images, merge_factor),
                               rtol=1e-4, atol=1e-4, err_msg=f"{method} at merge_factor={merge_factor}")


@pytest.mark.parametrize("method", ["adapter", "lora+vpt_deep", "vqt"])
def test_merging_a_non_reparameterisable_method_names_it(method):
  _, methods, params = init(method)
  blocked = [m for m in method.split("+") if m != "lora"]
  with pytest.raises(ValueError, match=rf"Cannot merge PEFT method\(s\) \[{blocked!r}".replace("[[", "[")[:-1]):
    peft.merge(params, methods)


def test_merge_into_a_clip_tower(images):
  """CLIP's patch embedding has no bias: SSF's embedding shift folds into the position embeddings."""
  methods = peft.build_methods("ssf+lora", {"lora": {"rank": 2}})
  model = vit.create_model("mu/8", style="clip", num_classes=5, methods=methods)
  plain_model = vit.create_model("mu/8", style="clip", num_classes=5)
  shapes = partition.flatten(jax.eval_shape(model.init, jax.random.key(0), images)["params"])
  assert "embedding/bias" not in shapes and "ln_pre/scale" in shapes
  params = partition.unflatten(random_params(shapes, seed=3))
  merged = peft.merge(params, methods, 0.6)
  np.testing.assert_allclose(apply(plain_model, merged, images), apply(model, params, images, 0.6),
                             rtol=1e-4, atol=1e-4)


"""Initial values follow the spec's init column (the composed model of conftest, initialised once)."""
import math

import numpy as np
import pytest

from .conftest import HPARAMS

D, PATCH_PIXELS = 32, 3 * 8 * 8  # mu/8


@pytest.fixture(scope="module")
def params(composed_init):
  return {k: np.asarray(v) for k, v in composed_init.items()}


def _values(params, *suffixes):
  """All values of the parameters whose path ends with one of `suffixes`, concatenated."""
  found = [v.ravel() for k, v in params.items() if k.endswith(suffixes)]
  assert found, suffixes
  return np.concatenate(found)


def _uniform(values, bound):
  """Within [-bound, bound] and spread over it (not a narrower or zero init)."""
  return np.abs(values).max() <= bound and np.abs(values).max() > 0.8 * bound


def test_init_matches_spec(params):
  gamma, beta = _values(params, "_scale"), _values(params, "_shift")  # SSF
  assert abs(gamma.mean() - 1) < 0.005 and 0.015 < gamma.std() < 0.025
  assert abs(beta.mean()) < 0.005 and 0.015 < beta.std() < 0.025
  np.testing.assert_array_equal(_values(params, "difffit_gamma1", "difffit_gamma2"), 1.0)
  assert _uniform(_values(params, "vpt_deep_prompts"), math.sqrt(6 / (PATCH_PIXELS + D)))
  assert _uniform(_values(params, "vqt_queries"), math.sqrt(6 / (PATCH_PIXELS + D)))
  np.testing.assert_array_equal(_values(params, "vqt_combine"), 1.0)
  # LoRA / AdaptFormer Down: torch Linear default U(+-1/sqrt(fan_in)); their Up = 0.
  assert _uniform(_values(params, "lora_a/kernel", "adaptformer_down/kernel"), 1 / math.sqrt(D))
  for zero in ("lora_b/kernel", "adaptformer_up/kernel", "adaptformer_down/bias", "convpass_attn_up/kernel",
               "convpass_mlp_down/bias", "repadapter_attn_b_kernel", "repadapter_mlp_b_bias",
               "repadapter_attn_a/bias", "fact_tt_v", "fact_tk_v"):
    np.testing.assert_array_equal(_values(params, zero), 0.0, err_msg=zero)
  # Houlsby: xavier Down and Up, biases N(0, 1e-6).
  b = HPARAMS["adapter"]["bottleneck"]
  assert _uniform(_values(params, "adapter_attn_down/kernel", "adapter_mlp_up/kernel"), math.sqrt(6 / (D + b)))
  biases = _values(params, "adapter_attn_down/bias", "adapter_mlp_up/bias")
  assert 0 < np.abs(biases).max() < 1e-5
  # Convpass identity conv: the centre tap is eye(b), the other taps zero.
  kernel = params["encoder/block_0/convpass_attn_conv/kernel"]
  expected = np.zeros_like(kernel)
  expected[1, 1] = np.eye(kernel.shape[-1])
  np.testing.assert_array_equal(kernel, expected)
  # FacT: U (and TT's cores) torch Linear default; TK's C and P xavier.
  r_tt, r_tk = HPARAMS["fact_tt"]["rank"], HPARAMS["fact_tk"]["rank"]
  assert _uniform(_values(params, "fact_tt_u", "fact_tk_u"), 1 / math.sqrt(D))
  assert _uniform(_values(params, "fact_tt_sigma_q"), 1 / math.sqrt(r_tt))
  assert _uniform(_values(params, "fact_tk_core"), math.sqrt(6 / (2 * r_tk * r_tk)))
  slots = params["encoder/fact_tk_p"].shape[1]
  assert slots == (4 + 2 * 2) * 2  # mlp_dim = 2 D in mu: 4 + 2 * 2 slots per block, 2 blocks
  assert _uniform(params["encoder/fact_tk_p"], math.sqrt(6 / (r_tk + slots)))

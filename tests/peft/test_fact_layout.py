"""FacT-TK's fc1 / fc2 weight updates are the FacT authors' matrices, for the merge and the forward pass.

The authors' code (JieShibo/PETL-ViT, FacT/fact_tk.py) interleaves an MLP core's slots; reading the slots as
one per chunk gives other matrices of the same shapes, so this test compares the matrices themselves.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import HEADS, IMAGE, PATCH, VARIANT, apply, random_params
from .reference import Reference
from jpeft import peft
from jpeft.models import vit
from jpeft.peft import partition

RANK, SCALE = 3, 0.5


def authors_mlp_deltas(u, v, core, p, layer, k):
  """fc1 [D, k D] and fc2 [k D, D] weight updates of block `layer` (float64, before the scale s), transcribed
  from `fact_forward_mlp` in JieShibo/PETL-ViT's FacT/fact_tk.py, dropout off. Their torch Linear FacTu /
  FacTv are x @ u and x @ v here (u [D, r], v [r, D]). Their code fixes k = 4 (ViT MLP ratio) and 12 slots
  per block; here k = mlp_dim / D and 4 + 2 k slots. A linear map's kernel is its response to x = I.
  """
  width, rank = u.shape
  slots = 4 + 2 * k
  idx = layer * slots + 4  # `set_FacT`: idx advances by 4 per attention and by 8 (2 k) per MLP
  fact_c = core @ p[:, idx:idx + 2 * k]  # FacTc = vit.FacTc @ vit.FacTp[:, self.idx:self.idx + 8]: [r, r, 2k]
  fc1_core = fact_c[:, :, :k].reshape(rank, rank * k)  # FacTc[:, :, :4].reshape(self.dim, self.dim * 4)
  fc2_core = fact_c[:, :, k:].reshape(rank, rank * k)  # FacTc[:, :, 4:].reshape(self.dim, self.dim * 4)
  # h += FacTv(dp(FacTu(x) @ fc1_FacTc).reshape(B, N, 4, self.dim)).reshape(B, N, 4 * C) * self.s
  x = np.eye(width)
  fc1 = ((x @ u @ fc1_core).reshape(width, k, rank) @ v).reshape(width, k * width)
  # x = x.reshape(B, N, 4, C); h += FacTv(dp(FacTu(x).reshape(B, N, 4 * self.dim) @ fc2_FacTc.t())) * self.s
  x = np.eye(k * width).reshape(k * width, k, width)
  fc2 = (x @ u).reshape(k * width, k * rank) @ fc2_core.T @ v
  return fc1, fc2


def _model(mlp_ratio: int):
  methods = peft.build_methods("fact_tk", {"fact_tk": {"rank": RANK, "scale": SCALE}})
  model = vit.create_model(VARIANT, num_classes=5, methods=methods, mlp_dim=mlp_ratio * 32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)))["params"]
  return model, methods, partition.unflatten(random_params(partition.flatten(shapes), seed=5))


# k = 4 is the authors' ViT (MLP ratio 4); k = 2 is the tiny test model's.
@pytest.mark.parametrize("mlp_ratio", [4, 2])
def test_fact_tk_mlp_weight_updates_are_the_authors(mlp_ratio, images):
  model, methods, params = _model(mlp_ratio)
  flat = partition.flatten(params)
  merged = partition.flatten(peft.merge(params, methods))
  f64 = lambda name: np.asarray(flat[f"encoder/fact_tk_{name}"], np.float64)
  for layer in range(2):
    fc1, fc2 = authors_mlp_deltas(f64("u"), f64("v"), f64("core"), f64("p"), layer, mlp_ratio)
    for dense, want in (("fc1", fc1), ("fc2", fc2)):
      kernel = f"encoder/block_{layer}/mlp/{dense}/kernel"
      got = (np.asarray(merged[kernel], np.float64) - np.asarray(flat[kernel], np.float64)) / SCALE
      size = np.abs(want).max()
      assert size > 1e-3  # random non-zero FacT parameters: the update is not trivially zero
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * size, err_msg=f"block {layer} {dense}")
  # The forward pass computes the same updates: the logits equal the numpy ViT's (which follows the authors).
  want = Reference(params, "fact_tk", {"fact_tk": {"scale": SCALE}}, 1.0, HEADS, PATCH)(images)
  np.testing.assert_allclose(apply(model, params, images), want, rtol=2e-4, atol=2e-4)

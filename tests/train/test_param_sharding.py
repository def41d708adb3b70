"""Parameters sharded FSDP-style over a 'param' mesh axis (config.sharding) train what pure data parallelism
trains, on 4 virtual CPU devices: param_axis_size 2 (2 x 2 mesh) and 4 (1 x 4) against 1 (4 x 1). The arrays
really are split: each device holds 1/P of every large parameter and optimizer moment, also when a checkpoint
is restored."""
import json
import os
import subprocess
import sys

import numpy as np

from .conftest import REPO, tiny_overrides

_SCRIPT = """
import json, sys
import jax
import numpy as np
from tests.train.conftest import load_config
from jpeft.train import checkpointing, evaluation, model_setup, optim, sharding, trainer
assert jax.device_count() == 4, jax.devices()
overrides, root = json.loads(sys.argv[1]), sys.argv[2]
for p in (1, 2, 4):
  config = load_config(dict(overrides, **{"sharding.param_axis_size": p}))
  trainer.run(config, f"{root}/p{p}")
  mesh = sharding.make_mesh(p)
  assert dict(mesh.shape) == {"data": 4 // p, "param": p}, mesh.shape
  setup = model_setup.build(config)
  tx = optim.make_optimizer(config.optim, setup.labels)
  frozen, trainable, opt_state = evaluation.place_state(config, setup, tx, mesh)
  ckpt = checkpointing.Checkpointer(f"{root}/p{p}/checkpoints", create=False)
  like = dict(trainable=trainable, opt_state=opt_state, step=0,
              rng=sharding.replicate(jax.random.key_data(jax.random.PRNGKey(0)), mesh))
  state, _ = ckpt.restore(ckpt.latest_step(), like)
  ckpt.close()
  # {group/name: (global shape, each device's shard shapes)} of what was placed and what was restored
  layout = {}
  for group, tree in (("frozen", frozen), ("trainable", trainable), ("restored", state["trainable"]),
                      ("mu", state["opt_state"].mu)):
    for name, x in tree.items():
      layout[f"{group}/{name}"] = (list(x.shape), [list(s.data.shape) for s in x.addressable_shards])
  json.dump(layout, open(f"{root}/p{p}/layout.json", "w"))
"""


def test_sharded_parameters_match_data_parallelism(folder_root, tmp_path):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 1, "method": "lora", "peft.lora": {"rank": 4},
                                             "sharding.min_shard_size": 1024})
  # Compiling is most of this test (3 runs of 4 steps): XLA's backend optimisation off compiles about twice as fast.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0")
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(overrides), str(tmp_path)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=400)
  assert proc.returncode == 0, proc.stderr[-3000:]

  results = {p: json.loads((tmp_path / f"p{p}" / "result.json").read_text()) for p in (1, 2, 4)}
  logits = {p: np.load(tmp_path / f"p{p}" / "logits_val200.npy") for p in (1, 2, 4)}
  for p in (2, 4):
    assert results[p]["steps"] == results[1]["steps"] == 64 // 16
    for a, b in zip(results[1]["evals"], results[p]["evals"], strict=True):
      assert a["accuracy"] == b["accuracy"]
      np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4)
    np.testing.assert_allclose(logits[p], logits[1], rtol=1e-4, atol=1e-4)

  for p in (1, 2, 4):
    layout = json.loads((tmp_path / f"p{p}" / "layout.json").read_text())
    split = {name for name, (shape, shards) in layout.items() if shards[0] != shape}
    for name, (shape, shards) in layout.items():
      assert len(shards) == 4
      large = np.prod(shape) >= 1024 and any(d % p == 0 for d in shape)
      if p == 1 or not large:  # replicated: every device holds the whole array
        assert shards == [shape] * 4, name
      else:  # one dimension split in p, the largest: 1/p of the array per device
        assert all(np.prod(s) * p == np.prod(shape) for s in shards), (name, shape, shards)
        dim = next(d for d in range(len(shape)) if shards[0][d] != shape[d])
        assert shape[dim] == max(d for d in shape if d % p == 0), (name, shape, shards)
    if p > 1:  # the backbone's kernels and the optimizer moments of the trainable head, restored as trained
      assert any(n.startswith("frozen/") and "kernel" in n for n in split), sorted(layout)
      assert {n.split("/", 1)[1] for n in split if n.startswith("restored/")} == {
          n.split("/", 1)[1] for n in split if n.startswith("trainable/")} != set()
      assert any(n.startswith("mu/") for n in split)

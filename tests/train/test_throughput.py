"""The logged images/s is measured once the device has finished the steps, not when they were dispatched."""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from .conftest import load_config, tiny_overrides
from jpeft.train import steps, trainer

_STEP_S = 0.25  # device time added to every train step


def test_images_per_s_counts_device_time(folder_root, tmp_path, monkeypatch):
  original = steps.make_train_step

  def slow_train_step(model, tx):
    """The real step, plus a host callback that holds the device for _STEP_S: dispatch returns at once, the
    outputs are ready only _STEP_S later, as on an accelerator running a long step."""
    step = original(model, tx)

    def slow(*args):
      trainable, opt_state, metrics = step(*args)
      wait = jax.pure_callback(lambda loss: (time.sleep(_STEP_S), np.zeros((), np.float32))[1],
                               jax.ShapeDtypeStruct((), jnp.float32), metrics["loss"])
      return trainable, opt_state, dict(metrics, loss=metrics["loss"] + wait)

    return slow

  monkeypatch.setattr(steps, "make_train_step", slow_train_step)
  workdir = tmp_path / "run"
  result = trainer.run(load_config(tiny_overrides(folder_root, **{"optim.epochs": 2})), str(workdir))
  ceiling = 16 / _STEP_S  # batch 16: no more images per second than one batch per _STEP_S
  logged = [json.loads(line).get("train/images_per_s") for line in (workdir / "metrics.jsonl").open()]
  logged = [v for v in logged if v is not None]
  assert len(logged) == 4 and 0 < min(logged) and max(logged) <= ceiling
  assert result["train_images_per_s"] <= ceiling

"""Mini VTAB `mini_textures`: eight texture families."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import IMAGE_SIZE, Sample, finish, TEXTURES, texture


def render_textures(rng: np.random.Generator, split: str) -> Sample:
  """A full-frame texture of 8 families (stripes, checker, dots, marble, rings, zigzag, hatch, grain),
  random scale, angle and colours."""
  del split
  label = int(rng.integers(len(TEXTURES)))
  canvas = texture(rng, label, contrast=rng.uniform(0.5, 1.0))
  return Sample(finish(canvas, rng, noise=0.04), label, np.zeros((IMAGE_SIZE,) * 2, bool),
                {'texture': TEXTURES[label].__name__[len('_tex_'):]})

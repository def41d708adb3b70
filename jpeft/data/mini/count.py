"""Mini VTAB `mini_count`: how many objects."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import HI, Sample, background, finish, downsample_mask, place, draw_shape


# Compact shapes only: at radius 2.5 a ring or flower can fall apart into several blobs on 32 px.
_COUNT_SHAPES = ('circle', 'square', 'triangle', 'half_disc', 'diamond', 'hexagon')


def render_count(rng: np.random.Generator, split: str) -> Sample:
  """1-8 non-overlapping objects (random shapes, radius 2.5-3.5) on a backdrop; label = count - 1."""
  del split
  count = int(rng.integers(1, 9))
  canvas = background(rng, rng.choice(['plain', 'clutter']))
  radii = list(rng.uniform(2.5, 3.5, count))
  centres = place(rng, radii, margin=1.5)
  while centres is None:  # resample positions; 8 objects of radius <= 3.5 always fit eventually
    centres = place(rng, radii, margin=1.5)
  mask = np.zeros((HI, HI), bool)
  for (cx, cy), r in zip(centres, radii):
    shape = _COUNT_SHAPES[int(rng.integers(len(_COUNT_SHAPES)))]
    mask |= draw_shape(canvas, rng, shape, cx, cy, r)
  return Sample(finish(canvas, rng), count - 1, downsample_mask(mask),
                {'count': count, 'centres': centres})

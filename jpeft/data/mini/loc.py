"""Mini VTAB `mini_loc`: horizontal position bin of one object."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import Sample, background, SHAPE_NAMES, finish, downsample_mask, draw_shape


LOC_BINS = 8
LOC_RANGE = (4.0, 28.0)  # object centres (output pixels) span this range; bins split it evenly


def render_loc(rng: np.random.Generator, split: str) -> Sample:
  """One object (radius 3-4) anywhere; label = bin of its centre's x coordinate (8 bins over 4..28)."""
  del split
  canvas = background(rng, rng.choice(['plain', 'clutter']))
  cx, cy = rng.uniform(*LOC_RANGE, 2)
  shape = SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]
  mask = draw_shape(canvas, rng, shape, cx, cy, rng.uniform(3.0, 4.0))
  width = (LOC_RANGE[1] - LOC_RANGE[0]) / LOC_BINS
  label = min(int((cx - LOC_RANGE[0]) // width), LOC_BINS - 1)
  return Sample(finish(canvas, rng), label, downsample_mask(mask), {'x': cx, 'y': cy})

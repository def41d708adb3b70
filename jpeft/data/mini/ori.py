"""Mini VTAB `mini_ori`: orientation bin of one dart."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import (IMAGE_SIZE, Sample, contrasting_colour, background, rotated, dart, paint,
                                  finish, downsample_mask)


ORI_BINS = 8


def render_ori(rng: np.random.Generator, split: str) -> Sample:
  """One dart (radius 7-10) pointing at a random angle; label = angle bin (8 bins of 45 degrees,
  angle counter-clockwise from +x)."""
  del split
  canvas = background(rng, rng.choice(['plain', 'clutter']))
  radius = rng.uniform(7.0, 10.0)
  cx, cy = rng.uniform(radius, IMAGE_SIZE - radius, 2)
  angle = rng.uniform(0.0, 2 * np.pi)
  mask = dart(*rotated(cx, cy, angle, radius))
  paint(canvas, mask, contrasting_colour(rng, canvas[mask]))
  label = min(int(angle // (2 * np.pi / ORI_BINS)), ORI_BINS - 1)
  return Sample(finish(canvas, rng), label, downsample_mask(mask), {'angle': angle, 'x': cx, 'y': cy})

"""Mini VTAB `mini_objects`: ten object shapes on backdrops."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import (IMAGE_SIZE, Sample, YY, XX, random_colour, background, SHAPE_NAMES, paint,
                                  finish, downsample_mask, place, draw_shape)


def render_objects(rng: np.random.Generator, split: str) -> Sample:
  """One object of 10 shapes (radius 6-10 px) on a backdrop, with up to two small distractor blobs."""
  del split
  label = int(rng.integers(len(SHAPE_NAMES)))
  canvas = background(rng)
  radius = rng.uniform(6.0, 10.0)
  distractors = list(rng.uniform(1.0, 2.0, int(rng.integers(0, 3))))
  centres = place(rng, [radius] + distractors) or [(IMAGE_SIZE / 2, IMAGE_SIZE / 2)]
  for (cx, cy), r in zip(centres[1:], distractors):
    paint(canvas, (XX - cx)**2 + (YY - cy)**2 <= r**2, random_colour(rng))
  mask = draw_shape(canvas, rng, SHAPE_NAMES[label], *centres[0], radius)
  return Sample(finish(canvas, rng), label, downsample_mask(mask), {'shape': SHAPE_NAMES[label]})

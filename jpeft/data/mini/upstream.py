"""`mini_upstream`, the first pre-training stage of the shipped mini backbone (shape x hue x backdrop)."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import (IMAGE_SIZE, Sample, hsv_to_rgb, background, SHAPE_NAMES, finish,
                                  downsample_mask, place, draw_shape)


# The first six shapes of `draw.SHAPES`.
UPSTREAM_SHAPES = SHAPE_NAMES[:6]
HUE_BINS = 4
BACKDROPS = ('plain', 'clutter', 'texture')


def scene(rng: np.random.Generator, backdrop: str, radius_range: tuple[float, float]):
  """An upstream scene before its main object: the `backdrop`, the main object's place and radius (drawn from
  `radius_range`), and 0-2 smaller distractor shapes of any kind, drawn. Returns (canvas, (cx, cy), radius)."""
  canvas = background(rng, backdrop)
  radius = rng.uniform(*radius_range)
  small = list(rng.uniform(2.0, 3.5, int(rng.integers(0, 3))))
  centres = place(rng, [radius] + small) or [(IMAGE_SIZE / 2, IMAGE_SIZE / 2)]
  for (cx, cy), r in zip(centres[1:], small):
    draw_shape(canvas, rng, SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))], cx, cy, r)
  return canvas, centres[0], radius


def render_upstream(rng: np.random.Generator, split: str) -> Sample:
  """Upstream pre-training task: label = (shape (6), hue bin (4)) of the main object (radius 5-10)
  and the kind of backdrop (3: plain, clutter, texture), with 0-2 smaller distractor objects.
  The backdrop is part of the label so the features keep the background's structure (textures)
  instead of learning to ignore it; which texture it is never enters the label."""
  del split
  shape_id = int(rng.integers(len(UPSTREAM_SHAPES)))
  hue_id = int(rng.integers(HUE_BINS))
  backdrop_id = int(rng.integers(len(BACKDROPS)))
  # Hues stay 10 degrees away from bin edges, so the hue label is never ambiguous.
  hue = (hue_id + rng.uniform(10 / 90, 80 / 90)) / HUE_BINS
  canvas, centre, radius = scene(rng, BACKDROPS[backdrop_id], (5.0, 10.0))
  colour = hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
  mask = draw_shape(canvas, rng, UPSTREAM_SHAPES[shape_id], *centre, radius, colour)
  label = (shape_id * HUE_BINS + hue_id) * len(BACKDROPS) + backdrop_id
  return Sample(finish(canvas, rng), label, downsample_mask(mask),
                {'shape': UPSTREAM_SHAPES[shape_id], 'hue': hue, 'backdrop': BACKDROPS[backdrop_id]})

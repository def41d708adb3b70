"""`mini_upstream_geometry`: which of 48 objects x kind of backdrop, colour a nuisance.

The second pre-training stage of the shipped backbone: the first stage (pre-trained on `upstream.py`'s shape x hue x
backdrop label) trained on, with a new head, for this label (`experiments/pretrain_mini.py
--upstream=mini_upstream_geometry --init=<stage 1>.npz`; both commands are in `jpeft/assets/mini-ViT_8.json`). From
random initialisation it does not train (see `render_geometry`); after the first stage it does, and its features
transfer far better (issue 14; experiments/results/mini_backbone/)."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import Sample, downsample_mask, draw_shape, finish, hsv_to_rgb, paint, rotated
from jpeft.data.mini.upstream import BACKDROPS, UPSTREAM_SHAPES, scene


# Objects 0-5 are `UPSTREAM_SHAPES` (`mini_shapes`' classes); glyphs follow.
NUM_GLYPHS = 42
# Glyph strokes join neighbours (diagonals included) of a 3x3 grid of points in the unit frame.
_GRID = [(x, y) for y in (-0.8, 0.0, 0.8) for x in (-0.8, 0.0, 0.8)]
STROKES = tuple((i, j) for i in range(9) for j in range(i + 1, 9)
                if max(abs(_GRID[i][0] - _GRID[j][0]), abs(_GRID[i][1] - _GRID[j][1])) < 1.0)  # 20 strokes


def _make_glyphs(num: int, seed: int = 1234) -> tuple[tuple[int, ...], ...]:
  """`num` glyphs, each 3-5 of `STROKES` (indices), any two differing in at least 3 strokes."""
  rng = np.random.default_rng(seed)
  glyphs: list[frozenset] = []
  while len(glyphs) < num:
    glyph = frozenset(int(i) for i in rng.choice(len(STROKES), int(rng.integers(3, 6)), replace=False))
    if all(len(glyph ^ other) >= 3 for other in glyphs):
      glyphs.append(glyph)
  return tuple(tuple(sorted(g)) for g in glyphs)


GLYPHS = _make_glyphs(NUM_GLYPHS)
NUM_OBJECTS = len(UPSTREAM_SHAPES) + NUM_GLYPHS
NUM_CLASSES = NUM_OBJECTS * len(BACKDROPS)


def glyph_mask(u: np.ndarray, v: np.ndarray, glyph: tuple[int, ...], width: float) -> np.ndarray:
  """Hi-res bool mask of `glyph`'s strokes (half-width `width`) in the unit frame coordinates (u, v)."""
  mask = np.zeros(u.shape, bool)
  for stroke in glyph:
    (ax, ay), (bx, by) = (_GRID[p] for p in STROKES[stroke])
    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    mask |= (u - ax - t * dx)**2 + (v - ay - t * dy)**2 <= width**2
  return mask


def render_geometry(rng: np.random.Generator, split: str) -> Sample:
  """Label = object * 3 + backdrop kind (plain, clutter, texture), where the object
  is which of 48 the main one (radius 6-11) is: a shape of `UPSTREAM_SHAPES` at any rotation (0-5) or a stroke
  glyph of `GLYPHS`, upright within 20 degrees (6-47). Its colour (any hue, saturation and value 0.7-1) and 0-2
  smaller distractor shapes are random nuisances, so colour never pays: the first stage alone, labelled by shape x
  hue bin x backdrop, learnt hue to 98% and shape to 48%, and its features were below raw pixels on mini_digits,
  mini_loc and mini_ori. The backdrop stays in the label because, measured, an object-only label does not train from scratch:
  the loss stays at chance for 400 steps, with no easy signal to break the symmetry."""
  del split
  obj = int(rng.integers(NUM_OBJECTS))
  backdrop_id = int(rng.integers(len(BACKDROPS)))
  backdrop = BACKDROPS[backdrop_id]
  canvas, centre, radius = scene(rng, backdrop, (6.0, 11.0))
  hue = rng.random()
  colour = hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
  if obj < len(UPSTREAM_SHAPES):
    name = UPSTREAM_SHAPES[obj]
    mask = draw_shape(canvas, rng, name, *centre, radius, colour)
  else:
    name = f'glyph{obj - len(UPSTREAM_SHAPES)}'
    u, v = rotated(*centre, rng.uniform(-0.35, 0.35), radius)
    mask = glyph_mask(u, v, GLYPHS[obj - len(UPSTREAM_SHAPES)], rng.uniform(0.12, 0.22))
    paint(canvas, mask, colour)
  return Sample(finish(canvas, rng), obj * len(BACKDROPS) + backdrop_id, downsample_mask(mask),
                {'object': name, 'hue': hue, 'backdrop': backdrop})

"""`mini_shapes` and its distribution shifts: the offline stand-in for ImageNet and V2 / Sketch / A / R.

`mini_shapes` asks which of the six upstream shapes the main object is, in scenes drawn like the upstream
pre-training tasks (`upstream.py`: backdrop plain / clutter / texture, 0-2 distractors, a saturated bright
object of any hue), so each of its classes is a set of 3 classes of the shipped backbone's upstream head
(`UPSTREAM_CLASSES`: that shape on every backdrop kind, in `upstream_geometry.py`'s label; its 42 glyph objects
stand for none) and the upstream classifier is its zero-shot head, as CLIP's text head is ImageNet's.
The shifted test sets keep the label and change one thing each:

  mini_shapes_backdrop  backdrops the backbone never saw (two-colour gradients, crowds of 4-7 distractors)
  mini_shapes_colour    object colours it never saw (greys, dark and pale tints; saturation <= 0.3)
  mini_shapes_sketch    dark outlines on light paper, 4 of the 6 shapes (`SKETCH_CLASSES`), like ImageNet-R's
                        200 classes: scored on those classes' logits only
  mini_shapes_corrupt   the in-distribution scenes under noise, blur, low contrast or pixelation
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from jpeft.data.mini.draw import (HI, IMAGE_SIZE, SHAPES, Sample, background, downsample_mask, draw_shape, finish,
                                  hsv_to_rgb, paint, place, random_colour, rotated)
from jpeft.data.mini.upstream import BACKDROPS, UPSTREAM_SHAPES

NUM_CLASSES = len(UPSTREAM_SHAPES)
# The shipped backbone's head is `mini_upstream_geometry`'s: label = object * len(BACKDROPS) + backdrop, objects
# 0-5 being `UPSTREAM_SHAPES` (see upstream_geometry.py).
UPSTREAM_CLASSES = tuple(tuple(s * len(BACKDROPS) + b for b in range(len(BACKDROPS))) for s in range(NUM_CLASSES))
# circle, square, triangle, cross: the shapes whose outline alone still tells them apart on 32 px.
SKETCH_CLASSES = (0, 1, 2, 3)


def _bright_colour(rng: np.random.Generator) -> np.ndarray:
  """The upstream object colours: any hue, saturation and value in [0.7, 1]."""
  return hsv_to_rgb(rng.random(), rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))


def _pale_colour(rng: np.random.Generator) -> np.ndarray:
  """Colours upstream objects never had: greys and washed-out or dark tints (saturation <= 0.3)."""
  return hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.05, 1.0))


def _new_backdrop(rng: np.random.Generator) -> np.ndarray:
  """A two-colour linear gradient at a random angle [64, 64, 3]: no upstream backdrop looks like it."""
  u, _ = rotated(IMAGE_SIZE / 2, IMAGE_SIZE / 2, rng.uniform(0, 2 * np.pi), IMAGE_SIZE / 2)
  t = np.clip((u + 1.0) / 2.0, 0.0, 1.0)[..., None]
  return random_colour(rng) * t + random_colour(rng) * (1.0 - t)


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
  """The pixels of a hi-res bool mask within `width` hi-res pixels of its edge."""
  inner = mask.copy()
  for _ in range(width):
    inner = (inner & np.roll(inner, 1, 0) & np.roll(inner, -1, 0) & np.roll(inner, 1, 1) &
             np.roll(inner, -1, 1))
  return mask & ~inner


def _scene(rng: np.random.Generator, *, classes=tuple(range(NUM_CLASSES)),
           backdrop: Callable = background, colour: Callable = _bright_colour, distractors=(0, 3),
           sketch: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
  """A main object of one of `classes` (radius 5-10) with smaller distractors (radius 2-3.5).

  Returns (canvas float [64, 64, 3], hi-res mask of the main object, label)."""
  label = int(classes[int(rng.integers(len(classes)))])
  canvas = backdrop(rng)
  radius = rng.uniform(5.0, 10.0)
  small = list(rng.uniform(2.0, 3.5, int(rng.integers(*distractors))))
  centres = place(rng, [radius] + small) or [(IMAGE_SIZE / 2, IMAGE_SIZE / 2)]
  ink = np.full(3, rng.uniform(0.0, 0.3))

  def draw(name, cx, cy, r, fill):
    if not sketch:
      return draw_shape(canvas, rng, name, cx, cy, r, fill)
    drawn = _outline(SHAPES[name](*rotated(cx, cy, rng.uniform(0, 2 * np.pi), r)))
    paint(canvas, drawn, ink)
    return drawn

  for (cx, cy), r in zip(centres[1:], small):
    draw(UPSTREAM_SHAPES[int(rng.integers(NUM_CLASSES))], cx, cy, r, None)
  mask = draw(UPSTREAM_SHAPES[label], *centres[0], radius, colour(rng))
  return canvas, mask, label


def _sample(canvas: np.ndarray, mask: np.ndarray, label: int, rng: np.random.Generator,
            factors: Optional[dict] = None) -> Sample:
  return Sample(finish(canvas, rng), label, downsample_mask(mask), factors or {})


def render_shapes(rng: np.random.Generator, split: str) -> Sample:
  """In distribution: upstream-like scenes, label = shape of the main object."""
  del split
  return _sample(*_scene(rng), rng)


def render_backdrop(rng: np.random.Generator, split: str) -> Sample:
  """Shift: gradient backdrops or a crowd of 4-7 distractors on an upstream backdrop."""
  del split
  if rng.random() < 0.5:
    return _sample(*_scene(rng, backdrop=_new_backdrop), rng, {'backdrop': 'gradient'})
  return _sample(*_scene(rng, distractors=(4, 8)), rng, {'backdrop': 'crowd'})


def render_colour(rng: np.random.Generator, split: str) -> Sample:
  """Shift: the main object in a grey, pale or dark colour."""
  del split
  return _sample(*_scene(rng, colour=_pale_colour), rng)


def _paper(rng: np.random.Generator) -> np.ndarray:
  return np.full((HI, HI, 3), rng.uniform(0.8, 1.0)) * rng.uniform(0.95, 1.0, 3)


def render_sketch(rng: np.random.Generator, split: str) -> Sample:
  """Shift: dark outlines (main object and distractors) on light paper; shapes `SKETCH_CLASSES` only."""
  del split
  return _sample(*_scene(rng, classes=SKETCH_CLASSES, backdrop=_paper, sketch=True), rng)


_CORRUPTIONS = ('noise', 'blur', 'contrast', 'pixelate')


def render_corrupt(rng: np.random.Generator, split: str) -> Sample:
  """Shift: an in-distribution scene under one corruption of `_CORRUPTIONS`, applied to the 32x32 image."""
  del split
  sample = _sample(*_scene(rng), rng)
  kind = _CORRUPTIONS[int(rng.integers(len(_CORRUPTIONS)))]
  image = sample.image / 255.0
  if kind == 'noise':
    image = image + rng.normal(0.0, rng.uniform(0.12, 0.2), image.shape)
  elif kind == 'blur':  # 3x3 box blur, twice
    for _ in range(2):
      padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode='edge')
      image = sum(padded[dy:dy + IMAGE_SIZE, dx:dx + IMAGE_SIZE] for dy in range(3) for dx in range(3)) / 9
  elif kind == 'contrast':
    image = image.mean() + rng.uniform(0.25, 0.4) * (image - image.mean())
  else:  # 8x8 blocks of 4x4 pixels
    blocks = image.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3))
    image = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)
  image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
  return Sample(image, sample.label, sample.mask, {'corruption': kind})

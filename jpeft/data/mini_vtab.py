"""Mini VTAB: small procedurally generated tasks that run the whole VTAB code path offline.

Real VTAB data (and real ImageNet-21K weights) cannot be downloaded everywhere. Mini VTAB is an
honest stand-in, not a benchmark: seven 32x32 RGB classification tasks rendered from numpy with a
fixed seed, in the spirit of VTAB's three groups, each a real TFDS `GeneratorBasedBuilder` with
`train` (1000), `validation` (200) and `test` (1000) splits, registered as jpeft tasks with the
VTAB-1K split rules (train800 = train[:800], val200 = validation[:200], test = test).

  group (jpeft)     task            classes  label                          stands in for
  mini_natural      mini_digits     10       handwritten digit (sklearn)    svhn / cifar
  mini_natural      mini_objects    10       shape of the object            caltech101 / pets
  mini_specialized  mini_textures   8        texture family                 dtd / eurosat
  mini_specialized  mini_cells      2        an atypical (large) cell?      patch_camelyon
  mini_structured   mini_count      8        number of objects - 1          clevr_count
  mini_structured   mini_loc        8        object x-position bin          dsprites_loc
  mini_structured   mini_ori        8        object orientation bin         dsprites_ori

The groups are named 'mini_<group>' so that `list_tasks('natural')` keeps meaning the real VTAB set.
A separate upstream task (`UPSTREAM`: 72 classes, shape x hue bin of the main object x kind of
backdrop, with distractors) pre-trains the shipped backbone (`experiments/pretrain_mini.py`); it is not a downstream task.

Every sample is a pure function of (seed, task name, split, index order): `samples(task, split, n,
seed)` draws from `np.random.default_rng([seed, crc32(task name), split id])`, so the same seed gives
the same bytes. Float rendering (sin, cos) may differ in the last ulp across CPU architectures, which
can flip an edge pixel; labels come from the sampled factors and never change.

Images are rendered at 2x resolution and averaged 2x2, so edges are anti-aliased.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, ClassVar, Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jpeft.data.errors import DataError
from jpeft.data.tasks import Task, register_task, standard_splits

IMAGE_SIZE = 32
_SS = 2  # supersampling factor
_HI = IMAGE_SIZE * _SS
SPLIT_SIZES = {'train': 1000, 'validation': 200, 'test': 1000}
_SPLIT_IDS = {'train': 0, 'validation': 1, 'test': 2}
VERSION = '1.0.0'


@dataclasses.dataclass(frozen=True)
class Sample:
  """One rendered example and the generator's ground truth.

  Attributes:
    image: uint8 [32, 32, 3].
    label: int in [0, num_classes).
    mask: bool [32, 32], pixels mostly covered by the label-bearing objects (all False for
      tasks whose label is not an object, e.g. textures).
    factors: the sampled latent factors the label is computed from (e.g. {'count': 5}).
  """
  image: np.ndarray
  label: int
  mask: np.ndarray
  factors: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class MiniTask:
  """A generated task: `render(rng, split)` -> `Sample`."""
  name: str
  group: str
  num_classes: int
  render: Callable[[np.random.Generator, str], Sample]
  description: str


# ------------------------------------------------------------------------------------------
# Drawing primitives. Canvases are float [64, 64, 3] in [0, 1] (2x supersampled); coordinates
# are in output pixels (0..32), so a shape of radius 4 is 4 output pixels wide on each side.
# ------------------------------------------------------------------------------------------

_COORD = (np.arange(_HI) + 0.5) / _SS
_YY, _XX = np.meshgrid(_COORD, _COORD, indexing='ij')


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
  """h in [0, 1) (fraction of the colour wheel), s, v in [0, 1] -> float [3]."""
  k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
  return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
  return _hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))


def _contrasting_colour(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
  """A random colour at least 0.4 (RGB distance) from the mean of `behind` [N, 3], so objects stay
  visible; after 20 tries, the farthest of them."""
  mean = behind.mean(axis=0) if len(behind) else np.full(3, 0.5)
  best, best_dist = None, -1.0
  for _ in range(20):
    colour = _random_colour(rng)
    dist = float(np.linalg.norm(colour - mean))
    if dist >= 0.4:
      return colour
    if dist > best_dist:
      best, best_dist = colour, dist
  return best


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize (align corners) of float [h, w, C] -> [height, width, C]."""

  def weights(n_out: int, n_in: int) -> np.ndarray:  # [n_out, n_in] interpolation matrix
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, max(n_in - 2, 0))
    frac = pos - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1.0 - frac
    w[np.arange(n_out), np.minimum(lo + 1, n_in - 1)] += frac
    return w

  return np.einsum('yh,hwc,xw->yxc', weights(height, image.shape[0]), image,
                   weights(width, image.shape[1]))


def _smooth_noise(rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
  """Low-frequency noise: a random [cells, cells] grid upsampled to [64, 64, channels]."""
  return _resize(rng.random((cells, cells, channels)), _HI, _HI)


def _background(rng: np.random.Generator, kind: Optional[str] = None) -> np.ndarray:
  """A random backdrop [64, 64, 3]: 'plain', 'clutter' (smooth coloured noise) or 'texture'."""
  kind = kind or rng.choice(['plain', 'clutter', 'texture'])
  if kind == 'plain':
    return np.broadcast_to(_random_colour(rng) * rng.uniform(0.2, 1.0), (_HI, _HI, 3)).copy()
  if kind == 'clutter':
    a, b = _random_colour(rng), _random_colour(rng)
    t = _smooth_noise(rng, int(rng.integers(3, 8)))
    return a * t + b * (1.0 - t) + rng.normal(0.0, 0.03, (_HI, _HI, 1))
  return _texture(rng, int(rng.integers(len(_TEXTURES))), contrast=rng.uniform(0.2, 0.6))


def _rotated(cx: float, cy: float, angle: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
  """Canvas coordinates in a shape's frame: unit radius, shape x-axis at `angle` (counter-clockwise
  on screen, i.e. y up)."""
  dx, dy = (_XX - cx) / radius, -(_YY - cy) / radius
  c, s = np.cos(angle), np.sin(angle)
  return c * dx + s * dy, -s * dx + c * dy


def _polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
  """Regular polygon inscribed in the unit circle, one vertex on the +v axis."""
  normals = (2 * np.arange(sides) + 1) * np.pi / sides + np.pi / 2
  dist = np.max([u * np.cos(t) + v * np.sin(t) for t in normals], axis=0)
  return dist <= np.cos(np.pi / sides)


# Shape masks in the unit frame. The first six are the upstream shapes; all ten are mini_objects'.
_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    'circle': lambda u, v: u**2 + v**2 <= 1.0,
    'square': lambda u, v: np.maximum(abs(u), abs(v)) <= 0.75,
    'triangle': lambda u, v: _polygon(u, v, 3),
    'cross': lambda u, v: ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0)),
    'ring': lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.3),
    'half_disc': lambda u, v: (u**2 + v**2 <= 1.0) & (v >= -0.2),
    'diamond': lambda u, v: abs(u) + abs(v) <= 1.0,
    'hexagon': lambda u, v: _polygon(u, v, 6),
    'flower': lambda u, v: np.hypot(u, v) <= 0.6 + 0.4 * np.cos(5 * np.arctan2(v, u)),
    'bar': lambda u, v: (abs(u) <= 1.0) & (abs(v) <= 0.3),
}
_SHAPE_NAMES = tuple(_SHAPES)
_UPSTREAM_SHAPES = _SHAPE_NAMES[:6]


def _dart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """An isosceles dart pointing along +u (unambiguous over 360 degrees): tip (1, 0), base u = -0.7."""
  return (u >= -0.7) & (abs(v) <= 0.45 * (1.0 - u) / 1.7)


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
  canvas[mask] = colour


def _finish(canvas: np.ndarray, rng: np.random.Generator, noise: float = 0.02) -> np.ndarray:
  """[64, 64, 3] float -> uint8 [32, 32, 3]: 2x2 average, slight pixel noise."""
  small = canvas.reshape(IMAGE_SIZE, _SS, IMAGE_SIZE, _SS, 3).mean(axis=(1, 3))
  small = small + rng.normal(0.0, noise, small.shape)
  return np.round(np.clip(small, 0.0, 1.0) * 255.0).astype(np.uint8)


def _downsample_mask(mask: np.ndarray) -> np.ndarray:
  """bool [64, 64] -> bool [32, 32]: output pixels more than half covered."""
  return mask.reshape(IMAGE_SIZE, _SS, IMAGE_SIZE, _SS).mean(axis=(1, 3)) > 0.5


def _place(rng: np.random.Generator, radii: list[float], margin: float = 1.0,
           tries: int = 200) -> Optional[list[tuple[float, float]]]:
  """Non-overlapping centres for circles of `radii` inside the image, or None if it fails."""
  centres: list[tuple[float, float]] = []
  for r in radii:
    for _ in range(tries):
      c = rng.uniform(r + 0.5, IMAGE_SIZE - r - 0.5, 2)
      if all(np.hypot(*(c - o)) >= r + ro + margin for o, ro in zip(centres, radii)):
        centres.append((float(c[0]), float(c[1])))
        break
    else:
      return None
  return centres


# ------------------------------------------------------------------------------------------
# Textures: each a function of (rng, frame coordinates) -> intensity [64, 64] in [0, 1].
# ------------------------------------------------------------------------------------------

def _frame(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
  """Canvas coordinates rotated by a random angle, in units of `scale` output pixels."""
  return _rotated(IMAGE_SIZE / 2, IMAGE_SIZE / 2, rng.uniform(0, np.pi), scale)


def _tex_stripes(rng):
  u, _ = _frame(rng, rng.uniform(1.0, 2.0))
  return 0.5 + 0.5 * np.sin(u)


def _tex_checker(rng):
  u, v = _frame(rng, rng.uniform(2.0, 4.0))
  return ((np.floor(u) + np.floor(v)) % 2).astype(float)


def _tex_dots(rng):
  u, v = _frame(rng, rng.uniform(3.0, 5.0))
  return (np.hypot(u - np.round(u), v - np.round(v)) <= rng.uniform(0.2, 0.35)).astype(float)


def _tex_marble(rng):
  return (_smooth_noise(rng, int(rng.integers(5, 9)))[..., 0] > 0.5).astype(float)


def _tex_rings(rng):
  cx, cy = rng.uniform(0, IMAGE_SIZE, 2)
  return 0.5 + 0.5 * np.sin(np.hypot(_XX - cx, _YY - cy) / rng.uniform(0.8, 1.5))


def _tex_zigzag(rng):
  u, v = _frame(rng, rng.uniform(1.5, 2.5))
  return 0.5 + 0.5 * np.sign(np.sin(u + 1.5 * abs(((v / 2) % 2) - 1)))


def _tex_hatch(rng):
  u, v = _frame(rng, rng.uniform(1.2, 2.0))
  return np.maximum(np.sin(u), np.sin(v)) > 0.6


def _tex_grain(rng):
  return rng.random((_HI, _HI))


_TEXTURES = (_tex_stripes, _tex_checker, _tex_dots, _tex_marble, _tex_rings, _tex_zigzag, _tex_hatch,
             _tex_grain)


def _texture(rng: np.random.Generator, index: int, contrast: float = 1.0) -> np.ndarray:
  """Texture `index` in two random colours; `contrast` < 1 pulls the colours together."""
  t = np.asarray(_TEXTURES[index](rng), float)[..., None]
  # A light and a dark colour of unrelated hues, so the pattern is always visible at contrast 1.
  a = _hsv_to_rgb(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.65, 1.0))
  b = _hsv_to_rgb(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.05, 0.4))
  if rng.random() < 0.5:
    a, b = b, a
  b = a + contrast * (b - a)
  return a * t + b * (1.0 - t)


# ------------------------------------------------------------------------------------------
# The tasks.
# ------------------------------------------------------------------------------------------

_DIGITS_CACHE: dict[str, np.ndarray] = {}
# Disjoint ranges of scikit-learn's 1797 digits per split, so no handwritten digit is shared.
_DIGIT_RANGES = {'train': (0, 1078), 'validation': (1078, 1348), 'test': (1348, 1797)}


def _digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's bundled 8x8 digits (no download): images float [1797, 8, 8] in [0, 1], labels."""
  if not _DIGITS_CACHE:
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
    data = load_digits()
    _DIGITS_CACHE['images'] = data.images / 16.0
    _DIGITS_CACHE['labels'] = data.target.astype(np.int64)
  return _DIGITS_CACHE['images'], _DIGITS_CACHE['labels']


def render_digits(rng: np.random.Generator, split: str) -> Sample:
  """A handwritten digit, resized to 18-24 px, in a contrasting colour near the centre of a plain or
  cluttered backdrop (as SVHN crops centre their digit)."""
  images, labels = _digits()
  index = int(rng.integers(*_DIGIT_RANGES[split]))
  size = int(rng.integers(18, 25))
  ink = _resize(images[index][..., None], size * _SS, size * _SS)
  top, left = (np.clip((IMAGE_SIZE - size) // 2 + rng.integers(-3, 4, 2), 0, IMAGE_SIZE - size) * _SS)
  alpha = np.zeros((_HI, _HI, 1))
  alpha[top:top + size * _SS, left:left + size * _SS] = ink
  canvas = _background(rng, rng.choice(['plain', 'clutter']))
  canvas = canvas * (1.0 - alpha) + _contrasting_colour(rng, canvas[alpha[..., 0] > 0.5]) * alpha
  return Sample(_finish(canvas, rng), int(labels[index]), _downsample_mask(alpha[..., 0] > 0.5),
                {'digit_index': index})


def _draw_shape(canvas: np.ndarray, rng: np.random.Generator, shape: str, cx: float, cy: float,
                radius: float, colour: Optional[np.ndarray] = None) -> np.ndarray:
  """Paints `shape` (random rotation) and returns its hi-res mask. Without `colour`, picks one that
  stands out from the backdrop under the shape."""
  mask = _SHAPES[shape](*_rotated(cx, cy, rng.uniform(0, 2 * np.pi), radius))
  _paint(canvas, mask, _contrasting_colour(rng, canvas[mask]) if colour is None else colour)
  return mask


def render_objects(rng: np.random.Generator, split: str) -> Sample:
  """One object of 10 shapes (radius 6-10 px) on a backdrop, with up to two small distractor blobs."""
  del split
  label = int(rng.integers(len(_SHAPE_NAMES)))
  canvas = _background(rng)
  radius = rng.uniform(6.0, 10.0)
  distractors = list(rng.uniform(1.0, 2.0, int(rng.integers(0, 3))))
  centres = _place(rng, [radius] + distractors) or [(IMAGE_SIZE / 2, IMAGE_SIZE / 2)]
  for (cx, cy), r in zip(centres[1:], distractors):
    _paint(canvas, (_XX - cx)**2 + (_YY - cy)**2 <= r**2, _random_colour(rng))
  mask = _draw_shape(canvas, rng, _SHAPE_NAMES[label], *centres[0], radius)
  return Sample(_finish(canvas, rng), label, _downsample_mask(mask), {'shape': _SHAPE_NAMES[label]})


def render_textures(rng: np.random.Generator, split: str) -> Sample:
  """A full-frame texture of 8 families (stripes, checker, dots, marble, rings, zigzag, hatch, grain),
  random scale, angle and colours."""
  del split
  label = int(rng.integers(len(_TEXTURES)))
  canvas = _texture(rng, label, contrast=rng.uniform(0.5, 1.0))
  return Sample(_finish(canvas, rng, noise=0.04), label, np.zeros((IMAGE_SIZE,) * 2, bool),
                {'texture': _TEXTURES[label].__name__[len('_tex_'):]})


def render_cells(rng: np.random.Generator, split: str) -> Sample:
  """Tissue-like patch with 6-12 small nuclei (radius 1.2-2); label 1 iff one nucleus is atypical
  (radius 3-4, darker), as patch_camelyon asks whether a patch holds tumour tissue."""
  del split
  label = int(rng.integers(2))
  tissue = np.array([0.95, 0.75, 0.85]) * rng.uniform(0.8, 1.0)
  canvas = tissue * (0.85 + 0.15 * _smooth_noise(rng, 6))
  radii = list(rng.uniform(1.2, 2.0, int(rng.integers(6, 13))))
  if label:
    radii = [rng.uniform(3.0, 4.0)] + radii
  centres = _place(rng, radii, margin=0.5)
  while centres is None:  # drop small nuclei until the scene fits (the atypical one stays first)
    radii = radii[:-1]
    centres = _place(rng, radii, margin=0.5)
  mask = np.zeros((_HI, _HI), bool)
  for i, ((cx, cy), r) in enumerate(zip(centres, radii)):
    nucleus = ((_XX - cx) / r)**2 + ((_YY - cy) / (r * rng.uniform(0.7, 1.0)))**2 <= 1.0
    atypical = label and i == 0
    shade = rng.uniform(0.25, 0.4) if atypical else rng.uniform(0.45, 0.6)
    _paint(canvas, nucleus, np.array([0.55, 0.3, 0.75]) * shade / 0.5)
    if atypical:
      mask = nucleus
  return Sample(_finish(canvas, rng, noise=0.03), label, _downsample_mask(mask),
                {'num_nuclei': len(radii), 'atypical_radius': radii[0] if label else 0.0})


# Compact shapes only: at radius 2.5 a ring or flower can fall apart into several blobs on 32 px.
_COUNT_SHAPES = ('circle', 'square', 'triangle', 'half_disc', 'diamond', 'hexagon')


def render_count(rng: np.random.Generator, split: str) -> Sample:
  """1-8 non-overlapping objects (random shapes, radius 2.5-3.5) on a backdrop; label = count - 1."""
  del split
  count = int(rng.integers(1, 9))
  canvas = _background(rng, rng.choice(['plain', 'clutter']))
  radii = list(rng.uniform(2.5, 3.5, count))
  centres = _place(rng, radii, margin=1.5)
  while centres is None:  # resample positions; 8 objects of radius <= 3.5 always fit eventually
    centres = _place(rng, radii, margin=1.5)
  mask = np.zeros((_HI, _HI), bool)
  for (cx, cy), r in zip(centres, radii):
    shape = _COUNT_SHAPES[int(rng.integers(len(_COUNT_SHAPES)))]
    mask |= _draw_shape(canvas, rng, shape, cx, cy, r)
  return Sample(_finish(canvas, rng), count - 1, _downsample_mask(mask),
                {'count': count, 'centres': centres})


_LOC_BINS = 8
_LOC_RANGE = (4.0, 28.0)  # object centres (output pixels) span this range; bins split it evenly


def render_loc(rng: np.random.Generator, split: str) -> Sample:
  """One object (radius 3-4) anywhere; label = bin of its centre's x coordinate (8 bins over 4..28)."""
  del split
  canvas = _background(rng, rng.choice(['plain', 'clutter']))
  cx, cy = rng.uniform(*_LOC_RANGE, 2)
  shape = _SHAPE_NAMES[int(rng.integers(len(_SHAPE_NAMES)))]
  mask = _draw_shape(canvas, rng, shape, cx, cy, rng.uniform(3.0, 4.0))
  width = (_LOC_RANGE[1] - _LOC_RANGE[0]) / _LOC_BINS
  label = min(int((cx - _LOC_RANGE[0]) // width), _LOC_BINS - 1)
  return Sample(_finish(canvas, rng), label, _downsample_mask(mask), {'x': cx, 'y': cy})


_ORI_BINS = 8


def render_ori(rng: np.random.Generator, split: str) -> Sample:
  """One dart (radius 7-10) pointing at a random angle; label = angle bin (8 bins of 45 degrees,
  angle counter-clockwise from +x)."""
  del split
  canvas = _background(rng, rng.choice(['plain', 'clutter']))
  radius = rng.uniform(7.0, 10.0)
  cx, cy = rng.uniform(radius, IMAGE_SIZE - radius, 2)
  angle = rng.uniform(0.0, 2 * np.pi)
  mask = _dart(*_rotated(cx, cy, angle, radius))
  _paint(canvas, mask, _contrasting_colour(rng, canvas[mask]))
  label = min(int(angle // (2 * np.pi / _ORI_BINS)), _ORI_BINS - 1)
  return Sample(_finish(canvas, rng), label, _downsample_mask(mask), {'angle': angle, 'x': cx, 'y': cy})


_HUE_BINS = 4
_BACKDROPS = ('plain', 'clutter', 'texture')


def render_upstream(rng: np.random.Generator, split: str) -> Sample:
  """Upstream pre-training task: label = (shape (6), hue bin (4)) of the main object (radius 5-10)
  and the kind of backdrop (3: plain, clutter, texture), with 0-2 smaller distractor objects.
  The backdrop is part of the label so the features keep the background's structure (textures)
  instead of learning to ignore it; which texture it is never enters the label."""
  del split
  shape_id = int(rng.integers(len(_UPSTREAM_SHAPES)))
  hue_id = int(rng.integers(_HUE_BINS))
  backdrop_id = int(rng.integers(len(_BACKDROPS)))
  # Hues stay 10 degrees away from bin edges, so the hue label is never ambiguous.
  hue = (hue_id + rng.uniform(10 / 90, 80 / 90)) / _HUE_BINS
  canvas = _background(rng, _BACKDROPS[backdrop_id])
  radius = rng.uniform(5.0, 10.0)
  small = list(rng.uniform(2.0, 3.5, int(rng.integers(0, 3))))
  centres = _place(rng, [radius] + small) or [(IMAGE_SIZE / 2, IMAGE_SIZE / 2)]
  for (cx, cy), r in zip(centres[1:], small):
    _draw_shape(canvas, rng, _SHAPE_NAMES[int(rng.integers(len(_SHAPE_NAMES)))], cx, cy, r)
  colour = _hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
  mask = _draw_shape(canvas, rng, _UPSTREAM_SHAPES[shape_id], *centres[0], radius, colour)
  label = (shape_id * _HUE_BINS + hue_id) * len(_BACKDROPS) + backdrop_id
  return Sample(_finish(canvas, rng), label, _downsample_mask(mask),
                {'shape': _UPSTREAM_SHAPES[shape_id], 'hue': hue, 'backdrop': _BACKDROPS[backdrop_id]})


MINI_TASKS: dict[str, MiniTask] = {t.name: t for t in (
    MiniTask('mini_digits', 'mini_natural', 10, render_digits,
             'Handwritten digits (scikit-learn), coloured, near the centre of random backdrops.'),
    MiniTask('mini_objects', 'mini_natural', 10, render_objects,
             'Ten object shapes at random pose and colour on random backdrops.'),
    MiniTask('mini_textures', 'mini_specialized', 8, render_textures,
             'Eight texture families at random scale, angle and colours.'),
    MiniTask('mini_cells', 'mini_specialized', 2, render_cells,
             'Tissue patches: does one nucleus look atypical (large, dark)?'),
    MiniTask('mini_count', 'mini_structured', 8, render_count,
             'Number of objects (1-8), label = count - 1.'),
    MiniTask('mini_loc', 'mini_structured', _LOC_BINS, render_loc,
             'Horizontal position of one object, 8 bins.'),
    MiniTask('mini_ori', 'mini_structured', _ORI_BINS, render_ori,
             'Orientation of one dart, 8 bins of 45 degrees.'),
)}
UPSTREAM = MiniTask('mini_upstream', 'upstream', len(_UPSTREAM_SHAPES) * _HUE_BINS * len(_BACKDROPS),
                    render_upstream, 'Pre-training task of the shipped backbone: shape x hue of the main '
                    'object x kind of backdrop.')


def get_mini_task(name: str) -> MiniTask:
  """The generated task `name` (a Mini VTAB task or 'mini_upstream'); DataError if unknown."""
  if name == UPSTREAM.name:
    return UPSTREAM
  if name not in MINI_TASKS:
    raise DataError(f"Unknown Mini VTAB task '{name}'. Known: {', '.join(MINI_TASKS)} and "
                    f"'{UPSTREAM.name}'.")
  return MINI_TASKS[name]


def samples(name: str, split: str, num: Optional[int] = None, seed: int = 0) -> Iterator[Sample]:
  """The first `num` samples (default: the split's size) of task `name`'s `split`, from `seed`.

  The i-th sample is the same for any `num` >= i + 1.
  """
  task = get_mini_task(name)
  if split not in _SPLIT_IDS:
    raise DataError(f"Mini VTAB has splits {list(_SPLIT_IDS)}, not '{split}'.")
  num = SPLIT_SIZES[split] if num is None else num
  rng = np.random.default_rng([seed, zlib.crc32(task.name.encode()), _SPLIT_IDS[split]])
  for _ in range(num):
    yield task.render(rng, split)


def generate(name: str, split: str, num: Optional[int] = None,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Arrays of `samples(...)`: images uint8 [num, 32, 32, 3], labels int64 [num]."""
  out = list(samples(name, split, num, seed))
  return (np.stack([s.image for s in out]) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
          np.array([s.label for s in out], np.int64))


# ------------------------------------------------------------------------------------------
# TFDS builders (one per task, named like the task) and jpeft task registration.
# ------------------------------------------------------------------------------------------

class MiniVtabBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base TFDS builder of a Mini VTAB task: nothing is downloaded, every example is rendered."""
  VERSION = tfds.core.Version(VERSION)
  TASK: ClassVar[MiniTask]
  SEED: ClassVar[int] = 0

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS derives this from the module's package and, for a package module, type-checks it
    # against `importlib_resources`, which tensorflow-datasets does not install; the file is known.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'Mini VTAB ({self.TASK.group}): {self.TASK.description} Generated by '
                    f'jpeft.data.mini_vtab from seed {self.SEED}.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            'label': tfds.features.ClassLabel(num_classes=self.TASK.num_classes),
        }),
        supervised_keys=('image', 'label'),
        # Stored in generation order, so train[:800] are the generator's first 800 examples.
        disable_shuffling=True,
        homepage='https://github.com/jpeft/jpeft',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in SPLIT_SIZES}

  def _generate_examples(self, split: str):
    for i, sample in enumerate(samples(self.TASK.name, split, seed=self.SEED)):
      yield i, {'image': sample.image, 'label': sample.label}


BUILDERS: dict[str, type[MiniVtabBuilder]] = {
    name: type(''.join(p.capitalize() for p in name.split('_')), (MiniVtabBuilder,),
               {'name': name, 'TASK': task, '__module__': __name__})
    for name, task in MINI_TASKS.items()
}


def prepare(names: Optional[list[str]] = None, data_dir: Optional[str] = None) -> None:
  """Generates the TFDS files of Mini VTAB tasks (all by default) into `data_dir` (TFDS default:
  ~/tensorflow_datasets). Already prepared tasks are left as they are. Takes seconds per task."""
  for name in names or list(MINI_TASKS):
    get_mini_task(name)
    tfds.builder(name, data_dir=data_dir).download_and_prepare()


for _task in MINI_TASKS.values():
  register_task(Task(
      name=_task.name, builder=f'{_task.name}:1.*.*', num_classes=_task.num_classes,
      group=_task.group, splits=standard_splits(),
      split_sizes={'train800': 800, 'val200': 200, 'train800val200': 1000,
                   'test': SPLIT_SIZES['test'], 'train': SPLIT_SIZES['train'],
                   'val': SPLIT_SIZES['validation'],
                   'trainval': SPLIT_SIZES['train'] + SPLIT_SIZES['validation']}))

"""What every Mini VTAB generator draws with: the `Sample` / `MiniTask` records, drawing primitives, textures.

Canvases are float [64, 64, 3] in [0, 1] (2x supersampled, `SS`); coordinates are in output pixels (0..32), so a
shape of radius 4 is 4 output pixels wide on each side. `finish` averages 2x2 and quantises to uint8 [32, 32, 3].
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np

IMAGE_SIZE = 32
SS = 2  # supersampling factor
HI = IMAGE_SIZE * SS


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
  """A generated task: `render(rng, split)` -> `Sample`.

  Attributes:
    splits: the splits its TFDS builder generates (test sets of a distribution shift have only 'test').
    class_subset: the labels its data covers, when fewer than `num_classes` (scored on those logits only).
    upstream_classes: per class, the upstream task's labels it stands for (the zero-shot head's map).
  """
  name: str
  group: str
  num_classes: int
  render: Callable[[np.random.Generator, str], Sample]
  description: str
  splits: tuple[str, ...] = ('train', 'validation', 'test')
  class_subset: Optional[tuple[int, ...]] = None
  upstream_classes: Optional[tuple[tuple[int, ...], ...]] = None


# ------------------------------------------------------------------------------------------
# Drawing primitives. Canvases are float [64, 64, 3] in [0, 1] (2x supersampled); coordinates
# are in output pixels (0..32), so a shape of radius 4 is 4 output pixels wide on each side.
# ------------------------------------------------------------------------------------------

COORD = (np.arange(HI) + 0.5) / SS
YY, XX = np.meshgrid(COORD, COORD, indexing='ij')


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
  """h in [0, 1) (fraction of the colour wheel), s, v in [0, 1] -> float [3]."""
  k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
  return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def random_colour(rng: np.random.Generator) -> np.ndarray:
  return hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))


def contrasting_colour(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
  """A random colour at least 0.4 (RGB distance) from the mean of `behind` [N, 3], so objects stay
  visible; after 20 tries, the farthest of them."""
  mean = behind.mean(axis=0) if len(behind) else np.full(3, 0.5)
  best, best_dist = None, -1.0
  for _ in range(20):
    colour = random_colour(rng)
    dist = float(np.linalg.norm(colour - mean))
    if dist >= 0.4:
      return colour
    if dist > best_dist:
      best, best_dist = colour, dist
  return best


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
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


def smooth_noise(rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
  """Low-frequency noise: a random [cells, cells] grid upsampled to [64, 64, channels]."""
  return resize(rng.random((cells, cells, channels)), HI, HI)


def background(rng: np.random.Generator, kind: Optional[str] = None) -> np.ndarray:
  """A random backdrop [64, 64, 3]: 'plain', 'clutter' (smooth coloured noise) or 'texture'."""
  kind = kind or rng.choice(['plain', 'clutter', 'texture'])
  if kind == 'plain':
    return np.broadcast_to(random_colour(rng) * rng.uniform(0.2, 1.0), (HI, HI, 3)).copy()
  if kind == 'clutter':
    a, b = random_colour(rng), random_colour(rng)
    t = smooth_noise(rng, int(rng.integers(3, 8)))
    return a * t + b * (1.0 - t) + rng.normal(0.0, 0.03, (HI, HI, 1))
  return texture(rng, int(rng.integers(len(TEXTURES))), contrast=rng.uniform(0.2, 0.6))


def rotated(cx: float, cy: float, angle: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
  """Canvas coordinates in a shape's frame: unit radius, shape x-axis at `angle` (counter-clockwise
  on screen, i.e. y up)."""
  dx, dy = (XX - cx) / radius, -(YY - cy) / radius
  c, s = np.cos(angle), np.sin(angle)
  return c * dx + s * dy, -s * dx + c * dy


def polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
  """Regular polygon inscribed in the unit circle, one vertex on the +v axis."""
  normals = (2 * np.arange(sides) + 1) * np.pi / sides + np.pi / 2
  dist = np.max([u * np.cos(t) + v * np.sin(t) for t in normals], axis=0)
  return dist <= np.cos(np.pi / sides)


# Shape masks in the unit frame. The first six are the upstream shapes; all ten are mini_objects'.
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    'circle': lambda u, v: u**2 + v**2 <= 1.0,
    'square': lambda u, v: np.maximum(abs(u), abs(v)) <= 0.75,
    'triangle': lambda u, v: polygon(u, v, 3),
    'cross': lambda u, v: ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0)),
    'ring': lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.3),
    'half_disc': lambda u, v: (u**2 + v**2 <= 1.0) & (v >= -0.2),
    'diamond': lambda u, v: abs(u) + abs(v) <= 1.0,
    'hexagon': lambda u, v: polygon(u, v, 6),
    'flower': lambda u, v: np.hypot(u, v) <= 0.6 + 0.4 * np.cos(5 * np.arctan2(v, u)),
    'bar': lambda u, v: (abs(u) <= 1.0) & (abs(v) <= 0.3),
}
SHAPE_NAMES = tuple(SHAPES)


def dart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """An isosceles dart pointing along +u (unambiguous over 360 degrees): tip (1, 0), base u = -0.7."""
  return (u >= -0.7) & (abs(v) <= 0.45 * (1.0 - u) / 1.7)


def paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
  canvas[mask] = colour


def finish(canvas: np.ndarray, rng: np.random.Generator, noise: float = 0.02) -> np.ndarray:
  """[64, 64, 3] float -> uint8 [32, 32, 3]: 2x2 average, slight pixel noise."""
  small = canvas.reshape(IMAGE_SIZE, SS, IMAGE_SIZE, SS, 3).mean(axis=(1, 3))
  small = small + rng.normal(0.0, noise, small.shape)
  return np.round(np.clip(small, 0.0, 1.0) * 255.0).astype(np.uint8)


def downsample_mask(mask: np.ndarray) -> np.ndarray:
  """bool [64, 64] -> bool [32, 32]: output pixels more than half covered."""
  return mask.reshape(IMAGE_SIZE, SS, IMAGE_SIZE, SS).mean(axis=(1, 3)) > 0.5


def place(rng: np.random.Generator, radii: list[float], margin: float = 1.0,
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
  return rotated(IMAGE_SIZE / 2, IMAGE_SIZE / 2, rng.uniform(0, np.pi), scale)


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
  return (smooth_noise(rng, int(rng.integers(5, 9)))[..., 0] > 0.5).astype(float)


def _tex_rings(rng):
  cx, cy = rng.uniform(0, IMAGE_SIZE, 2)
  return 0.5 + 0.5 * np.sin(np.hypot(XX - cx, YY - cy) / rng.uniform(0.8, 1.5))


def _tex_zigzag(rng):
  u, v = _frame(rng, rng.uniform(1.5, 2.5))
  return 0.5 + 0.5 * np.sign(np.sin(u + 1.5 * abs(((v / 2) % 2) - 1)))


def _tex_hatch(rng):
  u, v = _frame(rng, rng.uniform(1.2, 2.0))
  return np.maximum(np.sin(u), np.sin(v)) > 0.6


def _tex_grain(rng):
  return rng.random((HI, HI))


TEXTURES = (_tex_stripes, _tex_checker, _tex_dots, _tex_marble, _tex_rings, _tex_zigzag, _tex_hatch,
             _tex_grain)


def texture(rng: np.random.Generator, index: int, contrast: float = 1.0) -> np.ndarray:
  """Texture `index` in two random colours; `contrast` < 1 pulls the colours together."""
  t = np.asarray(TEXTURES[index](rng), float)[..., None]
  # A light and a dark colour of unrelated hues, so the pattern is always visible at contrast 1.
  a = hsv_to_rgb(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.65, 1.0))
  b = hsv_to_rgb(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.05, 0.4))
  if rng.random() < 0.5:
    a, b = b, a
  b = a + contrast * (b - a)
  return a * t + b * (1.0 - t)


def draw_shape(canvas: np.ndarray, rng: np.random.Generator, shape: str, cx: float, cy: float,
                radius: float, colour: Optional[np.ndarray] = None) -> np.ndarray:
  """Paints `shape` (random rotation) and returns its hi-res mask. Without `colour`, picks one that
  stands out from the backdrop under the shape."""
  mask = SHAPES[shape](*rotated(cx, cy, rng.uniform(0, 2 * np.pi), radius))
  paint(canvas, mask, contrasting_colour(rng, canvas[mask]) if colour is None else colour)
  return mask

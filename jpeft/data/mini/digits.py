"""Mini VTAB `mini_digits`: scikit-learn's handwritten digits on backdrops."""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import (IMAGE_SIZE, SS, HI, Sample, contrasting_colour, resize, background, finish,
                                  downsample_mask)


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
  ink = resize(images[index][..., None], size * SS, size * SS)
  top, left = (np.clip((IMAGE_SIZE - size) // 2 + rng.integers(-3, 4, 2), 0, IMAGE_SIZE - size) * SS)
  alpha = np.zeros((HI, HI, 1))
  alpha[top:top + size * SS, left:left + size * SS] = ink
  canvas = background(rng, rng.choice(['plain', 'clutter']))
  canvas = canvas * (1.0 - alpha) + contrasting_colour(rng, canvas[alpha[..., 0] > 0.5]) * alpha
  return Sample(finish(canvas, rng), int(labels[index]), downsample_mask(alpha[..., 0] > 0.5),
                {'digit_index': index})

"""Mini VTAB `mini_cells`: is one nucleus atypical?"""
from __future__ import annotations

import numpy as np

from jpeft.data.mini.draw import HI, Sample, YY, XX, smooth_noise, paint, finish, downsample_mask, place


def render_cells(rng: np.random.Generator, split: str) -> Sample:
  """Tissue-like patch with 6-12 small nuclei (radius 1.2-2); label 1 iff one nucleus is atypical
  (radius 3-4, darker), as patch_camelyon asks whether a patch holds tumour tissue."""
  del split
  label = int(rng.integers(2))
  tissue = np.array([0.95, 0.75, 0.85]) * rng.uniform(0.8, 1.0)
  canvas = tissue * (0.85 + 0.15 * smooth_noise(rng, 6))
  radii = list(rng.uniform(1.2, 2.0, int(rng.integers(6, 13))))
  if label:
    radii = [rng.uniform(3.0, 4.0)] + radii
  centres = place(rng, radii, margin=0.5)
  while centres is None:  # drop small nuclei until the scene fits (the atypical one stays first)
    radii = radii[:-1]
    centres = place(rng, radii, margin=0.5)
  mask = np.zeros((HI, HI), bool)
  for i, ((cx, cy), r) in enumerate(zip(centres, radii)):
    nucleus = ((XX - cx) / r)**2 + ((YY - cy) / (r * rng.uniform(0.7, 1.0)))**2 <= 1.0
    atypical = label and i == 0
    shade = rng.uniform(0.25, 0.4) if atypical else rng.uniform(0.45, 0.6)
    paint(canvas, nucleus, np.array([0.55, 0.3, 0.75]) * shade / 0.5)
    if atypical:
      mask = nucleus
  return Sample(finish(canvas, rng, noise=0.03), label, downsample_mask(mask),
                {'num_nuclei': len(radii), 'atypical_radius': radii[0] if label else 0.0})

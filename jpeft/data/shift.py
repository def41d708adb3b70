"""ImageNet and its distribution-shift test sets (V2, Sketch, A, R) for the robustness runs.

All five use the 1000-class ImageNet label space (TFDS labels are indices into the sorted
WordNet ids). ImageNet-A and -R cover 200 classes each; `Task.class_subset` holds those label
indices so the evaluator can restrict logits to them (as CLIP / WiSE-FT evaluate). ImageNet's
'val' is 10 train images per class, disjoint from the k-shot training sets (the study's protocol).
"""
from __future__ import annotations

import collections.abc
import functools
import importlib
from typing import Optional

from jpeft.data import manyshot
from jpeft.data.errors import DataError
from jpeft.data.tasks import Subset, Task, register_task

# ImageNet-A's 200 WordNet ids (Hendrycks et al., 2021).
IMAGENET_A_WNIDS = tuple("""
n01498041 n01531178 n01534433 n01558993 n01580077 n01614925 n01616318 n01631663 n01641577
n01669191 n01677366 n01687978 n01694178 n01698640 n01735189 n01770081 n01770393 n01774750
n01784675 n01819313 n01820546 n01833805 n01843383 n01847000 n01855672 n01882714 n01910747
n01914609 n01924916 n01944390 n01985128 n01986214 n02007558 n02009912 n02037110 n02051845
n02077923 n02085620 n02099601 n02106550 n02106662 n02110958 n02119022 n02123394 n02127052
n02129165 n02133161 n02137549 n02165456 n02174001 n02177972 n02190166 n02206856 n02219486
n02226429 n02231487 n02233338 n02236044 n02259212 n02268443 n02279972 n02280649 n02281787
n02317335 n02325366 n02346627 n02356798 n02361337 n02410509 n02445715 n02454379 n02486410
n02492035 n02504458 n02655020 n02669723 n02672831 n02676566 n02690373 n02701002 n02730930
n02777292 n02782093 n02787622 n02793495 n02797295 n02802426 n02814860 n02815834 n02837789
n02879718 n02883205 n02895154 n02906734 n02948072 n02951358 n02980441 n02992211 n02999410
n03014705 n03026506 n03124043 n03125729 n03187595 n03196217 n03223299 n03250847 n03255030
n03291819 n03325584 n03355925 n03384352 n03388043 n03417042 n03443371 n03444034 n03445924
n03452741 n03483316 n03584829 n03590841 n03594945 n03617480 n03666591 n03670208 n03717622
n03720891 n03721384 n03724870 n03775071 n03788195 n03804744 n03837869 n03840681 n03854065
n03888257 n03891332 n03935335 n03982430 n04019541 n04033901 n04039381 n04067472 n04086273
n04099969 n04118538 n04131690 n04133789 n04141076 n04146614 n04147183 n04179913 n04208210
n04235860 n04252077 n04252225 n04254120 n04270147 n04275548 n04310018 n04317175 n04344873
n04347754 n04355338 n04366367 n04376876 n04389033 n04399382 n04442312 n04456115 n04482393
n04507155 n04509417 n04532670 n04540053 n04554684 n04562935 n04591713 n04606251 n07583066
n07695742 n07697313 n07697537 n07714990 n07718472 n07720875 n07734744 n07749582 n07753592
n07760859 n07768694 n07831146 n09229709 n09246464 n09472597 n09835506 n11879895 n12057211
n12144580 n12267677
""".split())

# ImageNet-R's 200 WordNet ids (Hendrycks et al., 2021).
IMAGENET_R_WNIDS = tuple("""
n01443537 n01484850 n01494475 n01498041 n01514859 n01518878 n01531178 n01534433 n01614925
n01616318 n01630670 n01632777 n01644373 n01677366 n01694178 n01748264 n01770393 n01774750
n01784675 n01806143 n01820546 n01833805 n01843383 n01847000 n01855672 n01860187 n01882714
n01910747 n01944390 n01983481 n01986214 n02007558 n02009912 n02051845 n02056570 n02066245
n02071294 n02077923 n02085620 n02086240 n02088094 n02088238 n02088364 n02088466 n02091032
n02091134 n02092339 n02094433 n02096585 n02097298 n02098286 n02099601 n02099712 n02102318
n02106030 n02106166 n02106550 n02106662 n02108089 n02108915 n02109525 n02110185 n02110341
n02110958 n02112018 n02112137 n02113023 n02113624 n02113799 n02114367 n02117135 n02119022
n02123045 n02128385 n02128757 n02129165 n02129604 n02130308 n02134084 n02138441 n02165456
n02190166 n02206856 n02219486 n02226429 n02233338 n02236044 n02268443 n02279972 n02317335
n02325366 n02346627 n02356798 n02363005 n02364673 n02391049 n02395406 n02398521 n02410509
n02423022 n02437616 n02445715 n02447366 n02480495 n02480855 n02481823 n02483362 n02486410
n02510455 n02526121 n02607072 n02655020 n02672831 n02701002 n02749479 n02769748 n02793495
n02797295 n02802426 n02808440 n02814860 n02823750 n02841315 n02843684 n02883205 n02906734
n02909870 n02939185 n02948072 n02950826 n02951358 n02966193 n02980441 n02992529 n03124170
n03272010 n03345487 n03372029 n03424325 n03452741 n03467068 n03481172 n03494278 n03495258
n03498962 n03594945 n03602883 n03630383 n03649909 n03676483 n03710193 n03773504 n03775071
n03888257 n03930630 n03947888 n04086273 n04118538 n04133789 n04141076 n04146614 n04147183
n04192698 n04254680 n04266014 n04275548 n04310018 n04325704 n04347754 n04389033 n04409515
n04465501 n04487394 n04522168 n04536866 n04552348 n04591713 n07614500 n07693725 n07695742
n07697313 n07697537 n07714571 n07714990 n07718472 n07720875 n07734744 n07742313 n07745940
n07749582 n07753275 n07753592 n07768694 n07873807 n07880968 n07920052 n09472597 n09835506
n10565667 n12267677
""".split())


_LABEL_FILE_MODULE = 'tensorflow_datasets.datasets.imagenet2012.imagenet_common'


def _label_file_error(path: Optional[str], problem: str) -> DataError:
  where = f'the label file is {path}' if path else 'the label file could not be located'
  return DataError(
      f"Cannot map ImageNet WordNet ids to label indices: {problem} ({where}, shipped with "
      f"tensorflow-datasets as {_LABEL_FILE_MODULE}.label_names_file()). "
      f"ImageNet-A and -R are scored on their 200 classes of the 1000 logits and need it; "
      f"reinstall tensorflow-datasets (`pip install --force-reinstall tensorflow-datasets`) so "
      f"that the file is there and lists the 1000 ImageNet WordNet ids, one per line.")


@functools.lru_cache(maxsize=None)
def imagenet_wnids() -> tuple[str, ...]:
  """The 1000 ImageNet WordNet ids in TFDS label order (index = TFDS label).

  Raises:
    DataError: TFDS's label file cannot be read or does not hold 1000 ids, naming it.
  """
  try:
    imagenet_common = importlib.import_module(_LABEL_FILE_MODULE)
    path = str(imagenet_common.label_names_file())
  except (ImportError, AttributeError) as e:
    raise _label_file_error(None, f'{type(e).__name__}: {e}') from e
  try:
    with open(path) as f:
      wnids = tuple(line.strip() for line in f if line.strip())
  except OSError as e:
    raise _label_file_error(path, f'{type(e).__name__}: {e}') from e
  if len(wnids) != 1000:
    raise _label_file_error(path, f'it lists {len(wnids)} ids, not 1000')
  return wnids


@functools.lru_cache(maxsize=None)
def class_indices(wnids: tuple[str, ...]) -> tuple[int, ...]:
  """Sorted ImageNet label indices of `wnids` (e.g. the 200 classes of ImageNet-A).

  Raises:
    DataError: the label file cannot be read, or lacks one of `wnids`.
  """
  index = {w: i for i, w in enumerate(imagenet_wnids())}
  missing = [w for w in wnids if w not in index]
  if missing:
    raise _label_file_error(
        str(importlib.import_module(_LABEL_FILE_MODULE).label_names_file()),
        f'it lacks the WordNet ids {", ".join(missing[:5])}')
  return tuple(sorted(index[w] for w in wnids))


class ImagenetClassIndices(collections.abc.Sequence):
  """`Task.class_subset` of ImageNet-A / -R: the label indices of `wnids`, read from TFDS's
  ImageNet label file on first use. Registering the task does not read the file, so a broken
  file cannot stop the other tasks; using the subset (len, iteration, `class_mask`) raises
  DataError naming it, so A/R are never scored over all 1000 classes by mistake."""

  def __init__(self, wnids):
    self.wnids = tuple(wnids)

  def __getitem__(self, i):
    return class_indices(self.wnids)[i]

  def __len__(self) -> int:
    return len(class_indices(self.wnids))

  def __eq__(self, other) -> bool:
    return isinstance(other, ImagenetClassIndices) and other.wnids == self.wnids

  def __hash__(self) -> int:
    return hash(self.wnids)

  def __repr__(self) -> str:
    return f'ImagenetClassIndices({len(self.wnids)} WordNet ids)'


# The study: 10 images per class of ImageNet train are held out for model selection.
IMAGENET_VAL = Subset('train', 10, seed=0, per_class=True)


def imagenet_kshot(k: int, seed: int = 0) -> Subset:
  """Split spec for `k` training images per ImageNet class drawn with `seed` from the train
  images outside the held-out val (`IMAGENET_VAL`); pass it as the `split` of `get_dataset` /
  `load_split_arrays` on task 'imagenet'."""
  return Subset('train', k, seed=seed, per_class=True, exclude=IMAGENET_VAL)


_IMAGENET_MANUAL = ('ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from '
                    'https://image-net.org/download-images (registration needed)')

register_task(Task(
    name='imagenet', builder='imagenet2012:5.*.*', num_classes=1000, group='shift',
    # No public test labels: the official validation set is the test set; 10 train images per
    # class ('val') serve for model selection, and every other split leaves them out.
    splits={'train': 'train', 'val': IMAGENET_VAL,
            'minitrain': Subset('train', None, exclude=IMAGENET_VAL),
            'test': 'validation', 'validation': 'validation',
            'train16shot': imagenet_kshot(16), 'train100shot': imagenet_kshot(100)},
    split_sizes={'train': 1281167, 'val': 10000, 'minitrain': 1271167, 'test': 50000,
                 'validation': 50000, 'train16shot': 16000, 'train100shot': 100000},
    manual_download=_IMAGENET_MANUAL))
register_task(Task(name='imagenet_v2', builder='imagenet_v2/matched-frequency:3.*.*',
                   num_classes=1000, group='shift', splits={'test': 'test'},
                   split_sizes={'test': 10000}))
register_task(Task(name='imagenet_sketch', builder='imagenet_sketch:1.*.*', num_classes=1000,
                   group='shift', splits={'test': 'test'}, split_sizes={'test': 50889}))
register_task(Task(name='imagenet_a', builder='imagenet_a:0.*.*', num_classes=1000,
                   group='shift', splits={'test': 'test'}, split_sizes={'test': 7500},
                   class_subset=ImagenetClassIndices(IMAGENET_A_WNIDS)))
register_task(Task(name='imagenet_r', builder='imagenet_r:0.*.*', num_classes=1000,
                   group='shift', splits={'test': 'test'}, split_sizes={'test': 30000},
                   class_subset=ImagenetClassIndices(IMAGENET_R_WNIDS)))

# The study's 100-shot ImageNet as a many-shot size (`config.data.subset='train100shot'`): mode 'final' trains on
# `imagenet_kshot(100)` (seed 0, never drawn from 'val') and tests on the official validation set; the study
# selects by early stopping on 'val' (configs/clip_imagenet.py). Mode 'tune' holds 10 per class out of the 100
# (jpeft's tuning split; the study did not tune this way). Eval: resize then centre crop, CLIP normalisation.
manyshot.register_many_shot(manyshot.ManyShot(
    'imagenet', (manyshot.Size('train100shot', 100, val=10, tune_splits=1, epochs=100, warmup_epochs=10),),
    test='validation', reserved=IMAGENET_VAL, augment='rrc+hflip+randaug', normalization='clip'))

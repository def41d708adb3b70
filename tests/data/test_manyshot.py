"""Many-shot splits (jpeft.data.manyshot): class balance, disjointness, the index-file path, streaming."""
import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from jpeft import config_base, data
from jpeft.data import manyshot, tasks, tfds_source
from jpeft.train import splits

NUM_CLASSES = 4
TRAIN_PER_CLASS = 20


def _indices(labels, subset, source_order=None):
  return tfds_source.select_subset(labels, subset, source_order)


def _check_protocol(protocol: manyshot.ManyShot, labels: np.ndarray) -> None:
  """Every size: balanced, deterministic, tuning splits inside it and disjoint, test never trained on."""
  classes = np.unique(labels)
  test = (_indices(labels, protocol.test) if isinstance(protocol.test, data.Subset) else np.array([], int))
  for size in protocol.sizes:
    train = _indices(labels, protocol.train(size))
    assert np.array_equal(train, _indices(labels, protocol.train(size)))  # a function of the seed
    assert not np.intersect1d(train, test).size
    counts = np.bincount(labels[train], minlength=len(classes))
    expected = size.per_class if size.per_class is not None else counts.max()
    if protocol.balanced:
      assert (counts == expected).all(), (size.name, counts)
    vals = []
    for j in range(size.tune_splits):
      tune_train, val = (_indices(labels, s) for s in protocol.tune(size, j))
      assert not np.intersect1d(tune_train, val).size and not np.intersect1d(val, test).size
      assert np.array_equal(np.union1d(tune_train, val), train)
      assert (np.bincount(labels[val], minlength=len(classes)) == size.val).all()
      vals.append(tuple(val))
    assert len(set(vals)) == size.tune_splits  # five different random splits


@pytest.mark.parametrize("task", ["cifar100", "resisc45"])
def test_study_sizes_are_balanced_and_disjoint(task):
  protocol = manyshot.get_many_shot(task)
  n = {"cifar100": 50_000, "resisc45": 31_500}[task]
  num_classes = data.get_task(task).num_classes
  labels = np.random.default_rng(0).permutation(np.arange(n) % num_classes)  # balanced, as both datasets
  _check_protocol(protocol, labels)
  full = protocol.size("full")
  train, val = (_indices(labels, s) for s in protocol.tune(full, 0))
  # The study's tuning splits of the full sets: 49,000 / 1,000 (CIFAR), 22,680 / 2,520 (RESISC).
  assert (len(train), len(val)) == {"cifar100": (49_000, 1_000), "resisc45": (22_680, 2_520)}[task]
  if task == "resisc45":
    assert len(_indices(labels, protocol.test)) == 6_300
  small = protocol.sizes[0]
  assert small.tune_splits == 5 and small.val * 5 == small.per_class  # 80/20


def test_unbalanced_task_draws_in_total():
  clevr = manyshot.get_many_shot("clevr_dist")
  labels = np.full(5_000, -1)  # CLEVR has no TFDS label: only uniform draws
  train, val = (_indices(labels, s) for s in clevr.tune(clevr.size("full"), 0))
  assert len(val) == 1_000 and len(train) == 4_000 and not np.intersect1d(train, val).size
  with pytest.raises(data.DataError, match="per class"):
    _indices(labels, data.Subset("train", 3, per_class=True))


def test_unknown_size_and_split_name_the_known_ones():
  with pytest.raises(data.DataError, match="train1k"):
    manyshot.get_many_shot("cifar100").size("train2k")
  with pytest.raises(data.DataError, match="tune_split"):
    manyshot.get_many_shot("cifar100").tune(manyshot.get_many_shot("cifar100").size("train5k"), 1)


class JpeftManyShotTest(tfds.core.GeneratorBasedBuilder):
  """6x6 images whose pixels all equal the example's source index; TFDS stores them shuffled by key, as CIFAR,
  with the source index in `id`."""
  VERSION = tfds.core.Version("1.0.0")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(__file__)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(6, 6, 3)), "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        "id": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples("train", NUM_CLASSES * TRAIN_PER_CLASS),
            "test": self._generate_examples("test", 8)}

  def _generate_examples(self, split, n):
    for i in range(n):
      yield i, {"image": np.full((6, 6, 3), i, np.uint8), "label": i % NUM_CLASSES, "id": f"{split}_{i:05d}"}


@pytest.fixture
def many_task(tmp_path):
  task = data.register_task(data.Task(name="jpeft_many_test", builder="jpeft_many_shot_test:1.*.*",
                                      num_classes=NUM_CLASSES, group="mini", splits={"train": "train", "test": "test"}),
                            overwrite=True)
  protocol = manyshot.register_many_shot(manyshot.ManyShot(task.name, (
      manyshot.Size("train8", 2, val=1, tune_splits=2), manyshot.Size("full", None, val=5, tune_splits=1)),
      augment=None, normalization="none", center_crop=False))
  yield task, protocol, str(tmp_path)
  tasks._REGISTRY.pop(task.name, None)
  manyshot.MANY_SHOT.pop(task.name, None)


def _config(task, data_dir, tmp_path, size, in_memory, mode="final"):
  config = config_base.manyshot_config(task.name, size)
  config.data.data_dir, config.data.image_size, config.data.in_memory = data_dir, 6, in_memory
  config.data.stream_cache_dir = str(tmp_path / "stream")
  config.mode = mode
  return config


def _source_index(images):
  return np.round(np.asarray(images)[:, 0, 0, 0] * 255).astype(int)


def test_index_file_is_in_source_order(many_task, tmp_path):
  task, protocol, data_dir = many_task
  builder = tfds.builder("jpeft_many_shot_test", data_dir=data_dir)
  builder.download_and_prepare()
  ids = [x["id"].decode() for x in builder.as_dataset(split="train").as_numpy_iterator()]
  assert ids != sorted(ids)  # TFDS's order is not the source order: the mapping matters
  wanted = np.array([3, 17, 40, 41, 77, 5])
  np.save(tmp_path / "subset.npy", wanted)
  config = _config(task, data_dir, tmp_path, "train8", in_memory=True)
  config.data.subset_index_file = str(tmp_path / "subset.npy")
  (_, spec), _ = splits.mode_splits(config)
  arrays = splits.load_split(config, task, spec)
  assert sorted(_source_index(arrays["image"])) == sorted(wanted)
  config.mode, config.data.tune_split = "tune", 1
  (_, train_spec), (_, val_spec) = splits.mode_splits(config)
  train, val = (_source_index(splits.load_split(config, task, s)["image"]) for s in (train_spec, val_spec))
  assert sorted(np.concatenate([train, val])) == sorted(wanted) and len(val) == len(np.unique(wanted % 4))
  np.save(tmp_path / "bad.npy", np.array([1, 1, 500]))
  with pytest.raises(data.DataError, match="outside"):
    tfds_source.read_index_file(str(tmp_path / "bad.npy"), 80)


def test_streamed_and_in_memory_batches_are_equal(many_task, tmp_path):
  task, _, data_dir = many_task
  for mode in ("tune", "final"):
    memory = splits.open_mode(_config(task, data_dir, tmp_path, "full", True, mode), task, mode)
    stream = splits.open_mode(_config(task, data_dir, tmp_path, "full", False, mode), task, mode)
    assert stream[0].arrays is None and stream[0].raw is not None
    for a, b in zip(memory, stream):
      assert a.size == b.size and a.name == b.name
    for epoch in (0, 1):
      pairs = list(zip(memory[0].train_epoch(16, 7, epoch), stream[0].train_epoch(16, 7, epoch)))
      assert len(pairs) == memory[0].size // 16
      for x, y in pairs:
        np.testing.assert_array_equal(x["label"], y["label"])
        np.testing.assert_allclose(x["image"], y["image"], atol=1e-6)
    evals = list(zip(memory[1].eval_batches(16), stream[1].eval_batches(16)))
    assert len(evals) == -(-memory[1].size // 16)
    for x, y in evals:
      for k in ("image", "label", "mask"):
        np.testing.assert_allclose(x[k], y[k], atol=1e-6)
  # The full pool: every training example but the 5 per class held out for tuning.
  assert memory[0].size == NUM_CLASSES * TRAIN_PER_CLASS
  tune_train, val = splits.open_mode(_config(task, data_dir, tmp_path, "full", False, "tune"), task, "tune")
  assert (tune_train.size, val.size) == (NUM_CLASSES * (TRAIN_PER_CLASS - 5), NUM_CLASSES * 5)


def test_images_of_different_sizes_stream_like_in_memory(monkeypatch, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jpeft.data import input_pipeline  # pylint: disable=g-import-not-at-top
  images = [np.full((4 + i % 3, 5 + i % 2, 3), 20 * i, np.uint8) for i in range(10)]

  def open_examples(task, split, **kwargs):
    del task, split, kwargs
    return input_pipeline.Examples(tf.data.Dataset.from_generator(
        lambda: ({"image": im, "label": np.int32(i % 2)} for i, im in enumerate(images)),
        output_signature={"image": tf.TensorSpec([None, None, 3], tf.uint8), "label": tf.TensorSpec([], tf.int32)}
    ), len(images))

  monkeypatch.setattr(input_pipeline, "open_examples", open_examples)
  monkeypatch.setattr(input_pipeline, "num_examples", lambda *args, **kwargs: len(images))
  opened = []
  for in_memory in (True, False):
    config = config_base.get_config()
    config.data.image_size, config.data.in_memory, config.data.stream_cache_dir = 8, in_memory, str(tmp_path)
    opened.append(splits.Split.open(config, data.get_task("dtd"), "test"))
  assert "size" in opened[1].raw
  for x, y in zip(*(s.eval_batches(4) for s in opened)):
    np.testing.assert_allclose(x["image"], y["image"], atol=1e-6)
  for x, y in zip(*(s.train_epoch(4, 3, 1) for s in opened)):
    np.testing.assert_allclose(x["image"], y["image"], atol=1e-6)

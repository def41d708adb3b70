"""Data for jpeft: VTAB-1K and other tasks through TFDS or image folders.

Public API:
  Task, Subset, register_task, get_task, list_tasks, class_mask (jpeft.data.tasks)
  get_dataset, load_split_arrays, num_examples, num_classes (jpeft.data.input_pipeline)
  open_examples, Examples                                 (jpeft.data.input_pipeline)
  DataError                                               (jpeft.data.errors)
  BadImage, BadImagesError (a DataError)                  (jpeft.data.bad_images)
"""
# TensorFlow is imported at its first use (`jpeft.data.quiet_tf.tf`, without its start-up lines), not here: in-memory
# data, the benchmarks and a machine without TensorFlow never import it.
from jpeft.data.errors import DataError
from jpeft.data.bad_images import BadImage, BadImagesError
from jpeft.data.input_pipeline import Examples, get_dataset, load_examples, load_split_arrays, num_classes, num_examples, open_examples
from jpeft.data.tasks import Subset, class_mask, Task, VTAB_1K_SPLITS, cut_splits, get_task, list_tasks, register_task, standard_splits

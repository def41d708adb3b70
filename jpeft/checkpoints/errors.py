"""The one error type the checkpoints package raises for unusable files, names and shapes."""


class CheckpointError(ValueError):
  """A checkpoint that cannot be read, resolved or fitted to the model.

  The message is one paragraph: what is wrong, the file or parameter concerned (with both shapes for a
  mismatch), and how to fix it. Subclasses `ValueError` so callers that already catch it keep working.
  """

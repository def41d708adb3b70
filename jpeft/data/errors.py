"""The one error type the data package raises for user mistakes and missing data."""


class DataError(ValueError):
  """A dataset, split, task or file that cannot be used as asked.

  The message is one paragraph: what is wrong, the offending value, and how to fix it.
  Subclasses `ValueError` so callers that already catch `ValueError` keep working.
  """

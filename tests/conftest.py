"""Settings for the whole test suite."""
import os

import pytest

from jpeft import cli

# The programs the tests start keep their compiled XLA programs out of ~/.cache (and tests do not depend on
# what an earlier test or run compiled); tests of the cache pass a temporary directory explicitly.
os.environ[cli.COMPILATION_CACHE_ENV] = ""


@pytest.fixture(scope="session")
def mini_count_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir for the tests that train on the generated Mini VTAB task mini_count: the first run generates
  the task there, the others reuse it."""
  return str(tmp_path_factory.mktemp("tfds_mini"))

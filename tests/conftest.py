"""Settings for the whole test suite."""
import os

from jpeft import cli

# The programs the tests start keep their compiled XLA programs out of ~/.cache (and tests do not depend on
# what an earlier test or run compiled); tests of the cache pass a temporary directory explicitly.
os.environ[cli.COMPILATION_CACHE_ENV] = ""

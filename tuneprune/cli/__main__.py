"""``python -m tuneprune.cli``: the same as the ``tuneprune`` command."""

import sys

from tuneprune.cli import main

sys.exit(main())

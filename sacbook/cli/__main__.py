"""``python -m sacbook.cli``: the ``sacbook`` command."""

import sys

from sacbook.cli import main

sys.exit(main())

"""``python -m xlir.cli``: the ``xlir`` command."""

import sys

from xlir.cli import app

sys.exit(app())

"""``python -m hpcfutures ...``: the same as the ``hpcfutures`` command."""

import sys

from hpcfutures.cli import main

sys.exit(main())

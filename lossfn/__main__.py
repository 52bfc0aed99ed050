"""``python -m lossfn``: the command line."""

import sys

from lossfn.cli import main

sys.exit(main())

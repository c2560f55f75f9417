"""``python -m atm_step ...`` is the ``atm-step`` command (no console script needed)."""

import sys

from atm_step.cli import main

sys.exit(main())

import sys

from atm_step.params import main

sys.exit(main())

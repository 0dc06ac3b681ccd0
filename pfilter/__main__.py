"""`python -m pfilter`: the pfilter command (see pfilter.cli). Imports only pfilter.cli."""
import sys

from .cli import main

sys.exit(main())

"""`python -m pfilter`: the pfilter command (see pfilter.cli). Imports only pfilter.cli."""
import sys

from .cli import main

if __name__ == "__main__":          # (not in a process multiprocessing spawns from this one)
    sys.exit(main())

"""tests/fuzz: the fuzz targets (fuzzlib.py is the harness; seeds.py the seed inputs)."""
import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

"""Shared fixtures: the VM under test (Cython and pure-Python twin) and corpus access."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(params=["cython", "python"])
def vm(request, monkeypatch):
    """Runs the test once with the Cython VM and once with the pure-Python VM."""
    from pfilter import program
    if request.param == "cython":
        if program._cvm is None:
            import os
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("the Cython VM is not built")
            pytest.skip("the Cython VM is not built")
    else:
        monkeypatch.setattr(program, "_cvm", None)
    return request.param

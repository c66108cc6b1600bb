import itertools

import pytest

from sse_fixup.rules import base


@pytest.fixture
def fixed_clock(monkeypatch):
    """A fixed clock and predictable minted ids, so golden outputs are exact."""
    counter = itertools.count(1)
    monkeypatch.setattr(base, "now", lambda: 1795300000)
    monkeypatch.setattr(base, "token", lambda: f"{next(counter):024x}")

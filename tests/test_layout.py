"""The test tree itself: every test module has a unique name.

Test directories are not packages (tests import their neighbours' helpers by
name), so pytest imports each test module by its base name; two files of one
name in different directories make the whole run fail at collection.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_module_names_are_unique() -> None:
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []

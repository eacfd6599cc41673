"""Helpers shared by the test modules."""
import re

import pytest


def raises(exc, *fragments):
    "pytest.raises for `exc` whose message contains every fragment (in any order)."
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))

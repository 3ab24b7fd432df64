"""How the integration tests treat a missing extra: skip with the reason, or fail under
``LOMIX_REQUIRE_INTEGRATIONS=1`` (``make test-integrations`` sets it, so a missing package cannot
pass there as a skip)."""
from __future__ import annotations

import importlib
import os

import pytest

REQUIRE_ENV = "LOMIX_REQUIRE_INTEGRATIONS"


def need(module: str, extra: str):
    """Import ``module`` or skip the test module (fail when ``$LOMIX_REQUIRE_INTEGRATIONS`` is set)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        reason = f"{module} is not installed (pip install \"lomix-kit[{extra}]\"): {error}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires it", pytrace=False)
        pytest.skip(reason, allow_module_level=True)

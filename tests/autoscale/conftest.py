"""TEMPORARY: a stand-in NodeRequest until submitters/base.py lands."""

from __future__ import annotations

import pytest

from tests.autoscale.helpers import stand_in_node_request


@pytest.fixture(autouse=True)
def _node_request(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in_node_request(monkeypatch.setattr)

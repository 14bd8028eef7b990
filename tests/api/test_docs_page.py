"""The /docs reference page renders in a real headless browser against a real server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from hpcflow.api.registry import OPERATIONS
from hpcflow.runner.embedded import EmbeddedServer
from tests.api.test_contract import contract_operations
from tests.conftest import require_service

# CI installs it with: apt-get install -y --no-install-recommends chromium
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def test_docs_page_renders_in_headless_chromium(tmp_path: Path, sqlite_template: Path) -> None:
    browser = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    if browser is None:
        require_service("headless Chromium is not installed (apt-get install chromium)")
    db = tmp_path / "docs.db"
    shutil.copy(sqlite_template, db)
    with EmbeddedServer(f"sqlite:///{db}") as server:
        done = subprocess.run(
            [
                str(browser),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom",
                f"{server.url}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<h1>hpcflow API reference</h1>" in dom
    count = re.search(r"(\d+) operations\.", dom)
    assert count is not None and int(count.group(1)) == len(OPERATIONS) >= 136
    for op_id in (
        "add_workflow_specification",
        "get_workflow_specification_example",
        "join_collections_by_inbound_edge",
        "get_dot_graph",
        "add_edge",
    ):
        assert f"<code>{op_id}</code>" in dom, op_id
    missing = [
        op["operationId"]
        for _m, _p, op in contract_operations()
        if f"<code>{op['operationId']}</code>" not in dom
    ]
    assert not missing, missing

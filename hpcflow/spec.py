"""Workflow specs: JSON, JSON5 or YAML files read into what POST /workflow_specifications takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import json5
import yaml

from hpcflow.errors import Invalid


def load_spec(path: str | Path) -> dict[str, Any]:
    """A workflow spec from JSON, JSON5 or YAML (by suffix); Invalid when it cannot be read."""
    path = Path(path)
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = json5.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise Invalid(f"{path}: not a valid {path.suffix.lstrip('.') or 'JSON5'} file: {exc}",
                      field="spec") from None
    if not isinstance(data, dict):
        raise Invalid(f"{path}: a workflow spec must be a mapping, got {type(data).__name__}",
                      field="spec")
    return data

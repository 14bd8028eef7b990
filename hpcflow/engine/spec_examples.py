"""The example and template specs GET /workflow_specifications/{example,template} return."""

from __future__ import annotations

import copy
from typing import Any

from hpcflow.models.workflow import WorkflowConfigIn

_SCRIPTS = "examples/diamond/scripts"
_OUT = "output/diamond"


def _job(
    name: str, command: str, rr: str, inputs: list[str], outputs: list[str], **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "command": command,
        "resource_requirements": rr,
        "input_files": inputs,
        "output_files": outputs,
        **extra,
    }


def _rr(name: str, memory: str, runtime: str) -> dict[str, Any]:
    return {
        "name": name,
        "num_cpus": 1,
        "num_gpus": 0,
        "num_nodes": 1,
        "memory": memory,
        "runtime": runtime,
    }


# The same workflow as examples/diamond/diamond.json5 (a test keeps the two equal), plus a
# user so that it can be posted as it is. Paths are relative to the repository root.
DIAMOND: dict[str, Any] = {
    "user": "hpcflow",
    "name": "diamond",
    "description": "preprocess -> work1, work2 -> postprocess, with files, user data and "
    "resource requirements",
    "jobs": [
        _job(
            "preprocess",
            f"python3 {_SCRIPTS}/preprocess.py -i examples/diamond/inputs.json "
            f"-o {_OUT}/f1.json -o {_OUT}/f2.json",
            "small",
            ["preprocess_script", "inputs"],
            ["f1", "f2"],
        ),
        _job(
            "work1",
            f"python3 {_SCRIPTS}/work.py -i {_OUT}/f1.json -o {_OUT}/f3.json",
            "medium",
            ["work_script", "f1"],
            ["f3"],
            input_user_data=["my_val"],
        ),
        _job(
            "work2",
            f"python3 {_SCRIPTS}/work.py -i {_OUT}/f2.json -o {_OUT}/f4.json",
            "large",
            ["work_script", "f2"],
            ["f4"],
        ),
        _job(
            "postprocess",
            f"python3 {_SCRIPTS}/postprocess.py -i {_OUT}/f3.json -i "
            f"{_OUT}/f4.json -o {_OUT}/f5.json",
            "small",
            ["postprocess_script", "f3", "f4"],
            ["f5"],
            output_user_data=["summary"],
        ),
    ],
    "files": [
        {"name": "preprocess_script", "path": f"{_SCRIPTS}/preprocess.py"},
        {"name": "work_script", "path": f"{_SCRIPTS}/work.py"},
        {"name": "postprocess_script", "path": f"{_SCRIPTS}/postprocess.py"},
        {"name": "inputs", "path": "examples/diamond/inputs.json"},
        *({"name": f"f{i}", "path": f"{_OUT}/f{i}.json"} for i in range(1, 6)),
    ],
    "user_data": [
        {"name": "my_val", "is_ephemeral": False, "data": {"scale": 2}},
        {"name": "summary", "is_ephemeral": False, "data": None},
    ],
    "resource_requirements": [
        _rr("small", "512m", "P0DT5M"),
        _rr("medium", "1g", "P0DT10M"),
        _rr("large", "2g", "P0DT20M"),
    ],
    "config": {
        "compute_node_resource_stats": {"cpu": True, "memory": True, "process": True, "interval": 1}
    },
}


def example() -> dict[str, Any]:
    """A small valid spec: the diamond."""
    return copy.deepcopy(DIAMOND)


def template() -> dict[str, Any]:
    """An empty spec with every section and the default config, to fill in."""
    config = WorkflowConfigIn().model_dump(exclude={"key", "id_", "rev"})
    return {
        "name": "",
        "user": "",
        "description": "",
        "jobs": [],
        "files": [],
        "user_data": [],
        "resource_requirements": [],
        "schedulers": {"aws_schedulers": [], "local_schedulers": [], "slurm_schedulers": []},
        "config": config,
    }

"""A small scripted client over Flask's test client, for driving workflows through HTTP."""

from __future__ import annotations

from typing import Any

FINISHED = {"done", "terminated", "canceled"}
BIG_NODE = {"num_cpus": 1000, "memory_gb": 10000, "num_gpus": 100, "num_nodes": 1}


class Api:
    """HTTP calls scoped to one workflow; every helper asserts the expected status code."""

    def __init__(self, client: Any, workflow: str) -> None:
        self.client = client
        self.wf = workflow

    def call(
        self, method: str, path: str, body: Any = None, expect: int = 200, **params: Any
    ) -> Any:
        """One request under /workflows/<wf>; returns the JSON body."""
        query = {
            k: (str(v).lower() if isinstance(v, bool) else v)
            for k, v in params.items()
            if v is not None
        }
        resp = self.client.open(
            f"/workflows/{self.wf}{path}", method=method, json=body, query_string=query
        )
        assert resp.status_code == expect, (method, path, resp.status_code, resp.json)
        return resp.json

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("PUT", path, body, **kw)

    def file(self, name: str, path: str, st_mtime: float | None = None) -> str:
        return self.post("/files", {"name": name, "path": path, "st_mtime": st_mtime})["_id"]

    def user_data(
        self, name: str, data: dict[str, Any] | None = None, ephemeral: bool = False
    ) -> str:
        body = {"name": name, "data": data, "is_ephemeral": ephemeral}
        return self.post("/user_data", body)["_id"]

    def rr(self, name: str, **fields: Any) -> str:
        return self.post("/resource_requirements", {"name": name, **fields})["_id"]

    def job(self, name: str, **fields: Any) -> dict[str, Any]:
        return self.post(
            "/jobs", {"name": name, "command": fields.pop("command", f"run {name}"), **fields}
        )

    def node(self, hostname: str = "node1") -> str:
        body = {
            "hostname": hostname,
            "pid": 1,
            "start_time": "2024-01-01 00:00:00.0",
            "resources": BIG_NODE,
        }
        return self.post("/compute_nodes", body)["_key"]

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job of the workflow by name."""
        return {j["name"]: j for j in self.get("/jobs")["items"]}

    def statuses(self) -> dict[str, str]:
        return {name: j["status"] for name, j in self.jobs().items()}

    def run_id(self) -> int:
        return int(self.get("/status")["run_id"])

    def initialize(self, **params: Any) -> Any:
        return self.post("/initialize_jobs", **params)

    def claim(self, resources: dict[str, Any] | None = None, **params: Any) -> list[Any]:
        return self.post("/prepare_jobs_for_submission", resources or BIG_NODE, **params)["jobs"]

    def start(
        self, job: dict[str, Any], node: str, run_id: int | None = None, expect: int = 200
    ) -> Any:
        run = self.run_id() if run_id is None else run_id
        return self.put(f"/jobs/{job['_key']}/start_job/{job['_rev']}/{run}/{node}", expect=expect)

    def complete(
        self,
        job: dict[str, Any],
        node: str,
        return_code: int = 0,
        status: str = "done",
        run_id: int | None = None,
        expect: int = 200,
    ) -> Any:
        run = self.run_id() if run_id is None else run_id
        result = {
            "job_key": job["_key"],
            "run_id": run,
            "return_code": return_code,
            "exec_time_minutes": 1.0,
            "completion_time": "2024-01-01T00:00:00",
            "status": status,
        }
        return self.post(
            f"/jobs/{job['_key']}/complete_job/{status}/{job['_rev']}/{run}/{node}",
            result,
            expect=expect,
        )


def run_to_completion(
    api: Api,
    node: str,
    fail: set[str] = frozenset(),  # type: ignore[assignment]
    resources: dict[str, Any] | None = None,
) -> list[str]:
    """Claim, start and complete until nothing is claimable; asserts blockers finished first."""
    finished = {n for n, s in api.statuses().items() if s in FINISHED}
    order: list[str] = []
    keys = {j["_key"]: name for name, j in api.jobs().items()}
    while True:
        claimed = api.claim(resources)
        if not claimed:
            break
        for job in claimed:
            blockers = {keys[b.split("/")[1]] for b in job["blocked_by"]}
            assert blockers <= finished, f"{job['name']} started before {blockers - finished}"
            started = api.start(job, node)
            assert started["status"] == "submitted"
            order.append(job["name"])
            code = 1 if job["name"] in fail else 0
            done = api.complete(started, node, return_code=code)
            assert done["status"] == "done"
            finished.add(job["name"])
        finished |= {n for n, s in api.statuses().items() if s in FINISHED}
    return order

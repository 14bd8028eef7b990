"""A fake Slurm (sbatch, squeue, sacct, scancel) driven by files in $FAKE_SLURM_DIR.

Installed by tests as four executables that run this file. Every call appends one JSON line
to calls.jsonl. Jobs live in jobs.json ({id: {name, comment, state, script}}); files the test
writes change behaviour:
  sbatch.fail     first line exit code, rest stderr: every sbatch fails that way
  sbatch.flaky    'M R1,R2': call n fails with EAGAIN when n % M is in {R1, R2}
  sbatch.stdout   printed instead of the job id (exit 0)
  sbatch.lost     the job is created but sbatch says 'Socket timed out' (exit 1), once
  sbatch.hang     the job is created but sbatch never answers (sleeps), once
  squeue.fail     first line exit code, rest stderr: every squeue fails that way
  forgotten       job ids (one a line) the controller no longer knows
  sacct.json      {id: state} that accounting knows; absent: accounting is disabled
  scancel.fail    first line exit code, rest stderr
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

DIR = Path(os.environ["FAKE_SLURM_DIR"])


def load(name: str, default: object) -> object:
    path = DIR / name
    return json.loads(path.read_text()) if path.exists() else default


def save(name: str, data: object) -> None:
    (DIR / name).write_text(json.dumps(data))


def fail_from(name: str) -> None:
    path = DIR / name
    if path.exists():
        code, _, message = path.read_text().partition("\n")
        sys.stderr.write(message)
        sys.exit(int(code))


def option(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def forgotten() -> set[str]:
    path = DIR / "forgotten"
    return set(path.read_text().split()) if path.exists() else set()


def sbatch(args: list[str]) -> None:
    count = int(load("sbatch.count", 0)) + 1  # type: ignore[call-overload]
    save("sbatch.count", count)
    fail_from("sbatch.fail")
    flaky = DIR / "sbatch.flaky"
    if flaky.exists():
        modulus, _, rests = flaky.read_text().strip().partition(" ")
        if count % int(modulus) in {int(r) for r in rests.split(",")}:
            sys.stderr.write(
                "sbatch: error: Batch job submission failed: Resource temporarily unavailable\n"
            )
            sys.exit(1)
    if (DIR / "sbatch.stdout").exists():
        sys.stdout.write((DIR / "sbatch.stdout").read_text())
        return
    text = Path(args[-1]).read_text()
    jobs: dict[str, dict[str, str]] = load("jobs.json", {})  # type: ignore[assignment]
    job_id = str(1000 + len(jobs))
    found = dict(re.findall(r"^#SBATCH --(job-name|comment)=(\S+)", text, re.MULTILINE))
    jobs[job_id] = {
        "name": found.get("job-name", ""),
        "comment": found.get("comment", ""),
        "state": "PENDING",
        "script": args[-1],
    }
    save("jobs.json", jobs)
    if (DIR / "sbatch.hang").exists():
        (DIR / "sbatch.hang").unlink()
        time.sleep(60)
    if (DIR / "sbatch.lost").exists():
        (DIR / "sbatch.lost").unlink()
        sys.stderr.write(
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n"
        )
        sys.exit(1)
    print(f"{job_id};fakecluster" if (DIR / "cluster").exists() else job_id)


def squeue(args: list[str]) -> None:
    fail_from("squeue.fail")
    jobs: dict[str, dict[str, str]] = load("jobs.json", {})  # type: ignore[assignment]
    known = {k: v for k, v in jobs.items() if k not in forgotten()}
    wanted = option(args, "jobs")
    name = option(args, "name")
    fmt = option(args, "format") or "%i|%T"
    ids = wanted.split(",") if wanted else list(known)
    if wanted and len(ids) == 1 and ids[0] not in known:
        sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
        sys.exit(1)
    for job_id in ids:
        job = known.get(job_id)
        if job is None or (name and job["name"] != name):
            continue
        print(fmt.replace("%i", job_id).replace("%T", job["state"]).replace("%k", job["comment"]))


def sacct(args: list[str]) -> None:
    accounting: dict[str, str] | None = load("sacct.json", None)  # type: ignore[assignment]
    if accounting is None:
        sys.stderr.write("sacct: error: Slurm accounting storage is disabled\n")
        sys.exit(1)
    for job_id in (option(args, "jobs") or "").split(","):
        if job_id in accounting:
            print(f"{job_id}|{accounting[job_id]}")


def scancel(args: list[str]) -> None:
    fail_from("scancel.fail")
    jobs: dict[str, dict[str, str]] = load("jobs.json", {})  # type: ignore[assignment]
    code = 0
    for job_id in args:
        if job_id in jobs and job_id not in forgotten():
            jobs[job_id]["state"] = "CANCELLED"
        else:
            sys.stderr.write(
                f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified\n"
            )
            code = 1
    save("jobs.json", jobs)
    sys.exit(code)


def main() -> None:
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    with open(DIR / "calls.jsonl", "a") as log:
        log.write(
            json.dumps(
                {
                    "cmd": name,
                    "args": args,
                    "token": os.environ.get("HPCFLOW_TOKEN"),
                    "slurm_conf": os.environ.get("SLURM_CONF"),
                }
            )
            + "\n"
        )
    {"sbatch": sbatch, "squeue": squeue, "sacct": sacct, "scancel": scancel}[name](args)


if __name__ == "__main__":
    main()

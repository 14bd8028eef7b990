"""Diamond step 2: square each value, scaled by the job's consumed user data if it has any.

The runner tells a job where the server is (HPCFLOW_URL) and who it is (HPCFLOW_WORKFLOW_KEY,
HPCFLOW_JOB_KEY); the job reads its input user data through the torc API.
"""

import argparse
import json
import os
import urllib.request
from pathlib import Path


def consumed_user_data() -> list[dict]:
    """The user data documents this job consumes (none when run outside hpcflow)."""
    url = os.environ.get("HPCFLOW_URL")
    if not url:
        return []
    wf, job = os.environ["HPCFLOW_WORKFLOW_KEY"], os.environ["HPCFLOW_JOB_KEY"]
    with urllib.request.urlopen(f"{url}/workflows/{wf}/jobs/{job}/user_data_consumes") as resp:
        return json.load(resp)["items"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-i", "--input", required=True)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    values = json.loads(Path(args.input).read_text())["values"]
    scale = 1
    for doc in consumed_user_data():
        scale *= (doc.get("data") or {}).get("scale", 1)
    squares = [scale * v * v for v in values]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"values": squares, "scale": scale, "sum": sum(squares)}))
    print(f"scale {scale}: sum of squares {sum(squares)} -> {out}")


if __name__ == "__main__":
    main()

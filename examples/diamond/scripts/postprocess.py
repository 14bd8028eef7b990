"""Diamond step 3: add up the work results; store the total in the job's output user data."""

import argparse
import json
import os
import urllib.request
from pathlib import Path


def store_summary(summary: dict) -> None:
    """Put the summary into each user data document this job stores (outside hpcflow: skip)."""
    url = os.environ.get("HPCFLOW_URL")
    if not url:
        return
    base = f"{url}/workflows/{os.environ['HPCFLOW_WORKFLOW_KEY']}"
    with urllib.request.urlopen(
        f"{base}/jobs/{os.environ['HPCFLOW_JOB_KEY']}/user_data_stores"
    ) as resp:
        stores = json.load(resp)["items"]
    for doc in stores:
        body = json.dumps({**doc, "data": summary}).encode()
        req = urllib.request.Request(
            f"{base}/user_data/{doc['_key']}",
            data=body,
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req).close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-i", "--input", action="append", required=True)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    parts = [json.loads(Path(p).read_text()) for p in args.input]
    summary = {"total": sum(p["sum"] for p in parts), "count": sum(len(p["values"]) for p in parts)}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary))
    store_summary(summary)
    print(f"total {summary['total']} over {summary['count']} values -> {out}")


if __name__ == "__main__":
    main()

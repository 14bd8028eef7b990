"""Diamond step 1: split the input values into two halves, one file each."""

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-i", "--input", required=True)
    parser.add_argument("-o", "--output", action="append", required=True)
    args = parser.parse_args()
    values = json.loads(Path(args.input).read_text())["values"]
    parts = len(args.output)
    for n, path in enumerate(args.output):
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"values": values[n::parts]}))
        print(f"wrote {len(values[n::parts])} values to {out}")


if __name__ == "__main__":
    main()

"""Regenerate the README's generated sections: the configuration table, and the CPU benchmark from a JSON file.

    python scripts/update_readme.py [--bench bench.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from higgs_worker.core.settings import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return head + start + body + "\n" + end + tail


def bench_table(results: dict) -> str:
    rows = ["| metric | value | target |", "| --- | --- | --- |"]
    targets = {"batch8_speedup": ">= 3.5", "single_overhead_ratio": "<= 1.05", "ttfa_ratio": "<= 0.15",
               "server_overhead_ms_p50": "<= 10"}
    for key, value in results.items():
        if key not in ("date", "machine") and not isinstance(value, (dict, list)):  # the steps: their own table
            rows.append(f"| `{key}` | {value} | {targets.get(key, '')} |")
    return (f"Measured {results['date']} on {results['machine']} with `python -m bench.cpu`:\n\n" + "\n".join(rows))


def load_table(results: dict) -> str:
    rows = ["| | |", "| --- | --- |"]
    rows += [f"| {key} | {value} |" for key, value in results.items() if key != "date"]
    return f"Measured {results['date']} on the 2-core build machine (tiny model):\n\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", type=Path)
    parser.add_argument("--load", type=Path)
    args = parser.parse_args()
    text = replace(README.read_text(encoding="utf-8"), "settings-table", settings_table())
    if args.bench:
        text = replace(text, "bench-cpu", bench_table(json.loads(args.bench.read_text())))
    if args.load:
        text = replace(text, "bench-load", load_table(json.loads(args.load.read_text())))
    README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

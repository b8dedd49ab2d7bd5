"""Compare two checkouts of pgq on one benchmark, taking turns, in one run.

The machine's speed drifts by tens of percent from one minute to the next, so a figure
measured on one checkout now and on another later says little. This runs a benchmark
module of each checkout in alternation (A, B, B, A, A, B, ...: each variant goes first
as often as second), each with that checkout's own virtualenv and code, and prints one
JSON line per run and one summary line: the median of B / A over the rounds, and the
lowest and highest round.

    .venv/bin/python -m benchmarks.compare --base /path/to/other/checkout \\
        --rounds 4 -- drain_costs -n 20000

The module must print one JSON line with the figure named by ``--figure`` (default
``per_s``: higher is better). ``--base`` is A; this checkout (or ``--head``) is B. Each
checkout needs ``make install`` first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = {"A": Path(args.base).resolve(), "B": Path(args.head).resolve()}
    ratios = []
    for round_no in range(args.rounds):
        order = ["A", "B"] if round_no % 2 == 0 else ["B", "A"]
        figures = {}
        for name in order:
            result = run_module(variants[name], args.module, args.module_args)
            figures[name] = float(result[args.figure])
            print(json.dumps({"round": round_no, "variant": name, **result}), flush=True)
        ratios.append(figures["B"] / figures["A"])
    summary = {
        "compare": args.module,
        "figure": args.figure,
        "base": str(variants["A"]),
        "head": str(variants["B"]),
        "rounds": args.rounds,
        "b_over_a_median": round(statistics.median(ratios), 3),
        "b_over_a_min": round(min(ratios), 3),
        "b_over_a_max": round(max(ratios), 3),
    }
    print(json.dumps(summary), flush=True)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="checkout A (the baseline)")
    parser.add_argument("--head", default=str(HERE), help="checkout B (default: this one)")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each variant")
    parser.add_argument("--figure", default="per_s", help="the JSON field to compare")
    parser.add_argument("module", help="benchmarks module to run, e.g. drain_costs")
    parser.add_argument("module_args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def run_module(checkout: Path, module: str, module_args: list[str]) -> dict[str, Any]:
    python = checkout / ".venv" / "bin" / "python"
    if not python.exists():
        sys.exit(f"compare: {python} is missing; run `make install` in {checkout}")
    done = subprocess.run(
        [str(python), "-m", f"benchmarks.{module}", *module_args],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"compare: {module} failed in {checkout}:\n{done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"compare: {module} printed no JSON line in {checkout}")
    return dict(json.loads(lines[-1]))


if __name__ == "__main__":
    sys.exit(main())

"""CPU per request as instructions executed, counted by callgrind: repeatable to a fraction
of a percent on a shared, noisy machine, where CPU seconds vary by a third from run to run.

    .venv/bin/python bench/instructions.py [--query subset,dashboard] [--requests 20]
        [--devices 120] [--hours 1] [--first 100] [--baseline-tree DIR]
        [--profile-dir DIR] [--clock ROUNDS] [--write]

Starts the stores and seeds the demo fleet (bench/_stack.py), then for each query runs
bench/_instructions_run.py under `valgrind --tool=callgrind --instr-atstart=no`: the
gateway app answers the query in-process through ASGI (no HTTP server or client in the
count), a warm-up first with instrumentation off, then --requests answers counted. The
count covers everything the gateway process executes for them: Python, the C libraries
(asyncpg's decoding, orjson, uvloop), allocation and collection; the stores run in their
own processes and are not counted. --baseline-tree DIR measures another checkout of the
project (e.g. `git worktree add /tmp/base <commit>`) on the same stores and data, so the
table shows both and their ratio. Instructions are not time (a cache miss costs more than
an add), so read them as what a change saves, next to the wall-clock benchmarks.

--clock ROUNDS times the same in-process answers instead (no valgrind): per round and
tree, one process answers --requests times and reports its CPU seconds
(``time.process_time``); the trees alternate round by round, so a drift of the machine's
speed reaches both, and the table shows each tree's median per request, every round's,
and the ratio of the medians. Served benchmarks hours apart can differ by more than a
change saves; this compares two trees side by side, in seconds.

Needs valgrind (Debian's package) unless --clock: the benchmark stops and says so when it
is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/instructions.py` puts bench/ first
    sys.path.insert(0, str(ROOT))

from bench._cli import positive  # noqa: E402
from bench._machine import machine_info  # noqa: E402
from bench._stack import (  # noqa: E402
    BenchError,
    append_results,
    dated_section,
    seed_demo,
    stack_up,
)
from bench.queries import QUERIES  # noqa: E402

RUNNER = ROOT / "bench" / "_instructions_run.py"


def _count(tree: Path, stores: dict[str, str], key: str, body: str, requests: int,
           keep: Path | None = None) -> int:
    """Instructions callgrind counted for ``requests`` answers of ``tree``'s gateway; its
    profile is copied to ``keep`` when given (for ``callgrind_annotate``)."""
    with tempfile.TemporaryDirectory(prefix="iotsphere-callgrind-") as tmp:
        env = {**os.environ, **stores, "IOTSPHERE_RATE_LIMIT": "0", "PYTHONPATH": str(tree)}
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/out", sys.executable, str(RUNNER), key, body,
             str(requests)],
            env=env, cwd=tree, capture_output=True, text=True, timeout=1800)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise BenchError(f"the measured process failed ({tree}):\n{done.stderr[-3000:]}")
        if keep is not None:
            shutil.copyfile(f"{tmp}/out", keep)
    return int(found.group(1))


def _seconds(tree: Path, stores: dict[str, str], key: str, body: str, requests: int) -> float:
    """CPU seconds per answer of ``tree``'s gateway, in-process, one process."""
    env = {**os.environ, **stores, "IOTSPHERE_RATE_LIMIT": "0", "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(RUNNER), key, body, str(requests), "clock"],
        env=env, cwd=tree, capture_output=True, text=True, timeout=1800)
    found = re.search(r"cpu-seconds ([0-9.]+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise BenchError(f"the measured process failed ({tree}):\n{done.stderr[-3000:]}")
    return float(found.group(1)) / requests


def _clock_table(args: argparse.Namespace, trees: list[tuple[str, Path]],
                 stores: dict[str, str], key: str, queries: list[str]) -> str:
    names = [name for name, _ in trees]
    table = ["| query | " + " | ".join(f"{name}, CPU ms/request (median; rounds)"
                                       for name in names)
             + (" | this / baseline |" if len(trees) > 1 else " |"),
             "|---|" + "---|" * len(trees) + ("---:|" if len(trees) > 1 else "")]
    for query in queries:
        body = json.dumps({"query": QUERIES[query], "variables": {"first": args.first}})
        rounds: dict[str, list[float]] = {name: [] for name in names}
        for n in range(args.clock):
            # Alternate which tree goes first, so neither always follows the other.
            for name, tree in trees if n % 2 == 0 else trees[::-1]:
                rounds[name].append(_seconds(tree, stores, key, body, args.requests) * 1e3)
        medians = {name: statistics.median(values) for name, values in rounds.items()}
        print(f"{query}: " + ", ".join(f"{name} {medians[name]:.2f} ms" for name in names),
              flush=True)
        cells = [f"{medians[name]:.2f}; " + " ".join(f"{v:.2f}" for v in rounds[name])
                 for name in names]
        if len(trees) > 1:
            cells.append(f"{medians['this tree'] / medians['baseline']:.3f}")
        table.append(f"| {query} | " + " | ".join(cells) + " |")
    return "\n".join(table) + (
        f"\n\nCPU seconds (`time.process_time`) of {args.requests} in-process answers per "
        f"round and tree after 20 uncounted, {args.clock} rounds, trees alternating; "
        f"{args.devices} devices, {args.hours} h of telemetry, first {args.first}"
        + (f"; baseline tree {args.baseline_tree}" if len(trees) > 1 else "") + ".")


def _profile(directory: Path | None, query: str, tree: str) -> Path | None:
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{query}.{tree.replace(' ', '-')}.out"


async def _seed(args: argparse.Namespace, settings: object) -> str:
    seeded = await seed_demo(settings, "instructions", args.devices, args.hours)  # type: ignore[arg-type]
    return seeded.key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query", default="subset",
                        help=f"comma-separated, of {', '.join(QUERIES)} (default subset)")
    parser.add_argument("--requests", type=positive(int), default=20,
                        help="counted answers per query and tree (default 20)")
    parser.add_argument("--devices", type=positive(int), default=120)
    parser.add_argument("--hours", type=positive(float), default=1.0)
    parser.add_argument("--first", type=positive(int), default=100)
    parser.add_argument("--baseline-tree", type=Path,
                        help="another checkout of the project, measured beside this one")
    parser.add_argument("--profile-dir", type=Path,
                        help="keep each callgrind profile there, as <query>.<tree>.out")
    parser.add_argument("--clock", type=positive(int), metavar="ROUNDS",
                        help="time the answers in CPU seconds, ROUNDS rounds per tree, "
                             "instead of counting instructions")
    parser.add_argument("--write", action="store_true",
                        help="append a dated section to bench/RESULTS.md")
    args = parser.parse_args()
    queries = args.query.split(",")
    for query in queries:
        if query not in QUERIES:
            parser.error(f"unknown query {query!r}")
    if args.clock is None and (shutil.which("valgrind") is None
                               or shutil.which("callgrind_control") is None):
        raise BenchError("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = [("this tree", ROOT)]
    if args.baseline_tree is not None:
        trees.append(("baseline", args.baseline_tree.resolve()))
    with stack_up() as stack:
        key = asyncio.run(_seed(args, stack.settings))
        if args.clock is not None:
            report = _clock_table(args, trees, stack.env, key, queries)
            print("\n" + report)
            if args.write:
                info = machine_info("PostgreSQL and Valkey (embedded)", ())
                append_results(dated_section(
                    "in-process CPU seconds per request (bench/instructions.py --clock)",
                    info, report))
            return 0
        rows = []
        for query in queries:
            body = json.dumps({"query": QUERIES[query], "variables": {"first": args.first}})
            counts = {name: _count(tree, stack.env, key, body, args.requests,
                                   _profile(args.profile_dir, query, name)) / args.requests
                      for name, tree in trees}
            rows.append((query, counts))
            print(f"{query}: " + ", ".join(f"{name} {n / 1e6:.2f} M" for name, n in counts.items()),
                  flush=True)
    table = ["| query | " + " | ".join(f"{name}, M instructions/request" for name, _ in trees)
             + (" | this / baseline |" if len(trees) > 1 else " |"),
             "|---|" + "---:|" * (len(trees) + (len(trees) > 1))]
    for query, counts in rows:
        cells = [f"{counts[name] / 1e6:.2f}" for name, _ in trees]
        if len(trees) > 1:
            cells.append(f"{counts['this tree'] / counts['baseline']:.3f}")
        table.append(f"| {query} | " + " | ".join(cells) + " |")
    report = "\n".join(table) + (
        f"\n\n{args.requests} counted answers per query and tree after 20 uncounted, "
        f"in-process through ASGI; {args.devices} devices, {args.hours} h of telemetry, "
        f"first {args.first}" + (f"; baseline tree {args.baseline_tree}" if len(trees) > 1
                                 else "") + ".")
    print("\n" + report)
    if args.write:
        info = machine_info("PostgreSQL and Valkey (embedded)", ())
        append_results(dated_section("instructions per request (bench/instructions.py)",
                                     info, report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"instructions: {error}", file=sys.stderr)
        sys.exit(1)

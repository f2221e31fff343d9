"""Memory probe: what survives between idle moments after the same load, and what the
cyclic garbage is made of.

    .venv/bin/python bench/memory_probe.py [--rounds 4] [--seconds 60] [--clients 32]
        [--subscribers 8] [--tracemalloc]

Serves the gateway as bench/soak.py does (same stores, seed and load mix), but in rounds:
load for ``--seconds``, stop the HTTP clients, let every request drain, then have the
gateway (under a launcher, its code unchanged) report at this quiet point:

- the objects the cyclic collector would free (``gc.DEBUG_SAVEALL`` for one collection),
  counted by type: what the load leaves as cyclic garbage since the last collection;
- live objects by type after that full collection, diffed against the previous quiet
  point: what survives the same load (a leak shows as a count that grows every round);
- with ``--tracemalloc``, the traced heap diffed by line against the previous quiet point;
- RSS.

The subscribers stay connected throughout (idle while the clients pause).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench._cli import stop_on_signals  # noqa: E402
from bench._procs import load_average  # noqa: E402
from bench._soak_load import HttpClient, Recorder, Subscriber, stop_all  # noqa: E402
from bench._stack import BenchError, Server, seed_demo, stack_up  # noqa: E402
from bench.soak import _run  # noqa: E402

# SIGUSR2: one collection saving its garbage (counted by type, then released), counts of
# live objects by type, an optional tracemalloc snapshot; a JSON line on stderr.
LAUNCHER = """
import collections, gc, json, os, signal, sys, tracemalloc
if os.environ.get("PROBE_TRACEMALLOC"):
    tracemalloc.start(int(os.environ.get("PROBE_FRAMES", "8")))
_n = [0]
def _name(o):
    t = type(o)
    return f"{t.__module__}.{t.__qualname__}"
def _describe(o):
    d = _name(o)
    if isinstance(o, dict):
        d += " keys=" + repr([str(k)[:40] for k in list(o)[:5]])
    elif callable(o) and hasattr(o, "__qualname__"):
        d += " " + o.__qualname__
    return d
def _chains(type_name, samples=3, depth=12):
    import types
    objs = [o for o in gc.get_objects() if _name(o) == type_name][-samples:]
    chains = []
    for o in objs:
        chain, seen = [_describe(o)], {id(o)}
        cur = o
        for _ in range(depth):
            refs = [r for r in gc.get_referrers(cur)
                    if id(r) not in seen and not isinstance(r, types.FrameType)
                    and r is not objs]
            if not refs:
                break
            cur = refs[0]
            seen.add(id(cur))
            chain.append(_describe(cur))
        chains.append(chain)
    return chains
def _probe(signum, frame):
    _n[0] += 1
    gc.set_debug(gc.DEBUG_SAVEALL)
    freed = gc.collect()
    garbage = collections.Counter(_name(o) for o in gc.garbage)
    gc.garbage.clear()
    gc.set_debug(0)
    gc.collect()
    live = collections.Counter(_name(o) for o in gc.get_objects())
    out = {"n": _n[0], "freed": freed, "garbage": garbage.most_common(40),
           "live": dict(live), "gc_counts": gc.get_count(), "gc_stats": gc.get_stats()}
    if os.environ.get("PROBE_CHAIN"):
        out["chains"] = _chains(os.environ["PROBE_CHAIN"])
    if tracemalloc.is_tracing():
        path = os.path.join(os.environ["PROBE_DIR"], f"snapshot-{_n[0]}.pickle")
        tracemalloc.take_snapshot().dump(path)
        out["snapshot"] = path
    path = os.path.join(os.environ["PROBE_DIR"], f"probe-{_n[0]}.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"PROBE {path}", file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR2, _probe)
from gateway.runtime.cli import main
sys.exit(main())
"""


async def _probe(server: Server, done: int) -> dict[str, Any]:
    os.kill(server.pid, signal.SIGUSR2)
    for _ in range(1200):
        lines = [line for line in server.log_path.read_text(errors="replace").splitlines()
                 if line.startswith("PROBE ")]
        if len(lines) > done:
            return _read_json(Path(lines[-1].split(" ")[1]))
        await asyncio.sleep(0.1)
    raise BenchError("the gateway wrote no probe within 120 s")


def _read_json(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(path.read_bytes())
    return result


def _diff_live(before: dict[str, int], after: dict[str, int], top: int = 25) -> list[str]:
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    ranked = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]
    return [f"    {d:+8,d}  {after.get(k, 0):9,d}  {k}" for k, d in ranked if d]


def _diff_traced(before: str, after: str, top: int = 15) -> list[str]:
    import tracemalloc
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<unknown>")]
    first = tracemalloc.Snapshot.load(before).filter_traces(ignore)
    last = tracemalloc.Snapshot.load(after).filter_traces(ignore)
    lines = [f"    {s.size_diff / 1024:+,.0f} KiB ({s.count_diff:+,} blocks): "
             f"{s.traceback[0]}" for s in last.compare_to(first, "lineno")[:top]]
    for stat in last.compare_to(first, "traceback")[:3]:
        lines.append(f"    traceback of {stat.size_diff / 1024:+,.0f} KiB:")
        lines += [f"        {frame}" for frame in stat.traceback.format()[-12:]]
    return lines


async def run(server: Server, key: str, active: list[str], args: argparse.Namespace
              ) -> None:
    rec = Recorder(time.monotonic(), args.seconds)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    n_http = args.clients - args.subscribers
    limits = httpx.Limits(max_connections=n_http + 2, max_keepalive_connections=n_http + 2)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60.0,
                                 limits=limits, trust_env=False) as http:
        slices = max(1, args.subscribers // 2)
        subs = [Subscriber(n, server.ws_url, key,
                           None if n % 2 == 0 else active[n // 2::slices], rec)
                for n in range(args.subscribers)]
        sub_tasks = [asyncio.create_task(s.run()) for s in subs]
        previous: dict[str, Any] | None = None
        try:
            for round_ in range(args.rounds):
                stop = asyncio.Event()
                clients = [HttpClient(n + 100 * round_, http, active, args.first, rec)
                           for n in range(n_http)]
                tasks = [asyncio.create_task(c.run(stop)) for c in clients]
                await asyncio.sleep(args.seconds)
                stop.set()
                await asyncio.wait(tasks, timeout=90)
                await asyncio.sleep(2.0)  # subscribers' last events
                rss = server.rss_kib() / 1024
                probe = await _probe(server, round_)
                requests = sum(sum(i.requests.values()) for i in rec.intervals.values())
                errors = sum(i.errors for i in rec.intervals.values())
                print(f"\n== round {round_ + 1}: RSS {rss:.1f} MiB (before the probe's "
                      f"collection), {requests} requests so far, {errors} "
                      f"errors, load {load_average()[0]:.2f}; cyclic garbage found: "
                      f"{probe['freed']:,} objects", flush=True)
                print("  cyclic garbage by type:", flush=True)
                for name, count in probe["garbage"][:20]:
                    print(f"    {count:9,d}  {name}", flush=True)
                if previous is not None:
                    print("  live objects, change since the last quiet point:", flush=True)
                    print("\n".join(_diff_live(previous["live"], probe["live"])), flush=True)
                    if "snapshot" in probe:
                        print("  traced heap, change since the last quiet point:")
                        print("\n".join(_diff_traced(previous["snapshot"],
                                                     probe["snapshot"])), flush=True)
                for chain in probe.get("chains", []):
                    print("  referrers: " + "\n      <- ".join(chain), flush=True)
                previous = probe
        finally:
            for s in subs:
                s.closing = True
            await stop_all(sub_tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--devices", type=int, default=120)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--first", type=int, default=100)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--chain", help="a type (module.qualname) whose newest objects'"
                        " referrers to print at each quiet point")
    args = parser.parse_args(argv)
    stop_on_signals()
    log_dir = Path(tempfile.mkdtemp(prefix="iotsphere-probe-"))
    try:
        with stack_up(env_stores=True) as stack:
            seeded = _run(seed_demo(stack.settings, "probe", args.devices, args.hours))
            server = Server(stack, log_dir / "server.log")
            server.launcher = [sys.executable, "-c", LAUNCHER]
            server.env["PROBE_DIR"] = str(log_dir)
            if args.tracemalloc:
                server.env["PROBE_TRACEMALLOC"] = "1"
            if args.chain:
                server.env["PROBE_CHAIN"] = args.chain
            with server:
                print(f"gateway pid {server.pid}; load {load_average()}", flush=True)
                _run(run(server, seeded.key, seeded.active, args))
                server.stop()
    except BenchError as exc:
        print(f"probe failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

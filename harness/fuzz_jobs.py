"""`posharness fuzz --jobs N`: one campaign as N local shards, one process each.

Shard j of N runs exactly what `--shard j/N` would (its own seed stream, so every
shard is deterministic and no two overlap); with `--shard I/M` as well, the jobs
split that shard further (shard I*N + j of M*N). Every shard uses the same example
database (the one `--db` names, or the profile's), so a failure stored by one is
replayed by the others and by the next campaign. The first shard to find a
violation wins: the others are stopped, and its scenario and trace are moved from
the shard's work folder (`<out>/.jobs/<j>/`) into `<out>/`.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fuzz import PROFILES, Found, Stats, campaign, open_database

# How long the parent waits for a message before checking its workers are alive.
POLL_S = 0.5


def jobs_for(value: int) -> int:
    """`--jobs 0` means one per core."""
    return value if value > 0 else (os.cpu_count() or 1)


def sub_shard(shard: tuple[int, int], j: int, jobs: int) -> tuple[int, int]:
    return (shard[0] * jobs + j, shard[1] * jobs)


def split_examples(examples: int | None, j: int, jobs: int) -> int | None:
    """`examples` spread over the jobs (the first ones take the remainder)."""
    if examples is None:
        return None
    return examples // jobs + (1 if j < examples % jobs else 0)


def _worker(j: int, jobs: int, kw: dict[str, Any], out: Any) -> None:
    """One shard, in its own process; reports progress and the result on `out`."""
    prof = PROFILES[kw["profile"]]
    db_url = kw.pop("db_url")
    database = open_database(db_url) if db_url or not prof.derandomize else None

    def progress(stats: Stats) -> None:
        out.put(("progress", j, stats))

    found, stats = campaign(database=database, on_progress=progress, **kw)
    out.put(("done", j, (found, stats)))


def _merge(parts: dict[int, Stats], started_s: float) -> Stats:
    merged = Stats(started_s=started_s)
    for s in parts.values():
        merged.examples += s.examples
        merged.purchases += s.purchases
        merged.kinds |= s.kinds
        merged.behaviours |= s.behaviours
        merged.chunks += s.chunks
    return merged


def run_jobs(
    firmware: str,
    jobs: int,
    *,
    examples: int | None,
    budget_s: float | None,
    campaign_seed: int,
    out_dir: Path,
    profile: str,
    shard: tuple[int, int],
    db_url: str | None,
    on_progress: Callable[[Stats], None] | None = None,
    started_s: float = 0.0,
) -> tuple[Found | None, Stats]:
    """Run `jobs` shards in parallel; return the first violation found (if any)
    and the merged statistics of every shard."""
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    work = out_dir / ".jobs"
    procs = []
    for j in range(jobs):
        kw: dict[str, Any] = {
            "firmware": firmware,
            "examples": split_examples(examples, j, jobs),
            "budget_s": budget_s,
            "campaign_seed": campaign_seed,
            "out_dir": work / str(j),
            "profile": profile,
            "shard": sub_shard(shard, j, jobs),
            "db_url": db_url,
        }
        p = ctx.Process(target=_worker, args=(j, jobs, kw, out), daemon=True)
        p.start()
        procs.append(p)
    parts: dict[int, Stats] = {}
    done: set[int] = set()
    found: Found | None = None
    try:
        while len(done) < jobs and found is None:
            try:
                kind, j, payload = out.get(timeout=POLL_S)
            except queue_mod.Empty:
                dead = [j for j, p in enumerate(procs) if not p.is_alive() and j not in done]
                if dead and out.empty():
                    # A worker died without reporting (killed, out of memory).
                    done.update(dead)
                continue
            if kind == "progress":
                parts[j] = payload
            else:
                result, parts[j] = payload
                done.add(j)
                found = result
            if on_progress is not None:
                on_progress(_merge(parts, started_s))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
    merged = _merge(parts, started_s)
    if found is not None:
        found = _promote(found, out_dir)
        merged.first_failure_example = found.detect_example
        merged.first_failure_s = found.detect_s
    shutil.rmtree(work, ignore_errors=True)
    return found, merged


def _promote(found: Found, out_dir: Path) -> Found:
    """Move the winning shard's scenario and trace into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / found.path.name
    shutil.move(found.path, path)
    found.path = path
    trace = found.result.trace_path
    if trace is not None and trace.exists():
        moved = out_dir / trace.name
        shutil.move(trace, moved)
        found.result.trace_path = moved
    return found

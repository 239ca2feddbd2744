"""Mutation testing of the harness: how many flaws it finds that nobody showed it.

Mutants of `terminal/reference.py` are generated with `ast`: each changes one
thing (a comparison flipped or its boundary moved, a statement dropped, two effects
of a returned list swapped, a journal write dropped or moved last, a constant
changed). Each mutant is compiled under a fresh module name and run as a firmware
(`posharness_mutant_<id>:ReferenceFirmware`) in-process against

* the built-in suite (`scenarios/`): killed when a scenario the reference passes
  shows a violation or a firmware crash (an unapplied fault alone is not a kill);
* a fuzz campaign (`harness.fuzz.campaign`, profile ci, campaign seed 0) with a
  fixed wall-clock budget: killed when it finds a violation or a crash.

Mutant ids are deterministic: sites are numbered in source order, so `m0042` is
the same mutant on every run of the same reference.py.

The reference firmware is several modules (`PARTS`); by default every one of them is
mutated (`--files` picks some). A mutant of a module other than reference.py, say
`terminal/inquiry_flow.py`, has the id `inquiry_flow.m0007`, and is run as the
reference with that module mutated and every other part compiled afresh to import it.
A new module of the firmware must be added to `PARTS`.

    python bench/mutation.py --limit 50 --fuzz-seconds 4 --jobs 1
    python bench/mutation.py --ids m0042,m0107 --fuzz-seconds 60
    python bench/mutation.py --files terminal/reference.py,terminal/inquiry_flow.py --list
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import difflib
import io
import json
import multiprocessing as mp
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCE = ROOT / "terminal" / "reference.py"
REFERENCE_MODULE = "terminal.reference"
# The reference firmware's modules, each after those it imports.
PARTS = (
    "terminal.ref_model",
    "terminal.ref_state",
    "terminal.inquiry_flow",
    "terminal.chip_flow",
    "terminal.credit_receipts",
    "terminal.refund_flow",
    "terminal.adjust_flow",
    "terminal.offline_flow",
    "terminal.sale_flow",
    "terminal.recovery",
    "terminal.reversal_flow",
    "terminal.batch_flow",
    REFERENCE_MODULE,
)
DEFAULT_FILES = ",".join(p.replace(".", "/") + ".py" for p in PARTS if p != "terminal.ref_state")

_FLIP = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}


@dataclass(frozen=True, slots=True)
class Mutant:
    id: str
    line: int
    op: str  # flip, boundary, drop, swap, journal-drop, journal-last, const
    what: str  # one line: the change


def _is_journal(node: ast.expr) -> bool:
    """`self._journal(...)` or `JournalAppend(...)`: a journal write."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "_journal") or (
        isinstance(f, ast.Name) and f.id == "JournalAppend"
    )


def _in_scope(tree: ast.Module) -> Iterator[ast.AST]:
    """Nodes that are logic: function bodies and module-level integer constants
    (docstrings, imports and dataclass field declarations are left alone)."""
    for top in tree.body:
        if isinstance(top, ast.Assign) and isinstance(top.value, ast.Constant):
            yield top.value
        elif isinstance(top, ast.FunctionDef):
            yield from ast.walk(top)
        elif isinstance(top, ast.ClassDef):
            for item in top.body:
                if isinstance(item, ast.FunctionDef):
                    yield from ast.walk(item)


def _sites(tree: ast.Module) -> list[tuple[tuple[int, int, str, int], str, Any]]:
    """Every mutation site as (sort key, description, how to apply it to a copy).

    The appliers find their node again in a deep copy by its position in a
    deterministic walk, so each mutant is applied to a fresh tree."""
    nodes = list(_in_scope(tree))
    index = {id(n): i for i, n in enumerate(nodes)}
    out: list[tuple[tuple[int, int, str, int], str, Any]] = []

    def add(
        node: ast.AST, op: str, variant: int, what: str, fn: Any, at: ast.AST | None = None
    ) -> None:
        line = getattr(at or node, "lineno", 0)
        col = getattr(at or node, "col_offset", 0)
        out.append(((line, col, op, variant), what, (index[id(node)], fn)))

    for node in nodes:
        if isinstance(node, ast.Compare):
            for k, cmp in enumerate(node.ops):
                flip = _FLIP.get(type(cmp))
                if flip is not None:
                    add(
                        node,
                        "flip",
                        k,
                        f"{type(cmp).__name__} -> {flip.__name__}",
                        _set_cmp(k, flip),
                    )
                bound = _BOUNDARY.get(type(cmp))
                if bound is not None:
                    add(
                        node,
                        "boundary",
                        k,
                        f"{type(cmp).__name__} -> {bound.__name__}",
                        _set_cmp(k, bound),
                    )
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And
            add(
                node, "flip", 9, f"{type(node.op).__name__} -> {other.__name__}", _set_boolop(other)
            )
        elif isinstance(node, ast.Constant) and type(node.value) in (int, bool):
            if isinstance(node.value, bool):
                add(
                    node,
                    "const",
                    0,
                    f"{node.value} -> {not node.value}",
                    _set_const(not node.value),
                )
            else:
                add(
                    node,
                    "const",
                    0,
                    f"{node.value} -> {node.value + 1}",
                    _set_const(node.value + 1),
                )
                if node.value != 0:
                    add(
                        node,
                        "const",
                        1,
                        f"{node.value} -> {node.value - 1}",
                        _set_const(node.value - 1),
                    )
        elif isinstance(node, ast.List) and len(node.elts) >= 2:
            for k in range(len(node.elts) - 1):
                a, b = node.elts[k], node.elts[k + 1]
                add(
                    node,
                    "swap",
                    k,
                    f"swap list items {k} and {k + 1}"
                    f" ({ast.unparse(a)[:40]} <-> {ast.unparse(b)[:40]})",
                    _swap(k),
                )
            for k, e in enumerate(node.elts):
                if _is_journal(e):
                    add(
                        node,
                        "journal-drop",
                        k,
                        f"drop journal write {ast.unparse(e)[:60]}",
                        _drop_elt(k),
                    )
                    if k < len(node.elts) - 1:
                        add(
                            node,
                            "journal-last",
                            k,
                            f"journal write {ast.unparse(e)[:60]} moved last",
                            _move_last(k),
                        )
        if isinstance(node, (ast.FunctionDef, ast.If, ast.For, ast.While, ast.With, ast.Try)):
            for field in ("body", "orelse"):
                stmts = getattr(node, field, None) or []
                if len(stmts) < 2 and field == "body":
                    continue  # dropping a lone statement only leaves `pass`
                for k, st in enumerate(stmts):
                    if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
                        continue  # a docstring
                    if isinstance(
                        st,
                        (
                            ast.Assign,
                            ast.AugAssign,
                            ast.AnnAssign,
                            ast.Expr,
                            ast.If,
                            ast.For,
                            ast.Delete,
                        ),
                    ):
                        add(
                            node,
                            "drop",
                            k + (1000 if field == "orelse" else 0),
                            f"drop statement at line {st.lineno}: {ast.unparse(st)[:60]!r}",
                            _drop_stmt(field, k),
                            st,
                        )
    out.sort(key=lambda s: s[0])
    return out


def _set_cmp(k: int, new: type) -> Any:
    def fn(node: ast.Compare) -> None:
        node.ops[k] = new()

    return fn


def _set_boolop(new: type) -> Any:
    def fn(node: ast.BoolOp) -> None:
        node.op = new()

    return fn


def _set_const(value: Any) -> Any:
    def fn(node: ast.Constant) -> None:
        node.value = value

    return fn


def _swap(k: int) -> Any:
    def fn(node: ast.List) -> None:
        node.elts[k], node.elts[k + 1] = node.elts[k + 1], node.elts[k]

    return fn


def _drop_elt(k: int) -> Any:
    def fn(node: ast.List) -> None:
        del node.elts[k]

    return fn


def _move_last(k: int) -> Any:
    def fn(node: ast.List) -> None:
        node.elts.append(node.elts.pop(k))

    return fn


def _drop_stmt(field: str, k: int) -> Any:
    def fn(node: ast.AST) -> None:
        stmts = getattr(node, field)
        stmts[k] = ast.Pass()
        ast.copy_location(stmts[k], node)

    return fn


def mutants(
    source: str | None = None, prefix: str = ""
) -> tuple[list[Mutant], ast.Module, list[Any]]:
    """The mutants of `source` (reference.py's by default), their ids prefixed."""
    text = source if source is not None else SOURCE.read_text()
    tree = ast.parse(text)
    sites = _sites(tree)
    ms = [
        Mutant(f"{prefix}m{i:04d}", key[0], key[2], what) for i, (key, what, _) in enumerate(sites)
    ]
    return ms, tree, [apply for _, _, apply in sites]


@dataclass(frozen=True)
class Target:
    """One module of the reference firmware to mutate."""

    path: Path
    module: str  # its import name, e.g. terminal.inquiry_flow
    prefix: str  # of its mutant ids: "" for reference.py, else "<stem>."


def target(relative: str) -> Target:
    path = (ROOT / relative).resolve()
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    prefix = "" if module == REFERENCE_MODULE else f"{path.stem}."
    return Target(path, module, prefix)


def split_id(mid: str) -> tuple[str, int]:
    """(prefix, site index) of a mutant id: "m0042" -> ("", 42)."""
    prefix, _, number = mid.rpartition("m")
    return prefix, int(number)


def build(
    tree: ast.Module, apply: Any, name: str, module: str = REFERENCE_MODULE
) -> types.ModuleType:
    """The reference firmware with one mutation, its module registered as `name`.

    A mutation of one of its other modules is compiled as that module; then every part
    of the firmware (`PARTS`, in import order) is compiled afresh under its own name in
    `sys.modules` (in the worker process, which is thrown away), so that each imports
    the mutated module and none keeps a name from the original; reference.py last,
    under `name`."""
    node_index, fn = apply
    mutated = copy.deepcopy(tree)
    nodes = list(_in_scope(mutated))
    fn(nodes[node_index])
    ast.fix_missing_locations(mutated)
    if module == REFERENCE_MODULE:
        return _compile(mutated, name)
    for part in PARTS:
        if part == REFERENCE_MODULE:
            continue
        path = ROOT / (part.replace(".", "/") + ".py")
        _compile(mutated if part == module else ast.parse(path.read_text()), part)
    return _compile(ast.parse(SOURCE.read_text()), name)


def _compile(tree: ast.Module, name: str) -> types.ModuleType:
    code = compile(tree, f"<mutant {name}>", "exec")
    mod = types.ModuleType(name)
    mod.__file__ = f"<mutant {name}>"
    sys.modules[name] = mod
    exec(code, mod.__dict__)  # our own firmware source, mutated
    return mod


def diff(tree: ast.Module, apply: Any) -> str:
    """The mutant as a unified diff of the unparsed module (comments are lost)."""
    node_index, fn = apply
    mutated = copy.deepcopy(tree)
    fn(list(_in_scope(mutated))[node_index])
    before = ast.unparse(tree).splitlines()
    after = ast.unparse(mutated).splitlines()
    return "\n".join(difflib.unified_diff(before, after, "reference", "mutant", n=2, lineterm=""))


def suite_kills(spec: str, suite: list[Any]) -> str:
    """The first built-in scenario the mutant fails ("" = none)."""
    from harness.runner import run_scenario

    for sc in suite:
        try:
            result = run_scenario(sc, spec)
        except Exception as exc:  # the mutant broke the world itself: a crash
            return f"{sc.name}: {type(exc).__name__}"
        if result.crashes:
            return f"{sc.name}: firmware crash"
        real = [p for p in result.problems if "never applied" not in p]
        if real:
            return f"{sc.name}: {real[0][:80]}"
    return ""


def fuzz_kills(spec: str, seconds: float, seed: int, keep: Path | None = None) -> tuple[str, float]:
    """The invariant a fuzz campaign of `seconds` finds broken ("" = none), and when.
    With `keep`, the shrunk failing scenario is written there (to see why it died)."""
    from harness.fuzz import campaign

    with tempfile.TemporaryDirectory() as tmp:
        out = keep if keep is not None else Path(tmp)
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            try:
                found, _stats = campaign(
                    spec, budget_s=seconds, campaign_seed=seed, out_dir=out, profile="ci"
                )
            except Exception as exc:  # the harness itself broke on this mutant
                return f"error {type(exc).__name__}: {exc}"[:100], 0.0
    if found is None:
        return "", 0.0
    return found.invariant, found.detect_s


def run_one(
    tree: ast.Module,
    apply: Any,
    m: Mutant,
    seconds: float,
    seed: int,
    module: str = REFERENCE_MODULE,
    keep: Path | None = None,
) -> dict[str, Any]:
    from scenarios.loader import find_scenarios, load_scenario

    row: dict[str, Any] = {"id": m.id, "line": m.line, "op": m.op, "what": m.what}
    name = f"posharness_mutant_{m.id.replace('.', '_')}"
    try:
        build(tree, apply, name, module)
    except Exception as exc:  # not even importable: killed by anything
        row.update(suite="import error", fuzz=f"import error: {exc}"[:80], fuzz_s=0.0)
        return row
    spec = f"{name}:ReferenceFirmware"
    suite = [load_scenario(p) for p in find_scenarios([ROOT / "scenarios"])]
    t = time.perf_counter()
    row["suite"] = suite_kills(spec, suite)
    row["suite_s"] = round(time.perf_counter() - t, 2)
    row["fuzz"], row["fuzz_s"] = fuzz_kills(spec, seconds, seed, keep) if seconds > 0 else ("", 0.0)
    row["fuzz_s"] = round(row["fuzz_s"], 2)
    return row


def _worker(args: tuple[str, str, str, float, int, str], q: Any) -> None:
    mid, relative, source, seconds, seed, keep = args
    t = target(relative)
    ms, tree, applies = mutants(source, t.prefix)
    i = split_id(mid)[1]
    kept = Path(keep) / mid if keep else None
    q.put(run_one(tree, applies[i], ms[i], seconds, seed, t.module, kept))


def select(ms: list[Mutant], limit: int | None, ids: list[str] | None) -> list[Mutant]:
    if ids:
        want = set(ids)
        return [m for m in ms if m.id in want]
    if limit is None or limit >= len(ms):
        return ms
    # Evenly spaced over the file, so a small sample covers every part of it.
    step = len(ms) / limit
    return [ms[int(i * step)] for i in range(limit)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="mutants, evenly spaced")
    ap.add_argument("--ids", default="", help="comma-separated mutant ids")
    ap.add_argument("--fuzz-seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0, help="fuzz campaign seed")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0, help="per mutant, wall s")
    ap.add_argument("--json", default="", help="write the rows here")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--show", action="store_true", help="print each chosen mutant's diff")
    ap.add_argument(
        "--keep",
        default="",
        help="write each fuzz kill's shrunk scenario under DIR/<mutant id>/ (default: discard)",
    )
    ap.add_argument(
        "--files",
        default=DEFAULT_FILES,
        help="comma-separated modules of the reference to mutate (default: all of them)",
    )
    args = ap.parse_args(argv)
    files = [f for f in args.files.split(",") if f]
    by_prefix: dict[str, tuple[str, str, ast.Module, list[Any]]] = {}
    ms: list[Mutant] = []
    for relative in files:
        t = target(relative)
        source = t.path.read_text()
        file_ms, tree, applies = mutants(source, t.prefix)
        by_prefix[t.prefix] = (relative, source, tree, applies)
        ms += file_ms
    chosen = select(ms, args.limit, [s for s in args.ids.split(",") if s])
    if args.show:
        for m in chosen:
            prefix, i = split_id(m.id)
            print(f"--- {m.id} ({m.op}: {m.what})")
            print(diff(by_prefix[prefix][2], by_prefix[prefix][3][i]))
        return 0
    if args.list:
        for m in chosen:
            print(f"{m.id} line {m.line:4d} {m.op:12s} {m.what}")
        print(f"{len(chosen)} of {len(ms)} mutants")
        return 0
    ctx = mp.get_context("fork")
    rows: dict[str, dict[str, Any]] = {}
    todo = list(chosen)
    running: list[tuple[Mutant, Any, Any, float]] = []
    started = time.perf_counter()
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            m = todo.pop(0)
            q = ctx.Queue()
            relative, source = by_prefix[split_id(m.id)[0]][:2]
            job = (m.id, relative, source, args.fuzz_seconds, args.seed, args.keep)
            p = ctx.Process(target=_worker, args=(job, q))
            p.start()
            running.append((m, p, q, time.perf_counter()))
        time.sleep(0.05)
        for item in list(running):
            m, p, q, t0 = item
            row = None
            with contextlib.suppress(Exception):
                row = q.get_nowait()
            if row is None and p.is_alive() and time.perf_counter() - t0 < args.timeout:
                continue
            if row is None:
                p.kill()
                row = {
                    "id": m.id,
                    "line": m.line,
                    "op": m.op,
                    "what": m.what,
                    "suite": "",
                    "fuzz": "timeout (hang)",
                    "fuzz_s": 0.0,
                }
            p.join()
            running.remove(item)
            rows[m.id] = row
            print(
                f"{m.id} line {m.line:4d} {m.op:12s} suite={'K' if row['suite'] else '-'} "
                f"fuzz={'K' if row['fuzz'] else '-'} {row['fuzz'] or ''} | {m.what}",
                flush=True,
            )
    ordered = [rows[m.id] for m in chosen]
    n = len(ordered)
    by_suite = sum(1 for r in ordered if r["suite"])
    by_fuzz = sum(1 for r in ordered if r["fuzz"])
    either = sum(1 for r in ordered if r["suite"] or r["fuzz"])
    print(
        f"\n{n} mutants ({len(ms)} sites), fuzz {args.fuzz_seconds:g} s each, seed {args.seed}, "
        f"{time.perf_counter() - started:.0f} s wall"
    )
    print(f"killed by suite: {by_suite}/{n} ({100 * by_suite / max(n, 1):.0f} %)")
    print(f"killed by fuzz:  {by_fuzz}/{n} ({100 * by_fuzz / max(n, 1):.0f} %)")
    print(f"killed by either: {either}/{n}")
    survivors = [r for r in ordered if not (r["suite"] or r["fuzz"])]
    if survivors:
        print("survivors:")
        for r in survivors:
            print(f"  {r['id']} line {r['line']} {r['op']}: {r['what']}")
    if args.json:
        Path(args.json).write_text(json.dumps(ordered, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

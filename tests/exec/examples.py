"""The example firmwares outside Python (examples/firmware-c, examples/firmware-js),
built or found once per test session; None when a tool is missing (tests skip and
say which)."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

from harness.runner import run_scenario
from scenarios.model import Scenario

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "examples" / "firmware-c"


@cache
def c_firmware(flaw: str = "", sanitize: bool = False) -> str | None:
    """`exec:` spec of the C example built (with `flaw`; with `sanitize`, under
    AddressSanitizer and UBSan), or None with no compiler or cJSON (or, for
    `sanitize`, no sanitizer runtime)."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        return None
    if not Path("/usr/include/cjson/cJSON.h").exists():
        return None
    build = "build" + (f"-{flaw}" if flaw else "") + ("-san" if sanitize else "")
    done = subprocess.run(
        ["make", "-s", "-C", str(C_DIR), f"BUILD={build}", f"FLAW={flaw}"]
        + (["SANITIZE=1"] if sanitize else []),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        if sanitize:
            return None  # the compiler has no libasan/libubsan: the test says so
        raise RuntimeError(f"make failed: {done.stderr[-2000:]}")
    return f"exec:{C_DIR / build / 'firmware'}"


def js_firmware(flaw: str = "") -> str | None:
    """`exec:` spec of the JavaScript example (with `flaw`), or None without Node.js."""
    if shutil.which("node") is None:
        return None
    script = ROOT / "examples" / "firmware-js" / "firmware.js"
    return f"exec:env FLAW={flaw} node {script}" if flaw else f"exec:node {script}"


SKIP_C = "needs cc, make and libcjson-dev (scripts/setup-examples installs them)"
SKIP_SAN = "the C compiler cannot build with -fsanitize=address,undefined (needs libasan, libubsan)"
SKIP_JS = "needs node (Node.js; scripts/setup-examples installs it)"


def trace_body(trace: Path) -> list[str]:
    """A trace without its header line (which names the firmware)."""
    return trace.read_text(encoding="utf-8").splitlines()[1:]


def same_as_reference(sc: Scenario, spec: str, tmp: Path) -> bool:
    """The firmware's run equals the reference's, trace and verdict; did it pass?"""
    a, b = tmp / "ref.jsonl", tmp / "ex.jsonl"
    expected = run_scenario(sc, "reference", trace_path=a)
    got = run_scenario(sc, spec, trace_path=b)
    assert trace_body(a) == trace_body(b), sc.name
    assert got.passed == expected.passed, sc.name
    return got.passed

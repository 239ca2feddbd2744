"""The example firmwares outside Python (examples/firmware-c, examples/firmware-js),
built or found once per test session; None when a tool is missing (tests skip and
say which)."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "examples" / "firmware-c"


@cache
def c_firmware(flaw: str = "") -> str | None:
    """`exec:` spec of the C example built (with `flaw`), or None with no compiler or cJSON."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        return None
    if not Path("/usr/include/cjson/cJSON.h").exists():
        return None
    build = f"build-{flaw}" if flaw else "build"
    done = subprocess.run(
        ["make", "-s", "-C", str(C_DIR), f"BUILD={build}", f"FLAW={flaw}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"make failed: {done.stderr[-2000:]}")
    return f"exec:{C_DIR / build / 'firmware'}"


def js_firmware(flaw: str = "") -> str | None:
    """`exec:` spec of the JavaScript example (with `flaw`), or None without Node.js."""
    if shutil.which("node") is None:
        return None
    script = ROOT / "examples" / "firmware-js" / "firmware.js"
    return f"exec:env FLAW={flaw} node {script}" if flaw else f"exec:node {script}"


SKIP_C = "needs cc, make and libcjson-dev (scripts/setup-examples installs them)"
SKIP_JS = "needs node (Node.js; scripts/setup-examples installs it)"

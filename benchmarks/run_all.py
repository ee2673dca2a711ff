"""Run every benchmark script and regenerate every table and figure of benchmarks/README.md.

Each script runs in its own interpreter, one after the other, so timings and
memory peaks do not mix. A script that fails does not stop the others; the
exit status is 1 if any failed. ``--quick`` passes on to every script (smoke
run into temporary folders, README untouched); ``--data`` passes on to the
scripts that read the released GSM8K samples.
"""

from __future__ import annotations

import subprocess
import sys
import time

import _common

SCRIPTS = (
    ("informativeness.py", True),
    ("against_uqlm.py", True),
    ("evaluation_speed.py", True),
    ("guard_overhead.py", False),
    ("memory.py", False),
)
"""Each script, and whether it takes ``--data``."""


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0], data=True).parse_args()
    _common.configure_logging()

    timings: list[tuple[str, float, int]] = []
    started = time.perf_counter()
    for script, takes_data in SCRIPTS:
        command = [sys.executable, str(_common.BENCHMARKS_DIR / script)]
        if args.quick:
            command.append("--quick")
        if args.out is not None:
            command += ["--out", str(args.out)]
        if takes_data and args.data is not None:
            command += ["--data", str(args.data)]

        _common.logger.info("running %s", " ".join(command))
        begun = time.perf_counter()
        returncode = subprocess.run(command, check=False).returncode
        timings.append((script, time.perf_counter() - begun, returncode))
        if returncode != 0:
            _common.logger.error("%s failed with exit status %d", script, returncode)
    total = time.perf_counter() - started

    info = _common.machine()
    table = _common.markdown_table(
        ["script", "wall s", "exit status"],
        [[script, f"{seconds:.0f}", code] for script, seconds, code in timings]
        + [["total", f"{total:.0f}", ""]],
    )
    kind = "Quick run" if args.quick else "Last full run"
    block = f"{kind} of `run_all.py`: {_common.machine_line(info)}\n\n{table}"
    print(block)

    failed = [script for script, _, code in timings if code != 0]
    if not failed and not args.quick and args.out is None:
        _common.update_readme("run_all", block)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Builds the workspace's tests, then runs the test binaries side by side.

`cargo test` runs its binaries one after another. Most of tincan's time in tests is spent
waiting (real nodes retrying, processes starting, tmux screens settling), not computing, so on
CI's two cores several binaries at once finish in a fraction of the time. Each binary runs as
`cargo test` would run it: from its package's directory, with the same environment, and its
own tests in parallel threads. Its whole output is printed when it ends, so the log reads as
`cargo test`'s; a binary that fails is named again at the end, and the exit status is 1.

    scripts/run-tests.py               every test binary, TEST_JOBS (default 3) at a time
    TEST_JOBS=1 scripts/run-tests.py   one at a time, as `cargo test` does

Doc tests are run afterwards by `cargo test --doc`, as usual.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

JOBS = max(1, int(os.environ.get("TEST_JOBS", "3")))
# The binaries that take minutes (they drive real processes and terminals), started first so
# that the rest fill the gaps beside them.
SLOW = ["cli cli", "cli tui", "cli hardening", "node delivery", "node nat", "node relay"]


def build():
    """Builds every test target; returns (name, executable, package dir, kind) for each."""
    cmd = [
        "cargo", "test", "--workspace", "--locked", "--no-run",
        "--message-format=json-render-diagnostics",
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    found = []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        package = msg["package_id"]
        manifest = msg["manifest_path"]
        kinds = target.get("kind", [])
        name = "{} {}".format(os.path.basename(os.path.dirname(manifest)), target["name"])
        found.append((name, msg["executable"], os.path.dirname(manifest), kinds, package))
    return found


def run(name, exe, cwd, env):
    started = time.monotonic()
    proc = subprocess.run([exe], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace")
    return name, proc.returncode, proc.stdout, time.monotonic() - started


def main():
    binaries = build()
    # The slow ones first, then the other integration tests, then the unit tests.
    def order(b):
        if b[0] in SLOW:
            return (0, SLOW.index(b[0]))
        return (1 if "test" in b[3] else 2, 0)
    binaries.sort(key=order)
    print(f"running {len(binaries)} test binaries, {JOBS} at a time", flush=True)
    lock = threading.Lock()
    failed = []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=JOBS) as pool:
        futures = []
        for name, exe, cwd, _kinds, _package in binaries:
            env = dict(os.environ)
            env["CARGO_MANIFEST_DIR"] = cwd
            futures.append(pool.submit(run, name, exe, cwd, env))
        for future in concurrent.futures.as_completed(futures):
            name, code, output, secs = future.result()
            with lock:
                status = "ok" if code == 0 else f"FAILED (exit {code})"
                print(f"\n---- {name}: {status} in {secs:.1f} s", flush=True)
                print(output, end="", flush=True)
                if code != 0:
                    failed.append(name)
    print(f"\n{len(binaries)} test binaries in {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print("failed: " + ", ".join(failed), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

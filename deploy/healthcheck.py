"""Wait until a URL answers 200: `python deploy/healthcheck.py http://127.0.0.1:5000/api/health [--timeout 30]`.

Exit 0 and print the body's `data` once it does; exit 1 with the last answer or error when the time is up.
Standard library only, so it runs with any Python on the host (fabfile.py uses it after each restart; a
monitor can too).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def check(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (the operator's own URL)
            return True, json.dumps(json.load(response).get("data"))
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code}: {exc.read()[:500].decode(errors='replace')}"
    except (OSError, ValueError) as exc:
        return False, str(exc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to keep trying (default 30)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    while True:
        ok, said = check(args.url)
        if ok or time.monotonic() >= deadline:
            print(said)
            return 0 if ok else 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())

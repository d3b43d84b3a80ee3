"""Where password hashes run: a pool of low-priority threads that may use every CPU, even in a pinned process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support import PROJECT_DIR

# A process pinned as a server process is (server.cpu_affinity), then asked where its hashing thread runs.
PINNED_PROCESS = """
import json, os, threading
from app.server.options import pin_to_cpu
from app.services import passwords
pin_to_cpu(0)
where = lambda: {"cpus": sorted(os.sched_getaffinity(0)), "nice": os.getpriority(os.PRIO_PROCESS, threading.get_native_id())}
print(json.dumps({"request thread": where(), "hashing thread": passwords._in_pool(where)}))
"""


def test_a_pinned_process_hashes_at_low_priority_on_any_cpu():
    allowed = sorted(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-c", PINNED_PROCESS], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert seen["request thread"]["cpus"] == allowed[:1]
    assert seen["hashing thread"] == {"cpus": allowed, "nice": 19}

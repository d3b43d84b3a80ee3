"""Where password hashes run: a pool of low-priority threads on every CPU the process had before a server pinned
it to one, and on no other."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import PROJECT_DIR

# A process limited to some CPUs (as by taskset), pinned as a server process is (server.cpu_affinity), then asked
# where its request thread and its hashing thread run.
PINNED_PROCESS = """
import json, os, sys, threading
os.sched_setaffinity(0, json.loads(sys.argv[1]))
from app.server.options import pin_to_cpu
from app.services import passwords
pin_to_cpu(0)
where = lambda: {"cpus": sorted(os.sched_getaffinity(0)), "nice": os.getpriority(os.PRIO_PROCESS, threading.get_native_id())}
print(json.dumps({"request thread": where(), "hashing thread": passwords._in_pool(where)}))
"""


@pytest.mark.parametrize("limit", ["every CPU", "the last CPU only"])
def test_a_pinned_process_hashes_at_low_priority_on_the_cpus_it_had(limit):
    allowed = sorted(os.sched_getaffinity(0))
    cpus = allowed if limit == "every CPU" else allowed[-1:]
    done = subprocess.run([sys.executable, "-c", PINNED_PROCESS, json.dumps(cpus)], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert seen["request thread"]["cpus"] == cpus[:1]
    assert seen["hashing thread"] == {"cpus": cpus, "nice": 19}

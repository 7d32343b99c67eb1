"""Figure 5 worker, run as a subprocess by test_fallback.py: ``disable_kcmp()`` is
process-wide and irreversible, so it must not run in the pytest process.

``python _fallback_child.py MODE ROUNDS SCENARIO...``: MODE ``kcmp`` times
``classify_fds`` on the kcmp path; MODE ``fallback`` first calls ``disable_kcmp()``
(fstat buckets, then F_DUPFD_QUERY or the epoll test inside a bucket); MODE ``lock``
also refuses F_DUPFD_QUERY with a seccomp filter, as a kernel before 6.10 would (files
then fall to the lock test). For each
scenario, 10,000 fds are built in this process, classified twice (checked, warm-up),
then timed ROUNDS times. Prints one JSON object:
``{"support": [kcmp, dupfd_query], "times": {scenario: [seconds, ...]}}``.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import kcmp_rs

# Run as a script: its own directory (benches/) is sys.path[0]; the tests' seccomp
# filters are beside it.
from _benchlib import build, close_all, make_files, scratch_dir

sys.path.insert(
    1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)
from _seccomp import install_filter

N = 10_000


def main() -> None:
    mode, rounds, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if mode in ("fallback", "lock"):
        kcmp_rs.disable_kcmp()
    if mode == "lock":
        install_filter(("errno", errno.EPERM), dupfd_query_errno=errno.EINVAL)
    sup = kcmp_rs.support()
    assert sup.kcmp == (mode == "kcmp"), sup
    pid = os.getpid()
    times: dict[str, list[float]] = {}
    directory = tempfile.mkdtemp(prefix="kcmp-bench-fallback-", dir=scratch_dir())
    try:
        files = make_files(directory, N + 16)
        for scenario in scenarios:
            fds, truth = build(scenario, N, files)
            try:
                for _ in range(2 if rounds > 1 else 1):
                    assert kcmp_rs.classify_fds(pid, fds) == truth, scenario
                samples = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    kcmp_rs.classify_fds(pid, fds)
                    samples.append(time.perf_counter() - t0)
                times[scenario] = samples
            finally:
                close_all(fds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"support": [sup.kcmp, sup.dupfd_query], "times": times}))


if __name__ == "__main__":
    main()

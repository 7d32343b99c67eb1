"""The host side of `make container-test` (scripts/container-test.sh runs it with the
repo's .venv, where kcmp_rs is built).

Starts real containers (podman + runc) on a prepared rootfs, runs ``inside.py`` in
them, and compares every answer given inside with the truth computed here on the host
by brute-force kcmp (``kcmp_rs.baseline``) over the same processes, their container
pids mapped to host pids through the NSpid line of /proc/PID/status. Prints one
``ok:``/``FAIL:`` line per check and ends with ``scenarios: N passed, M failed``.

Touches only what it starts: its containers (named with the given prefix, removed on
every path), the processes in them, and its own host helper.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import kcmp_rs
from kcmp_rs import KcmpType, Order, baseline

# The in-container paths scripts/container-test.sh prepares in the rootfs.
VENV = "/opt/kcmp-rs-venv"
INSIDE = "/opt/kcmp-rs-ct/inside.py"
XCHG = "/xchg"  # a host directory bind-mounted into every container

# support().reason in each case: the exact sentences users are shown.
REASON_POLICY = (
    "kcmp(2) is refused by a seccomp policy (even comparing this process with itself was "
    "denied, which only a policy does); in Docker or podman give the container "
    "CAP_SYS_PTRACE (--cap-add SYS_PTRACE), or use a seccomp profile that allows kcmp"
)
REASON_DISABLED = (
    "kcmp(2) is disabled by configuration (KCMP_RS_NO_KCMP=1 in the environment or "
    "kcmp_rs.disable_kcmp()); unset the variable and start a new process to use it"
)
DENIED = (
    "process {pid} may not be inspected by this process "
    "(kcmp needs ptrace read access: the same uid, or CAP_SYS_PTRACE)"
)
TIMEOUT = 120.0

Ref = tuple[int, int]
Groups = list[tuple[Ref, ...]]


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, cond: bool, what: str, detail: object = "") -> bool:
        if cond:
            self.passed += 1
            print(f"ok: {what}", flush=True)
        else:
            self.failed += 1
            self.failures.append(what)
            print(f"FAIL: {what}", flush=True)
            if detail != "":
                print(f"    {detail}", flush=True)
        return cond

    def equal(self, got: object, want: object, what: str) -> bool:
        """Both compared as JSON carries them: the container's answers came through it."""
        got, want = json.loads(json.dumps(got)), json.loads(json.dumps(want))
        return self.check(got == want, what, f"got {got!r}, want {want!r}")


# ---- podman ----


@dataclass
class Podman:
    rootfs: str
    prefix: str
    xchg: str
    started: list[str] = field(default_factory=list)

    def base(self) -> list[str]:
        # crun refuses this kind of host's hybrid cgroup layout; runc does not.
        return ["podman", "--runtime", "/usr/sbin/runc", "--cgroup-manager", "cgroupfs"]

    def run_args(self, name: str, extra: Sequence[str], command: Sequence[str]) -> list[str]:
        # podman's default nofile/nproc limits exceed the hard limits of such hosts.
        return [
            *self.base(),
            "run",
            "--rm",
            "-i",
            "--name",
            name,
            "--ulimit",
            "nofile=1024:4096",
            "--ulimit",
            "nproc=1024:1024",
            "--tmpfs",
            "/tmp",
            "-v",
            f"{self.xchg}:{XCHG}",
            *extra,
            "--rootfs",
            self.rootfs,
            *command,
        ]

    def exec(
        self, name: str, command: Sequence[str], *, user: str | None = None, env: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        opts = ["--user", user] if user else []
        for item in env:
            opts += ["--env", item]
        return subprocess.run(
            [*self.base(), "exec", *opts, name, *command],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def host_pid(self, name: str) -> int:
        out = subprocess.run(
            [*self.base(), "inspect", "--format", "{{.State.Pid}}", name],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        return int(out.stdout.strip())

    def remove(self, name: str) -> None:
        subprocess.run(
            [*self.base(), "rm", "-f", "-t", "0", "--ignore", name],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )


def nspid(host_pid: int) -> list[int]:
    """The NSpid line of a host pid: its pid in each pid namespace, outermost first."""
    with open(f"/proc/{host_pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    raise LookupError(f"no NSpid line for {host_pid}")


def children(host_pid: int) -> list[int]:
    with open(f"/proc/{host_pid}/task/{host_pid}/children") as f:
        return [int(x) for x in f.read().split()]


@dataclass
class Family:
    """A family container: ``inside.py family`` as its pid 1, and its report."""

    name: str
    proc: subprocess.Popen[str]
    report: dict[str, Any]
    to_host: dict[int, int]  # container pid -> host pid

    @property
    def tag(self) -> str:
        """The scenario's short name, without the run's unique prefix."""
        return self.name.rsplit("-", 1)[-1]

    @property
    def pid(self) -> int:
        return int(self.report["pid"])

    @property
    def child(self) -> int:
        return int(self.report["child"])

    def host_refs(self) -> list[Ref]:
        own = [(self.to_host[self.pid], fd) for fd in self.report["fds"]]
        kid = [(self.to_host[self.child], fd) for fd in self.report["child_report"]["fds"]]
        return own + kid

    def to_container(self, groups: Groups) -> Groups:
        back = {h: c for c, h in self.to_host.items()}
        return sorted(tuple(sorted((back[p], fd) for p, fd in g)) for g in groups)


def read_json_line(proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=TIMEOUT)
        raise RuntimeError(f"{what}: no report (exit status {proc.returncode})")
    value: dict[str, Any] = json.loads(line)
    return value


def map_pids(podman: Podman, name: str, report: dict[str, Any]) -> dict[int, int]:
    """Container pid -> host pid for the family's two processes, each checked by NSpid."""
    host = podman.host_pid(name)
    if nspid(host)[-1] != report["pid"]:
        raise RuntimeError(f"host pid {host} is not container pid {report['pid']}")
    kids = [k for k in children(host) if nspid(k)[-1] == report["child"]]
    if len(kids) != 1:
        raise RuntimeError(f"child {report['child']} not found under host pid {host}")
    return {report["pid"]: host, report["child"]: kids[0]}


@contextlib.contextmanager
def family(
    podman: Podman,
    tag: str,
    extra: Sequence[str] = (),
    listen: str | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> Iterator[Family]:
    """Runs a family container; on leaving, lets it end and removes it on every path."""
    name = f"{podman.prefix}-{tag}"
    podman.started.append(name)
    command = [f"{VENV}/bin/python", INSIDE, "family"]
    if listen:
        command += ["--listen", f"{XCHG}/{listen}"]
    proc = subprocess.Popen(
        podman.run_args(name, extra, command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if listen and on_listening:
            read_json_line(proc, name)  # listening
            on_listening(os.path.join(podman.xchg, listen))
        report = read_json_line(proc, name)
        yield Family(name, proc, report, map_pids(podman, name, report))
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} exited with status {proc.returncode}")
    finally:
        if proc.poll() is None:
            podman.remove(name)
            proc.wait(timeout=TIMEOUT)
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        if proc.stdout is not None:
            proc.stdout.close()


# ---- truth on the host ----


def truth(refs: Sequence[Ref]) -> Groups:
    """Groups by brute force: each ref compared by kcmp with one member of each group."""
    groups: list[list[Ref]] = []
    for ref in refs:
        for g in groups:
            (p, f), (q, h) = g[0], ref
            if baseline.kcmp(p, q, KcmpType.FILE, f, h) == Order.EQUAL:
                g.append(ref)
                break
        else:
            groups.append([ref])
    return sorted(tuple(sorted(g)) for g in groups)


def of_pid(groups: Groups, pid: int) -> list[tuple[int, ...]]:
    """The groups of one process's fds, as classify_fds lays them out (order="fd")."""
    mine = [tuple(fd for p, fd in g if p == pid) for g in groups]
    return sorted(g for g in mine if g)


def as_groups(value: Any) -> Groups:
    return sorted(tuple(sorted((int(p), int(f)) for p, f in g)) for g in value)


def same_of(groups: Groups) -> dict[Ref, int]:
    return {ref: i for i, g in enumerate(groups) for ref in g}


def host_inode(ref: Ref) -> int:
    return os.stat(f"/proc/{ref[0]}/fd/{ref[1]}").st_ino


# ---- checks shared by the scenarios ----


def check_error(t: Tally, got: dict[str, Any], cls: str, errno_: int, text: str, what: str) -> None:
    err = got.get("error")
    if not t.check(err is not None, f"{what}: raises {cls}", f"returned {got.get('ok')!r}"):
        return
    assert err is not None
    t.equal(
        (err["class"], err["errno"], err["message"]),
        (cls, errno_, f"[Errno {errno_}] {os.strerror(errno_)}: {text}"),
        f"{what}: {cls}, errno {errno_}, message",
    )


def check_setup(t: Tally, fam: Family, groups: Groups) -> None:
    """The family holds what it was built to hold, by the host's kcmp: the truth the
    container is judged by has dups, inherited fds and a passed fd grouped, and
    separate opens apart."""
    me, kid = fam.pid, fam.child
    roles, kid_roles = fam.report["roles"], fam.report["child_report"]["roles"]
    index = same_of(groups)

    def same(a: Ref, b: Ref) -> bool:
        return index[a] == index[b]

    facts = [
        ("a pipe's read end and its dup", same((me, roles["pipe_r"]), (me, roles["pipe_r_dup"]))),
        ("the write end and its dup", same((me, roles["pipe_w"]), (me, roles["pipe_w_dup"]))),
        ("a file and its dup", same((me, roles["a_rw"]), (me, roles["a_rw_dup"]))),
        ("the read end, inherited", same((me, roles["pipe_r"]), (kid, roles["pipe_r"]))),
        (
            "the fd passed over SCM_RIGHTS",
            same((me, roles["received"]), (kid, kid_roles["passed"])),
        ),
        ("not: a file opened twice", not same((me, roles["a_rw"]), (me, roles["a_ro"]))),
        ("not: /dev/null opened twice", not same((me, roles["null1"]), (me, roles["null2"]))),
        ("not: the child's own open", not same((me, roles["a_ro"]), (kid, kid_roles["a_child"]))),
        ("not: the two ends of a pipe", not same((me, roles["pipe_r"]), (me, roles["pipe_w"]))),
    ]
    wrong = [name for name, holds in facts if not holds]
    t.check(not wrong, f"{fam.tag}: host kcmp sees the family as built", wrong)


def check_file_answers(t: Tally, fam: Family, want: Groups, kcmp_usable: bool) -> None:
    """same_file, classify_fds and classify_files asked inside, against the truth."""
    me, kid = fam.pid, fam.child
    answers = fam.report["answers"]
    index = same_of(want)
    wrong = [
        (a, b, got)
        for a, b, got in answers["same_file"]
        if got != {"ok": index[(me, a)] == index[(me, b)]}
    ]
    n = len(answers["same_file"])
    t.check(not wrong and n > 50, f"{fam.tag}: same_file on {n} pairs of own fds", wrong[:3])
    t.equal(answers["classify_fds"], {"ok": of_pid(want, me)}, f"{fam.tag}: classify_fds")
    own = [mine for mine in (tuple(r for r in g if r[0] == me) for g in want) if mine]
    t.equal(answers["classify_files_own"], {"ok": own}, f"{fam.tag}: classify_files, own fds")
    child = fam.report["child_report"]
    t.equal(child["classify_fds"], {"ok": of_pid(want, kid)}, f"{fam.tag}: child's classify_fds")
    t.equal(child["inherited_dup"], {"ok": True}, f"{fam.tag}: child's same_file, inherited dup")
    if kcmp_usable:
        kernel = answers["classify_fds_kernel"].get("ok")
        t.equal(
            sorted(tuple(g) for g in kernel or []),
            of_pid(want, me),
            f"{fam.tag}: classify_fds order=kernel",
        )
        t.equal(answers["classify_files_all"], {"ok": want}, f"{fam.tag}: classify_files, both")
        t.equal(answers["classify_files_partial"], {"ok": [want, []]}, f"{fam.tag}: partial")
    getfd = answers["classify_files_getfd"]
    if fam.report["support"][2]:
        t.equal(getfd, {"ok": want}, f"{fam.tag}: classify_files with allow_pidfd_getfd")
    else:
        t.equal(
            getfd.get("error", {}).get("class"),
            "KcmpUnavailableError",
            f"{fam.tag}: classify_files with allow_pidfd_getfd, pidfd_getfd refused",
        )


def check_refused_across(t: Tally, fam: Family, want: Groups, reason: str) -> None:
    """Without kcmp, fds of two processes on one inode stay undecided: named, never
    guessed; what is decided agrees with the truth."""
    answers = fam.report["answers"]
    err = answers["classify_files_all"].get("error") or {}
    undecided = sorted((int(p), int(f)) for p, f in err.get("undecided", []))
    to_host = fam.to_host
    inodes: dict[int, set[int]] = {}
    for g in want:
        for p, f in g:
            inodes.setdefault(host_inode((to_host[p], f)), set()).add(p)
    spanning = all(len(inodes[host_inode((to_host[p], f))]) > 1 for p, f in undecided)
    t.check(
        err.get("class") == "KcmpUnavailableError" and err.get("reason") == reason,
        f"{fam.tag}: classify_files across processes raises KcmpUnavailableError",
        err or answers["classify_files_all"],
    )
    t.check(
        bool(undecided) and spanning,
        f"{fam.tag}: undecided names only fds whose inode another process holds",
        undecided,
    )
    groups, left = answers["classify_files_partial"].get("ok") or ([], [])
    index = same_of(want)
    merged_wrongly = [g for g in as_groups(groups) if len({index[r] for r in g}) > 1]
    decided = same_of(as_groups(groups))
    left_set = {(int(p), int(f)) for p, f in left}
    split_wrongly = [
        (a, b)
        for g in want
        for a in g
        for b in g
        if decided[a] != decided[b] and a not in left_set and b not in left_set
    ]
    t.check(
        not merged_wrongly and not split_wrongly and sorted(left_set) == undecided,
        f"{fam.tag}: classify_files_partial agrees with the truth on what it decides",
        (merged_wrongly, split_wrongly),
    )


def check_tasks_refused(t: Tally, fam: Family, reason: str) -> None:
    for call, got in fam.report["tasks"].items():
        check_error(t, got, "KcmpUnavailableError", 1, reason, f"{fam.tag}: {call}")
    check_error(
        t,
        fam.report["answers"]["classify_fds_kernel"],
        "KcmpUnavailableError",
        1,
        f'order="kernel" needs kcmp(2), and {reason}',
        f"{fam.tag}: classify_fds order=kernel",
    )


def check_tasks_answer(t: Tally, fam: Family) -> None:
    hp, hc = fam.to_host[fam.pid], fam.to_host[fam.child]
    tasks = fam.report["tasks"]
    want_sharing = dataclasses.astuple(kcmp_rs.sharing(hp, hc))
    t.equal(tasks["sharing"], {"ok": want_sharing}, f"{fam.tag}: sharing, as on the host")
    t.equal(
        tasks["kcmp_vm"],
        {"ok": int(baseline.kcmp(hp, hc, KcmpType.VM))},
        f"{fam.tag}: kcmp VM, as on the host",
    )
    for call, value in (("same_vm", want_sharing[0]), ("same_files", want_sharing[1])):
        t.equal(tasks[call], {"ok": value}, f"{fam.tag}: {call}")
    t.equal(tasks["same_fs"], {"ok": want_sharing[2]}, f"{fam.tag}: same_fs")
    t.equal(
        tasks["classify_tasks"],
        {"ok": [[fam.pid], [fam.child]]},
        f"{fam.tag}: classify_tasks FILES",
    )


def check_cli_refused(
    t: Tally, podman: Podman, fam: Family, want: Groups, reason: str, env: Sequence[str]
) -> None:
    cli = f"{VENV}/bin/kcmp-rs"
    demo = podman.exec(fam.name, [cli, "demo"], env=env)
    # The forked child says why it failed, then the parent that the child failed.
    t.equal(
        (demo.returncode, demo.stderr.splitlines()[:1]),
        (1, [f"kcmp-rs: demo: kcmp(2) is unavailable here: {reason}"]),
        f"{fam.tag}: kcmp-rs demo exits 1, its first line names the cause and the fix",
    )
    t.check(
        all(ln.startswith("kcmp-rs: demo: ") for ln in demo.stderr.splitlines()),
        f"{fam.tag}: kcmp-rs demo prints only one-line notes, no traceback",
        demo.stderr,
    )
    pids = f"{fam.pid},{fam.child}"
    share = podman.exec(fam.name, [cli, "share", str(fam.pid), str(fam.child)], env=env)
    vm_row = next((ln.split() for ln in share.stdout.splitlines() if ln.startswith("VM")), [])
    t.check(
        share.returncode == 4 and vm_row[:2] == ["VM", "?"] and reason in share.stderr,
        f"{fam.tag}: kcmp-rs share exits 4, VM '?', the reason on stderr",
        (share.returncode, vm_row, share.stderr),
    )
    scan = podman.exec(fam.name, [cli, "scan", "-p", pids, "-J"], env=env)
    t.check(
        scan.returncode == 4 and reason in scan.stderr and json.loads(scan.stdout)["undecided"],
        f"{fam.tag}: kcmp-rs scan -p exits 4, names the undecided fds and the reason",
        (scan.returncode, scan.stderr),
    )
    if fam.report["support"][2]:
        check_scan(t, podman, fam, want, ["--allow-pidfd-getfd"], env)


def check_scan(
    t: Tally,
    podman: Podman,
    fam: Family,
    want: Groups,
    flags: Sequence[str] = (),
    env: Sequence[str] = (),
) -> None:
    """kcmp-rs scan of the container's own processes, from inside, against the truth."""
    pids = f"{fam.pid},{fam.child}"
    scan = podman.exec(fam.name, [f"{VENV}/bin/kcmp-rs", "scan", "-p", pids, "-J", *flags], env=env)
    shared = [g for g in want if len(g) > 1]
    got = scan_groups(json.loads(scan.stdout)) if scan.returncode == 0 else scan.stderr
    t.equal(got, shared, f"{fam.tag}: kcmp-rs scan -p {pids} {' '.join(flags)}".rstrip())


def scan_groups(doc: dict[str, Any]) -> Groups:
    return sorted(
        tuple(sorted((m["pid"], m["fd"]) for m in d["members"])) for d in doc["descriptions"]
    )


def check_cli_works(t: Tally, podman: Podman, fam: Family, want: Groups) -> None:
    cli = f"{VENV}/bin/kcmp-rs"
    demo = podman.exec(fam.name, [cli, "demo"])
    t.equal((demo.returncode, demo.stderr), (0, ""), f"{fam.tag}: kcmp-rs demo")
    share = podman.exec(fam.name, [cli, "share", str(fam.pid), str(fam.child)])
    vm_row = next((ln.split() for ln in share.stdout.splitlines() if ln.startswith("VM")), [])
    t.equal((share.returncode, vm_row[:2]), (0, ["VM", "no"]), f"{fam.tag}: kcmp-rs share")
    check_scan(t, podman, fam, want)


# ---- the scenarios ----


def default_profile(t: Tally, podman: Podman, helper: Helper) -> None:
    """1 and 3: the default seccomp profile; and the host's view of the same family."""
    with family(podman, "default", listen="host.sock", on_listening=helper.start) as fam:
        want = fam.to_container(truth(fam.host_refs()))
        check_setup(t, fam, want)
        kcmp_ok, dupfd_query, pidfd_getfd, reason = fam.report["support"]
        t.equal(
            [kcmp_ok, reason],
            [False, REASON_POLICY],
            f"{fam.tag}: support() names the seccomp policy and the fix",
        )
        # The profile leaves fcntl alone: F_DUPFD_QUERY is there when the kernel has it.
        t.equal(dupfd_query, kcmp_rs.support().dupfd_query, f"{fam.tag}: F_DUPFD_QUERY")
        print(f"(pidfd_getfd under this profile: {pidfd_getfd})", flush=True)
        t.equal(
            fam.report["child_report"]["support"][0], False, f"{fam.tag}: the child's support()"
        )
        check_file_answers(t, fam, want, kcmp_usable=False)
        check_refused_across(t, fam, want, REASON_POLICY)
        check_tasks_refused(t, fam, REASON_POLICY)
        check_cli_refused(t, podman, fam, want, REASON_POLICY, env=())
        crossing(t, fam, helper)
        non_root(t, podman, fam, seccomp_default=True)
    helper.stop()


def disabled(t: Tally, podman: Podman) -> None:
    """1: KCMP_RS_NO_KCMP=1 under the default profile: the same answers, another reason."""
    with family(podman, "nokcmp", ["--env", "KCMP_RS_NO_KCMP=1"]) as fam:
        want = fam.to_container(truth(fam.host_refs()))
        check_setup(t, fam, want)
        t.equal(fam.report["support"][::3], [False, REASON_DISABLED], f"{fam.tag}: support()")
        check_file_answers(t, fam, want, kcmp_usable=False)
        check_refused_across(t, fam, want, REASON_DISABLED)
        check_tasks_refused(t, fam, REASON_DISABLED)
        check_cli_refused(t, podman, fam, want, REASON_DISABLED, env=["KCMP_RS_NO_KCMP=1"])


def permitted(t: Tally, podman: Podman, tag: str, extra: Sequence[str]) -> None:
    """2: kcmp allowed; everything answers as on the host."""
    with family(podman, tag, extra) as fam:
        want = fam.to_container(truth(fam.host_refs()))
        check_setup(t, fam, want)
        t.equal(fam.report["support"][::3], [True, ""], f"{fam.tag}: support() says kcmp works")
        check_file_answers(t, fam, want, kcmp_usable=True)
        check_tasks_answer(t, fam)
        check_cli_works(t, podman, fam, want)
        if tag == "unconfined":
            non_root(t, podman, fam, seccomp_default=False)


def non_root(t: Tally, podman: Podman, fam: Family, *, seccomp_default: bool) -> None:
    """4: uid 1000 in the container asks about the container's root process."""
    target, fd = fam.pid, fam.report["roles"]["a_rw"]
    asked = podman.exec(
        fam.name, [f"{VENV}/bin/python", INSIDE, "ask", str(target), str(fd)], user="1000:1000"
    )
    if not t.check(asked.returncode == 0, f"{fam.tag}: ask as uid 1000 ran", asked.stderr):
        return
    got = json.loads(asked.stdout)
    t.equal(got["uid"], [1000, 1000], f"{fam.tag}: the asker runs as uid 1000")
    denied = DENIED.format(pid=target)
    calls = ["same_file", "same_file_root_first", "open_fds", "classify_fds", "classify_files"]
    task_calls = ["kcmp_vm", "same_fs", "sharing"]
    if seccomp_default:
        # The policy refuses kcmp before the kernel would weigh the uids.
        for call in task_calls:
            check_error(
                t, got[call], "KcmpUnavailableError", 1, REASON_POLICY, f"{fam.tag}: {call}"
            )
    else:
        calls += task_calls
    for call in calls:
        err = got[call].get("error") or {}
        t.equal(
            (err.get("class"), err.get("errno"), err.get("pid"), err.get("permission_error")),
            ("ProcessAccessError", 1, target, True),
            f"{fam.tag}: uid 1000 -> root: {call} raises ProcessAccessError naming it",
        )
        t.check(denied in err.get("message", ""), f"{fam.tag}: {call} message", err)


# ---- 3: a description of the host inside the container ----


@dataclass
class Helper:
    """A host process of ours that passes a file of the host into the container."""

    path: str
    proc: subprocess.Popen[str] | None = None
    fd: int = -1

    def start(self, sock: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "helper", sock, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.fd = int(read_json_line(self.proc, "host helper")["fd"])

    def stop(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def helper_main(sock_path: str, file_path: str) -> None:
    fd = os.open(file_path, os.O_RDWR | os.O_CREAT, 0o600)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        socket.send_fds(s, [b"H"], [fd])
    print(json.dumps({"fd": fd}), flush=True)
    sys.stdin.read()
    os.close(fd)


def crossing(t: Tally, fam: Family, helper: Helper) -> None:
    """3: the host scans the container's processes and the helper across pid namespaces."""
    assert helper.proc is not None
    hp, hc, hh = fam.to_host[fam.pid], fam.to_host[fam.child], helper.proc.pid
    want = [g for g in truth([*fam.host_refs(), (hh, helper.fd)]) if (hh, helper.fd) in g]
    # The host's kcmp-rs: the one beside this interpreter (the repo's .venv).
    cli = os.path.join(os.path.dirname(sys.executable), "kcmp-rs")
    cmd = [cli, "scan", "-p", f"{hh},{hp},{hc}", "--across", "pid"]
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    t.check(
        table.returncode == 3 and helper.path in table.stdout and "1 crossing" in table.stdout,
        "host: kcmp-rs scan --across pid exits 3 and lists the host file's crossing",
        (table.returncode, table.stdout, table.stderr),
    )
    doc = subprocess.run([*cmd, "-J"], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    sides = sorted({os.readlink(f"/proc/{hh}/ns/pid"), os.readlink(f"/proc/{hp}/ns/pid")})
    got = json.loads(doc.stdout)["descriptions"] if doc.stdout else []
    t.equal(
        (doc.returncode, scan_groups({"descriptions": got}), [d["boundaries"] for d in got]),
        (3, want, [sides]),
        "host: -J lists exactly that description, held on both sides of the pid namespace",
    )
    t.check(len(want) == 1 and len(want[0]) == 3, "host: truth holds it in helper, family, child")


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["helper"]:
        helper_main(argv[1], argv[2])
        return 0
    # scripts/container-test.sh stops us with SIGTERM: leave through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser()
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args(argv)
    xchg = os.path.join(args.work, "xchg")
    os.makedirs(xchg, exist_ok=True)
    podman = Podman(args.rootfs, args.prefix, xchg)
    helper = Helper(os.path.join(args.work, "host-secret"))
    t = Tally()
    # Here, not at the top: escape_scenarios imports this module's helpers, and
    # metrics_scenarios tests/_prom.py's too (node_exporter and Prometheus).
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from escape_scenarios import clean, leak
    from metrics_scenarios import escape_alert

    steps: list[tuple[str, Callable[[], None]]] = [
        ("default profile", lambda: default_profile(t, podman, helper)),
        ("KCMP_RS_NO_KCMP=1", lambda: disabled(t, podman)),
        (
            "--cap-add SYS_PTRACE",
            lambda: permitted(t, podman, "ptrace", ["--cap-add", "SYS_PTRACE"]),
        ),
        (
            "seccomp=unconfined",
            lambda: permitted(t, podman, "unconfined", ["--security-opt", "seccomp=unconfined"]),
        ),
        ("escapes: a host directory leaked as fd 3", lambda: leak(t, podman, args.work)),
        ("escapes: mounts, host namespaces, podman exec", lambda: clean(t, podman, args.work)),
        (
            "metrics: the leak in Prometheus, its alert firing",
            lambda: escape_alert(t, podman, args.work),
        ),
    ]
    try:
        for title, step in steps:
            print(f"\n---- {title} ----", flush=True)
            start = time.monotonic()
            try:
                step()
            except Exception as e:  # a scenario that cannot run is a failure
                t.check(False, f"{title}: ran to the end", f"{type(e).__name__}: {e}")
            print(f"({title}: {time.monotonic() - start:.1f} s)", flush=True)
    finally:
        helper.stop()
        for name in podman.started:
            podman.remove(name)
    print(f"scenarios: {t.passed} passed, {t.failed} failed", flush=True)
    return 0 if t.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

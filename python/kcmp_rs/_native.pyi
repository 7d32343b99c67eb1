"""The compiled core of kcmp_rs. Use the names re-exported by ``kcmp_rs`` instead."""

from collections.abc import Callable, Iterable, Sequence
from typing import Literal, SupportsIndex, final

from kcmp_rs._errors import KcmpType, Order

__version__: str

def kcmp(
    pid1: SupportsIndex,
    pid2: SupportsIndex,
    type: KcmpType | SupportsIndex,
    idx1: SupportsIndex = 0,
    idx2: SupportsIndex = 0,
) -> Order:
    """Compare a kernel resource of two processes; the kernel's order as an ``Order``.

    ``pid1``, ``pid2``: process or thread ids. ``type``: the ``KcmpType`` compared.
    ``idx1``/``idx2``: fds of ``pid1`` and ``pid2`` for ``KcmpType.FILE``, ignored
    otherwise.

    Returns an ``Order``: ``EQUAL`` when one kernel object is behind both, else the
    kernel's ordering of the two (``LESS``, ``GREATER``).

    Raises ValueError for ``KcmpType.EPOLL_TFD`` (use ``same_epoll_target``), TypeError
    or ValueError for bad arguments, and a ``KcmpError`` (also the OSError subclass
    Python picks by errno), with ``pid`` and ``fd`` naming what was at fault:
    ``ProcessGoneError`` (a process does not exist or is a zombie), ``FdNotOpenError``,
    ``ProcessAccessError`` (ptrace read access refused), ``KcmpUnavailableError``
    (kcmp(2) blocked or disabled).
    """

def same_file(
    pid1: SupportsIndex,
    fd1: SupportsIndex,
    pid2: SupportsIndex,
    fd2: SupportsIndex,
    *,
    allow_pidfd_getfd: bool = False,
) -> bool:
    """Whether fd1 of pid1 and fd2 of pid2 refer to one open file description.

    ``pid1``, ``pid2``: process or thread ids; ``fd1``, ``fd2``: an fd of each. Uses
    kcmp(2); where it is unusable, exact fallbacks for this process's fds, and with
    ``allow_pidfd_getfd=True`` for other processes' fds too (a temporary copy, whose
    close runs the file's flush).

    Returns True when the two fds share one description (dup, fork, SCM_RIGHTS).

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when a process does not exist
    or is a zombie, ``FdNotOpenError`` when an fd is not open, ``ProcessAccessError`` (a
    ``PermissionError``) when ptrace read access is refused, ``KcmpUnavailableError``
    when neither kcmp(2) nor an exact fallback can decide, TypeError or ValueError for
    bad arguments.
    """

def same_task(pid1: SupportsIndex, pid2: SupportsIndex, type: KcmpType | SupportsIndex) -> bool:
    """Whether the two tasks share the resource ``type`` (not FILE or EPOLL_TFD).

    An "equal" between two distinct pids is refused when either is a zombie, whose
    absent resources compare equal to every other zombie's.
    """

def sharing(pid1: SupportsIndex, pid2: SupportsIndex) -> tuple[bool, bool, bool, bool, bool, bool]:
    """(vm, files, fs, sighand, io, sysvsem) shared by the two processes.

    One kcmp(2) call per resource type, in that order; the first failure raises.
    """

def same_epoll_target(
    pid1: SupportsIndex,
    fd: SupportsIndex,
    pid2: SupportsIndex,
    epfd: SupportsIndex,
    target_fd: SupportsIndex,
    target_index: SupportsIndex = 0,
) -> bool:
    """Whether ``fd`` of ``pid1`` is the file registered in epoll set ``epfd`` of
    ``pid2`` under ``target_fd`` (its ``target_index``-th registration).

    ``target_fd`` is the fd number used when it was added; it may be closed since.

    Returns True when the registered file is the file of ``fd``.

    Raises ``FdNotOpenError`` when ``fd`` or ``epfd`` is not open, a ``KcmpError``
    (EINVAL) when ``epfd`` is not an epoll fd, ``KcmpFileNotFoundError`` (a
    ``FileNotFoundError``) when the set has no such registration, ``ProcessGoneError``,
    ``ProcessAccessError``, ``KcmpUnavailableError`` where kcmp(2) is blocked (nothing
    else can tell), TypeError or ValueError for bad arguments.
    """

def open_fds(pid: SupportsIndex) -> list[int]:
    """The fds open in ``pid``, ascending (read from /proc/PID/fd).

    The directory fd used to read them is never listed, even for this process.

    Returns a list of ints.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when ``pid`` does not exist or
    is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when its fds may not be
    listed, TypeError or ValueError for a pid that is not one.
    """

def classify_fds(
    pid: SupportsIndex,
    fds: Iterable[SupportsIndex] | None = None,
    *,
    order: Literal["fd", "kernel"] = "fd",
    missing: Literal["raise", "skip"] = "raise",
    allow_pidfd_getfd: bool = False,
) -> list[tuple[int, ...]]:
    """Group fds of ``pid`` (default: all open ones) by open file description.

    ``fds``: the fds to group (None: every open fd). ``order="fd"`` orders the groups by
    their smallest fd, ``order="kernel"`` by the kernel's order (needs kcmp).
    ``missing="skip"`` leaves out fds closed meanwhile instead of raising (``"raise"``).
    ``allow_pidfd_getfd``: where kcmp is blocked, let pidfd_getfd(2) copy another
    process's fds to compare them.

    Returns a list of groups, each a tuple of fds, ascending.

    Raises ``FdNotOpenError`` when an fd of ``fds`` is not open (``missing="raise"``),
    ``ProcessGoneError`` (a ``ProcessLookupError``) when ``pid`` does not exist or is a
    zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read access is
    refused, ``KcmpUnavailableError`` naming the fds no exact method could decide (kcmp
    blocked), ValueError for an unknown ``order`` or ``missing`` or an fd out of range,
    TypeError for an argument of the wrong type.
    """

def classify_fds_stats(
    pid: SupportsIndex, fds: Iterable[SupportsIndex], order: Literal["fd", "kernel"] = "fd"
) -> tuple[list[tuple[int, ...]], int, int, int]:
    """classify_fds with the engine's counts: (groups, keys, kcmp calls, equality checks).

    For tests and benchmarks that check how few syscalls a grouping takes.
    """

def classify_files(
    refs: Iterable[tuple[SupportsIndex, SupportsIndex]],
    *,
    missing: Literal["raise", "skip"] = "raise",
    allow_pidfd_getfd: bool = False,
) -> list[tuple[tuple[int, int], ...]]:
    """Group (pid, fd) pairs across processes by open file description.

    ``refs``: an iterable of ``(pid, fd)`` pairs. ``missing="skip"`` leaves out the
    pairs whose fd was closed or whose process is gone instead of raising
    (``"raise"``). ``allow_pidfd_getfd``: where kcmp is blocked, let pidfd_getfd(2) copy
    other processes' fds to compare them.

    Returns a list of groups, each a tuple of (pid, fd) pairs, ascending; groups ordered
    by their smallest pair.

    Raises ``KcmpUnavailableError`` naming the pairs no exact method could decide,
    ``ProcessGoneError`` (a ``ProcessLookupError``) when a process does not exist or is
    a zombie and ``FdNotOpenError`` when an fd is not open (``missing="raise"``),
    ``ProcessAccessError`` (a ``PermissionError``) when ptrace read access is refused,
    ValueError or TypeError for bad arguments.
    """

def classify_files_partial(
    refs: Iterable[tuple[SupportsIndex, SupportsIndex]],
    *,
    missing: Literal["raise", "skip"] = "raise",
    allow_pidfd_getfd: bool = False,
) -> tuple[list[tuple[tuple[int, int], ...]], list[tuple[int, int]]]:
    """classify_files returning the refs no exact method could decide instead of raising.

    Returns (groups, undecided): a pair no exact method could tell apart counts as
    two descriptions in the groups, and both its refs are listed in undecided.
    """

def classify_tasks(
    pids: Iterable[SupportsIndex],
    type: KcmpType | SupportsIndex,
    *,
    missing: Literal["raise", "skip"] = "raise",
) -> list[tuple[int, ...]]:
    """Group tasks sharing the resource ``type`` (VM, FILES, FS, SIGHAND, IO, SYSVSEM).

    ``pids``: process or thread ids. ``missing="skip"`` leaves out the processes that do
    not exist or have exited instead of raising (``"raise"``).

    Returns a list of groups, each a tuple of pids, ascending; groups ordered by their
    smallest pid.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when a process does not exist
    or is a zombie (``missing="raise"``), ``ProcessAccessError`` (a ``PermissionError``)
    when ptrace read access is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    (nothing else can tell), ValueError for ``type`` FILE or EPOLL_TFD or an unknown
    ``missing``, TypeError for an argument of the wrong type.
    """

def support(*, refresh: bool = False) -> tuple[bool, bool, bool, str]:
    """(kcmp, dupfd_query, pidfd_getfd, reason): what this process may use.

    Probed once and cached; ``refresh=True`` probes again. ``reason`` says why kcmp
    is unusable and how to fix it, and is empty when it is usable. Raises OSError
    (EMFILE, ...) when out of fds: a probe that cannot run cannot tell.
    """

def disable_kcmp() -> None:
    """Never issue kcmp(2) again in this process.

    For sandboxes that kill a process on kcmp; the exact fallbacks still answer, and
    the calls that need kcmp raise ``KcmpUnavailableError``.

    Returns None. Raises nothing (TypeError when given an argument).
    """

def set_thread_limit(n: int) -> int:
    """Limits the threads of every later pass to ``n`` (0: as many as the process may
    run on); returns the threads a pass uses now."""

def describe_refs(
    refs: Iterable[tuple[SupportsIndex, SupportsIndex]],
) -> list[tuple[bytes | None, str, str]]:
    """What a report shows of each (pid, fd): ``(target, mode, type)``, in order.

    ``target`` is ``readlink /proc/PID/fd/N`` as bytes (None once gone), ``mode``
    "r", "w", "rw", "path" or "?", ``type`` "REG", "DIR", "CHR", "BLK", "FIFO",
    "SOCK", "LNK", an anon inode's name, or "?". Read in parallel threads, the GIL
    released.
    """

def list_pids() -> list[int]:
    """Every process in /proc, ascending."""

def commands(pids: Iterable[SupportsIndex]) -> list[bytes | None]:
    """The command name (``/proc/PID/comm``, bytes) of each pid, in order; None once gone."""

def boundary_value(pid: SupportsIndex, kind: str) -> bytes:
    """The value of ``pid`` on boundary ``kind`` (a namespace's link text, or its cgroup).

    ``ProcessGoneError`` for a process that is absent, a zombie or exiting; another
    OSError naming the pid and the file when it cannot be read.
    """

def leak_snapshot() -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int, bool]]]:
    """This process's fds as (fd, st_dev, st_ino) and its descendants as (pid, ppid,
    start time, zombie): what the fd-leak check records before a block."""

def descendants(pid: SupportsIndex) -> list[tuple[int, int, int, bool]]:
    """(pid, ppid, start time, zombie) of each descendant of ``pid``, ascending."""

def is_zombie(pid: SupportsIndex) -> bool:
    """Whether ``pid`` has exited and awaits reaping (a zombie).

    A zombie keeps its pid but no longer has the resources kcmp compares. False for
    a pid that does not exist.
    """

def holders(
    pid: SupportsIndex,
    fd: SupportsIndex,
    pids: Iterable[SupportsIndex] | None,
    allow_pidfd_getfd: bool,
    progress: Callable[[int, int], object] | None,
) -> HoldersReport:
    """``holders()`` in one pass, the GIL released: a ``HoldersReport``.

    ``pids`` None: every process. ``progress(done, total)`` is called between steps;
    an exception it raises ends the search and propagates."""

def shared_files(
    pid1: SupportsIndex, pid2: SupportsIndex, *, allow_pidfd_getfd: bool = False
) -> tuple[
    list[tuple[list[int], list[int]]],
    list[tuple[list[int], list[int]]],
    bool,
    list[tuple[int, int]],
]:
    """(shared, reopened, same_fd_table, undecided): what ``pid1`` and ``pid2`` share.

    ``shared``: ``(fds_in_pid1, fds_in_pid2)`` per open file description both hold;
    ``reopened``: per inode each holds through a description the other does not hold
    (separate opens), those fds, never an empty side. Both processes pinned before
    either is listed; either exiting during the call raises ``ProcessGoneError``.
    The GIL is released for the whole pass.
    """

def epoll_sets(
    pid: SupportsIndex, epfd: SupportsIndex = ..., pids: Iterable[SupportsIndex] | None = None
) -> EpollReport:
    """What the epoll sets of ``pid`` watch, in one pass with every process pinned and
    the GIL released: an ``EpollReport``. ``epfd`` not passed: every epoll fd of
    ``pid`` (passed, it must be an fd: None is refused as any other non-int); holders
    are looked for in ``pid`` and ``pids``."""

@final
class EpollReport:
    """What the epoll sets of one process watch, kept native: ``epoll_targets()``
    builds its answer from it and ``kcmp-rs epoll -J/-j`` writes it as JSON."""

    def sets(
        self,
    ) -> list[
        tuple[
            int,
            list[
                tuple[
                    int,
                    int,
                    int,
                    int,
                    int,
                    Literal["open", "closed", "reused"],
                    list[tuple[int, int]],
                ]
            ],
        ]
    ]:
        """Each set asked about, ``(epfd, registrations)``, registrations in the kernel's
        order as ``(tfd, index, events, data, ino, status, holders)``."""
    def commands(self) -> list[tuple[int, bytes | None]]:
        """(pid, command name as bytes, None once gone) of each holder's process."""
    @property
    def calls(self) -> int:
        """``KCMP_EPOLL_TFD`` calls made."""
    def write_json(self, fd: SupportsIndex, lines: bool) -> None:
        """Writes the answer to ``fd`` as ``kcmp-rs epoll -J`` (``lines=False``) or ``-j``
        prints it, the GIL released; OSError (BrokenPipeError, ...) if it cannot."""

@final
class HoldersReport:
    """What one ``holders()`` search found, kept native: ``Holders`` is a view of it,
    and ``kcmp-rs holders -J/-j`` writes it as JSON without building that view."""

    @property
    def pid(self) -> int:
        """The pid asked about."""
    @property
    def fd(self) -> int:
        """The fd asked about."""
    @property
    def holders(self) -> list[tuple[int, int]]:
        """The (pid, fd) pairs referring to the target's description, ascending."""
    def shown(self) -> tuple[bytes | None, str, str]:
        """(target as bytes, None once gone; mode; type) of the asked fd."""
    def commands(self) -> list[tuple[int, bytes | None]]:
        """(pid, command name as bytes, None once gone) of each holder's process."""
    @property
    def skipped(self) -> list[tuple[int, str]]:
        """(pid, reason) of each process not read, ascending."""
    @property
    def processes_read(self) -> int:
        """Processes whose fds were read (sharers of a read fd table included)."""
    @property
    def fds_compared(self) -> int:
        """Candidate fds compared with the target."""
    @property
    def undecided(self) -> list[tuple[int, int]]:
        """The fds on the target's inode no exact method could decide, ascending."""
    @property
    def fd_table_shared(self) -> list[list[int]]:
        """The pids sharing one fd table, smallest (the one read) first."""
    def write_json(self, fd: SupportsIndex, lines: bool) -> None:
        """Writes the answer to ``fd`` as ``kcmp-rs holders -J`` (``lines=False``) or
        ``-j`` prints it, the GIL released; OSError (BrokenPipeError, ...) if it cannot."""

@final
class ScanReport:
    """What one scan found, kept native: the Python result types are built from it on
    demand, and ``kcmp-rs scan -J/-j`` writes it as JSON without building them."""

    @property
    def processes_read(self) -> int:
        """Processes whose fds were read (sharers of a read fd table included)."""
    @property
    def fds_classified(self) -> int:
        """Fds placed in a description."""
    @property
    def skipped(self) -> list[tuple[int, str]]:
        """(pid, reason) of each process not read, ascending."""
    @property
    def undecided(self) -> list[tuple[int, int]]:
        """The (pid, fd) no exact method could decide, ascending."""
    @property
    def fd_table_shared(self) -> list[list[int]]:
        """The pids sharing one fd table, smallest (the one read) first."""
    def descriptions(self) -> list[tuple[bytes | None, str, str, list[bytes]]]:
        """One ``(target, type, mode, boundaries)`` per description reported; its members
        are ``members(i)``."""
    def members(self, i: int) -> list[tuple[int, int]]:
        """The ``(pid, fd)`` members of description ``i``, ascending; IndexError past the
        end."""
    def keys(self) -> list[tuple[int, int]]:
        """Each description's file, ``(st_dev, st_ino)``, in order (``scan_files`` only)."""
    def offsets(self) -> list[int | None]:
        """Each description's file offset (None once unreadable), in order (``scan_files``
        only)."""
    def commands(self) -> list[tuple[int, bytes | None]]:
        """(pid, command name as bytes, None once gone) of each member's process."""
    def boundary_of(self) -> list[tuple[int, bytes]]:
        """(pid, boundary value as bytes) of each reader, when a boundary was asked."""
    def write_json(
        self,
        fd: SupportsIndex,
        lines: bool,
        only: Sequence[int] | None = None,
        fds: bool = False,
    ) -> None:
        """Writes the report to ``fd`` as ``kcmp-rs scan -J`` (``lines=False``) or ``-j``
        prints it, the GIL released; OSError (BrokenPipeError, ...) if it cannot.
        ``only``: the indices of the descriptions to show (the audit's crossings), all
        when None; IndexError for one past the end. ``fds``: the JSON Lines header
        names the command ``fds`` (a one-process scan) instead of ``scan``."""

    def channels(self) -> list[tuple[str, list[tuple[str, list[int]]]]] | None:
        """With ``ipc``: each channel between processes as ``(kind, ends)``, each end
        ``(side, indices of its descriptions)``; None without."""

    def channel_notes(self) -> list[str]:
        """With ``ipc``: what the channel search could not read (sock_diag refused, ...)."""

def census(pids: Iterable[SupportsIndex], per_process: bool = False) -> CensusReport:
    """The census of ``pids`` for metrics, in one native pass, the GIL released: a
    ``CensusReport``.

    One scan of every description of ``pids`` (as ``scan(pids, include_unshared=True,
    ipc=True)``); while its processes are pinned, each one's value of every boundary
    kind (pid, mnt, net, user, ipc, uts, cgroup: as ``scan(boundary=...)`` reads them)
    and the container its cgroup names are read too, a value that cannot be read
    counted as unread for its kind alone. Then every epoll set of each process read
    holding an epoll fd is read (as ``epoll_targets``, holders looked for in that
    process). ``per_process=True`` adds one row per process read.

    Processes that cannot be read go to ``skipped``, never raise. Raises TypeError or
    ValueError for bad arguments, with the messages of ``scan()`` (``TypeError: pids
    must be an iterable of ints, not int``, ``ValueError: each pid in pids must be a pid
    in 1..2147483647, got 0``, ``TypeError: per_process must be a bool, not int``),
    KeyboardInterrupt on Ctrl-C, and a ``KcmpError`` (the OSError subclass Python picks)
    where the pass itself cannot go on (out of fds: EMFILE).
    """

@final
class CensusReport:
    """What one ``census()`` pass counted; each property is a new list, every count
    list sorted and, where its keys are fixed, every key present (zeros included)."""

    @property
    def processes_read(self) -> int:
        """Processes whose fds were read (sharers of a read fd table included), as
        ``ScanReport.processes_read``."""
    @property
    def skipped(self) -> list[tuple[int, str]]:
        """(pid, reason) of each process not read, ascending; the reasons of
        ``Skipped.reason`` (``"no such process"``, ``"exited"``, ``"zombie"``,
        ``"permission denied"``, ...)."""
    @property
    def undecided(self) -> int:
        """Fds no exact method could decide (kcmp blocked): in no description, so in
        no other count."""
    @property
    def fds(self) -> list[tuple[str, str, str, int]]:
        """``(runtime, container_id, type, count)``: every fd placed in a description,
        by the container its process is in (from its cgroup; ``("", "")`` for none or
        unreadable) and the description's type as the scan names it (``REG``, ``DIR``,
        ``CHR``, ``FIFO``, ``SOCK``, ``eventfd``, ``eventpoll``, ..., ``?`` once gone).
        An fd table shared by several processes is counted once, under the pid read."""
    @property
    def shared(self) -> list[tuple[str, int]]:
        """``(type, count)``: descriptions held by two distinct processes or more (the
        sharers of a member's fd table count as holders), by type."""
    @property
    def crossings(
        self,
    ) -> list[tuple[Literal["pid", "mnt", "net", "user", "ipc", "uts", "cgroup"], int]]:
        """``(kind, count)`` for each kind in the order pid, mnt, net, user, ipc, uts,
        cgroup: descriptions whose holders show two values or more of that kind,
        counting only the holders whose value was read."""
    @property
    def crossings_undecided(
        self,
    ) -> list[tuple[Literal["pid", "mnt", "net", "user", "ipc", "uts", "cgroup"], int]]:
        """``(kind, count)``, same order: descriptions held by two processes or more with
        a holder whose value of that kind could not be read (``crossings`` may then be
        short by them)."""
    @property
    def unpaired(
        self,
    ) -> list[tuple[Literal["pipe", "fifo"], Literal["reader", "writer"], int]]:
        """``(kind, missing, count)``: pipes and named FIFOs whose descriptions among
        the processes read are all on one side; ``("pipe", "reader", n)``: n pipes with
        a write end held and no read end. A FIFO opened O_RDWR is on both sides. All
        four rows present."""
    @property
    def epoll(self) -> list[tuple[Literal["open", "closed", "reused"], int]]:
        """``(status, count)``: the registrations of every epoll set of every process
        read, by whether the registered fd number still names the registered file
        (``open``), is closed (``closed``) or names another file (``reused``)."""
    @property
    def epoll_unread(self) -> list[tuple[int, str]]:
        """(pid, reason) of each process holding an epoll fd whose sets could not be
        read (exited meanwhile: ``"exited"``; kcmp unavailable: ``"error: ..."``)."""
    @property
    def per_process(self) -> list[tuple[int, bytes | None, int, int]] | None:
        """With ``per_process=True``: ``(pid, command, fds, shared_fds)`` per fd table
        read (under the pid read), ascending pid: its command name (None once gone),
        its fds counted in ``fds``, and those on a description held by two processes
        or more. None when not asked."""
    @property
    def syscalls(
        self,
    ) -> list[tuple[Literal["engine_key", "engine_same", "engine_compare", "kcmp_epoll_tfd"], int]]:
        """``(name, count)`` of the calls the pass counted, always these four:
        ``engine_key``: the grouping engine's key lookups ((st_dev, st_ino) of one fd
        each, stat'ed once, in parallel ahead or on demand); ``engine_same``: its
        equality tests (F_DUPFD_QUERY between this process's own fds, the exact
        fallbacks where kcmp is unusable, none at all where kcmp decides);
        ``engine_compare``: its comparisons, one kcmp(KCMP_FILE) each (a comparison
        redone after an fd's dup2 race makes more); ``kcmp_epoll_tfd``: the
        ``KCMP_EPOLL_TFD`` calls of the epoll sets. The fd tables' grouping
        (``KCMP_FILES``) and the reads of /proc are not counted."""

def endpoints(
    pid: SupportsIndex,
    fd: SupportsIndex,
    pids: Iterable[SupportsIndex],
    allow_pidfd_getfd: bool,
    progress: Callable[[int, int], object] | None,
) -> tuple[str | None, str, bytes, ScanReport, list[list[str]], str | None]:
    """``endpoints()`` in one pass: ``(kind, file_type, target, report, sides, partial)``."""

def escapes(
    pids: Iterable[SupportsIndex],
) -> tuple[
    list[
        tuple[
            int,
            int | str,
            str,
            str,
            int,
            bytes | None,
            bytes,
            bytes | None,
            str,
            str | None,
            list[tuple[int, int]],
        ]
    ],
    dict[int, tuple[bytes | None, tuple[str, str] | None, int, list[int] | None]],
    dict[int, bytes | None],
    list[tuple[int, str]],
    int,
    int,
    list[str],
]:
    """``escapes()`` in one pass: ``(findings, processes, commands, skipped,
    processes_read, mount_namespaces_read, notes)``."""

def scan_files(
    pids: Iterable[SupportsIndex],
    keys: list[tuple[int, int]],
    allow_pidfd_getfd: bool,
    progress: Callable[[int, int], object] | None,
) -> ScanReport:
    """The scan of ``pids`` for the fds on the files ``keys`` ((st_dev, st_ino) pairs)
    alone, in one native pass, the GIL released: a ``ScanReport`` whose ``keys()``
    and ``offsets()`` give each description's file and offset (``kcmp_rs.who()``)."""

def scan(
    pids: Iterable[SupportsIndex],
    include_unshared: bool,
    allow_pidfd_getfd: bool,
    boundary: str | None,
    progress: Callable[[int, int], object] | None,
    ipc: bool = False,
) -> ScanReport:
    """The scan of ``pids`` in one native pass, the GIL released: a ``ScanReport``.

    Arguments arrive checked by ``kcmp_rs.scan``. ``progress(done, total)`` is
    called with the GIL as each process's fds have been read; an exception it
    raises ends the scan and propagates.
    """

"""A call run in a forked child process while this one works, its result sent back pickled.

Captures of one step at two batch sizes share nothing either must wait for, and each is mostly
Python (FakeTensor's dispatch, autograd, the recorder): a second process runs one while this one
runs the other, and a two-size capture takes the time of about one where a second CPU is free.

:func:`can_fork` says whether a child may be used: Linux, ``os.fork`` present and at least two
CPUs this process may run on. The child inherits everything made before the fork (the fake
parameters, the optimizer and its state), runs the call, writes the pickled result to a pipe and
leaves with ``os._exit``: no atexit handler, no flush of buffers it inherited, no pytest teardown
runs twice. Whatever goes wrong in the child (an exception, a crash, a result that does not
unpickle, no answer within the timeout) makes :meth:`ForkedCall.result` return None, and the
caller does the work itself; the child is killed and reaped in every case, and an interrupt of
the parent (Ctrl-C) ends the child too. The caller may go on with other work between the fork and
:meth:`ForkedCall.result`; a call dropped without asking for its result ends its child when it is
garbage-collected, or when the process exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, NoReturn, TypeVar

T = TypeVar("T")

READ_CHUNK_BYTES = 1 << 20


def can_fork() -> bool:
    """Whether a forked child can run beside this process: Linux, ``os.fork``, two CPUs or more."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    return len(os.sched_getaffinity(0)) >= 2


class ForkedCall(Generic[T]):
    """``call()`` running in a forked child from construction on; :meth:`result` waits for it."""

    def __init__(self, call: Callable[[], T]) -> None:
        """Fork; ``OSError`` (no process could be made) leaves nothing behind."""
        read, write = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12 warns about forking a process with other threads: the child runs
                # nothing of theirs, only the call, and leaves with os._exit.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except BaseException:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:
            os.close(read)
            _run_child(call, write)
        os.close(write)
        self._child = _Child(pid=pid, read=read)
        weakref.finalize(self, self._child.end)

    @property
    def pid(self) -> int | None:
        """The child's process id; None once it has been reaped."""
        return self._child.pid

    def result(self, timeout_s: float) -> T | None:
        """The call's value, or None if the child failed or sent nothing whole within ``timeout_s``."""
        try:
            payload = self._payload(timeout_s)
            if payload is None or not self._exited_cleanly():
                return None
            value: T = pickle.loads(payload)
            return value
        except Exception:
            return None
        finally:
            self.close()

    def close(self) -> None:
        """End the child if it still runs, reap it and close the pipe (idempotent; also done when
        the call is garbage-collected or the process exits without it)."""
        self._child.end()

    def _payload(self, timeout_s: float) -> bytes | None:
        """Everything the child wrote, once it closes the pipe; None past the deadline."""
        read = self._child.read
        assert read is not None
        deadline = time.monotonic() + timeout_s
        chunks: list[bytes] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read], [], [], remaining)[0]:
                return None
            chunk = os.read(read, READ_CHUNK_BYTES)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def _exited_cleanly(self) -> bool:
        pid, self._child.pid = self._child.pid, None
        assert pid is not None
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0


@dataclass(kw_only=True, slots=True)
class _Child:
    """A forked child and the read end of its pipe, until :meth:`end` (kept apart from the call,
    so that a finalizer can end the child without keeping the call alive)."""

    pid: int | None
    read: int | None
    parent: int = field(default_factory=os.getpid)

    def end(self) -> None:
        """Close the pipe, kill the child if it still runs and reap it (idempotent; nothing in
        another process, such as a later child that inherited this record)."""
        if os.getpid() != self.parent:
            return
        if self.read is not None:
            read, self.read = self.read, None
            os.close(read)
        if self.pid is not None:
            pid, self.pid = self.pid, None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _run_child(call: Callable[[], object], write: int) -> NoReturn:
    """In the child: run ``call``, write its pickled value to ``write`` and leave at once."""
    status = 1
    try:
        payload = pickle.dumps(call(), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(payload)
        while view:
            view = view[os.write(write, view) :]
        status = 0
    except BaseException:
        pass  # the parent does the work itself; nothing may escape the child
    finally:
        os._exit(status)

"""Crash- and hang-proof parallel map over files: one bad input is rejected, the run goes on.

Real corpora hold files that make a parser raise, loop forever, or crash its process (a C++ segfault in a MIDI
parser takes the whole Python process with it). `map_isolated(fn, items, ...)` runs `fn` on every item in a small
pool of forked worker processes and returns one `Outcome` per item, in input order:

    Outcome(item, ok=True,  value=fn(item), reason="")
    Outcome(item, ok=False, value=None,     reason="parser crashed (signal 11)" | "timeout after 30 s" | "<error>")

Why not joblib/loky: a dead loky worker raises TerminatedWorkerError for the whole batch (the culprit is unknown and
every in-flight task is lost), and a hung task cannot be killed on its own. Here each worker reports after every
item, so the parent always knows which item a worker is on: when the worker dies, that item is the culprit; when it
runs past `timeout_s`, the worker is killed (SIGKILL, works on hung C++ code too). Either way a fresh worker is
forked and takes over the rest of the chunk. The happy path costs one small pipe message per item.

Workers are forked (no re-import of torch/miditok, `fn` and its closure are inherited, not pickled); results travel
back pickled, so return compact values (e.g. numpy uint16 arrays rather than lists of ints).
`imap_isolated` yields outcomes in input order, so callers can stream results to disk. Results that finish ahead of
a slow or hanging item wait in a reorder buffer bounded by *bytes* (`max_buffer_mb`), not by a small item count:
while one worker sits on a hanging file until its timeout, the other workers keep going through the input instead of
idling, so a hang costs one worker its timeout, not the whole pool. Memory stays bounded by the buffer, not by
`len(items)`.
"""
from __future__ import annotations

import faulthandler
import math
import multiprocessing as mp
import os
import pickle
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Sequence

DEFAULT_BUFFER_MB = 256  # reorder buffer: ~10,000 tokenized pieces of 13k tokens; organize results are tiny
ITEM_OVERHEAD_BYTES = 512  # counted per buffered outcome besides its pickled size, so tiny results are bounded too

from tqdm.auto import tqdm


class Rejected(Exception):
    """Raise inside `fn` to reject an item with exactly this reason (e.g. "not a MIDI file", "no notes")."""


@dataclass(frozen=True)
class Outcome:
    item: Any
    ok: bool
    value: Any = None
    reason: str = ""


def resolve_n_jobs(n_jobs: int) -> int:
    """joblib convention: -1 = all cores, -2 = all but one, positive = that many (at least 1)."""
    n_cpu = os.cpu_count() or 1
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive worker count or negative (-1 = all cores), not 0")
    return max(1, n_jobs if n_jobs > 0 else n_cpu + 1 + n_jobs)


def describe_exception(exc: BaseException) -> str:
    """One line for a rejection reason: the message, or the exception type when the message is empty."""
    if isinstance(exc, Rejected):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"parser crashed (signal {-exitcode})"
    return f"worker process exited unexpectedly (exit code {exitcode})"


# ---------------------------------------------------------------------------------------------------------------- worker

def _worker_main(conn: Any, fn: Callable[[Any], Any]) -> None:
    """Receive chunks [(index, item), ...]; answer (index, ok, value, reason) after every single item."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it kills us
    faulthandler.disable()  # a crash is reported by the parent as a rejection reason, not as a C stack dump
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, item in chunk:
            try:
                reply = (index, True, fn(item), "")
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - every failure becomes a rejection reason
                reply = (index, False, None, describe_exception(exc))
            try:
                conn.send(reply)
            except OSError:  # the parent is gone (killed): nobody to report to
                return
            except (TypeError, AttributeError, ValueError, pickle.PicklingError) as exc:  # a bug in fn, still per item
                conn.send((index, False, None, f"result could not be sent back: {describe_exception(exc)}"))


@dataclass
class _Worker:
    process: Any
    conn: Any
    pending: deque = field(default_factory=deque)  # (index, item) sent and not yet answered; [0] is running now
    item_started: float = 0.0


class _Pool:
    """A fixed number of forked (or, with start_method="spawn", freshly started) workers, each fed chunks through
    its own pipe."""

    def __init__(self, fn: Callable[[Any], Any], n_workers: int, start_method: str = "fork"):
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context(start_method if start_method in methods else "spawn")
        self.fn = fn
        self.workers = [self._start() for _ in range(n_workers)]

    def _start(self) -> _Worker:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        process = self.ctx.Process(target=_worker_main, args=(child_conn, self.fn), daemon=True)
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def send(self, worker: _Worker, chunk: list[tuple[int, Any]]) -> None:
        worker.pending.extend(chunk)
        worker.item_started = time.monotonic()
        worker.conn.send(chunk)

    def replace(self, worker: _Worker) -> _Worker:
        """Kill `worker` (if alive) and fork a fresh one in its slot; unanswered items are the caller's to resend."""
        self._kill(worker)
        fresh = self._start()
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    @staticmethod
    def _kill(worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive() and not worker.pending:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 2
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._kill(worker)


# ---------------------------------------------------------------------------------------------------------------- parent

def imap_isolated(fn: Callable[[Any], Any], items: Sequence[Any], n_jobs: int = -1, timeout_s: float = 60.0,
                  desc: str | None = None, chunk_size: int | None = None, progress: bool = True,
                  max_buffer_mb: float = DEFAULT_BUFFER_MB, start_method: str = "fork") -> Iterator[Outcome]:
    """Yield `Outcome`s for `fn(item)` in input order; crashes, hangs and exceptions reject only their own item.

    `start_method="spawn"` starts workers from a fresh interpreter (`fn` must then be picklable): for C libraries
    whose global state does not survive a fork of a process that already uses them (FluidSynth's soundfont loader
    deadlocks in a child forked from a process that has a synth).

    `timeout_s` is per item (0 or less = no limit). Results that finish before an earlier item wait in a reorder
    buffer; new work is dispatched while that buffer holds less than `max_buffer_mb` (pickled result sizes), so
    workers never idle behind one slow item unless memory says so.

    One scheduling loop on purpose (longer than our usual function): dispatch, reorder, wait and the two ways an
    item ends (`finish`, `fail_current`) share the pool, the reorder buffer and its byte count; kept together, the
    invariants — every item answered exactly once, the buffer's accounting — can be checked in one place.
    """
    items = list(items)
    n = len(items)
    if n == 0:
        return
    n_workers = min(resolve_n_jobs(n_jobs), n)
    if chunk_size is None:  # small chunks keep load balanced; per-item replies make chunking cheap anyway
        chunk_size = max(1, min(8, n // (n_workers * 8)))
    max_buffer = max_buffer_mb * 2**20
    indexed = list(enumerate(items))
    chunks = [indexed[start:start + chunk_size] for start in range(0, n, chunk_size)]
    chunks.reverse()  # pop() from the end = in order
    results: dict[int, Outcome] = {}
    sizes: dict[int, int] = {}  # bytes held in the reorder buffer per result
    buffered = [0]  # their sum (a list so the helpers below can update it)
    next_yield = 0
    bar = tqdm(total=n, desc=desc, unit="file", disable=not progress, dynamic_ncols=True)
    pool = _Pool(fn, n_workers, start_method)

    def finish(worker: _Worker, message: bytes) -> None:
        index, ok, value, reason = pickle.loads(message)
        done_index, done_item = worker.pending.popleft()
        assert done_index == index, "worker answered out of order"
        results[index] = Outcome(done_item, ok, value, reason)
        sizes[index] = len(message) + ITEM_OVERHEAD_BYTES
        buffered[0] += sizes[index]
        worker.item_started = time.monotonic()
        bar.update(1)

    def fail_current(worker: _Worker, reason: str) -> None:
        """The item a worker was on caused its death: reject it, resend the rest of its chunk to a fresh worker."""
        index, item = worker.pending.popleft()
        results[index] = Outcome(item, False, None, reason)
        sizes[index] = ITEM_OVERHEAD_BYTES
        buffered[0] += ITEM_OVERHEAD_BYTES
        bar.update(1)
        rest = list(worker.pending)
        fresh = pool.replace(worker)
        if rest:
            pool.send(fresh, rest)

    try:
        while next_yield < n:
            for worker in pool.workers:  # feed idle workers while the reorder buffer has room
                if not worker.pending and chunks and (buffered[0] < max_buffer or chunks[-1][0][0] == next_yield):
                    pool.send(worker, chunks.pop())
            while next_yield in results:
                buffered[0] -= sizes.pop(next_yield)
                yield results.pop(next_yield)
                next_yield += 1
            if next_yield >= n:
                break
            busy = [w for w in pool.workers if w.pending]
            if not busy:
                continue  # the consumer caught up: loop to dispatch more
            now = time.monotonic()
            wait_s = None
            if timeout_s > 0:
                wait_s = max(0.0, min(w.item_started + timeout_s for w in busy) - now)
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=wait_s))
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    died = False
                    try:  # drain everything it managed to send before any death
                        while worker.pending and worker.conn.poll():
                            finish(worker, worker.conn.recv_bytes())
                    except (EOFError, OSError):
                        died = True
                    if worker.pending and (died or not worker.process.is_alive()):
                        worker.process.join(timeout=5)
                        fail_current(worker, describe_exit(worker.process.exitcode))
                elif timeout_s > 0 and time.monotonic() - worker.item_started >= timeout_s:
                    fail_current(worker, f"timeout after {timeout_s:g} s")
    finally:
        pool.close()
        bar.close()


def map_isolated(fn: Callable[[Any], Any], items: Sequence[Any], n_jobs: int = -1, timeout_s: float = 60.0,
                 desc: str | None = None, chunk_size: int | None = None, progress: bool = True,
                 start_method: str = "fork") -> list[Outcome]:
    """`imap_isolated` collected into a list (fine when values are small); the list holds everything anyway, so the
    reorder buffer is unbounded."""
    return list(imap_isolated(fn, items, n_jobs, timeout_s, desc, chunk_size, progress, max_buffer_mb=math.inf,
                              start_method=start_method))


def read_midi(path: str | os.PathLike) -> Any:
    """Parse a MIDI file with symusic, rejecting it with a clean reason. Call it inside `fn` (the parser may crash).

    Reasons: "empty file", "not a MIDI file (<parser message>)", "no notes".
    """
    from symusic import Score  # imported here so importing this module stays light

    if os.path.getsize(path) == 0:
        raise Rejected("empty file")
    try:
        score = Score(str(path))
    except Exception as exc:  # symusic raises RuntimeError/ValueError/IndexError for malformed files
        raise Rejected(f"not a MIDI file ({describe_exception(exc)})") from None
    if score.ticks_per_quarter <= 0:  # parses, but every tick -> time conversion would divide by zero
        raise Rejected("invalid MIDI header: time division is 0 ticks per quarter note")
    if score.note_num() == 0:
        raise Rejected("no notes")
    return score

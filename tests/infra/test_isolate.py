"""mozart.infra.isolate: a raising, crashing or hanging item is rejected with its reason; every other item still runs."""
from __future__ import annotations

import os
import signal
import time

import pytest
from symusic import Note, Score, Track

from mozart.infra.isolate import Outcome, Rejected, imap_isolated, map_isolated, read_midi, resolve_n_jobs


def troublemaker(x: int) -> int:
    """Module-level so it also works with a spawn start method."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)  # what a C++ parser crash looks like from outside
    if x == 5:
        time.sleep(60)  # a hang; the parent must kill it
    if x == 7:
        raise ValueError("bad seven")
    if x == 8:
        raise Rejected("no notes")
    if x == 9:
        os._exit(4)
    return x * x


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_bad_items_are_rejected_with_reasons_and_the_rest_completes(n_jobs):
    items = list(range(14))
    outcomes = map_isolated(troublemaker, items, n_jobs=n_jobs, timeout_s=1.0, progress=False, chunk_size=4)
    assert [o.item for o in outcomes] == items  # input order, one outcome per item
    reasons = {o.item: o.reason for o in outcomes if not o.ok}
    assert reasons == {
        3: "parser crashed (signal 11)",
        5: "timeout after 1 s",
        7: "ValueError: bad seven",
        8: "no notes",
        9: "worker process exited unexpectedly (exit code 4)",
    }
    for o in outcomes:
        if o.ok:
            assert o.value == o.item * o.item and o.reason == ""
        else:
            assert o.value is None


def test_many_items_keep_order_with_uneven_work():
    def slow_on_multiples_of_seven(x):
        if x % 7 == 0:
            time.sleep(0.05)
        return -x

    outcomes = list(imap_isolated(slow_on_multiples_of_seven, range(100), n_jobs=2, timeout_s=30, progress=False))
    assert outcomes == [Outcome(i, True, -i, "") for i in range(100)]


def test_crash_in_first_chunk_does_not_lose_queued_items():
    # Every item of a chunk after the culprit must be resent to the fresh worker, not dropped.
    def crash_on_zero(x):
        if x == 0:
            os._exit(1)
        return x

    outcomes = map_isolated(crash_on_zero, range(10), n_jobs=1, timeout_s=10, progress=False, chunk_size=10)
    assert [o.ok for o in outcomes] == [False] + [True] * 9
    assert [o.value for o in outcomes[1:]] == list(range(1, 10))


def test_empty_input_and_n_jobs_resolution():
    assert map_isolated(troublemaker, [], progress=False) == []
    assert resolve_n_jobs(3) == 3
    assert resolve_n_jobs(-1) == (os.cpu_count() or 1)
    assert resolve_n_jobs(-1000) == 1
    with pytest.raises(ValueError):
        resolve_n_jobs(0)


def test_no_worker_processes_left_behind():
    import multiprocessing

    map_isolated(troublemaker, [1, 2, 3, 5], n_jobs=2, timeout_s=0.5, progress=False)
    assert multiprocessing.active_children() == []


def test_read_midi_reasons(tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"this is not a MIDI file at all" * 10)
    silent = tmp_path / "silent.mid"
    score = Score(480)
    score.tracks.append(Track("piano", 0, False))
    score.dump_midi(silent)
    good = tmp_path / "good.mid"
    score.tracks[0].notes.append(Note(0, 480, 60, 80))
    score.dump_midi(good)

    outcomes = map_isolated(read_midi, [empty, junk, silent, good], n_jobs=2, timeout_s=10, progress=False)
    assert outcomes[0].reason == "empty file"
    assert outcomes[1].reason.startswith("not a MIDI file")
    assert outcomes[2].reason == "no notes"
    assert outcomes[3].ok and outcomes[3].value.note_num() == 1


def sleepy(x: int) -> int:
    """Items 5 and 40 hang past the timeout; every other item takes 50 ms (sleep: no CPU, so timing is reliable)."""
    time.sleep(60 if x in (5, 40) else 0.05)
    return x


def test_two_hanging_items_cost_about_one_timeout_not_a_stalled_pool():
    timeout_s, n_items, n_jobs = 4.0, 60, 2
    ideal = (n_items - 2) * 0.05 / n_jobs  # the work shared out over both workers: ~1.5 s
    started = time.monotonic()
    outcomes = list(imap_isolated(sleepy, range(n_items), n_jobs=n_jobs, timeout_s=timeout_s, progress=False))
    elapsed = time.monotonic() - started
    assert [o.item for o in outcomes] == list(range(n_items))
    assert [o.item for o in outcomes if not o.ok] == [5, 40]
    # While one worker sits on a hang, the other keeps working: the two hangs overlap the rest of the work. A pool
    # that stalls behind each hang needs ideal + 2 timeouts (~9.5 s).
    assert timeout_s < elapsed < ideal + 1.5 * timeout_s, elapsed


def test_a_full_reorder_buffer_still_yields_everything_in_order():
    outcomes = list(imap_isolated(sleepy, [x for x in range(30) if x not in (5,)], n_jobs=2, timeout_s=10,
                                  progress=False, chunk_size=2, max_buffer_mb=0))
    assert [o.value for o in outcomes] == [x for x in range(30) if x != 5]

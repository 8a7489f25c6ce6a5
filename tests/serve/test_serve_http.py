"""`mozart serve` over HTTP (Flask's test client, a tiny random model): a generation end to end, and every error case
answered with a one-line message and no traceback: out-of-range and malformed values, non-MIDI and oversized
uploads, a busy model, and URLs that try to reach files outside the app's output folder."""
from __future__ import annotations

import io

import pytest
import symusic

from mozart.serve.app import BUSY
from mozart.serve.jobs import LIMITS, MAX_UPLOAD_BYTES
from sampling_helpers import one_thread, scale_score  # noqa: F401 (autouse fixture)
from serve_helpers import SOUNDFONT, serve_app, wait_for_job


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    app, out_dir = serve_app(tmp_path_factory.mktemp("serve"))
    return app, out_dir


@pytest.fixture
def client(served):
    return served[0].test_client()


def _post(client, **fields):
    data = {k: v for k, v in fields.items()}
    return client.post("/api/generate", data=data, content_type="multipart/form-data")


def _assert_clear_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    message = response.get_json()["error"]
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message
    return message


def test_a_generation_writes_midi_wav_and_roll_and_serves_them(client):
    response = _post(client, composer="bach:0.5,chopin:0.5", length="2", unit="bars", bpm="100", seed="3",
                     temperature="1.0")
    assert response.status_code == 202
    status = wait_for_job(client, response.get_json()["job"])
    assert status["state"] == "done", status
    assert status["summary"]["bars"] == 2 and status["summary"]["composer"] == "Bach 50% + Chopin 50%"
    assert status["summary"]["ended_by"] == "eos"
    midi = client.get(status["files"]["midi"])
    assert midi.status_code == 200 and symusic.Score.from_midi(midi.data).note_num() > 0
    assert client.get(status["files"]["roll"]).data.startswith(b"\x89PNG")
    if SOUNDFONT.is_file():
        assert client.get(status["files"]["wav"]).data[:4] == b"RIFF"


def test_the_page_and_the_info_list_the_composers_and_limits(client):
    assert b'id="generate"' in client.get("/").data
    info = client.get("/api/info").get_json()
    assert "Chopin" in info["composers"] and info["limits"]["bars"] == [1, 128]
    assert info["max_upload_bytes"] == MAX_UPLOAD_BYTES


@pytest.mark.parametrize("fields, words", [
    ({"length": "0"}, ("bars must be from 1 to 128", "got 0")),
    ({"length": "1000"}, ("bars must be from 1 to 128",)),
    ({"length": "2.5"}, ("bars must be a whole number",)),
    ({"length": "1000", "unit": "seconds"}, ("seconds must be from 1 to 600",)),
    ({"length": "500", "unit": "seconds", "bpm": "300"}, ("is 625 bars; the most is 128",)),
    ({"unit": "minutes"}, ("unit must be bars or seconds",)),
    ({"bpm": "5"}, ("bpm must be from 20 to 300",)),
    ({"bpm": "fast"}, ("bpm must be a number", "'fast'")),
    ({"cfg": "-1"}, ("cfg must be from 0 to 10",)),
    ({"cfg": "nan"}, ("cfg must be a number",)),
    ({"temperature": "9"}, ("temperature must be from 0 to 3",)),
    ({"seed": "-3"}, ("seed must be from 0 to",)),
    ({"prompt_bars": "0"}, ("prompt_bars must be from 1 to 64",)),
    ({"composer": "Chopan"}, ("unknown composer", "closest known: Chopin")),
    ({"composer": "chopin:-2"}, ("must be a positive number",)),
])
def test_out_of_range_and_malformed_values_get_a_clear_message(client, fields, words):
    _assert_clear_error(_post(client, **{"length": "2", **fields}), 400, *words)


def test_every_limit_is_tested_above():
    assert set(LIMITS) == {"bars", "seconds", "bpm", "cfg", "temperature", "seed", "prompt_bars"}


def test_a_non_midi_upload_is_refused_by_name(client):
    response = _post(client, length="4", prompt=(io.BytesIO(b"<html>not music</html>"), "song.mid"))
    _assert_clear_error(response, 400, "song.mid is not a MIDI file")


def test_a_broken_midi_upload_is_refused_without_a_traceback(client):
    response = _post(client, length="4", prompt=(io.BytesIO(b"MThd\x00\x00\x00\x06garbage"), "broken.mid"))
    _assert_clear_error(response, 400, "not a readable MIDI file")


def test_an_upload_over_the_size_limit_gets_413(client):
    big = io.BytesIO(b"MThd" + b"\x00" * (MAX_UPLOAD_BYTES + 10))
    _assert_clear_error(_post(client, length="4", prompt=(big, "big.mid")), 413, "larger than 2 MiB")


def test_a_prompt_must_be_shorter_than_the_length(served, client, tmp_path):
    path = tmp_path / "theme.mid"
    scale_score(3).dump_midi(str(path))
    response = _post(client, length="2", prompt_bars="2", prompt=(path.open("rb"), "theme.mid"))
    _assert_clear_error(response, 400, "must be more than the prompt's 2 bars")
    assert not list(served[1].glob("*/prompt.mid"))  # the refused upload was not kept


def test_a_continuation_keeps_the_prompt_and_reaches_the_length(client, tmp_path):
    path = tmp_path / "theme.mid"
    scale_score(3).dump_midi(str(path))
    response = _post(client, length="4", prompt_bars="2", seed="1", prompt=(path.open("rb"), "theme.mid"))
    assert response.status_code == 202, response.get_json()
    status = wait_for_job(client, response.get_json()["job"])
    assert status["state"] == "done" and status["summary"]["bars"] == 4


def test_a_second_request_while_one_generates_is_told_busy(served, client):
    state = served[0].extensions["mozart"]
    assert state.generation_lock.acquire(timeout=60)  # as a running generation holds it
    try:
        message = _assert_clear_error(_post(client, length="2"), 409, "busy")
        assert message == BUSY and client.get("/api/info").get_json()["busy"] is True
    finally:
        state.generation_lock.release()
    response = _post(client, length="1")  # free again
    assert response.status_code == 202
    wait_for_job(client, response.get_json()["job"])


@pytest.fixture(scope="module")
def finished_job(served):
    client = served[0].test_client()
    job = _post(client, length="1", seed="2").get_json()["job"]
    assert wait_for_job(client, job)["state"] == "done"
    return {"job": job, "folder": served[1] / job}


def test_a_finished_jobs_files_are_served(client, finished_job):
    assert client.get(f"/files/{finished_job['job']}/piece.mid").data.startswith(b"MThd")


@pytest.mark.parametrize("url", [
    "/files/../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/..%2f..%2fetc/passwd",
    "/files/0123456789abcdef0123456789abcdef/piece.mid",          # a well-formed id of no job
    "/files/{job}/prompt.mid", "/files/{job}/../{job}/piece.mid", "/files/{job}/%2e%2e%2fpiece.mid",
    "/files/{job}/..%2f..%2f..%2fetc%2fpasswd", "/files//etc/passwd", "/files/{job}//etc/passwd",
])
def test_urls_reach_nothing_outside_the_output_folder(client, finished_job, url):
    (finished_job["folder"] / "prompt.mid").write_bytes(b"MThd secret")  # in the job folder, but not a served name
    got = client.get(url.replace("{job}", finished_job["job"]), follow_redirects=True)
    assert got.status_code == 404
    assert b"root:" not in got.data and b"MThd" not in got.data


def test_a_failure_inside_the_generation_is_one_line_on_the_page(client, monkeypatch):
    import mozart.serve.jobs as jobs

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")
    monkeypatch.setattr(jobs, "sample_tokens", explode)
    response = _post(client, length="1")
    assert response.status_code == 202, response.get_json()
    status = wait_for_job(client, response.get_json()["job"])
    assert status["state"] == "error"
    assert status["message"] == "internal error (RuntimeError); see the server's log"


def test_unknown_routes_and_jobs_answer_json_not_a_traceback(client):
    _assert_clear_error(client.get("/api/jobs/nope"), 404, "no job")
    _assert_clear_error(client.get("/nowhere"), 404, "Not Found")
    _assert_clear_error(client.get("/api/generate"), 405, "Method Not Allowed")


def test_progress_shows_the_bars_the_decoder_has_reached(client, monkeypatch):
    import threading

    import mozart.serve.jobs as jobs

    reached, release = threading.Event(), threading.Event()
    real = jobs.sample_tokens

    def paused_after_first_report(*args, on_progress, **kwargs):
        def report(bars):
            on_progress(bars)
            if bars > 0 and not reached.is_set():
                reached.set()
                release.wait(60)  # hold the decoder here while the test polls
        return real(*args, on_progress=report, **kwargs)
    monkeypatch.setattr(jobs, "sample_tokens", paused_after_first_report)
    job = _post(client, length="12", seed="4").get_json()["job"]
    try:
        assert reached.wait(120)
        status = client.get(f"/api/jobs/{job}").get_json()
        assert status["state"] == "generating" and 0 < status["bars_done"] < 12 and status["bars_total"] == 12
    finally:
        release.set()
    assert wait_for_job(client, job)["state"] == "done"

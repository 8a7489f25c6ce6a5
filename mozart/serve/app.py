"""The `mozart serve` web app (Flask): one page to generate, listen to and download a piece, and a small JSON API.

Why Flask: it is the most widely used, actively maintained small WSGI framework (Pallets), it is already installed
with MLflow (so `mozart serve` adds no dependency), and a local single-user tool needs no async server: Werkzeug's
threaded server answers the page's progress polls while one worker thread decodes.

Routes:
    GET  /                       the page (mozart/serve/index.html: form, progress bar, player, piano roll, downloads)
    GET  /api/info               the model's composers, the form's limits and the upload size limit
    POST /api/generate           multipart form (+ optional MIDI prompt) -> 202 {"job": id} | 400 | 409 busy | 413
    GET  /api/jobs/<id>          progress and result of a job
    GET  /files/<id>/<name>      piece.mid, piece.wav or roll.png of a job, from the app's output folder only

Safety: one generation at a time per model (a second request gets 409 "busy" at once, the page says so), requests
over MAX_UPLOAD_BYTES get 413, every bad value a one-line JSON error (never a traceback), and /files/ serves only the
three fixed names inside a job folder whose id is 32 hex digits, so no URL reaches anything else on the disk.
"""
from __future__ import annotations

import re
import shutil
import threading
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from mozart.errors import MozartError
from mozart.generation.engine import known_composers
from mozart.serve.jobs import FILES, LIMITS, MAX_UPLOAD_BYTES, Job, PieceRequest, check_midi_upload, plan, run_job

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
BUSY = "busy: another piece is being generated on this model; try again when it has finished"


class ServeState:
    """The loaded model, its generation lock, the jobs and the output folder of one app."""

    def __init__(self, lm: Any, out_dir: Path, soundfont: str):
        self.lm = lm
        self.out_dir = Path(out_dir).resolve()
        self.soundfont = soundfont
        self.generation_lock = threading.Lock()   # one generation at a time for this model
        self.jobs: dict[str, Job] = {}


def file_url(job_id: str, name: str) -> str:
    return f"/files/{job_id}/{name}"


def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def create_app(lm: Any, out_dir: str | Path, soundfont: str) -> Flask:
    """The app for one loaded model (mozart.generation.engine.load_model_dir), writing jobs under `out_dir`.

    Longer than our usual function on purpose: Flask's app-factory pattern keeps every route beside the one app and
    state it closes over; each route itself is a few lines that call ServeState / mozart.serve.jobs."""
    app = Flask("mozart.serve")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    state = ServeState(lm, out_dir, soundfont)
    state.out_dir.mkdir(parents=True, exist_ok=True)
    app.extensions["mozart"] = state
    page = resources.files("mozart.serve").joinpath("index.html").read_text(encoding="utf-8")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            return _error(f"the upload is larger than {MAX_UPLOAD_BYTES // 1024 // 1024} MiB: use a shorter MIDI file",
                          413)
        return _error(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):  # the page never shows a traceback; the log does (Flask logs it)
        app.logger.exception("unexpected error")
        return _error(f"internal error ({type(exc).__name__}); see the server's log", 500)

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/api/info")
    def info():
        return jsonify({"composers": known_composers(lm.composers), "model": str(lm.model_dir),
                        "limits": {k: [low, high] for k, (_, low, high) in LIMITS.items()},
                        "max_upload_bytes": MAX_UPLOAD_BYTES, "busy": state.generation_lock.locked()})

    @app.post("/api/generate")
    def generate():
        try:
            piece = PieceRequest.from_form(request.form, lm.composers)
        except MozartError as exc:
            return _error(str(exc), 400)
        upload = request.files.get("prompt")
        data = upload.read() if upload is not None else b""
        if upload is not None and (data or upload.filename):
            try:
                check_midi_upload(data, upload.filename or "")
            except MozartError as exc:
                return _error(str(exc), 400)
        if not state.generation_lock.acquire(blocking=False):
            return _error(BUSY, 409)
        job_id = uuid.uuid4().hex
        try:
            job = Job(job_id, state.out_dir / job_id)
            job.folder.mkdir()
            prompt_path = None
            if data:
                prompt_path = job.folder / "prompt.mid"
                prompt_path.write_bytes(data)
            prompt, bpm, n_bars = plan(piece, lm, prompt_path)
        except BaseException as exc:
            state.generation_lock.release()
            shutil.rmtree(state.out_dir / job_id, ignore_errors=True)  # nothing of a refused request stays
            if isinstance(exc, MozartError):
                return _error(str(exc), 400)
            raise
        state.jobs[job.job_id] = job

        def work() -> None:
            try:
                run_job(job, lm, piece, prompt, bpm, n_bars, state.soundfont, file_url)
            finally:
                state.generation_lock.release()

        threading.Thread(target=work, name=f"generate-{job.job_id[:8]}", daemon=True).start()
        return jsonify({"job": job.job_id, "bars_total": n_bars}), 202

    @app.get("/api/jobs/<job_id>")
    def job_status(job_id: str):
        job = state.jobs.get(job_id)
        if job is None:
            return _error(f"no job {job_id!r} on this server (it may have been started by an earlier run)", 404)
        return jsonify(job.view())

    @app.get("/files/<job_id>/<name>")
    def files(job_id: str, name: str):
        if not JOB_ID.match(job_id) or name not in FILES.values() or job_id not in state.jobs:
            return _error("no such file", 404)
        return send_from_directory(state.out_dir / job_id, name, as_attachment=request.args.get("download") == "1")

    return app

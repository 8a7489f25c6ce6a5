"""`mozart serve` as a command: --help explains every option, it listens on 127.0.0.1 by default, answers HTTP, and
Ctrl-C (SIGINT) stops it cleanly: exit code 0, a closing line, no traceback, its temporary output folder removed."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mozart.cli import main
from sampling_helpers import make_model_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--host", "--port", "--out", "--soundfont", "--device", "--precision"):
        assert re.search(rf"^\s+{option}\b.*\S", text, re.M), option
    assert "127.0.0.1" in text and "Ctrl-C" in text and "busy" in text


def test_a_port_out_of_range_is_one_clear_line(tmp_path, capsys):
    model_dir = make_model_dir(tmp_path / "m")
    assert main(["serve", "--model", str(model_dir), "--port", "70000"]) == 2
    assert "--port must be from 0 to 65535" in capsys.readouterr().err


def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    model_dir = make_model_dir(tmp_path / "m")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "mozart.cli", "serve", "--model", str(model_dir), "--port", "0",
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://(127\.0\.0\.1):(\d+)/ .*pieces in (\S+)\)", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        out_dir = Path(match.group(3))
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(2)}/api/info", timeout=30) as response:
            assert response.status == 200 and b"Chopin" in response.read()
        assert out_dir.is_dir()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "mozart serve: stopped" in out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not out_dir.exists()  # the default temporary output folder is removed on exit

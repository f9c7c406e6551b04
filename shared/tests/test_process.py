import signal
import socket
import sys
import time

import psutil
import pytest

from shared.process import free_port, start_process, stop_process_tree, wait_http_ready

# A parent that starts a child in a session of its own (as BentoML's supervisor does), then waits.
_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_stop_process_tree_kills_children_in_their_own_session(tmp_path):
    log = tmp_path / "log.txt"
    proc = start_process([sys.executable, "-c", _PARENT], log_path=log)
    deadline = time.monotonic() + 20
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(log.read_text().split()[0])
    assert psutil.pid_exists(child_pid)
    stop_process_tree(proc, timeout_s=5)
    assert proc.poll() is not None
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE


def test_stop_process_tree_escalates_to_sigkill_when_sigterm_is_ignored():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    proc = start_process([sys.executable, "-c", code])
    time.sleep(0.5)
    started = time.monotonic()
    stop_process_tree(proc, timeout_s=1)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_wait_http_ready_returns_once_server_answers(free_port):
    proc = start_process([sys.executable, "-m", "http.server", str(free_port), "--bind", "127.0.0.1"])
    try:
        wait_http_ready(f"http://127.0.0.1:{free_port}/", proc=proc, timeout_s=30)
    finally:
        stop_process_tree(proc)


def test_wait_http_ready_fails_fast_when_process_exits():
    proc = start_process([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="exited with code 3"):
        wait_http_ready(f"http://127.0.0.1:{free_port()}/", proc=proc, timeout_s=30)


def test_wait_http_ready_times_out_on_a_silent_port():
    with pytest.raises(RuntimeError, match="not ready"):
        wait_http_ready(f"http://127.0.0.1:{free_port()}/", timeout_s=0.5)

"""
/metrics with --workers: whichever process answers reports the sum of all.

Freezing one process (SIGSTOP) leaves the shared listening socket to the
other, so the test knows which process answered what.
"""

import base64
import json
import os
import re
import signal
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .serving import free_port
from .test_workers import start_server, version, wait_for, worker_pids

API_KEY = "workers-metrics-key"
BAD_ENQUEUES = dict(endpoint="/v1/enqueue", message_type="", status="400")


@contextmanager
def frozen(pid: int):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def bad_enqueue(port: int) -> None:
    """An API request that is counted (400: no plist), on a connection of its own."""
    credentials = base64.b64encode(f"nanomdm:{API_KEY}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/enqueue/X", data=b"not a plist", method="PUT",
        headers={"Authorization": "Basic " + credentials},
    )  # fmt: skip
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 400
    else:
        raise AssertionError("expected a 400")


def bad_enqueues_counted(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nanomdm_http_requests_total" and sample.labels == BAD_ENQUEUES:
                return sample.value
    return 0.0


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def start(tmp_path: Path, port: int, *flags: str):
    log = tmp_path / "server.log"
    server = start_server(
        tmp_path, port, log, "--workers", "2", "--api", API_KEY,
        "--storage-dsn", str(tmp_path / "db"), *flags,
    )  # fmt: skip
    wait_for(lambda: version(port) and worker_pids(log), "the server and its worker")
    wait_for(lambda: log.read_text().count("nanomdm-tw listening on") == 2, "both to serve")
    (worker,) = worker_pids(log)
    folder = re.search(r"summed in (\S+)", log.read_text()).group(1)
    assert Path(folder).is_dir()
    return server, worker, Path(folder), log


def stop(server, folder: Path, log: Path) -> None:
    server.terminate()
    server.wait(timeout=30)
    assert not folder.exists()  # the multi-process files go with the server
    assert "Traceback" not in log.read_text(), log.read_text()


def test_whichever_process_answers_reports_the_sum(tmp_path: Path) -> None:
    port = free_port()
    server, worker, folder, log = start(tmp_path, port)
    try:
        with frozen(worker):
            for _ in range(3):
                bad_enqueue(port)  # the first process answers
        with frozen(server.pid):
            for _ in range(2):
                bad_enqueue(port)  # the worker answers
            assert bad_enqueues_counted(port) == 5
        with frozen(worker):
            assert bad_enqueues_counted(port) == 5
    finally:
        stop(server, folder, log)


def test_metrics_listen_with_workers(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    flags = ("--metrics-listen", f"127.0.0.1:{metrics_port}")
    server, worker, folder, log = start(tmp_path, port, *flags)
    try:
        with frozen(worker):
            bad_enqueue(port)
            assert status_of(f"http://127.0.0.1:{port}/metrics") == 404
        with frozen(server.pid):
            bad_enqueue(port)
            assert status_of(f"http://127.0.0.1:{port}/metrics") == 404
        assert bad_enqueues_counted(metrics_port) == 2
        assert status_of(f"http://127.0.0.1:{metrics_port}/readyz") == 200
    finally:
        stop(server, folder, log)


def api_get(port: int, path: str) -> bytes:
    credentials = base64.b64encode(f"nanomdm:{API_KEY}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Basic " + credentials}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read()
    except urllib.error.HTTPError as e:
        return e.read()


def test_the_overview_reports_the_sum_too(tmp_path: Path) -> None:
    """The console's push counters are /metrics' own, whichever process answers."""
    port = free_port()
    server, worker, folder, log = start(tmp_path, port)
    try:
        with frozen(worker):
            for _ in range(3):
                api_get(port, "/v1/push/UNKNOWN-ID")  # counted as no_push_info
        with frozen(server.pid):
            for _ in range(2):
                api_get(port, "/v1/push/UNKNOWN-ID")
            pushes = json.loads(api_get(port, "/v1/overview"))["pushes"]
        assert pushes == {"no_push_info": 5}
        with frozen(worker):
            assert json.loads(api_get(port, "/v1/overview"))["pushes"] == {"no_push_info": 5}
    finally:
        stop(server, folder, log)

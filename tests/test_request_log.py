"""One log event per request, with trace ID, enrollment ID and outcome; no secrets."""

import re
from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import LogLevel, formatEvent

from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_command, make_identity

from .logevents import request_lines
from .serving import serve


@pytest.mark.parametrize("debug", [False, True])
@pytest_twisted.ensureDeferred
async def test_request_events(tmp_path: Path, log_events: list[dict], debug: bool) -> None:
    async with serve(tmp_path, debug=debug) as server:
        d = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
        await d.enroll()
        await enqueue(server.http, server.url, server.api_key, [d.id], make_command("ProfileList"))
        await d.set_bootstrap_token(b"bootstrap-secret")
        lines = request_lines(log_events)
        assert len(lines) == 4  # Authenticate, TokenUpdate, enqueue, SetBootstrapToken
        assert "PUT /mdm 200 Authenticate enrollment_id=" + d.id in lines[0]
        assert all("trace_id=" in line for line in lines)
        trace_ids = {line.split("trace_id=")[1].split()[0] for line in lines}
        assert len(trace_ids) == 4
        everything = " ".join(formatEvent(e) for e in log_events)
        assert server.api_key not in everything
        assert "bootstrap-secret" not in everything
        debug_events = [
            e for e in log_events
            if e.get("log_level") == LogLevel.debug and e.get("log_namespace", "").startswith("nanomdm_tw")
        ]  # fmt: skip
        assert bool(debug_events) is debug


@pytest_twisted.ensureDeferred
async def test_answers_outside_the_handlers_are_logged_and_counted(
    tmp_path: Path, log_events: list[dict]
) -> None:
    """A refused API key, an unknown path and a wrong method each get their event."""
    async with serve(tmp_path) as server:
        before = await answered_counts(server)
        wrong_key = await server.http.get(server.url + "/v1/enrollments", auth=("nanomdm", "nope"))
        unknown = await server.http.get(server.url + "/no/such/path")
        wrong_method = await server.http.delete(server.url + "/version")
        for response in (wrong_key, unknown, wrong_method):
            await response.content()
        after = await answered_counts(server)
        lines = request_lines(log_events)
    assert [r.code for r in (wrong_key, unknown, wrong_method)] == [401, 404, 405]
    assert "GET /v1/enrollments 401 unauthorized enrollment_id=-" in lines[1]
    assert "GET /no/such/path 404 not found enrollment_id=-" in lines[2]
    assert "DELETE /version 405 method not allowed enrollment_id=-" in lines[3]
    assert len({line.split("trace_id=")[1].split()[0] for line in lines[1:4]}) == 3
    assert "nope" not in " ".join(formatEvent(e) for e in log_events)
    counted = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert counted == {
        ("/v1/enrollments", "401"): 1, ("/", "404"): 1, ("/version", "405"): 1,
        ("/metrics", "200"): 1,  # the first /metrics read itself
    }  # fmt: skip


async def answered_counts(server) -> dict[tuple[str, str], float]:
    """``nanomdm_http_requests_total`` by (endpoint, status), read from /metrics."""
    text = await (await server.http.get(server.url + "/metrics")).text()
    pattern = r'nanomdm_http_requests_total\{endpoint="([^"]*)",message_type="",status="(\d+)"\} (\S+)'
    return {(e, s): float(v) for e, s, v in re.findall(pattern, text)}

"""One log event per request, with trace ID, enrollment ID and outcome; no secrets."""

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

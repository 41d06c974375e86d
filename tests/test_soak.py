"""scripts/soak: a short run prints a row per interval and every request is answered."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_soak_prints_a_row_per_interval_and_loses_no_request() -> None:
    run = subprocess.run(
        [str(ROOT / "scripts" / "soak"), "--minutes", "0.25", "--interval", "5",
         "--devices", "5", "--clients", "2"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    output = run.stdout
    # 0: exit status when RSS and open files level off, 2 when they grow: not judged here.
    assert run.returncode in (0, 2), output + run.stderr
    row = r"^\s+(\d+)\s+\d+s\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s+([\d.]+)\s+([\d.]+)\s+\d+$"
    rows = re.findall(row, output, re.M)
    assert [int(row[0]) for row in rows] == [0, 1, 2, 3]
    assert all(float(floor) <= float(peak) for *_, floor, peak in rows)
    requests = int(re.search(r"soak: (\d+) requests, 0 failed", output).group(1))
    assert requests > int(rows[0][1])  # the load ran, and every request got its 200
    assert "server stopped on SIGTERM with exit status 0" in output
    assert "soak: verdict: RSS floor " in output

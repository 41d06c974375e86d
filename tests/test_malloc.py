"""
glibc's mmap threshold pinned (nanomdm_tw/malloc.py): memory of freed big
bodies goes back to the system, where glibc's dynamic threshold kept it.
"""

import subprocess
import sys

import pytest

from nanomdm_tw.malloc import pin_mmap_threshold

# Allocate like a server decoding big reports among small objects; print RSS (MiB)
# after a 16 MiB block was freed, then after forty 1.3 MB bodies were freed.
PROBE = """
import gc, os, sys
from nanomdm_tw.malloc import pin_mmap_threshold
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
if sys.argv[1] == "pinned":
    assert pin_mmap_threshold()
big = bytearray(16 * 2**20)
del big
before = rss()
small = []
for _ in range(60):
    body = bytearray(1_300_000)
    small.append([str(n) * 3 for n in range(2000)])
    del body
bodies = [bytearray(1_300_000) for _ in range(40)]
del bodies
gc.collect()
print(before, rss())
"""


def _retained(mode: str) -> float:
    """MiB still resident after the bodies were freed, beyond what the small objects hold."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout
    before, after = map(float, out.split())
    return after - before


def test_freed_big_bodies_go_back_to_the_system():
    if not pin_mmap_threshold():
        pytest.fail("this machine's Python runs on glibc: the threshold must be pinnable")
    default, pinned = _retained("default"), _retained("pinned")
    # glibc's own behaviour keeps about half the forty bodies (52 MB) resident
    # here (26 MiB seen); pinned, only the small objects stay (8.5 MiB seen).
    assert pinned < 15, pinned
    assert default > pinned + 10, (default, pinned)


def test_an_explicit_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert pin_mmap_threshold() is False

"""
glibc's malloc kept from pinning the memory of big request bodies.

glibc serves an allocation above its mmap threshold (128 KiB to start) with
a mapping of its own, returned to the system when freed.  But freeing such a
block raises the threshold (up to 32 MiB), so later large blocks come from
the heap, where small objects allocated after them keep the memory resident.
A server that decodes megabyte-sized command reports now and then saw its
resident memory floor creep by ~5 MiB per 10 minutes of scripts/soak.
Fixing the threshold at glibc's own starting value keeps big bodies mapped
on their own, so their memory goes back when they are freed.
"""

import ctypes
import os
import platform

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024


def pin_mmap_threshold() -> bool:
    """
    Fix glibc's mmap threshold (once per process, before serving); False on
    another C library, or when MALLOC_MMAP_THRESHOLD_ already says otherwise.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))

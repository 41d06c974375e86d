"""The threads adbapi pools run on: one shared queue, grown on demand, stopped cleanly."""

import threading

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThreadPool

from nanomdm_tw.storage.dsn import parse_dsn
from nanomdm_tw.storage.networked import LifetimePool
from nanomdm_tw.storage.threadpool import SharedQueueThreadPool

from . import mysqlserver


@pytest_twisted.ensureDeferred
async def test_results_and_failures_come_back_to_the_reactor():
    pool = SharedQueueThreadPool(1, 2)
    pool.start()
    try:
        assert await deferToThreadPool(reactor, pool, lambda x: x * 2, 21) == 42
        d = deferToThreadPool(reactor, pool, lambda: 1 / 0)
        try:
            await d
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("the failure was not passed on")
    finally:
        pool.stop()


@pytest_twisted.ensureDeferred
async def test_threads_grow_with_waiting_work_up_to_the_maximum_and_stop():
    pool = SharedQueueThreadPool(1, 3)
    pool.start()
    assert len(pool.threads) == 1
    release, running = threading.Event(), threading.Semaphore(0)
    names = set()

    def blocked():
        names.add(threading.current_thread().name)
        running.release()
        release.wait(10)

    waiting = [deferToThreadPool(reactor, pool, blocked) for _ in range(5)]
    assert len(pool.threads) == 3  # never more than the maximum
    for _ in range(3):  # three at once: one per thread
        assert running.acquire(timeout=10)
    release.set()
    await defer.gatherResults(waiting)
    assert len(names) == 3
    pool.stop()
    assert pool.threads == []
    assert not any(t.name.startswith("adbapi-") for t in threading.enumerate())


def test_work_queued_before_start_runs_once_started():
    pool = SharedQueueThreadPool(0, 2)
    done = threading.Event()
    pool.callInThread(done.set)
    assert not done.wait(0.05)
    pool.start()
    assert done.wait(10)
    pool.stop()


@pytest_twisted.ensureDeferred
async def test_a_pool_made_while_the_reactor_runs_uses_the_shared_queue():
    # adbapi starts its own ThreadPool from __init__ when the reactor runs already.
    mysqlserver.ensure_server()
    kwargs = parse_dsn(mysqlserver.SERVER_DSN).connect_kwargs()
    pool = LifetimePool("pymysql", cp_min=1, cp_max=2, **kwargs)
    try:
        assert isinstance(pool.threadpool, SharedQueueThreadPool)
        assert pool.threadpool.started
        assert await pool.runQuery("SELECT 1") == ((1,),)
    finally:
        pool.close()

"""The live hub's bookkeeping (generation/live.py), without a database or a stream."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from generation.live import Hub


def test_changes_to_generations_no_stream_here_watches_leave_nothing_behind():
    # Every web process hears every change to every generation (NOTIFY goes to all of
    # them), but keeps a version only while one of its own streams watches it: a hub that
    # remembered every id it heard would grow for as long as the process lives.
    hub = Hub()
    for n in range(1_000):
        hub.dispatch(f"00000000-0000-0000-0000-{n:012d}", 3)
        hub.dispatch(f"00000000-0000-0000-0000-{n:012d}", None)  # (the polling fallback's "look again")
    assert hub._known == {}
    assert hub.watches == {}


def test_ending_wakes_every_watch_at_once_and_marks_later_ones():
    # The web process is stopping (stefna/asgi_worker.py): every stream must stop waiting
    # now, and one that starts meanwhile must not begin to wait.
    async def scenario() -> tuple[list[bool], list[bool], bool]:
        hub = Hub()
        hub._ensure_running = lambda: None  # type: ignore[method-assign]  # bookkeeping only: no listener task
        with hub.watch("a", version=1) as first, hub.watch("b", version=1) as second:
            waits = [asyncio.create_task(watch.wait(60)) for watch in (first, second)]
            await asyncio.sleep(0)
            hub.end_streams()
            woken = list(await asyncio.wait_for(asyncio.gather(*waits), 5))
            ending = [first.ending, second.ending]
        with hub.watch("c", version=1) as late:
            return woken, ending, late.ending

    # On a thread of its own: a browser test earlier on this xdist worker leaves
    # Playwright's event loop running on the main thread, where asyncio.run refuses.
    with ThreadPoolExecutor(max_workers=1) as thread:
        woken, ending, late = thread.submit(asyncio.run, scenario()).result(timeout=30)
    assert woken == [True, True]
    assert ending == [True, True]
    assert late is True

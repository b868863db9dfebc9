"""The live hub's bookkeeping (generation/live.py), without a database or a stream."""

from __future__ import annotations

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

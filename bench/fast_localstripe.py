"""localstripe without its per-write persistence: the stand-in the throughput bench runs.

localstripe pickles its whole store to /tmp on every write (POST, PUT, DELETE and every stored
object), so each write gets slower as the store grows and the stand-in, not our code, sets the
pace of a long run. This wrapper turns that save off in this process only (no installed file is
changed) and starts the same server with the same arguments:

    python bench/fast_localstripe.py --port 8420 --from-scratch

Nothing survives a restart, which a bench does not need.
"""

from localstripe import resources, server


def _no_save(self) -> None:
    """The store lives in memory only."""


resources.Store.dump_to_disk = _no_save

if __name__ == "__main__":
    server.start()

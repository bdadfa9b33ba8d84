"""``pid_alive``: a process that died but was never reaped is gone, whoever its parent is."""

from __future__ import annotations

import subprocess
import time

from tuneops.core.process import pid_alive


def test_a_zombie_of_another_parent_counts_as_gone():
    # ``sleep 0`` runs in the background of a shell that then becomes ``sleep 30``, which never
    # waits for it: once it exits it stays a zombie whose parent is not this process.
    holder = subprocess.Popen(
        ["sh", "-c", "sleep 0 & echo $!; exec sleep 30"], stdout=subprocess.PIPE, text=True
    )
    try:
        orphan = int(holder.stdout.readline())
        deadline = time.monotonic() + 10
        while pid_alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(orphan)
        assert pid_alive(holder.pid)  # a live process still counts as alive
    finally:
        holder.kill()
        holder.wait()
    assert not pid_alive(holder.pid)  # reaped: gone

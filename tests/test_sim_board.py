"""The simulator's board: holds release on time and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

from testkit.hubs import sim_hub
from testkit.waiting import wait_until


def test_holds_leave_no_timer_behind_and_a_new_hold_replaces_the_last(
    mosquitto, tmp_path: Path
) -> None:
    with sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub:
        board = hub.board
        for _ in range(20):
            board.hold("tamper-1", 0.01)
        wait_until(lambda: not board.inputs()["tamper-1"], what="released")
        wait_until(lambda: not board._timers, what="every finished hold forgotten")
        # A long hold, then a short one: the short one's release wins, the long one is gone.
        board.hold("tamper-1", 600)
        board.hold("tamper-1", 0.05)
        assert len(board._timers) == 1
        wait_until(lambda: not board.inputs()["tamper-1"], what="released by the short hold")
        assert not board._timers

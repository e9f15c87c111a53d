"""hil.warm (run by make test before the suite): a failing warm-up group is reported and the
run goes on (the tests then compile the kernel and show the real failure)."""

from __future__ import annotations

import hil.warm as warm


def test_a_failing_group_is_reported_and_the_others_still_run(monkeypatch, capsys):
    ran = []

    def bad():
        raise RuntimeError("boom")

    monkeypatch.setitem(warm.GROUPS, "t", [bad, lambda: ran.append(1)])
    assert warm.run_group("t") == 1
    assert ran == [1]
    err = capsys.readouterr().err
    assert "boom" in err and "bad failed" in err


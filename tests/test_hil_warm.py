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



def test_unknown_groups_are_a_clear_error(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        warm.main(["--groups", "node,nonsense"])
    assert exc.value.code == 2
    assert "nonsense" in capsys.readouterr().err


def test_the_groups_cover_the_suite_and_the_demo():
    assert set(warm.SUITE) | set(warm.DEMO) <= set(warm.GROUPS)
    suite = {fn for g in warm.SUITE for fn in warm.GROUPS[g]}
    assert {fn for g in warm.DEMO for fn in warm.GROUPS[g]} <= suite   # the suite's warm-up covers the demo's

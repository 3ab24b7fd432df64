"""Atomic writes (lomix_core.foundations.records): readers see the old file or the new one."""
import pandas as pd
import pytest

from lomix_core.foundations.records import atomic_write, git_state, save_csv, save_json


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = save_json({"run": 1}, tmp_path / "record.json")

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write('{"run": 2, "torn')
        raise KeyboardInterrupt  # a kill mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_text() == '{\n  "run": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_writers_create_the_folder_and_round_trip(tmp_path):
    frame = pd.DataFrame({"epoch": [1, 2], "dice": [0.5, 0.75]})
    path = save_csv(frame, tmp_path / "a" / "b" / "epochs.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), frame)


def test_a_folder_outside_git_has_no_commit(tmp_path):
    assert git_state(tmp_path) == (None, None)

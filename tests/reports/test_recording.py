import pandas as pd
import pytest


def test_per_frame_table_averages_the_windows_covering_each_frame():
    from au_llm.reports.recording import per_frame_table

    windows = pd.DataFrame(
        {
            "source": ["rec.mp4", "rec.mp4", "rec.mp4", "list.csv"],
            "face_id": [0, 0, 1, None],
            "frame_start": [0, 2, 0, None],
            "frame_end": [3, 5, 1, None],
            "time_start": [0.0, 0.1, 0.0, None],
            "time_end": [0.15, 0.25, 0.05, None],
            "AU01_prob": [0.2, 0.6, 0.9, 0.5],
        }
    )
    times = {"rec.mp4": pd.Series([0.0, 0.05, 0.1, 0.15, 0.2, 0.25], index=range(6))}
    table = per_frame_table(windows, [1], times)
    face0 = table[table["face_id"] == 0]
    assert face0["frame"].tolist() == [0, 1, 2, 3, 4, 5]
    assert face0["AU01_prob"].tolist() == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6])
    assert face0["windows"].tolist() == [1, 1, 2, 2, 1, 1]
    assert face0["time"].tolist() == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.25])
    assert table[table["face_id"] == 1]["AU01_prob"].tolist() == pytest.approx([0.9, 0.9])
    assert "list.csv" not in set(table["source"])  # manifest clips have no frame span


def test_per_frame_times_are_the_recordings_own_and_faceless_windows_are_kept():
    from au_llm.reports.recording import per_frame_table

    windows = pd.DataFrame(
        {
            "source": ["phone.mkv", "phone.mkv"],
            "face_id": [None, None],  # --align none: no face track
            "frame_start": [0, 2],
            "frame_end": [2, 4],
            "time_start": [0.0, 0.5],
            "time_end": [0.5, 0.52],
            "AU01_prob": [0.2, 0.6],
        }
    )
    times = {"phone.mkv": pd.Series([0.0, 0.4, 0.5, 0.51, 0.52], index=range(5))}
    table = per_frame_table(windows, [1], times)
    assert table["frame"].tolist() == [0, 1, 2, 3, 4]
    assert table["time"].tolist() == pytest.approx([0.0, 0.4, 0.5, 0.51, 0.52])
    assert table["AU01_prob"].tolist() == pytest.approx([0.2, 0.2, 0.4, 0.6, 0.6])

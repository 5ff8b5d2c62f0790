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
    table = per_frame_table(windows, [1])
    face0 = table[table["face_id"] == 0]
    assert face0["frame"].tolist() == [0, 1, 2, 3, 4, 5]
    assert face0["AU01_prob"].tolist() == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6])
    assert face0["windows"].tolist() == [1, 1, 2, 2, 1, 1]
    assert face0["time"].tolist() == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.25])
    assert table[table["face_id"] == 1]["AU01_prob"].tolist() == pytest.approx([0.9, 0.9])
    assert "list.csv" not in set(table["source"])  # manifest clips have no frame span

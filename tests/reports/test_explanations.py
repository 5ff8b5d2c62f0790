import pandas as pd
import pytest

from au_llm.metrics import au_column
from au_llm.reports.explanations import explanation_notes, explanation_tables


def _frame() -> pd.DataFrame:
    rows = [
        # labels, au_raw, linear head, explanation
        ({4, 12}, "4+L12", {4, 12}, "Two AUs. AU4: brows down. AU12: corners up on the left side."),
        ({4}, "4", {4}, "One AU. AU4: the brows are drawn down on the right side."),
        ({12}, "R12", {4}, "One AU. AU4, brow lowerer."),
        ({4, 12}, "4+12", set(), "Two AUs. AU12 (lip corner puller). AU7, lid tightener."),
    ]
    records = []
    for i, (labels, raw, linear, text) in enumerate(rows):
        record = {"dataset": "casme2", "subject": f"sub{i}", "clip": f"EP{i}", "fold": f"sub{i}"}
        record.update(seed=1, au_raw=raw, aus="+".join(map(str, sorted(labels))), explanation=text)
        for au in (4, 12):
            record[au_column(au, "prob")] = 0.5
            record[au_column(au, "pred")] = int(au in linear)
            record[au_column(au, "true")] = int(au in labels)
        records.append(record)
    return pd.DataFrame(records)


def test_faithfulness_numbers_on_hand_made_cases():
    per_au, summary = explanation_tables(_frame(), [4, 12])
    assert summary["n_explanations"] == 4
    assert summary["agreement_with_linear_head"] == pytest.approx(0.75)
    assert summary["side_contradiction_rate"] == pytest.approx(0.25)
    # AU4: named 1,1,1,0 vs labels 1,1,0,1 -> F1 2/3; AU12: named 1,0,0,1 vs 1,0,1,1 -> F1 4/5.
    assert per_au.set_index("au")["binary_f1"].to_dict() == pytest.approx({4: 2 / 3, 12: 0.8})
    assert summary["mean_binary_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert summary["kinds"] == {"correct": 1, "partially_wrong": 2, "wrong": 1}
    examples = summary["examples"]
    assert examples["correct"]["clip"] == "casme2/sub0/EP0"
    assert examples["partially_wrong"]["clip"] == "casme2/sub1/EP1"
    assert examples["partially_wrong"]["contradicted_sides"] == [4]
    assert examples["wrong"]["clip"] == "casme2/sub2/EP2"
    notes = explanation_notes(summary)
    assert "75.0%" in notes[0] and "25.0%" in notes[0]
    assert len(notes) == 4 and "sub2/EP2" in notes[3]


def test_the_correct_example_prefers_the_clip_with_most_labelled_aus():
    frame = _frame()
    frame.loc[1, "explanation"] = "One AU. AU4."  # now correct too, with fewer AUs than row 0
    frame = pd.concat([frame.iloc[[1]], frame.drop(index=1)], ignore_index=True)
    _, summary = explanation_tables(frame, [4, 12])
    assert summary["examples"]["correct"]["clip"] == "casme2/sub0/EP0"


def test_no_explanation_column_gives_nothing_and_empty_text_names_no_au():
    per_au, summary = explanation_tables(_frame().drop(columns="explanation"), [4, 12])
    assert per_au.empty and summary == {}
    frame = _frame()
    frame["explanation"] = [None, "", "garbage", "AU99"]
    _, summary = explanation_tables(frame, [4, 12])
    assert summary["kinds"]["wrong"] == 4
    assert summary["examples"]["correct"] is None
    assert "none in this run" in explanation_notes(summary)[1]

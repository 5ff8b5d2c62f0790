import numpy as np

from au_llm.inference import ClipOutputs
from au_llm.prediction_rows import output_columns

AUS = [1, 12]
PROBS = np.array([[0.9, 0.2], [0.4, 0.7]])
ANSWERS = {"list": ["AU12", "AU1, AU12"], "yesno": ["AU1: no; AU12: yes", "garbled"]}


def test_linear_and_both_heads_score_with_the_linear_head_and_keep_every_answer():
    outputs = ClipOutputs(PROBS, dict(ANSWERS))
    labels = np.array([[1, 0], [0, 1]])
    columns = output_columns(outputs, AUS, 0.5, "both", ["list", "yesno"], labels)
    assert list(columns) == [
        "AU01_prob",
        "AU01_pred",
        "AU01_true",
        "AU12_prob",
        "AU12_pred",
        "AU12_true",
        "answer_list",
        "answer_yesno",
    ]
    np.testing.assert_array_equal(columns["AU01_prob"], [0.9, 0.4])
    np.testing.assert_array_equal(columns["AU12_pred"], [0, 1])
    assert columns["answer_yesno"] == ANSWERS["yesno"]


def test_a_text_head_scores_with_its_first_formats_parsed_answers():
    outputs = ClipOutputs(PROBS, dict(ANSWERS))
    columns = output_columns(outputs, AUS, np.array([0.5, 0.5]), "text", ["list", "yesno"])
    np.testing.assert_array_equal(columns["AU01_prob"], [0.0, 1.0])
    np.testing.assert_array_equal(columns["AU12_prob"], [1.0, 1.0])
    np.testing.assert_array_equal(columns["AU01_pred"], [0, 1])
    assert "AU01_true" not in columns


def test_explanations_come_last_beside_the_annotation_shown_with_them():
    outputs = ClipOutputs(PROBS, {}, ["AU1: brows raised.", "AU12: lip corners pulled."])
    annotation = {"au_raw": ["1", "L12"], "aus": ["1", "12"]}
    columns = output_columns(outputs, AUS, 0.5, "linear", ["list"], explained=annotation)
    assert list(columns)[-3:] == ["au_raw", "aus", "explanation"]
    assert columns["explanation"] == outputs.explanations
    assert "explanation" not in output_columns(outputs, AUS, 0.5, "linear", ["list"])


def test_a_vision_head_adds_its_scores_and_with_thresholds_its_decisions():
    outputs = ClipOutputs(PROBS, {}, [], np.array([[0.6, 0.1], [0.3, 0.8]]))
    thresholds = np.array([0.5, 0.9])
    columns = output_columns(outputs, AUS, 0.5, "linear", ["list"], vision_thresholds=thresholds)
    assert list(columns)[4:] == [
        "AU01_prob_vision",
        "AU01_pred_vision",
        "AU12_prob_vision",
        "AU12_pred_vision",
    ]
    np.testing.assert_array_equal(columns["AU12_prob_vision"], [0.1, 0.8])
    np.testing.assert_array_equal(columns["AU12_pred_vision"], [0, 0])  # its own thresholds
    np.testing.assert_array_equal(columns["AU01_pred_vision"], [1, 0])
    scores_only = output_columns(outputs, AUS, 0.5, "linear", ["list"])
    assert "AU01_prob_vision" in scores_only and "AU01_pred_vision" not in scores_only

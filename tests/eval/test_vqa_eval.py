"""VQA accuracy vs hand-computed cases (official mPLUG/vqaTools/vqaEval.py rules)."""
import pytest

from mplug.eval.vqa_eval import (normalize_answer, process_punctuation, question_accuracy,
                                 vqa_accuracy)
from mplug.eval import vqa_server


@pytest.mark.parametrize("raw,expected", [
    ("two", "2"), ("Ten", "10"), ("none", "0"), ("zero", "0"),
    ("the cat.", "cat"), ("a dog", "dog"), ("an apple", "apple"), ("The", ""),
    ("1,000", "1000"),            # digit-comma-digit: punctuation deleted, not blanked
    ("2.5", "2.5"),               # decimals keep their period
    ("end.", "end"), ("yes!", "yes"), ("  yes\t", "yes"), ("yes\nno", "yes no"),
    ("dont", "don't"), ("whats", "what's"), ("yall", "y'all"), ("Im", "im"),  # lower-cased first
    ("hello-world", "hello world"),  # '-' not next to a space: replaced by a space
    ("red - blue", "red  blue".replace("  ", " ")),  # next to a space: deleted
    ("(left)", "left"), ("x/y", "x y"), ("a/b", "b"), ("10,5 kg", "105 kg"),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_deleted_everywhere_when_any_is_next_to_space():
    # the '?' is next to a space, so every '?' is deleted (even the inner one)
    assert process_punctuation("a?b ?") == "ab "


def test_leave_one_out_hand_computed():
    # 3 humans said yes: leaving out a "yes" leaves 2 matches (2/3), a "no" leaves 3 (1)
    assert question_accuracy("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert question_accuracy("yes", ["yes"] * 2 + ["no"] * 8) == pytest.approx(0.6)
    assert question_accuracy("yes", ["yes"] * 1 + ["no"] * 9) == pytest.approx(0.3)
    assert question_accuracy("yes", ["yes"] * 4 + ["no"] * 6) == pytest.approx(1.0)
    assert question_accuracy("maybe", ["yes"] * 10) == 0.0


def test_gt_only_punctuation_processed_and_only_when_not_identical():
    assert question_accuracy("Two", ["2"] * 10) == 1.0          # prediction -> "2"
    assert question_accuracy("two", ["Two"] * 10) == 0.0        # identical gt kept verbatim
    # not identical: gt gets punctuation only ("cat." -> "cat"), never number words
    assert question_accuracy("cat", ["cat."] * 5 + ["dog"] * 5) == 1.0
    assert question_accuracy("two", ["two"] * 5 + ["3"] * 5) == 0.0


def test_vqa_accuracy_overall_and_per_type():
    anns = {1: {"answers": ["yes"] * 10, "answer_type": "yes/no", "question_type": "is"},
            2: {"answers": [{"answer": "2"}] * 2 + [{"answer": "3"}] * 8,
                "answer_type": "number", "question_type": "how many"}}
    res = vqa_accuracy({1: "yes", 2: "two"}, anns)
    assert res["overall"] == round(100 * (1.0 + 0.6) / 2, 2) == 80.0
    assert res["perAnswerType"] == {"number": 60.0, "yes/no": 100.0}
    with pytest.raises(KeyError, match="question_id 2"):
        vqa_accuracy({1: "yes"}, anns)


def test_rounding_like_official():
    anns = {i: {"answers": ["a1"] * 10} for i in range(3)}
    res = vqa_accuracy({0: "a1", 1: "x", 2: "x"}, anns)
    assert res["overall"] == 33.33


def test_server_submission_and_import(tmp_path):
    sub = tmp_path / "sub.json"
    assert vqa_server.write_submission(sub, [(5, "yes"), ("7", "2")]) == 2
    import json
    assert json.loads(sub.read_text()) == [{"question_id": 5, "answer": "yes"},
                                           {"question_id": 7, "answer": "2"}]
    pend = vqa_server.pending_metrics("test-dev")
    assert pend["overall"] is None and pend["status"] == vqa_server.NEEDS_SERVER
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"result": [{"test-dev": {"yes/no": 90.0, "number": 60.5,
                                                        "other": 70.0, "overall": 79.8}},
                                          {"test-standard": {"overall": 80.1}}]}))
    got = vqa_server.import_server_result(res, "test-dev")
    assert got["overall"] == 79.8 and got["perAnswerType"]["number"] == 60.5
    assert vqa_server.import_server_result(res, "test-std")["overall"] == 80.1
    res.write_text(json.dumps([{"test-dev": {"overall": "n/a"}}]))
    from mplug.errors import DataError
    with pytest.raises(DataError, match="numeric 'overall'"):
        vqa_server.import_server_result(res, "test-dev")

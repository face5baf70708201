"""`mplug score` on tiny files: one JSON object on stdout; malformed input names file + record."""
import json

import pytest

from mplug.cli import main


def _w(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture
def vqa_files(tmp_path):
    q = _w(tmp_path / "q.json", {"questions": [{"question_id": 1, "image_id": 9, "question": "?"},
                                               {"question_id": 2, "image_id": 9, "question": "?"}]})
    a = _w(tmp_path / "a.json", {"annotations": [
        {"question_id": 1, "answer_type": "yes/no", "question_type": "is",
         "answers": [{"answer": "yes", "answer_id": i + 1} for i in range(10)]},
        {"question_id": 2, "answer_type": "number", "question_type": "how many",
         "answers": [{"answer": a, "answer_id": i + 1}
                     for i, a in enumerate(["2"] * 2 + ["3"] * 8)]}]})
    return tmp_path, q, a


def test_score_vqa(vqa_files, capsys):
    tmp, q, a = vqa_files
    p = _w(tmp / "p.json", [{"question_id": 1, "answer": "Yes."}, {"question_id": 2, "answer": "two"}])
    assert main(["score", "vqa", "--pred", p, "--questions", q, "--annotations", a]) == 0
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object
    ci = out.pop("ci95")["overall"]  # questions resampled: per-question 100 and 60
    assert 60.0 <= ci[0] <= 80.0 <= ci[1] <= 100.0
    assert (out.pop("ci_resamples"), out.pop("ci_unit")) == (1000, "question")
    assert out == {"overall": 80.0, "perAnswerType": {"number": 60.0, "yes/no": 100.0}}


def test_score_vqa_malformed_names_file_and_record(vqa_files, capsys):
    tmp, q, a = vqa_files
    p = _w(tmp / "bad.json", [{"question_id": 1, "answer": "yes"}, {"question_id": 2}])
    assert main(["score", "vqa", "--pred", p, "--questions", q, "--annotations", a]) == 2
    err = capsys.readouterr().err
    assert "bad.json: record 1" in err and "question_id" in err and "Traceback" not in err
    p = _w(tmp / "short.json", [{"question_id": 1, "answer": "yes"}])
    assert main(["score", "vqa", "--pred", p, "--questions", q, "--annotations", a]) == 2
    assert "no answer for question_id 2" in capsys.readouterr().err
    (tmp / "broken.json").write_text("[{\"question_id\": 1,")
    assert main(["score", "vqa", "--pred", str(tmp / "broken.json"), "--questions", q,
                 "--annotations", a]) == 2
    assert "broken.json:1:" in capsys.readouterr().err


def test_score_caption(tmp_path, capsys):
    refs = _w(tmp_path / "refs.json", {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [{"image_id": 1, "id": 1, "caption": "A dog runs on the grass."},
                        {"image_id": 1, "id": 2, "caption": "A brown dog running in a field."},
                        {"image_id": 2, "id": 3, "caption": "A plate of food on a table."},
                        {"image_id": 2, "id": 4, "caption": "Food served on a white plate."}]})
    pred = _w(tmp_path / "pred.json", [{"image_id": 1, "caption": "a dog running on grass"},
                                       {"image_id": 2, "caption": "a plate of food"}])
    assert main(["score", "caption", "--pred", pred, "--refs", refs]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE"):
        assert key in out
    assert out["CIDEr"] > 0 and out["METEOR"] > 0
    if out["SPICE"] is None:
        assert "SPICE" in out["unavailable"]
    bad = _w(tmp_path / "badpred.json", [{"image_id": 1, "caption": "x"}, {"image_id": 2, "text": "y"}])
    assert main(["score", "caption", "--pred", bad, "--refs", refs]) == 2
    assert "badpred.json: record 1" in capsys.readouterr().err


def test_score_grounding(tmp_path, capsys):
    refs = _w(tmp_path / "refs.json", {
        "a": {"box": [0, 0, 10, 10], "width": 20, "height": 20, "split": "testA"},
        "b": {"box": [10, 10, 20, 20], "width": 20, "height": 20, "split": "testB"},
        "c": [0, 0, 4, 4]})
    pred = _w(tmp_path / "pred.json", [{"id": "a", "box": [-5, -5, 10, 10]},   # clamps -> IoU 1
                                       {"ref_id": "b", "bbox": [0, 0, 10, 10]},  # touching corner
                                       {"id": "c", "box": [0, 0, 4, 2]}])        # IoU 0.5
    assert main(["score", "grounding", "--pred", pred, "--refs", refs]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["acc@0.5"] == pytest.approx(200 / 3)
    assert out["per_split"]["testA"]["acc@0.5"] == 100.0
    assert out["per_split"]["testB"]["acc@0.5"] == 0.0
    bad = _w(tmp_path / "bad.json", {"a": [0, 0, 1], "b": [0, 0, 1, 1], "c": [0, 0, 1, 1]})
    assert main(["score", "grounding", "--pred", bad, "--refs", refs]) == 2
    err = capsys.readouterr().err
    assert "bad.json: record a" in err and "[x1, y1, x2, y2]" in err

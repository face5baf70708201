"""The transcribed paper tables: row counts per table and loader validation."""
import pytest

from mplug.errors import ConfigError
from mplug.report.published import load_published, parse_lr, parse_number, table_path

# Expected rows = printed numeric cells, counted in the paper's tables (arXiv 2205.12005,
# Tables 1-12) model by model ('-' cells are not rows):
EXPECTED_ROWS = {
    # T1: Enc-Dec 3 (C, NoCaps C, S) + E2E-VLP 2 + VinVL 10 + OSCAR 6 (CIDEr opt 4 + NoCaps 2)
    #     + SimVLM 4 + LEMON 10 + BLIP 4 + OFA 4 + mPLUG 10
    1: 53,
    # T2: group 1: VLBERT 1, E2E-VLP 2, VL-T5 1, UNITER/OSCAR/CLIP-ViL/METER/ALBEF 2 each, mPLUG-B 2 = 16;
    #     group 2: 8 models x 2 = 16
    2: 32,
    # T3: E2E-VLP 6 (Flickr), UNITER 12, OSCAR 6 (COCO), UNIMO 6, VLMo/ALIGN/ALBEF 12 each,
    #     Florence 8 (no R@10), BLIP 14M 12, BLIP 129M 12, mPLUG 12
    3: 110,
    # T4: VLBERT 3 (RefCOCO+ only) + 6 models x 8
    4: 51,
    # T5: LXMERT 2, VL-T5 1, UNITER 4, CLIP-ViL 2, METER 4, UNIMO 2, ALBEF 4, BLIP 2, SimVLM 4,
    #     VLMo 2, OFA 2, mPLUG 4
    5: 33,
    6: 4,    # baseline, + BFloat16, + Gradient Checkpoint, + ZeRO
    7: 28,   # 7 models x (In, Near, Out, Overall)
    8: 32,   # 8 models x (TR R@1, R@5, IR R@1, R@5)
    9: 37,   # zero-shot: 9 models x 3 + VATT 1 (R@10 only) = 28; fine-tuning: 3 x 3 = 9
    10: 8,   # VQA-T 2 (no VATEX) + BLIP 3 + mPLUG 3
    11: 18,  # 6 tasks x (LR, batch size, epochs)
    12: 10,  # 5 datasets x (image, text)
}


@pytest.mark.parametrize("table", sorted(EXPECTED_ROWS))
def test_row_counts(table):
    df = load_published(table)
    assert len(df) == EXPECTED_ROWS[table]
    assert (df["table"] == table).all()


def test_mplug_cells_and_notes():
    t1 = load_published(1)
    mp = t1[t1.model == "mPLUG"]
    assert len(mp) == 10
    cider = mp[(mp.setting == "COCO Karpathy test, CIDEr optimization") & (mp.metric == "C")]
    assert cider.value_num.item() == pytest.approx(155.1)
    t4 = load_published(4)
    typo = t4[(t4.model == "VLBERT [43]") & (t4.setting == "RefCOCO+ testA")]
    assert "78/57" in typo.note.item()  # the paper's typo is recorded, not hidden
    t2 = load_published(2)
    assert t2[(t2.model == "mPLUGViT-L") & (t2.setting == "VQA v2 test-std")].value.item() == "81.26"


def test_text_and_suffix_values():
    assert parse_number("113K", 12) == 113000
    assert parse_number("10M", 12) == 10_000_000
    assert parse_lr("2e-5/5e-6") == [2e-5, 5e-6]
    assert parse_lr("1e-5&8e-7") == [1e-5, 8e-7]
    t11 = load_published(11)
    assert t11[t11.metric == "epochs"].value_num.tolist() == [8, 5, 5, 120, 15, 5]
    t12 = load_published(12)
    assert t12.value_num.sum() == pytest.approx(2 * 14.073e6 + (567 + 769 - 113 - 100) * 1e3)


def _write(tmp_path, table, text):
    tmp_path.joinpath(table_path(table, tmp_path).name).write_text(text)


def test_validation_names_file_and_line(tmp_path):
    head = "table,group,model,pretrain_data,setting,metric,value,note\n"
    _write(tmp_path, 5, head + "5,,A,,NLVR2 dev,Acc,80.1,\n5,,B,,NLVR2 dev,Acc,eighty,\n")
    with pytest.raises(ConfigError, match=r"table05.csv:3: value 'eighty' is not a number"):
        load_published(5, tmp_path)
    _write(tmp_path, 5, head.replace("note", "comment") + "5,,A,,x,Acc,1,\n")
    with pytest.raises(ConfigError, match=r"table05.csv:1: unknown column\(s\) \['comment'\]"):
        load_published(5, tmp_path)
    _write(tmp_path, 11, head + "11,,VQA,,ft,LR (ViT-L/BERTbase),fast,\n")
    with pytest.raises(ConfigError, match=r"table11.csv:2: .*'fast'"):
        load_published(11, tmp_path)
    _write(tmp_path, 5, head + "5,,A,,x,Acc,1,\n5,,A,,x,Acc,2,\n")
    with pytest.raises(ConfigError, match="table05.csv:2: duplicate cell"):
        load_published(5, tmp_path)

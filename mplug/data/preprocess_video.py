"""Video-task converters (all zero-shot evaluation in mPLUG): MSRVTT 1k-A retrieval, MSRVTT-QA,
MSVD-QA, VATEX captioning. Videos are checked for presence and size only (decoding is the
loader's job, which counts undecodable ones)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from mplug.data import formats
from mplug.data.preprocess_common import (MediaChecker, PreprocessRun, Split, finish, get, keep, load_json,
                                          load_jsonl, rel)
from mplug.errors import DataError
from mplug.utils.io import read_utf8


def _video(folder: Path, video_id: str, exts: tuple[str, ...] = (".mp4",)) -> Path:
    for ext in exts:
        if (folder / f"{video_id}{ext}").exists():
            return folder / f"{video_id}{ext}"
    return folder / f"{video_id}{exts[0]}"


def msrvtt_retrieval(ctx: PreprocessRun) -> dict:
    """1k-A test: MSRVTT_JSFUSION_test.csv (key, vid_key, video_id, sentence), one caption per video."""
    path = ctx.need("msrvtt", "msrvtt_data/MSRVTT_JSFUSION_test.csv")
    videos = ctx.src / "msrvtt" / "MSRVTT" / "videos" / "all"
    folder, checker, split = ctx.out / "msrvtt_retrieval", MediaChecker(ctx.check), Split()
    with io.StringIO(read_utf8(path, DataError), newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"key", "video_id", "sentence"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {sorted(missing)}; "
                            "expected key,vid_key,video_id,sentence")
        by_video: dict[str, dict] = {}
        for lineno, row in enumerate(reader, 2):
            if not row["video_id"] or not (row["sentence"] or "").strip():
                raise DataError(f"{path}:{lineno}: empty video_id or sentence")
            rec = by_video.setdefault(row["video_id"], {"video_id": row["video_id"], "captions": [], "text_ids": []})
            rec["captions"].append(row["sentence"].strip())
            rec["text_ids"].append(row["key"])
    for vid, rec in ctx.bar(by_video.items(), "msrvtt_retrieval", total=len(by_video)):
        file = _video(videos, vid)
        rec["video"] = rel(file, folder)
        keep(split, rec, checker.ok(file, video=True))
    return finish(ctx, "msrvtt_retrieval", "msrvtt:MSRVTT_JSFUSION_test.csv", {"test": split}, checker)


def _video_qa(ctx: PreprocessRun, dataset: str, sub: str, video_dir: Path, exts: tuple[str, ...]) -> dict:
    """ALPRO JSON lines {question, answer, video_id, answer_type}; answers = keys of train_ans2label.json."""
    path = ctx.need("alpro_data", f"data/{sub}/txt/test.jsonl")
    ans2label = load_json(ctx.need("alpro_data", f"data/{sub}/txt/train_ans2label.json"))
    if not isinstance(ans2label, dict) or not ans2label:
        raise DataError(f"{path.parent / 'train_ans2label.json'}: expected a non-empty JSON object answer -> label")
    folder, checker, split = ctx.out / dataset, MediaChecker(ctx.check), Split()
    for lineno, obj in ctx.bar(load_jsonl(path), dataset):
        where = f"{path}:{lineno}"
        vid = str(get(obj, "video_id", where, (str, int)))
        file = _video(video_dir, vid, exts)
        rec = {"question_id": obj.get("question_id", f"{sub}-test-{lineno}"), "video_id": vid,
               "video": rel(file, folder), "question": get(obj, "question", where, str),
               "answer": get(obj, "answer", where, str)}
        if obj.get("answer_type"):
            rec["answer_type"] = str(obj["answer_type"])
        keep(split, rec, checker.ok(file, video=True))
    answers = list(ans2label)
    formats.write_answer_list(folder / "answer_list.json", answers)
    in_list = sum(r["answer"] in ans2label for r in split.records)
    return finish(ctx, dataset, f"alpro_data:{sub}", {"test": split}, checker, answer_list_size=len(answers),
                  answers_in_list=in_list)


def msrvtt_qa(ctx: PreprocessRun) -> dict:
    return _video_qa(ctx, "msrvtt_qa", "msrvtt_qa", ctx.src / "msrvtt" / "MSRVTT" / "videos" / "all", (".mp4",))


def msvd_qa(ctx: PreprocessRun) -> dict:
    # MSVD ships .avi; mPLUG's loader wants .mp4 (docs/datasets.md): take a transcoded .mp4 when present
    return _video_qa(ctx, "msvd_qa", "msvd_qa", ctx.src / "msvd" / "YouTubeClips", (".mp4", ".avi"))


def vatex_caption(ctx: PreprocessRun) -> dict:
    path = ctx.need("vatex", "vatex_public_test_english_v1.1.json")
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of videos, got {type(data).__name__}")
    videos = ctx.src / "vatex" / "videos"
    folder, checker, split = ctx.out / "vatex_caption", MediaChecker(ctx.check), Split()
    for i, obj in enumerate(ctx.bar(data, "vatex_caption")):
        where = f"{path}: [{i}]"
        vid = get(obj, "videoID", where, str)
        caps = [c.strip() for c in get(obj, "enCap", where, list) if isinstance(c, str) and c.strip()]
        if not caps:
            raise DataError(f"{where}: enCap has no English caption")
        file = videos / f"{vid}.mp4"
        keep(split, {"video_id": vid, "video": rel(file, folder), "captions": caps}, checker.ok(file, video=True))
    return finish(ctx, "vatex_caption", "vatex:public_test_english_v1.1", {"test": split}, checker)


CONVERTERS = {"msrvtt_retrieval": msrvtt_retrieval, "msrvtt_qa": msrvtt_qa, "msvd_qa": msvd_qa,
              "vatex_caption": vatex_caption}

"""Tiny raw downloads in each dataset's PUBLISHED schema, laid out under resources/<source>/ as
`mplug data download` leaves them (archives already extracted). Every writer names the
documentation it follows; the field names, nesting, types, file names and id formats are those
of the real files (docs/datasets.md, the section each writer names), with a few records each.
Images are small real JPEG/PNG files (PIL), videos real H.264 .mp4 / XVID .avi files
(mplug/data/video_write.py). Extra fields the converters do not read are written too, so a
converter that trips over the real layout shows here.

`build_resources(root)` writes every source; `SOURCES_OF` says which sources each normalised
dataset reads (as PREPROCESS_SOURCES); `py2_pickle` writes a pickle the way Python 2's cPickle
(protocol 2) wrote the RefCOCO refs files.
"""
from __future__ import annotations

import io
import json
import struct
import tarfile
from pathlib import Path

from PIL import Image

from mplug.data.video_write import write_video

SIZE = (32, 24)  # every COCO / VG / Flickr image here: width, height (instances.json says the same)


# ------------------------------------------------------------------------------ file helpers

def image(path: Path, color: tuple[int, int, int], size=SIZE, fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, fmt)
    return path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def py2_pickle(obj) -> bytes:
    """Protocol-2 pickle as Python 2's cPickle writes it: `str` as SHORT_BINSTRING/BINSTRING
    (8-bit strings, which Python 3 reads back as bytes), containers filled with MARK ... APPENDS /
    SETITEMS, every string and container memoised with BINPUT."""
    out, memo = bytearray(b"\x80\x02"), [0]

    def put():
        out.extend(b"q" + bytes([memo[0]]) if memo[0] < 256 else b"r" + struct.pack("<I", memo[0]))
        memo[0] += 1

    def emit(o):
        if o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else
                       b"M" + struct.pack("<H", o) if 0 <= o < 65536 else b"J" + struct.pack("<i", o))
        elif isinstance(o, float):
            out.extend(b"G" + struct.pack(">d", o))
        elif isinstance(o, str):
            data = o.encode("utf-8")
            out.extend((b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<i", len(data))) + data)
            put()
        elif isinstance(o, list):
            out.extend(b"]")
            put()
            if o:
                out.extend(b"(")
                for v in o:
                    emit(v)
                out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}")
            put()
            if o:
                out.extend(b"(")
                for k, v in o.items():
                    emit(k)
                    emit(v)
                out.extend(b"u")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def coco_name(split: str, image_id: int) -> str:
    return f"COCO_{split}_{image_id:012d}.jpg"


# ------------------------------------------------------------------------------- COCO images
COCO_IMAGES = {"train2014": (9, 25, 30), "val2014": (42, 73, 74)}
TEST2015 = (1, 14)  # test-dev2015 holds 1 only


def coco(root: Path) -> None:
    """resources/coco/{train2014,val2014}/COCO_<split>_<12-digit id>.jpg (datasets.md "COCO 2014": the zips
    extract to these folder and file names) and resources/coco_test2015/test2015/."""
    for split, ids in COCO_IMAGES.items():
        for k, i in enumerate(ids):
            image(root / "coco" / split / coco_name(split, i), (30 * k, 80, 160 if split == "val2014" else 40))
    for k, i in enumerate(TEST2015):
        image(root / "coco_test2015" / "test2015" / coco_name("test2015", i), (200, 40 * k, 90))


# ----------------------------------------------------------------------------- Karpathy splits

def _sentences(raws: list[str], imgid: int, first: int) -> list[dict]:
    return [{"tokens": r.lower().rstrip(".").split(), "raw": r, "imgid": imgid, "sentid": first + k}
            for k, r in enumerate(raws)]


def coco_karpathy(root: Path) -> None:
    """caption_datasets.zip -> dataset_coco.json (datasets.md "Karpathy splits": {"images": [{"filepath",
    "filename", "split": train|restval|val|test, "sentences": [{"raw", "tokens", ...}], "cocoid"}]}
    plus imgid/sentids and the top-level "dataset" key of the real file)."""
    rows = [("train2014", 9, "train"), ("val2014", 42, "restval"), ("val2014", 73, "val"), ("val2014", 74, "test")]
    images = []
    for imgid, (fp, cid, split) in enumerate(rows):
        raws = [f"A man riding a horse on a beach {k}." for k in range(5)]
        images.append({"filepath": fp, "sentids": list(range(imgid * 5, imgid * 5 + 5)),
                       "filename": coco_name(fp, cid), "imgid": imgid, "split": split,
                       "sentences": _sentences(raws, imgid, imgid * 5), "cocoid": cid})
    write_json(root / "coco_karpathy" / "dataset_coco.json", {"images": images, "dataset": "coco"})


FLICKR = {"1000092795": "train", "10002456": "train", "1007129816": "val", "1009434119": "test"}


def flickr30k(root: Path) -> None:
    """dataset_flickr30k.json (datasets.md "Karpathy splits": Karpathy format without filepath/cocoid, file
    names "<flickr id>.jpg") and flickr30k-images/<id>.jpg (the Illinois tarball's folder)."""
    images = []
    for imgid, (fid, split) in enumerate(FLICKR.items()):
        image(root / "flickr30k" / "flickr30k-images" / f"{fid}.jpg", (imgid * 50, 120, 30))
        raws = [f"Two young guys with shaggy hair look at their hands {k}." for k in range(5)]
        images.append({"sentids": list(range(imgid * 5, imgid * 5 + 5)), "imgid": imgid,
                       "sentences": _sentences(raws, imgid, imgid * 5), "split": split, "filename": f"{fid}.jpg"})
    write_json(root / "flickr30k" / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})


# ------------------------------------------------------------------------------------ NoCaps
NOCAPS = {"0013ea2087020901": "in-domain", "00223e9d5a4e1b0c": "near-domain", "003d8b1f4c04b3d3": "out-domain"}


def nocaps(root: Path) -> None:
    """nocaps_val_4500_captions.json (datasets.md "NoCaps": COCO style, images[{id, file_name, coco_url,
    open_images_id, height, width, domain}], annotations[{image_id, id, caption}], 10 per image);
    images fetched to images/val/<file_name> (LAVIS download_nocaps.py layout)."""
    images, anns = [], []
    for i, (oid, domain) in enumerate(NOCAPS.items()):
        image(root / "nocaps" / "images" / "val" / f"{oid}.jpg", (10, 90 * i % 256, 200))
        images.append({"id": i, "open_images_id": oid, "height": SIZE[1], "width": SIZE[0],
                       "coco_url": f"https://s3.amazonaws.com/nocaps/val/{oid}.jpg", "file_name": f"{oid}.jpg",
                       "license": 0, "date_captured": "2018-11-06 11:04:33", "domain": domain})
        anns += [{"image_id": i, "id": i * 10 + k, "caption": f"A dog sits on a red couch {k}."} for k in range(10)]
    write_json(root / "nocaps" / "nocaps_val_4500_captions.json",
               {"licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 0, "name": "CC BY 2.0"}],
                "info": {"url": "http://nocaps.org", "year": 2018, "version": "0.1", "description": "nocaps val"},
                "images": images, "annotations": anns})


# ------------------------------------------------------------------------------- VQA v2 + VG-QA

def _questions(subtype: str, items: list[tuple[int, int, str]]) -> dict:
    return {"info": {"description": "This is v2.0 of the VQA dataset.", "version": "2.0", "year": 2017},
            "task_type": "Open-Ended", "data_type": "mscoco", "license": {"name": "CC BY 4.0"},
            "data_subtype": subtype,
            "questions": [{"image_id": im, "question": q, "question_id": qid} for qid, im, q in items]}


def _annotations(subtype: str, items: list[tuple[int, int, str, str]]) -> dict:
    anns = []
    for qid, im, answer, atype in items:
        answers = [{"answer": answer if k < 7 else "other thing", "answer_confidence": "yes", "answer_id": k + 1}
                   for k in range(10)]
        anns.append({"question_type": "what is", "multiple_choice_answer": answer, "answers": answers,
                     "image_id": im, "answer_type": atype, "question_id": qid})
    return {"info": {"version": "2.0"}, "license": {"name": "CC BY 4.0"}, "data_subtype": subtype,
            "annotations": anns}


def vqa_v2(root: Path) -> None:
    """The extracted v2_*_mscoco.zip files (datasets.md "VQA v2": v2_OpenEnded_mscoco_<subtype>_questions.json
    {info, task_type, data_type, data_subtype, license, questions[{image_id, question, question_id}]},
    v2_mscoco_<subtype>_annotations.json with 10 {answer, answer_confidence, answer_id} per question;
    question_id = image_id * 1000 + k), LXMERT's minival.json ({answer_type, img_id, label, question_id,
    question_type, sent}) and BLIP's answer_list.json (a JSON list of strings)."""
    vq = root / "vqa_v2"
    train = [(9000, 9, "horse", "other"), (25000, 25, "yes", "yes/no"), (25001, 25, "2", "number")]
    val = [(42000, 42, "beach", "other"), (73000, 73, "no", "yes/no"), (74000, 74, "red", "other")]
    write_json(vq / "v2_OpenEnded_mscoco_train2014_questions.json",
               _questions("train2014", [(q, im, f"What is in picture {im}?") for q, im, _, _ in train]))
    write_json(vq / "v2_mscoco_train2014_annotations.json", _annotations("train2014", train))
    write_json(vq / "v2_OpenEnded_mscoco_val2014_questions.json",
               _questions("val2014", [(q, im, f"Is there a dog in {im}?") for q, im, _, _ in val]))
    write_json(vq / "v2_mscoco_val2014_annotations.json", _annotations("val2014", val))
    test = [(1000, 1, "What color is the bus?"), (1001, 1, "How many people?"), (14000, 14, "Is it raining?")]
    write_json(vq / "v2_OpenEnded_mscoco_test2015_questions.json", _questions("test2015", test))
    write_json(vq / "v2_OpenEnded_mscoco_test-dev2015_questions.json", _questions("test-dev2015", test[:2]))
    write_json(vq / "minival.json", [{"answer_type": "yes/no", "img_id": "COCO_val2014_000000000073",
                                      "label": {"no": 1}, "question_id": 73000, "question_type": "is there a",
                                      "sent": "Is there a dog in 73?"}])
    write_json(vq / "answer_list.json", ["horse", "yes", "2", "beach", "no", "red"])


def vg(root: Path) -> None:
    """Visual Genome v1.2 (datasets.md "Visual Genome"): VG_100K/ and VG_100K_2/ images, question_answers.json
    [{id, qas[{a_objects, question, image_id, qa_id, answer, q_objects}]}], region_descriptions.json
    [{regions[{region_id, width, height, image_id, phrase, y, x}], id}], image_data.json
    [{width, url, height, image_id, coco_id, flickr_id}] (VG image 2 is COCO 74, a Karpathy test image)."""
    v = root / "vg"
    image(v / "VG_100K" / "1.jpg", (90, 90, 0))
    image(v / "VG_100K_2" / "2.jpg", (0, 90, 90))
    write_json(v / "question_answers.json", [
        {"id": 1, "qas": [{"a_objects": [], "question": "What color is the clock?", "image_id": 1, "qa_id": 986768,
                           "answer": "Green.", "q_objects": []}]},
        {"id": 2, "qas": [{"a_objects": [], "question": "Where is the man?", "image_id": 2, "qa_id": 986769,
                           "answer": "On the street", "q_objects": []}]}])
    write_json(v / "region_descriptions.json", [
        {"regions": [{"region_id": 1382, "width": 8, "height": 13, "image_id": 1, "phrase": "the clock is green",
                      "y": 5, "x": 4},
                     {"region_id": 1383, "width": 8, "height": 13, "image_id": 1, "phrase": "The clock is green",
                      "y": 6, "x": 4}], "id": 1},
        {"regions": [{"region_id": 1384, "width": 5, "height": 5, "image_id": 2, "phrase": "a man walking",
                      "y": 1, "x": 1}], "id": 2}])
    write_json(v / "image_data.json", [
        {"width": SIZE[0], "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg", "height": SIZE[1],
         "image_id": 1, "coco_id": None, "flickr_id": None},
        {"width": SIZE[0], "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/2.jpg", "height": SIZE[1],
         "image_id": 2, "coco_id": 74, "flickr_id": 2}])


# ---------------------------------------------------------------------- RefCOCO / + / g
# (folder inside the zip, refs file, splits): refcoco/refcoco+ use unc splits, refcocog umd
REFER = {"refcoco": ("refcoco", "refs(unc).p", ("train", "val", "testA", "testB")),
         "refcoco_plus": ("refcoco+", "refs(unc).p", ("train", "val", "testA", "testB")),
         "refcocog": ("refcocog", "refs(umd).p", ("train", "val", "test"))}
BOXES = [[2.13, 3.0, 17.42, 8.37], [20.5, 10.25, 11.5, 13.75], [0.0, 0.0, 9.0, 6.0], [25.0, 4.0, 9.5, 3.0]]


def refer(root: Path, source: str) -> None:
    """The lichengunc/refer zips (datasets.md "RefCOCO, RefCOCO+, RefCOCOg"): <name>/instances.json
    (COCO style: images [{license, file_name, coco_url, height, width, date_captured, flickr_url, id}], annotations
    [{segmentation, area, iscrowd, image_id, bbox [x,y,w,h], category_id, id}], categories) and
    refs(<splitBy>).p, a Python 2 pickle of [{sent_ids, file_name, ann_id, ref_id, image_id, split,
    sentences[{tokens, raw, sent_id, sent}], category_id}]; ref file_name carries the ann id suffix.
    Images are COCO train2014. The last box crosses the right edge (x + w = 34.5 > 32)."""
    inner, refs_name, splits = REFER[source]
    ids = COCO_IMAGES["train2014"]
    images = [{"license": 1, "file_name": coco_name("train2014", i), "coco_url": "", "height": SIZE[1],
               "width": SIZE[0], "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": i} for i in ids]
    anns, refs = [], []
    for k, split in enumerate(splits):
        ann_id, image_id = 1719310 + k, ids[k % len(ids)]
        x, y, w, h = BOXES[k]
        anns.append({"segmentation": [[x, y, x + w, y, x + w, y + h]], "area": round(w * h, 2), "iscrowd": 0,
                     "image_id": image_id, "bbox": BOXES[k], "category_id": 1, "id": ann_id})
        sents = [f"the lady with the blue shirt {k}", f"LEFT MAN caf\u00e9 {k}"]
        refs.append({"sent_ids": [2 * k, 2 * k + 1], "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                     "ann_id": ann_id, "ref_id": k, "image_id": image_id, "split": split,
                     "sentences": [{"tokens": s.lower().split(), "raw": s, "sent_id": 2 * k + j, "sent": s.lower()}
                                   for j, s in enumerate(sents)], "category_id": 1})
    folder = root / source / inner
    write_json(folder / "instances.json", {"info": {"description": "This is stable 1.0 version of the 2014 MS COCO "
                                                                   "dataset."}, "images": images,
                                           "licenses": [], "annotations": anns,
                                           "categories": [{"supercategory": "person", "id": 1, "name": "person"}]})
    (folder / refs_name).write_bytes(py2_pickle(refs))


# ------------------------------------------------------------------------------------- NLVR2

def nlvr2(root: Path) -> None:
    """lil-lab/nlvr nlvr2/data/{train,dev,test1}.json, JSON lines (datasets.md "NLVR2": sentence,
    left_url, right_url, label "True"/"False", identifier split-set_id-pair_id-sentence_id, writer,
    validation, extra_validations, synset, query, directory (train only)); images
    images/train/<directory>/<split-set-pair>-img0.png, images/{dev,test1}/... ("*.png" files are
    not always PNG: one here is a JPEG)."""
    nl = root / "nlvr2"
    rows = {"train": [("train-10171-0-0", "True", 51)], "dev": [("dev-850-0-0", "False", None),
                                                                 ("dev-850-0-1", "True", None)],
            "test1": [("test1-0-1-0", "True", None)]}
    for split, items in rows.items():
        out = []
        for n, (ident, label, directory) in enumerate(items):
            stem = ident.rsplit("-", 1)[0]
            folder = nl / "images" / split / (str(directory) if directory is not None else "")
            for side in (0, 1):
                fmt = "JPEG" if (split, side) == ("dev", 1) else "PNG"
                image(folder / f"{stem}-img{side}.png", (60 * side, 100, 20 * n), fmt=fmt)
            row = {"validation": {"A2QSRKLPTFF1B1": "True"}, "sentence": f"The left image contains two dogs {n}.",
                   "left_url": f"https://example.org/{stem}-left.jpg", "writer": "103", "label": label,
                   "right_url": f"https://example.org/{stem}-right.jpg", "synset": "n02109047",
                   "query": "dogs", "identifier": ident, "extra_validations": {}}
            if directory is not None:
                row["directory"] = directory
            out.append(row)
        write_jsonl(nl / f"{split}.json", out)


# ------------------------------------------------------------------------------------ SNLI-VE

def albef_data(root: Path) -> None:
    """ALBEF data.tar.gz -> data/ve_{train,dev,test}.json (datasets.md "SNLI-VE": [{"image": "<flickr id
    without .jpg>", "sentence": hypothesis, "label": entailment|neutral|contradiction}]) over the
    flickr30k images. (The other ALBEF files are not read by preprocessing.)"""
    for split, fid in (("train", "1000092795"), ("dev", "1007129816"), ("test", "1009434119")):
        write_json(root / "albef_data" / "data" / f"ve_{split}.json", [
            {"image": fid, "sentence": "Two men are looking at their hands.", "label": "entailment"},
            {"image": fid, "sentence": "The men are asleep.", "label": "contradiction"},
            {"image": fid, "sentence": "The men are brothers.", "label": "neutral"}])


# -------------------------------------------------------------------------- MSR-VTT, MSVD, VATEX

def msrvtt(root: Path) -> None:
    """Frozen-in-Time MSRVTT.zip -> MSRVTT/videos/all/videoNNNN.mp4 (H.264) and CLIP4Clip
    msrvtt_data.zip -> msrvtt_data/MSRVTT_JSFUSION_test.csv (datasets.md "MSR-VTT": header
    key,vid_key,video_id,sentence; rows like ret0,msr9770,video9770,<sentence>; one caption a video;
    a sentence with a comma is quoted)."""
    for k, vid in enumerate(("video7010", "video7011")):
        write_video(root / "msrvtt" / "MSRVTT" / "videos" / "all" / f"{vid}.mp4", frames=12 + k, width=32, height=24)
    csv = ("key,vid_key,video_id,sentence\n"
           "ret0,msr7010,video7010,a group of people are dancing\n"
           'ret1,msr7011,video7011,"a man is talking, then singing"\n')
    (root / "msrvtt" / "msrvtt_data").mkdir(parents=True, exist_ok=True)
    (root / "msrvtt" / "msrvtt_data" / "MSRVTT_JSFUSION_test.csv").write_text(csv, encoding="utf-8")


def alpro_data(root: Path) -> None:
    """ALPRO data.zip -> data/{msrvtt_qa,msvd_qa}/txt/test.jsonl (datasets.md "MSRVTT-QA and MSVD-QA": JSON lines
    {"answer", "question", "video_id", "answer_type"}, no question id) and train_ans2label.json
    ({answer: label id})."""
    base = root / "alpro_data" / "data"
    write_jsonl(base / "msrvtt_qa" / "txt" / "test.jsonl", [
        {"answer": "couch", "question": "what are three people sitting on?", "video_id": "video7010",
         "answer_type": "what"},
        {"answer": "man", "question": "who is singing?", "video_id": "video7011", "answer_type": "who"}])
    write_json(base / "msrvtt_qa" / "txt" / "train_ans2label.json", {"couch": 0, "man": 1, "dog": 2})
    write_jsonl(base / "msvd_qa" / "txt" / "test.jsonl", [
        {"answer": "man", "question": "who is slicing a tomato?", "video_id": MSVD[0], "answer_type": "who"},
        {"answer": "slice", "question": "what is the man doing?", "video_id": MSVD[1], "answer_type": "what"}])
    write_json(base / "msvd_qa" / "txt" / "train_ans2label.json", {"man": 0, "slice": 1})


MSVD = ("-4wsuPCjDBc_5_15", "0lh_UWF9ZP4_62_69")


def msvd(root: Path) -> None:
    """YouTubeClips.tar -> YouTubeClips/<YouTubeID>_<start>_<end>.avi, XVID (datasets.md "MSRVTT-QA
    and MSVD-QA")."""
    for k, vid in enumerate(MSVD):
        write_video(root / "msvd" / "YouTubeClips" / f"{vid}.avi", frames=10 + k, width=32, height=24)


def vatex(root: Path) -> None:
    """vatex_public_test_english_v1.1.json (datasets.md "VATEX": [{"videoID": "<YouTubeID>_<start>_<end>",
    "enCap": [10 English captions]}], start/end zero-padded to 6 digits) and videos/<videoID>.mp4
    crawled by the user; one listed video is gone (private/deleted), as expected on YouTube."""
    present = "Ptf_2VRj-V0_000122_000132"
    write_video(root / "vatex" / "videos" / f"{present}.mp4", frames=14, width=32, height=24)
    write_json(root / "vatex" / "vatex_public_test_english_v1.1.json", [
        {"videoID": present, "enCap": [f"A woman is demonstrating how to fold a shirt {k}." for k in range(10)]},
        {"videoID": "G9zN5TTuGO4_000179_000189", "enCap": [f"A man plays the drums {k}." for k in range(10)]}])


# ----------------------------------------------------------------- web-scale sets: img2dataset output

def _jpeg_bytes(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, "JPEG")
    return buf.getvalue()


def webscale(root: Path, source: str) -> None:
    """What `img2dataset --output_format webdataset` leaves (datasets.md "General", web-scale sets):
    shards/00000.tar with
    {key}.jpg, {key}.txt, {key}.json per downloaded sample (key = 5-digit shard + 4-digit index; a
    failed URL leaves no member), 00000.parquet beside it and 00000_stats.json
    {count, successes, failed_to_download, failed_to_resize, ...}."""
    shards = root / source / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in (0, 1, 3):  # sample 2's URL failed
            key = f"00000{i:04d}"
            meta = {"url": f"http://example.org/{source}/{i}.jpg", "caption": f"{source} photo {i}", "key": key,
                    "status": "success", "error_message": None, "width": 16, "height": 16,
                    "original_width": 64, "original_height": 48, "exif": "{}", "sha256": "0" * 64}
            for ext, data in (("jpg", _jpeg_bytes((40 * i, 60, 90))), ("txt", f"{source} photo {i}".encode()),
                              ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    (shards / "00000.tar").write_bytes(buf.getvalue())
    (shards / "00000.parquet").write_bytes(b"PAR1")  # the metadata table; never read by preprocessing
    write_json(shards / "00000_stats.json", {
        "count": 4, "successes": 3, "failed_to_download": 1, "failed_to_resize": 0, "duration": 1.5,
        "start_time": 1700000000.0, "end_time": 1700000001.5,
        "status_dict": {"success": 3, "<urlopen error [Errno -2] Name or service not known>": 1}})


# ------------------------------------------------------------------------------------ all

WRITERS = {
    "coco": coco, "coco_karpathy": coco_karpathy, "flickr30k": flickr30k, "nocaps": nocaps, "vqa_v2": vqa_v2,
    "vg": vg, "refcoco": lambda r: refer(r, "refcoco"), "refcoco_plus": lambda r: refer(r, "refcoco_plus"),
    "refcocog": lambda r: refer(r, "refcocog"), "nlvr2": nlvr2, "albef_data": albef_data, "msrvtt": msrvtt,
    "alpro_data": alpro_data, "msvd": msvd, "vatex": vatex,
    "sbu": lambda r: webscale(r, "sbu"), "cc3m": lambda r: webscale(r, "cc3m"), "cc12m": lambda r: webscale(r, "cc12m"),
}


def build_resources(root: Path) -> Path:
    """Every source above under `root` (= resources/); returns root."""
    for write in WRITERS.values():
        write(root)
    return root

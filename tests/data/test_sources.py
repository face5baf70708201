"""The source registry covers every dataset of the paper, with sane URLs and checksums."""
from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from mplug.data.sources import SOURCES, get_source, list_sources
from mplug.errors import DataError

# Table 12 and every downstream task of the paper, plus the official release files (SNLI-VE: albef_data +
# flickr30k, see the comment in sources.py).
REQUIRED = {"coco", "vg", "sbu", "cc3m", "cc12m", "vqa_v2", "coco_karpathy", "nocaps", "flickr30k",
            "refcoco", "refcoco_plus", "refcocog", "nlvr2", "msrvtt", "alpro_data", "msvd",
            "vatex", "mplug_base", "mplug_large", "mplug_large_v2", "clip_vit_b16", "clip_vit_l14",
            "mplug_data"}


def test_every_paper_dataset_is_registered():
    assert REQUIRED <= set(list_sources())


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_entries_are_well_formed(name):
    src = SOURCES[name]
    assert src.kind in ("direct", "webscale", "registration")
    assert src.licence and src.description
    names = [f.name for f in src.files]
    assert len(names) == len(set(names)), "duplicate file names"
    for f in src.files:
        u = urlparse(f.url)
        assert u.scheme in ("http", "https") and u.netloc, f.url
        assert f.name and "/" not in f.name and not f.name.startswith(".")
        if f.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        if f.md5:
            assert re.fullmatch(r"[0-9a-f]{32}", f.md5)
        if f.pinned:
            assert f.checksum_source, "a pinned checksum must say who published it"
    if src.kind == "webscale":
        assert src.webscale is not None and src.webscale.url_col and src.webscale.caption_col
    if src.kind == "registration":
        assert src.manual and "http" in src.instructions, "say where to get the files"


def test_table12_counts_for_pretraining_sets():
    got = {n: SOURCES[n].paper_counts for n in ("coco", "vg", "sbu", "cc3m", "cc12m")}
    assert got["coco"] == {"images": 113_000, "texts": 567_000}
    assert got["vg"] == {"images": 100_000, "texts": 769_000}
    assert got["cc12m"]["images"] == 10_000_000


def test_known_pins_match_the_reference():
    nlvr = {f.name: f.sha256 for f in SOURCES["nlvr2"].files}
    assert nlvr["dev.json"].startswith("7c44bc78")
    coco = {f.name: f.md5 for f in SOURCES["coco"].files}
    assert coco["train2014.zip"] == "0da8c0bd3d6becc4dcb32757491aca88"
    test2015 = SOURCES["coco_test2015"].files[0]
    assert test2015.name == "test2015.zip" and not test2015.pinned  # LAVIS's md5 is test2014's: unpinned
    assert not test2015.optional  # the VQA evaluation needs it: the download rule fetches no optional file
    assert "id_/" in SOURCES["refcoco"].files[0].url  # raw wayback bytes, which the pin refers to


def test_web_scale_columns_follow_the_raw_tsv_order():
    # CC3M is caption<TAB>url, CC12M is url<TAB>caption (the reverse): easy to get wrong
    assert SOURCES["cc3m"].webscale.header == ("caption", "url")
    assert SOURCES["cc12m"].webscale.header == ("url", "caption")


def test_unknown_source_lists_known_names():
    with pytest.raises(DataError, match="unknown dataset 'cocoo'.*coco"):
        get_source("cocoo")


def test_every_normalised_dataset_has_a_converter_and_known_sources():
    from mplug.data import formats
    from mplug.data.preprocess import PREPROCESS_SOURCES, _converters

    assert set(_converters()) == set(formats.DATASETS) == set(PREPROCESS_SOURCES)
    for dataset, needs in PREPROCESS_SOURCES.items():
        assert needs and set(needs) <= set(SOURCES), dataset

"""Where every dataset and official file of the paper comes from.

One `Source` per downloadable unit (`mplug data download NAME`). Everything here is taken from
the datasets' own pages and repositories (docs/datasets.md) and the official mPLUG README
(github.com/alibaba/AliceMind, mPLUG/README.md); hosts may have moved since.

Checksums:
- `sha256` / `md5` set on a `FileSpec` are *pinned*: published by the owner or a named third
  party (`checksum_source` says which). A download that does not match is refused.
- Where nothing was published, the sha256 is *recorded on first download* in `<file>.sha256`
  beside the file and every later download or check of that file must match it.

Kinds:
- `direct`: plain HTTP files (optionally extracted).
- `webscale`: a URL/caption list fetched directly; images fetched by img2dataset into
  webdataset shards (`WebscaleSpec`).
- `registration`: some files need a form, a licence click or a crawl. `manual` lists the paths the
  user must place; download stops with an error saying where to get them and where to put them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mplug.errors import DataError

Kind = Literal["direct", "webscale", "registration"]

BLIP = "https://storage.googleapis.com/sfr-vision-language-research/datasets"
LAVIS = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/datasets"
ALICE = "https://alice-open.oss-cn-zhangjiakou.aliyuncs.com/mPLUG"
VG = "https://homes.cs.washington.edu/~ranjay/visualgenome/data/dataset"
VQA = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa"
NLVR = "https://raw.githubusercontent.com/lil-lab/nlvr/master/nlvr2/data"
WAYBACK_UNC = "https://web.archive.org/web/{ts}id_/https://bvisionweb1.cs.unc.edu/licheng/referit/data"
# Pretraining init (paper 5.1): the BERT-base files the trainer and tokenizer read. Hugging Face
# publishes no checksum list: each file's sha256 is recorded on first download.
HF_BERT = "https://huggingface.co/google-bert/bert-base-uncased/resolve/main"
KARPATHY_ZIP = "http://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"


@dataclass(frozen=True)
class FileSpec:
    """One file of a source. `name` is relative to `resources/<source>/`."""

    name: str
    url: str
    sha256: str | None = None  # pinned sha256 (see checksum_source)
    md5: str | None = None  # pinned md5 where only an md5 was published
    size: int | None = None  # expected bytes (3rd-party figure): disk-space check, warning only
    checksum_source: str = ""  # who published the pinned checksum
    extract: bool = False  # unpack next to the archive (atomic, with a done-marker)
    optional: bool = False  # fetched only with --all (large or rarely needed)

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.md5)


@dataclass(frozen=True)
class WebscaleSpec:
    """How img2dataset reads this source's URL list (flags from img2dataset dataset_examples)."""

    url_list: str  # file name (in resources/<source>/) img2dataset reads
    input_format: Literal["tsv", "csv", "json", "parquet"]
    url_col: str
    caption_col: str
    header: tuple[str, ...] | None = None  # columns to prepend when the raw list has no header
    image_size: int = 256


@dataclass(frozen=True)
class ListedImages:
    """Images fetched one by one from URLs inside an annotation file (NoCaps: Open Images URLs)."""

    annotation: str  # file name in resources/<source>/
    url_key: str  # key of each images[] entry holding the URL
    name_key: str  # key holding the file name to save under `folder`
    folder: str  # where the images go, relative to resources/<source>/


@dataclass(frozen=True)
class Source:
    name: str
    kind: Kind
    description: str
    licence: str
    files: tuple[FileSpec, ...] = ()
    manual: tuple[str, ...] = ()  # paths under resources/<name>/ the user must provide
    instructions: str = ""  # where to get the manual files
    webscale: WebscaleSpec | None = None
    listed_images: ListedImages | None = None
    paper_counts: dict[str, int] = field(default_factory=dict)  # Table 12 / paper figures


def _unc(name: str, ts: str, sha: str) -> FileSpec:
    return FileSpec(f"{name}.zip", f"{WAYBACK_UNC.format(ts=ts)}/{name}.zip", sha256=sha,
                    checksum_source="3rd-party runbook (sha256 of the wayback copy)", extract=True)


_SOURCES: tuple[Source, ...] = (
    # ---- official mPLUG release (AliceMind mPLUG/README.md); nothing published about sizes/hashes
    Source("mplug_base", "direct", "mPLUG base checkpoint (mplug.en.base, 350M)", "Apache-2.0 (AliceMind)",
           (FileSpec("mplug_base.pth", f"{ALICE}/mplug_base.pth"),)),
    Source("mplug_large", "direct", "mPLUG large checkpoint (mplug.en.large, 600M)", "Apache-2.0 (AliceMind)",
           (FileSpec("mplug_large.pth", f"{ALICE}/mplug_large.pth"),)),
    Source("mplug_large_v2", "direct", "mPLUG large v2 checkpoint (caption fine-tuning init)",
           "Apache-2.0 (AliceMind)", (FileSpec("mplug_large_v2.pth", f"{ALICE}/mplug_large_v2.pth"),)),
    Source("clip_vit_b16", "direct", "CLIP ViT-B/16 weights as repackaged by mPLUG", "MIT (OpenAI CLIP)",
           (FileSpec("ViT-B-16.tar", f"{ALICE}/ViT-B-16.tar"),)),
    Source("clip_vit_l14", "direct", "CLIP ViT-L/14 weights as repackaged by mPLUG", "MIT (OpenAI CLIP)",
           (FileSpec("ViT-L-14.tar", f"{ALICE}/ViT-L-14.tar"),)),
    Source("bert_base_uncased", "direct", "BERT-base uncased (google-bert/bert-base-uncased): weights, "
           "config, vocabulary (pretraining init and the tokenizer)", "Apache-2.0 (Google BERT)",
           (FileSpec("model.safetensors", f"{HF_BERT}/model.safetensors"),
            FileSpec("config.json", f"{HF_BERT}/config.json"),
            FileSpec("vocab.txt", f"{HF_BERT}/vocab.txt"),
            FileSpec("tokenizer_config.json", f"{HF_BERT}/tokenizer_config.json"))),
    Source("mplug_data", "direct", "mPLUG downstream JSONs (VQA with OCR/object tags, captions)",
           "Apache-2.0 (AliceMind); underlying datasets keep their licences",
           (FileSpec("data.tar", f"{ALICE}/data.tar", extract=True),)),
    Source("albef_data", "direct", "ALBEF downstream JSONs (SNLI-VE ve_*.json, RefCOCO+, VQA, retrieval)",
           "BSD-3-Clause (ALBEF); underlying datasets keep their licences",
           (FileSpec("data.tar.gz", "https://storage.googleapis.com/sfr-pcl-data-research/ALBEF/data.tar.gz",
                     extract=True),
            FileSpec("json_pretrain.zip",
                     "https://storage.googleapis.com/sfr-pcl-data-research/ALBEF/json_pretrain.zip",
                     optional=True))),
    # ---- pre-training corpora (Table 12)
    Source("coco", "direct", "MS COCO 2014 images and caption annotations",
           "annotations CC BY 4.0; images Flickr terms (unverified)",
           (FileSpec("annotations_trainval2014.zip",
                     "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                     size=252_872_794, extract=True),
            FileSpec("train2014.zip", "http://images.cocodataset.org/zips/train2014.zip", size=13_510_573_713,
                     md5="0da8c0bd3d6becc4dcb32757491aca88", checksum_source="LAVIS download_coco.py",
                     extract=True),
            FileSpec("val2014.zip", "http://images.cocodataset.org/zips/val2014.zip", size=6_645_013_297,
                     md5="a3d79f5ed8d289b7a7554ce06a5782b3", checksum_source="LAVIS download_coco.py",
                     extract=True)),
           paper_counts={"images": 113_000, "texts": 567_000}),
    # A source of its own (not an optional file of `coco`, which the download rule would never fetch):
    # the VQA evaluation needs it, nothing else does. The md5 LAVIS gives is a copy of test2014's: not pinned
    Source("coco_test2015", "direct", "MS COCO test2015 images (VQA v2 test-dev / test-std questions)",
           "images Flickr terms (unverified)",
           (FileSpec("test2015.zip", "http://images.cocodataset.org/zips/test2015.zip", extract=True),)),
    Source("coco_karpathy", "direct", "Karpathy splits (dataset_coco.json) and BLIP Karpathy JSONs",
           "COCO terms (annotations CC BY 4.0)",
           (FileSpec("caption_datasets.zip", KARPATHY_ZIP, extract=True),
            FileSpec("coco_karpathy_train.json", f"{BLIP}/coco_karpathy_train.json",
                     md5="aa31ac474cf6250ebb81d18348a07ed8", checksum_source="LAVIS coco/defaults_cap.yaml"),
            FileSpec("coco_karpathy_val.json", f"{BLIP}/coco_karpathy_val.json",
                     md5="b273847456ef5580e33713b1f7de52a0", checksum_source="LAVIS coco/defaults_cap.yaml"),
            FileSpec("coco_karpathy_test.json", f"{BLIP}/coco_karpathy_test.json",
                     md5="3ff34b0ef2db02d01c37399f6a2a6cd1", checksum_source="LAVIS coco/defaults_cap.yaml"),
            FileSpec("coco_karpathy_val_gt.json", f"{BLIP}/coco_karpathy_val_gt.json"),
            FileSpec("coco_karpathy_test_gt.json", f"{BLIP}/coco_karpathy_test_gt.json"))),
    Source("vg", "direct", "Visual Genome v1.2 images, region descriptions, QA, image metadata",
           "CC BY 4.0 (unverified)",
           (FileSpec("images.zip", "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip",
                     size=9_731_705_982, extract=True),
            FileSpec("images2.zip", "https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip",
                     size=5_471_658_058, extract=True),
            FileSpec("region_descriptions.json.zip", f"{VG}/region_descriptions.json.zip",
                     size=127_377_968, extract=True),
            FileSpec("question_answers.json.zip", f"{VG}/question_answers.json.zip", size=24_776_315,
                     extract=True),
            FileSpec("image_data.json.zip", f"{VG}/image_data.json.zip", size=1_780_854, extract=True)),
           paper_counts={"images": 100_000, "texts": 769_000}),
    Source("sbu", "webscale", "SBU Captions: 1M Flickr URLs with captions", "no formal licence; Flickr images",
           (FileSpec("sbu-captions-all.tar.gz", "https://www.cs.rice.edu/~vo9/sbucaptions/sbu-captions-all.tar.gz",
                     extract=True),
            FileSpec("SBUCaptionedPhotoDataset.tar.gz",
                     "https://www.cs.rice.edu/~vo9/sbucaptions/SBUCaptionedPhotoDataset.tar.gz",
                     sha256="2bf37d5e1c9e1c6eae7d5103030d58a7f2117fc5e8c6aa9620f0df165acebf09",
                     checksum_source="torchvision prototype datasets (3rd-party)", optional=True)),
           webscale=WebscaleSpec("sbu-captions-all.json", "json", "image_urls", "captions"),
           paper_counts={"images": 860_000, "texts": 860_000}),
    Source("cc3m", "webscale", "Conceptual Captions 3M (train TSV: caption<TAB>url, no header)",
           "free for any purpose, AS IS (Google LLC LICENSE); images keep their owners' copyright",
           (FileSpec("GCC-training.tsv", "https://storage.googleapis.com/gcc-data/Train/GCC-training.tsv"),
            FileSpec("GCC-1.1.0-Validation.tsv",
                     "https://storage.googleapis.com/gcc-data/Validation/GCC-1.1.0-Validation.tsv", optional=True)),
           webscale=WebscaleSpec("GCC-training.tsv", "tsv", "url", "caption", header=("caption", "url")),
           paper_counts={"images": 3_000_000, "texts": 3_000_000}),
    Source("cc12m", "webscale", "Conceptual 12M (TSV: url<TAB>caption, no header)",
           "free for any purpose, AS IS (Google LLC LICENSE); images keep their owners' copyright",
           (FileSpec("cc12m.tsv", "https://storage.googleapis.com/conceptual_12m/cc12m.tsv", size=2_707_204_412),),
           webscale=WebscaleSpec("cc12m.tsv", "tsv", "url", "caption", header=("url", "caption")),
           paper_counts={"images": 10_000_000, "texts": 10_000_000}),
    # ---- downstream tasks
    Source("vqa_v2", "direct", "VQA v2 questions and annotations (images: coco)", "CC BY 4.0 (unverified)",
           tuple(FileSpec(f"v2_{k}_mscoco.zip", f"{VQA}/v2_{k}_mscoco.zip", size=s, extract=True)
                 for k, s in (("Questions_Train", 7_239_401), ("Questions_Val", 3_494_929),
                              ("Questions_Test", None), ("Annotations_Train", 21_708_861),
                              ("Annotations_Val", 10_518_930)))
           + (FileSpec("answer_list.json", f"{BLIP}/answer_list.json"),
              # LXMERT's minival question ids: mPLUG validates on minival, trains on train + nominival
              FileSpec("minival.json", "https://nlp.cs.unc.edu/data/lxmert_data/vqa/minival.json"),
              FileSpec("vg_qa.json", f"{BLIP}/vg_qa.json", optional=True))),
    Source("nocaps", "direct", "NoCaps validation captions (images: Open Images URLs in the JSON)",
           "Open Images CC BY 2.0 (mostly); annotation licence unverified",
           (FileSpec("nocaps_val_4500_captions.json", "https://nocaps.s3.amazonaws.com/nocaps_val_4500_captions.json"),
            FileSpec("nocaps_test_image_info.json", "https://s3.amazonaws.com/nocaps/nocaps_test_image_info.json",
                     optional=True)),
           listed_images=ListedImages("nocaps_val_4500_captions.json", "coco_url", "file_name", "images/val")),
    Source("flickr30k", "registration", "Flickr30K images + Karpathy split (dataset_flickr30k.json)",
           "non-commercial research terms (Illinois form); Flickr image copyrights",
           (FileSpec("caption_datasets.zip", KARPATHY_ZIP, extract=True),),
           manual=("flickr30k-images",),
           instructions=("Request Flickr30K at https://forms.illinois.edu/sec/229675 "
                         "(https://shannon.cs.illinois.edu/DenotationGraph/) and unpack the images so that "
                         "flickr30k-images/<id>.jpg exists. (An unofficial mirror, used by SNLI-VE: "
                         "https://storage.googleapis.com/allennlp-public-data/snli-ve/flickr30k_images.tar.gz)")),
    Source("refcoco", "direct", "RefCOCO (UNC) refs(unc).p + instances.json (images: coco train2014)",
           "refer code Apache-2.0; data licence unverified",
           (_unc("refcoco", "20220413011718", "7f924bb7ed8dc4568058e4ff626281918d56e5206f4c868c5a80f088f38c8bf0"),)),
    Source("refcoco_plus", "direct", "RefCOCO+ (UNC) refs(unc).p + instances.json (images: coco train2014)",
           "refer code Apache-2.0; data licence unverified",
           (_unc("refcoco+", "20220413011656", "5f1238112d63199e68da54a28f201471909b21ded7ed79a57d51b4c1443c6b45"),)),
    Source("refcocog", "direct", "RefCOCOg refs(umd).p / refs(google).p + instances.json",
           "refer code Apache-2.0; data licence unverified",
           (_unc("refcocog", "20220413012904", "3d1f7e5b2ff2205940bf59de55f861f5f2cc1403fb980669933a7f9af1aa8211"),)),
    Source("nlvr2", "registration", "NLVR2 statements (public, JSON lines) + images (by request)",
           "sentences CC BY 4.0; images not licensed (owners' copyright)",
           (FileSpec("train.json", f"{NLVR}/train.json"),
            FileSpec("dev.json", f"{NLVR}/dev.json",
                     sha256="7c44bc7831c0e060ae7d31807c91cc0c9791322363d8d86828fb44a77f09ae88",
                     checksum_source="computed from lil-lab/nlvr git @1892484"),
            FileSpec("test1.json", f"{NLVR}/test1.json",
                     sha256="f49a6c512d6868f8faf3b3bbe1a816bf5e8643f13c1bf26e527a21b84e27e2ec",
                     checksum_source="computed from lil-lab/nlvr git @1892484"),
            FileSpec("test2.json", f"{NLVR}/test2.json", optional=True,
                     sha256="1eda97084a83030f5cc0d57efdb3826589718f232133c5f470ebd6c54cf87d89",
                     checksum_source="computed from lil-lab/nlvr git @1892484")),
           manual=("images/train", "images/dev", "images/test1"),
           instructions=("Request the NLVR2 images through the Google Form https://goo.gl/forms/yS29stWnFWzrDBFH3 "
                         "(https://lil.nlp.cornell.edu/nlvr/) or crawl them with nlvr2/util/download_images.py; "
                         "put them under images/{train,dev,test1}/ (train may keep its 0..99 sub-folders).")),
    # SNLI-VE has no source of its own: `snli_ve` preprocessing reads ALBEF's ve_*.json (albef_data, what
    # mPLUG's ve_dataset reads) over the flickr30k images, or the SNLI-VE generator's own output
    # (snli_ve_<split>.jsonl, Google Drive links in github.com/necla-ml/SNLI-VE) placed in resources/snli_ve/.
    # snli_1.0.zip and the .lst split files were fetched here once but nothing read them.
    Source("msrvtt", "direct", "MSR-VTT videos (Frozen-in-Time MSRVTT.zip) + 1k-A split (CLIP4Clip) + BLIP test",
           "research use (unverified); web video clips",
           (FileSpec("MSRVTT.zip", "https://www.robots.ox.ac.uk/~maxbain/frozen-in-time/data/MSRVTT.zip",
                     extract=True),
            FileSpec("msrvtt_data.zip", "https://github.com/ArrowLuo/CLIP4Clip/releases/download/v0.0/msrvtt_data.zip",
                     extract=True),
            FileSpec("msrvtt_test.jsonl", f"{BLIP}/msrvtt_test.jsonl"))),
    Source("alpro_data", "direct", "ALPRO data.zip: MSRVTT-QA and MSVD-QA JSON lines + train_ans2label.json",
           "BSD-3-Clause (ALPRO); underlying datasets keep their licences",
           (FileSpec("data.zip", "https://storage.googleapis.com/sfr-vision-language-research/ALPRO/data.zip",
                     extract=True),)),
    Source("msvd", "direct", "MSVD YouTubeClips.tar: 1,970 .avi clips", "YouTube excerpts (terms unverified)",
           (FileSpec("YouTubeClips.tar", "https://www.cs.utexas.edu/users/ml/clamp/videoDescription/YouTubeClips.tar",
                     md5="9bdb20fcf14d59524a6febca9f6a8d89", checksum_source="ALPRO README", extract=True),)),
    Source("vatex", "registration", "VATEX annotations (public) + videos (crawl from YouTube)",
           "annotations CC BY 4.0 (unverified); videos under YouTube ToS",
           (FileSpec("vatex_public_test_english_v1.1.json",
                     "https://eric-xw.github.io/vatex-website/data/vatex_public_test_english_v1.1.json"),
            FileSpec("vatex_training_v1.0.json",
                     "https://eric-xw.github.io/vatex-website/data/vatex_training_v1.0.json", optional=True),
            FileSpec("vatex_validation_v1.0.json",
                     "https://eric-xw.github.io/vatex-website/data/vatex_validation_v1.0.json", optional=True)),
           manual=("videos",),
           instructions=("VATEX videos are not distributed. For each videoID <YouTubeID>_<start>_<end> in "
                         "vatex_public_test_english_v1.1.json run e.g. `yt-dlp -f mp4 -o <YouTubeID>.mp4 "
                         "https://www.youtube.com/watch?v=<YouTubeID>` and trim to [start, end] with ffmpeg; "
                         "put the clips at videos/<videoID>.mp4. Missing (private/deleted) videos are counted "
                         "by `mplug data preprocess vatex`, not fatal.")),
)

SOURCES: dict[str, Source] = {s.name: s for s in _SOURCES}


@dataclass(frozen=True)
class DocumentedSize:
    """Training examples of one epoch a dataset documents, per split the training loader reads,
    counted as the loader iterates them (captioning and retrieval: one example per caption;
    grounding: per expression; VQA: per question). `mplug plan` uses it where
    data/<run>/<dataset>/stats.json is absent."""

    splits: dict[str, int]
    source: str


# Figures from each dataset's own paper or page (docs/datasets.md, the section named) unless
# said otherwise.
DOCUMENTED_TRAIN: dict[str, DocumentedSize] = {
    "coco_caption": DocumentedSize({"train": 567_000}, "Karpathy train: 113K images / 567K captions, "
                                   "paper Table 12, docs/datasets.md Karpathy"),
    "coco_retrieval": DocumentedSize({"train": 567_000}, "Karpathy train: 113K images / 567K captions, "
                                     "paper Table 12, docs/datasets.md Karpathy"),
    "flickr_retrieval": DocumentedSize({"train": 145_000}, "Karpathy train: 29K images x 5 captions, "
                                       "docs/datasets.md Karpathy"),
    "vqa": DocumentedSize({"train": 443_757, "val": 214_354, "vg_qa": 1_700_000},
                          "VQA v2 train/val questions, docs/datasets.md VQA v2; VG-QA 1.7M QA pairs, Krishna et "
                          "al. 2017 (vg_qa.json's own count unverified)"),
    "refcoco": DocumentedSize({"train": 120_624}, "RefCOCO unc train expressions, docs/datasets.md RefCOCO"),
    "refcoco+": DocumentedSize({"train": 120_191}, "RefCOCO+ unc train expressions, docs/datasets.md RefCOCO "
                               "(unverified)"),
    "refcocog": DocumentedSize({"train": 80_512}, "RefCOCOg umd train expressions, docs/datasets.md RefCOCO "
                               "(unverified)"),
    "nlvr2": DocumentedSize({"train": 86_373}, "NLVR2 train statements, docs/datasets.md NLVR2 (unverified)"),
    "snli_ve": DocumentedSize({"train": 529_527}, "SNLI-VE train pairs, docs/datasets.md SNLI-VE (README)"),
}


def documented_train_size(dataset: str, downloads: list[str] | tuple[str, ...] = ()) -> DocumentedSize | None:
    """The documented training size of a normalised dataset folder: DOCUMENTED_TRAIN, else (a
    pretraining corpus) the sum of its downloads' paper_counts texts (Table 12); None if neither."""
    if dataset in DOCUMENTED_TRAIN:
        return DOCUMENTED_TRAIN[dataset]
    counted = [n for n in downloads if "texts" in getattr(SOURCES.get(n), "paper_counts", {})]
    if not counted:
        return None
    return DocumentedSize({"train": sum(SOURCES[n].paper_counts["texts"] for n in counted)},
                          "paper Table 12 texts of " + " + ".join(counted))


def get_source(name: str) -> Source:
    """The source named `name`, or a DataError listing the known names."""
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(SOURCES))}") from None


def list_sources() -> list[str]:
    return sorted(SOURCES)

"""Video-text data: VINDLU annotations, caption pairs and retrieval splits, DataModules, image/video interleaving."""

from __future__ import annotations

import json
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from umt.data.captions import Media, read_captions, retrieval_split, training_pairs
from umt.data.dataset import ResumableRandomSampler
from umt.data.decoding import VideoError
from umt.data.interleave import InterleavedLoader
from umt.data.media_text import CaptionPairDataset, frame_range
from umt.data.transforms import stage2_train_transform
from umt.data.writer import write_video
from umt.datamodules.video_text import (
    CC3MDataModule,
    Corpus,
    DiDeMoDataModule,
    MSRVTTDataModule,
    MSVDDataModule,
    SSv2LabelDataModule,
    SyntheticVideoTextDataModule,
    VideoTextDataModule,
    VideoTextPretrainDataModule,
)

SMALL = {"num_frames": 4, "img_size": 32, "batch_size": 2, "num_workers": 0}


def _write_json(path: Path, entries: list) -> Path:
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 12-frame videos ``v0..v5.mp4``, four images ``img0..img3`` (PNG / JPEG) in ``cc3m/``, a broken video."""
    root = tmp_path_factory.mktemp("video_text")
    rng = np.random.default_rng(0)
    for i in range(6):
        write_video(root / f"v{i}.mp4", rng.integers(0, 255, (12, 32, 40, 3), dtype=np.uint8), fps=10)
    (root / "cc3m").mkdir()
    for i in range(4):
        image = Image.fromarray(rng.integers(0, 255, (24 + 4 * i, 36, 3), dtype=np.uint8))
        image.save(root / "cc3m" / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


def test_registered_in_entry_points() -> None:
    names = {ep.name: ep.load() for ep in entry_points(group="umt.datamodules")}
    assert names["msrvtt"] is MSRVTTDataModule and names["synthetic_video_text"] is SyntheticVideoTextDataModule
    assert {"video_text", "msrvtt_7k", "didemo", "activitynet", "lsmdc", "msvd", "vatex", "ssv2_label",
            "ssv2_template", "video_text_pretrain", "pretrain_5m", "pretrain_17m", "pretrain_25m", "webvid", "cc3m",
            "cc12m", "coco", "vg", "sbu"} <= set(names)
    assert names["video_text_pretrain"] is VideoTextPretrainDataModule


def test_official_defaults() -> None:
    didemo = DiDeMoDataModule("/data/didemo")
    assert (didemo.max_text_length, didemo.paragraph, didemo.trimmed30, didemo.hparams.num_frames) == (64, True, True,
                                                                                                        12)
    assert didemo.eval_sources["test"].annotation.endswith("didemo_ret_test.json")
    ssv2 = SSv2LabelDataModule("/data/ssv2")
    assert (ssv2.max_text_length, ssv2.hparams.positives, ssv2.paragraph) == (25, "caption", False)
    msrvtt = MSRVTTDataModule("/data/msrvtt", batch_size=8)
    assert (msrvtt.max_text_length, msrvtt.hparams.train_annotation, msrvtt.hparams.batch_size) == (
        32, "msrvtt_ret_train9k.json", 8)


def test_multi_caption_pairs_and_ground_truth(tmp_path: Path) -> None:
    annotation = _write_json(tmp_path / "a.json", [
        {"video": "a.mp4", "caption": ["A dog, runs!", "the-dog  runs"]},
        {"video": "b.mp4", "caption": "A cat."},
        {"video": "a.mp4", "caption": "again a dog"},
    ])
    entries = read_captions(annotation, "/media")
    pairs = training_pairs(entries)
    assert [(p.caption, p.id) for p in pairs] == [("a dog runs", 0), ("the dog runs", 0), ("a cat", 1),
                                                  ("again a dog", 0)]
    assert pairs[0].media == Media(Path("/media/a.mp4"), "video")
    split = retrieval_split(entries)
    assert [m.path.name for m in split.media] == ["a.mp4", "b.mp4"]  # a.mp4 listed twice: one media position
    assert split.texts == ["a dog runs", "the dog runs", "a cat", "again a dog"]
    assert split.ground_truth == [[0], [0], [1], [0]]


def test_paragraph_and_many_videos_per_caption(tmp_path: Path) -> None:
    paragraphs = read_captions(_write_json(tmp_path / "p.json", [
        {"video": "a.mp4", "caption": ["First part.", "Second (part)!"]}, {"video": "b.mp4", "caption": ["Only"]}]))
    assert retrieval_split(paragraphs, paragraph=True).texts == ["first part second part", "only"]
    assert [p.caption for p in training_pairs(paragraphs, paragraph=True)] == ["first part second part", "only"]
    labels = read_captions(_write_json(tmp_path / "l.json", [
        {"video": ["x.mp4", "y.mp4"], "caption": "Pushing something"}, {"video": ["z.mp4"], "caption": "Pulling"}]))
    split = retrieval_split(labels)
    assert split.texts == ["pushing something", "pulling"] and split.ground_truth == [[0, 1], [2]]
    train = read_captions(_write_json(tmp_path / "t.json", [
        {"video": "x.mp4", "caption": "Pushing"}, {"video": "z.mp4", "caption": "Pulling"},
        {"video": "y.mp4", "caption": "Pushing"}]))
    assert [p.id for p in training_pairs(train, positives="caption")] == [0, 1, 0]
    assert [p.id for p in training_pairs(train, positives="media")] == [0, 1, 2]


@pytest.mark.parametrize(("text", "message"), [
    ('[{"video": "a.mp4", "caption": "x"},', r"bad\.json: not valid JSON \(.* line 1 column"),
    ('{"video": "a.mp4"}', r"bad\.json: expected a JSON list of entries, got dict"),
    ("[]", r"bad\.json: no entries"),
    ('[{"video": "a.mp4", "caption": "x"}, {"video": "b.mp4"}]', r"bad\.json: entry 1: no 'caption'"),
    ('[{"video": "a.mp4", "caption": []}]', r"entry 0: 'caption' must be a string or a non-empty list"),
    ('[{"video": "a.mp4", "image": "b.jpg", "caption": "x"}]', r"entry 0: needs exactly one of 'video' or 'image'"),
    ('[{"video": "a.mp4", "caption": "x", "start": 3, "end": 2}]', r"entry 0: 'end' \(2.0\) must be after"),
    ('["a.mp4"]', r"entry 0: expected an object"),
])
def test_malformed_annotations_name_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_captions(tmp_path / "bad.json")


def test_segments_and_trimming() -> None:
    clip = Media(Path("v.mp4"), "video", start=1.0, end=2.0)
    assert frame_range(clip, 100, 25.0, trimmed30=False) == (25, 50)
    assert frame_range(Media(Path("v.mp4"), "video"), 1000, 25.0, trimmed30=True) == (0, 750)
    assert frame_range(Media(Path("v.mp4"), "video"), 700, 25.0, trimmed30=True) == (0, 700)
    with pytest.raises(VideoError, match="holds no frame"):
        frame_range(Media(Path("v.mp4"), "video", start=5.0), 100, 25.0, trimmed30=False)
    with pytest.raises(VideoError, match="needs a video with a frame rate"):
        frame_range(clip, 100, 0.0, trimmed30=False)


def test_retrieval_datamodule_batches(data: Path) -> None:
    _write_json(data / "msrvtt_ret_train9k.json", [
        {"video": "v0.mp4", "caption": "A Man, sings!"}, {"video": "v0.mp4", "caption": "Someone-singing"},
        {"video": "v1.mp4", "caption": "A dog"}, {"video": "v2.mp4", "caption": "A cat"}])
    _write_json(data / "msrvtt_ret_test1k.json", [{"video": f"v{i}.mp4", "caption": f"Clip #{i}."} for i in range(3)])
    module = MSRVTTDataModule(data, **SMALL)
    module.prepare_data()
    batches = list(module.train_dataloader())
    assert len(batches) == 2
    batch = batches[0]
    assert batch["video"].shape == (2, 3, 4, 32, 32) and batch["video"].dtype == torch.float32
    assert batch["index"].dtype == torch.long and batch["media"] == "video" and not batch["replaced"].any()
    seen = {(c, int(i)) for b in batches for c, i in zip(b["caption"], b["index"], strict=True)}
    assert seen == {("a man sings", 0), ("someone singing", 0), ("a dog", 1), ("a cat", 2)}
    assert module.retrieval_texts("test") == ["clip 0", "clip 1", "clip 2"]
    assert module.retrieval_ground_truth("validate") == [[0], [1], [2]]
    test = list(module.test_dataloader())
    assert [b["index"].tolist() for b in test] == [[0, 1], [2]]
    assert test[0]["video"].shape == (2, 3, 4, 32, 32)
    again = next(iter(module.test_dataloader()))["video"]
    assert torch.equal(again, test[0]["video"])  # "middle" sampling and resize: evaluation is deterministic


def test_multi_caption_paragraph_and_multi_video_datamodules(data: Path) -> None:
    _write_json(data / "msvd_ret_train.json", [{"video": "v0.mp4", "caption": ["One", "Two"]},
                                               {"video": "v1.mp4", "caption": ["Three"]}])
    _write_json(data / "msvd_ret_test.json", [{"video": "v2.mp4", "caption": ["A", "B"]},
                                              {"video": "v3.mp4", "caption": ["C"]}])
    msvd = MSVDDataModule(data, **SMALL)
    assert [(p.caption, p.id) for p in msvd.train_dataset().pairs] == [("one", 0), ("two", 0), ("three", 1)]
    assert msvd.retrieval_ground_truth("test") == [[0], [0], [1]]
    for name in ("didemo_ret_train.json", "didemo_ret_val.json", "didemo_ret_test.json"):
        _write_json(data / name, [{"video": "v4.mp4", "caption": ["Part one.", "Part two."]},
                                  {"video": "v5.mp4", "caption": ["Other"]}])
    didemo = DiDeMoDataModule(data, **SMALL)
    assert len(didemo.train_dataset()) == 2 and didemo.retrieval_texts("val") == ["part one part two", "other"]
    assert next(iter(didemo.val_dataloader()))["index"].tolist() == [0, 1]
    _write_json(data / "ssv2_ret_label_train.json", [{"video": f"v{i}.mp4", "caption": "Label " + "ab"[i % 2]}
                                                     for i in range(4)])
    _write_json(data / "ssv2_ret_label_val_small.json", [{"video": ["v0.mp4", "v2.mp4"], "caption": "Label a"},
                                                         {"video": ["v1.mp4"], "caption": "Label b"}])
    ssv2 = SSv2LabelDataModule(data, **SMALL)
    ssv2.prepare_data()
    assert [p.id for p in ssv2.train_dataset().pairs] == [0, 1, 0, 1]
    assert ssv2.retrieval_ground_truth("test") == [[0, 1], [2]]
    assert next(iter(ssv2.test_dataloader()))["video"].shape == (2, 3, 4, 32, 32)


def test_image_text_datamodule(data: Path) -> None:
    _write_json(data / "cc3m_train.json", [{"image": f"img{i}.{'png' if i % 2 else 'jpg'}", "caption": f"Photo {i}!"}
                                           for i in range(4)])
    module = CC3MDataModule(data, **SMALL)
    module.prepare_data()
    batches = list(module.train_dataloader())
    assert len(batches) == 2 and all(b["media"] == "image" for b in batches)
    assert batches[0]["video"].shape == (2, 3, 1, 32, 32)
    assert sorted(c for b in batches for c in b["caption"]) == ["photo 0", "photo 1", "photo 2", "photo 3"]


def test_unreadable_video_is_replaced_by_a_whole_pair(data: Path) -> None:
    entries = read_captions(_write_json(data / "bad_train.json", [
        {"video": "broken.mp4", "caption": "broken"}, {"video": "v0.mp4", "caption": "zero"},
        {"video": "v1.mp4", "caption": "one"}]))
    dataset = CaptionPairDataset(training_pairs(entries), 4, stage2_train_transform(32))
    item = dataset[0]
    assert item["replaced"] and (item["caption"], item["index"]) in {("zero", 1), ("one", 2)}
    assert dataset.failures == 1 and not dataset[1]["replaced"]


def _pretrain(data: Path, seed: int) -> VideoTextPretrainDataModule:
    _write_json(data / "pt_videos.json", [{"video": f"v{i}.mp4", "caption": f"video {i}"} for i in range(6)])
    _write_json(data / "pt_images.json", [{"image": f"cc3m/img{i}.{'png' if i % 2 else 'jpg'}",
                                           "caption": f"image {i}"} for i in range(4)])
    return VideoTextPretrainDataModule([Corpus(str(data / "pt_videos.json"), str(data))],
                                       [Corpus(str(data / "pt_images.json"), str(data))], seed=seed,
                                       **SMALL | {"batch_size": 2, "image_batch_size": 1})


def _summary(batches: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
    return [(b["media"], tuple(b["caption"])) for b in batches]


def test_interleaving_covers_all_batches_once_and_is_seeded(data: Path) -> None:
    module = _pretrain(data, seed=1)
    module.prepare_data()
    loader = module.train_dataloader()
    assert len(loader) == 3 + 4
    epoch = list(loader)
    assert Counter(b["media"] for b in epoch) == {"video": 3, "image": 4}
    captions = Counter(c for b in epoch for c in b["caption"])
    assert captions == Counter([f"video {i}" for i in range(6)] + [f"image {i}" for i in range(4)])
    assert all(b["video"].shape[2] == (4 if b["media"] == "video" else 1) for b in epoch)
    assert len({int(i) for b in epoch if b["media"] == "video" for i in b["index"]}) == 6  # distinct media ids
    orders = {seed: [m for m, _ in _summary(list(_pretrain(data, seed).train_dataloader()))] for seed in (1, 2, 3)}
    assert [b["media"] for b in epoch] == orders[1]  # same seed, same order
    assert len({tuple(order) for order in orders.values()}) > 1
    second = list(loader)
    assert _summary(second) != _summary(epoch) and Counter(b["media"] for b in second) == {"video": 3, "image": 4}


def test_interleaved_loader_resumes_mid_epoch(data: Path) -> None:
    reference = _pretrain(data, seed=4).train_dataloader()
    full = list(reference) + list(reference)
    loader = _pretrain(data, seed=4).train_dataloader()
    iterator = iter(loader)
    head = [next(iterator) for _ in range(3)]
    state = loader.state_dict()
    resumed = _pretrain(data, seed=4).train_dataloader()
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert _summary(head + rest) == _summary(full)
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(head + rest, full, strict=True))


class _Recorder(L.LightningModule):
    """Trains one weight on the batches and records what each training step saw."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3))
        self.seen: list[tuple[int, str, tuple[str, ...]]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, batch["media"], tuple(batch["caption"])))
        return (self.weight * batch["video"].mean((0, 2, 3, 4))).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(datamodule: L.LightningDataModule, epochs: int, checkpoints: Path | None = None,
         resume: Path | None = None) -> list[tuple[int, str, tuple[str, ...]]]:
    callbacks = [ModelCheckpoint(checkpoints, filename="{step}", every_n_train_steps=1, save_top_k=-1)] if (
        checkpoints) else []
    recorder = _Recorder()
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=bool(checkpoints), callbacks=callbacks,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        limit_val_batches=0)
    trainer.fit(recorder, datamodule=datamodule, ckpt_path=resume)
    return recorder.seen


def test_lightning_epochs_and_mid_epoch_resumption(data: Path, tmp_path: Path) -> None:
    """Two epochs of 7 interleaved steps; runs resumed from the checkpoints of steps 3 and 9 see the same batches."""
    full = _fit(_pretrain(data, seed=4), epochs=2, checkpoints=tmp_path)
    assert [epoch for epoch, _, _ in full] == [0] * 7 + [1] * 7
    assert Counter(media for epoch, media, _ in full if epoch == 1) == {"video": 3, "image": 4}
    assert [s[1:] for s in full[:7]] != [s[1:] for s in full[7:]]
    for step in (3, 9):
        assert full[:step] + _fit(_pretrain(data, seed=4), epochs=2, resume=tmp_path / f"step={step}.ckpt") == full


def test_lightning_retrieval_epochs_are_complete_and_reshuffled(data: Path) -> None:
    _write_json(data / "six.json", [{"video": f"v{i}.mp4", "caption": f"video {i}"} for i in range(6)])
    module = VideoTextDataModule(data, train_annotation="six.json", test_annotation=None, **SMALL)
    seen = _fit(module, epochs=3)
    epochs = [[captions for e, _, captions in seen if e == epoch] for epoch in range(3)]
    assert all(sorted(c for batch in epoch for c in batch) == [f"video {i}" for i in range(6)] for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]


def test_sharded_sampler_splits_one_permutation() -> None:
    shards = [list(ResumableRandomSampler(10, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert all(len(shard) == 3 for shard in shards)
    items = [item for shard in shards for item, _ in shard]
    assert len(set(items)) == 9
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003)).tolist()
    assert [item for item, _ in shards[1]] == order[1:9:3]


def test_interleaved_loader_rejects_a_loader_longer_than_its_length() -> None:
    class Liar(list):
        def __len__(self) -> int:
            return 1

    with pytest.raises(RuntimeError, match="more batches than its length"):
        list(InterleavedLoader({"video": Liar([1, 2])}))


def test_synthetic_video_text(tmp_path: Path) -> None:
    module = SyntheticVideoTextDataModule(tmp_path / "synthetic", train_size=4, val_size=2, test_size=2,
                                          num_classes=2, batch_size=2, num_workers=0, img_size=32)
    module.prepare_data()
    batch = next(iter(module.train_dataloader()))
    assert batch["video"].shape == (2, 3, 4, 32, 32) and batch["media"] == "video"
    assert all(c == c.lower() and "," not in c for c in batch["caption"])
    assert len(module.retrieval_texts("val")) == 2 and module.retrieval_ground_truth("test") == [[0], [1]]


def test_generic_datamodule_without_splits_is_a_clear_error(tmp_path: Path) -> None:
    module = VideoTextDataModule(tmp_path, train_annotation="missing.json", test_annotation=None)
    with pytest.raises(FileNotFoundError, match=r"missing\.json: annotation file not found"):
        module.prepare_data()
    with pytest.raises(RuntimeError, match="no test split"):
        module.retrieval_texts("test")
    assert module.val_dataloader() == []

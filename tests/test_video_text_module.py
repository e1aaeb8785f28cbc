"""Stage 2 on ``UMTModule`` with the ``alignment`` and ``video_text`` heads: loss subsets train their parts, the
teacher stays out, retrieval matches the reference, checkpoints initialise the encoder and the heads."""

from __future__ import annotations

from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from vt_helpers import (
    TEACHER,
    VISION,
    encoder_config,
    minilm_folder,
    step_losses,
    text_config,
    tiny_module,
    tiny_options,
)

from umt.heads.alignment import AlignmentHead
from umt.heads.video_text import LossWeights, VideoTextHead
from umt.losses import video_text_similarity
from umt.models.text import TextEncoder
from umt.models.video_text import VideoTextConfig, VideoTextModel
from umt.module import UMTModule
from umt.options import EncoderConfig, MaskingConfig, TeacherSpec
from umt.retrieval import evaluate_retrieval, ground_truth

CAPTIONS = ["a red square moves left", "a blue circle grows", "a green triangle fades in", "a red star spins",
            "a yellow square falls", "a blue star rises"]
LOSS_KEYS = {"uta": "alignment/uta", "vtc": "video_text/vtc", "vtm": "video_text/vtm", "mlm": "video_text/mlm"}
"""Where each stage-2 loss now lives: ``{head}/{loss}`` (logged as ``train/{head}/{loss}``)."""


def train_batch(frames: int = 4, size: int = 6) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"video": torch.randn(size, 3, frames, 32, 32, generator=generator), "caption": CAPTIONS[:size],
            "index": torch.tensor([0, 1, 2, 3, 4, 0][:size]), "media": "video" if frames > 1 else "image"}


def grad_norm(module: torch.nn.Module | None) -> float:
    if module is None:
        return 0.0
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("losses", [("uta",), ("vtc",), ("vtm",), ("mlm",), ("uta", "vtc", "vtm", "mlm")])
def test_each_loss_subset_trains_its_parts(losses: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    module = tiny_module(losses={name: float(name in losses) for name in LOSS_KEYS}, teacher="uta" in losses)
    out = step_losses(module, train_batch())
    assert set(out) == {*(LOSS_KEYS[name] for name in losses), "loss"}
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    out["loss"].backward()
    tower = module.heads["video_text"].tower
    assert (grad_norm(dict(module.heads).get("alignment")) > 0) == ("uta" in losses)
    assert (grad_norm(tower.itm_head) > 0) == ("vtm" in losses)
    assert (grad_norm(tower.text_proj) > 0) == ("vtc" in losses)
    assert (grad_norm(tower.text_encoder.cls.predictions.transform) > 0) == ("mlm" in losses)
    assert grad_norm(module.encoder) > 0
    assert module.teacher is None or all(p.grad is None for p in module.teacher.parameters())


def test_images_use_their_mask_ratio_and_the_temperature_is_clamped() -> None:
    module = tiny_module(masking=MaskingConfig(video_ratio=0.75, image_ratio=0.5))
    tower = module.heads["video_text"].tower
    with torch.no_grad():
        tower.temp.fill_(5.0)
        step = module.encode(train_batch(frames=1)["video"], train=True)
        assert step.mask.shape == (6, 4) and (~step.mask).sum(1).tolist() == [2] * 6
        assert step.targets.shape == (2, 6, 2, 16)
        step = module.encode(train_batch()["video"], train=True)
        assert (~step.mask).sum(1).tolist() == [4] * 6  # one of the 4 tokens of each of the 4 frames
        step = module.encode(train_batch()["video"], train=False)  # evaluation: every token, no teacher
        assert step.mask is None and step.targets is None and step.tokens.shape == (6, 16, 48)
    out = step_losses(module, train_batch(frames=1))
    assert torch.isfinite(out["loss"]) and float(tower.temp.detach()) == 0.5


def test_heads_are_plugins_and_impossible_settings_are_rejected() -> None:
    (entry,) = entry_points(group="umt.heads", name="video_text")
    assert entry.load() is VideoTextHead
    (entry,) = entry_points(group="umt.heads", name="alignment")
    assert entry.load() is AlignmentHead
    assert list(tiny_module().heads) == ["alignment", "video_text"]  # named by entry point
    options = tiny_options(teacher=True)
    with pytest.raises(ValueError, match="needs a teacher"):  # UTA without a teacher
        UMTModule(**(options | {"teacher": None}))
    with pytest.raises(ValueError, match="unknown heads"):
        UMTModule(**(options | {"loss_weights": {"itc": 1.0}}))
    with pytest.raises(TypeError):
        LossWeights(itc=1.0)
    with pytest.raises(ValueError, match="teacher grid"):
        UMTModule(**(options | {"teacher": TeacherSpec("clip_b16", **(TEACHER | {"image_size": 64}))}))


class Retrieval(L.LightningDataModule):
    """Random media and texts; some texts have two ground-truth media."""

    def __init__(self, num_media: int = 7) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(2)
        self.videos = torch.randn(num_media, 3, 4, 32, 32, generator=generator)
        self.texts = [f"clip number {i} with a {c}" for i, c in enumerate(["cat", "dog", "car", "bus", "sun"] * 2)]
        self.truth = [[i % num_media] if i % 3 else [i % num_media, (i + 1) % num_media]
                      for i in range(len(self.texts))]

    def test_dataloader(self) -> DataLoader:
        items = [{"video": v, "index": i} for i, v in enumerate(self.videos)]
        return DataLoader(items, batch_size=3)

    def retrieval_texts(self, stage: str) -> list[str]:
        return self.texts

    def retrieval_ground_truth(self, stage: str) -> list[list[int]]:
        return self.truth


def as_video_text_model(module: UMTModule) -> VideoTextModel:
    """The module's encoder and video-text head as a standalone ``VideoTextModel`` (official key layout)."""
    head = module.heads["video_text"]
    config = VideoTextConfig(module.encoder.config, head.tower.text_config, head.tower.vision_proj.out_features)
    model = VideoTextModel(config)
    state = {f"vision_encoder.encoder.{k}": v for k, v in module.encoder.state_dict().items()}
    state |= {f"vision_encoder.head.fc_norm.{k}": v for k, v in head.pool_norm.state_dict().items()}
    model.load_state_dict(state | head.tower.state_dict(), strict=True)
    return model


def test_evaluation_matches_the_reference_retrieval(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_module(teacher=False, k_test=3)
    data = Retrieval()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (logged,) = trainer.test(module, datamodule=data)
    head = module.heads["video_text"]
    model = as_video_text_model(module).eval()
    with torch.no_grad():
        tokens, pooled = model.encode_video(data.videos, per_frame=True)
        ids, mask = head.tokenize(data.texts, torch.device("cpu"))
        states = model.encode_text(ids, mask)
        itc = video_text_similarity(model.video_embedding(pooled), model.text_embedding(states))

        def itm(video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
            return model.itm_logits(tokens[video], states[text], mask[text])[:, 1]

        report = evaluate_retrieval(itc, ground_truth(data.truth, 7), itm, k=3)
    for prefix, expected in (("test/video_text/", report.itm), ("test/video_text/itc_", report.itc)):
        for key, value in expected.items():
            assert logged[prefix + key] == pytest.approx(float(value), abs=1e-4), prefix + key
    assert report.itm != report.itc  # re-ranking changed something, so both paths were compared


def _trainer(tmp_path: Path, steps: int, **options) -> L.Trainer:
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **options)


def _loader() -> DataLoader:
    batch = train_batch()
    items = [{k: batch[k][i] for k in ("video", "caption", "index")} for i in range(6)]

    def collate(rows: list[dict]) -> dict:
        return {"video": torch.stack([r["video"] for r in rows]), "caption": [r["caption"] for r in rows],
                "index": torch.stack([r["index"] for r in rows]), "media": "video"}

    return DataLoader(items, batch_size=3, collate_fn=collate)


def test_a_head_with_every_loss_weight_zero_does_not_train(tmp_path: Path) -> None:
    """A video-text head whose VTC, VTM and MLM weights are all 0 but whose loss weight is not (old module: "every
    loss weight is 0: nothing to train") is rejected with that reason, not at the first backward pass."""
    options = tiny_options(teacher=False, losses={"vtc": 0.0, "vtm": 0.0})
    module = UMTModule(**(options | {"loss_weights": None}))  # the head's own weight left at 1
    with pytest.raises(ValueError, match="nothing to train"):
        _trainer(tmp_path, 1, enable_checkpointing=False).fit(module, train_dataloaders=_loader())


def test_teacher_stays_frozen_and_out_of_checkpoints(tmp_path: Path) -> None:
    module = tiny_module()
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, train_dataloaders=_loader())
    assert {f"train/{key}" for key in LOSS_KEYS.values()} | {"train/loss", "train/video_text/temp"} <= set(
        trainer.callback_metrics)
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in module.teacher.parameters()}
    assert optimized >= {id(p) for p in module.heads.parameters()} | {id(p) for p in module.encoder.parameters()}
    assert all(torch.equal(v, module.teacher.state_dict()[k]) for k, v in teacher_before.items())
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    saved = torch.load(checkpoint, weights_only=True)  # plain: no pickled objects
    prefixes = ("encoder.", "heads.alignment.", "heads.video_text.pool_norm.", "heads.video_text.tower.")
    assert all(k.startswith(prefixes) for k in saved["state_dict"])
    assert all(any(k.startswith(p) for k in saved["state_dict"]) for p in prefixes)
    assert saved["umt_teacher"] == {"name": "clip_b16", "weights": None}
    assert {name: entry["class_path"] for name, entry in saved["umt_heads"].items()} == {
        "alignment": "umt.heads.alignment.AlignmentHead", "video_text": "umt.heads.video_text.VideoTextHead"}
    assert saved["umt_heads"]["video_text"]["options"] == {"tokenizer": str(minilm_folder()), "max_length": 32}
    assert [spec["class_path"] for spec in saved["hyper_parameters"]["heads"]] == [
        "umt.heads.alignment.AlignmentHead", "umt.heads.video_text.VideoTextHead"]
    restored = UMTModule.load_from_checkpoint(checkpoint)  # heads from the checkpoint; strict: the teacher is put back
    assert list(restored.heads) == ["alignment", "video_text"] and restored.teacher is not None
    assert restored.heads["video_text"].tower.text_config == module.heads["video_text"].tower.text_config
    torch.testing.assert_close(restored.heads["video_text"].tower.itm_head.weight,
                               module.heads["video_text"].tower.itm_head.weight)
    finetune = tiny_module(teacher=False, bert=False, checkpoint=str(checkpoint))  # retrieval fine-tuning init
    assert finetune.heads["video_text"].weights == LossWeights(vtc=1, vtm=1, mlm=0) and finetune.teacher is None
    assert list(finetune.heads) == ["video_text"]
    torch.testing.assert_close(finetune.encoder.state_dict(), module.encoder.state_dict())
    torch.testing.assert_close(finetune.heads["video_text"].state_dict(), module.heads["video_text"].state_dict())


def test_lr_groups_warm_up_then_decay(tmp_path: Path) -> None:
    module = tiny_module(teacher=False, lr=1e-3, text_lr=2e-3, warmup_epochs=1, min_lr_ratio=0.01)
    text_ids = {id(p) for p in module.heads["video_text"].tower.text_encoder.parameters()}
    rates: list[tuple[float, ...]] = []

    class Recorder(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # the lr of this step
            rates.append(tuple(g["lr"] for g in optimizer.param_groups))

    trainer = _trainer(tmp_path, -1, max_epochs=3, callbacks=[Recorder()], enable_checkpointing=False)
    trainer.fit(module, train_dataloaders=_loader())
    groups = trainer.optimizers[0].param_groups
    assert {id(p) for g in groups for p in g["params"]} >= text_ids
    text_groups = []
    for group in groups:
        is_text = {id(p) in text_ids for p in group["params"]}
        assert len(is_text) == 1
        text_groups.append(is_text.pop())
        assert group["peak_lr"] == pytest.approx(2e-3 if text_groups[-1] else 1e-3)
        assert group["weight_decay"] == (0.02 if all(p.ndim > 1 for p in group["params"]) else 0.0)
    assert any(text_groups) and not text_groups[0]  # the encoder's groups come first
    assert len(rates) == 6
    assert rates[0][0] == pytest.approx(1e-3 * 0.01) and rates[2][0] == pytest.approx(1e-3)  # 2 warm-up steps
    assert rates[-1][0] < rates[3][0] and min(r[0] for r in rates) >= 1e-5 - 1e-12
    for step in rates:
        for lr, is_text in zip(step, text_groups, strict=True):
            assert lr == pytest.approx(step[0] * (2 if is_text else 1))


def test_init_from_a_stage1_student_and_bert(tmp_path: Path) -> None:
    stage1 = UMTModule([partial(AlignmentHead, num_layers=2)], encoder=EncoderConfig(
        **VISION, final_norm=True, pos_embed="extend", init="xavier"), teacher=TeacherSpec("clip_b16", **TEACHER))
    official = {f"encoder.{k}": v for k, v in stage1.encoder.state_dict().items()}
    official |= {f"clip_decoder.{k.removeprefix('heads.')}": v
                 for k, v in stage1.heads["alignment"].state_dict().items()}
    torch.save({"model": official}, tmp_path / "stage1.pth")
    module = tiny_module(checkpoint=str(tmp_path / "stage1.pth"))
    torch.testing.assert_close(module.encoder.state_dict(), stage1.encoder.state_dict())
    torch.testing.assert_close(module.heads["alignment"].state_dict(), stage1.heads["alignment"].state_dict())
    bert = TextEncoder(text_config(encoder_width=VISION["embed_dim"]))
    fresh = set(bert.load_bert(minilm_folder()))
    loaded = module.heads["video_text"].tower.text_encoder.state_dict()
    assert fresh and all(".crossattention." in k or k.startswith("cls.") for k in fresh)
    for key, value in bert.state_dict().items():  # the text side is the BERT's
        if key not in fresh:
            torch.testing.assert_close(loaded[key], value, msg=key)


def test_init_from_an_official_stage2_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = VideoTextConfig(encoder_config().model_config(), text_config(encoder_width=VISION["embed_dim"]), 32)
    source = VideoTextModel(config)
    official = {k.replace("vision_encoder.head.fc_norm.", "vision_encoder.pool_norm."): v
                for k, v in source.state_dict().items()}
    torch.save({"model": official | {"clip_teacher.proj": torch.zeros(2, 2)}}, tmp_path / "b16_25m.pth")
    for bert in (False, True):  # the file's text side wins over a BERT folder
        module = tiny_module(teacher=False, bert=bert, checkpoint=str(tmp_path / "b16_25m.pth"))
        torch.testing.assert_close(as_video_text_model(module).state_dict(), source.state_dict())

"""Stage-2 head and module: loss subsets train their parts, the teacher stays out, retrieval matches the reference."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from vt_helpers import TEACHER, VISION, tiny_module

from umt.heads.video_text import LossWeights, VideoTextHead
from umt.losses import video_text_similarity
from umt.module import UMTPretrainModule
from umt.retrieval import evaluate_retrieval, ground_truth
from umt.video_text_module import VideoTextModule

CAPTIONS = ["a red square moves left", "a blue circle grows", "a green triangle fades in", "a red star spins",
            "a yellow square falls", "a blue star rises"]


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
    module = tiny_module(loss_weights={name: float(name in losses) for name in ("uta", "vtc", "vtm", "mlm")},
                         teacher="clip_b16" if "uta" in losses else None)
    out = module.head.losses(module.model, train_batch(), module.teacher, torch.Generator().manual_seed(0))
    assert set(out) == {*losses, "loss"}
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    out["loss"].backward()
    model = module.model
    assert (grad_norm(module.head.alignment) > 0) == ("uta" in losses)
    assert (grad_norm(model.itm_head) > 0) == ("vtm" in losses)
    assert (grad_norm(model.text_proj) > 0) == ("vtc" in losses)
    assert (grad_norm(model.text_encoder.cls.predictions.transform) > 0) == ("mlm" in losses)
    assert grad_norm(model.vision_encoder.encoder) > 0
    assert module.teacher is None or all(p.grad is None for p in module.teacher.parameters())


def test_images_use_their_mask_ratio_and_the_temperature_is_clamped() -> None:
    module = tiny_module(image_mask_ratio=0.5, video_mask_ratio=0.75)
    with torch.no_grad():
        module.model.temp.fill_(5.0)
    head = module.head
    mask, targets = head.teacher_targets(module.teacher, train_batch(frames=1)["video"], None)
    assert mask.shape == (6, 4) and (~mask).sum(1).tolist() == [2] * 6 and targets.shape == (2, 6, 2, 16)
    mask, _ = head.teacher_targets(module.teacher, train_batch()["video"], None)
    assert (~mask).sum(1).tolist() == [4] * 6  # one of the 4 tokens of each of the 4 frames
    out = head.losses(module.model, train_batch(frames=1), module.teacher)
    assert torch.isfinite(out["loss"]) and float(module.model.temp.detach()) == 0.5


def test_head_is_a_plugin_and_rejects_impossible_settings() -> None:
    (entry,) = entry_points(group="umt.heads", name="video_text")
    assert entry.load() is VideoTextHead
    tokenizer = tiny_module(teacher=None).head.tokenizer
    with pytest.raises(ValueError, match="needs a teacher"):
        VideoTextHead(tokenizer, weights=LossWeights(), embed_dim=48, num_positions=16, depth=2)
    with pytest.raises(ValueError, match="nothing to train"):
        VideoTextHead(tokenizer, weights=LossWeights(0, 0, 0, 0), embed_dim=48, num_positions=16, depth=2)
    with pytest.raises(ValueError, match="unknown loss names"):
        tiny_module(loss_weights={"itc": 1.0})


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


def test_evaluation_matches_the_reference_retrieval(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_module(teacher=None, k_test=3)
    data = Retrieval()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (logged,) = trainer.test(module, datamodule=data)
    model = module.model.eval()
    with torch.no_grad():
        tokens, pooled = model.encode_video(data.videos, per_frame=True)
        texts = module.head.text_features(model, data.texts, torch.device("cpu"))
        itc = video_text_similarity(model.video_embedding(pooled), texts.embeddings)

        def itm(video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
            return model.itm_logits(tokens[video], texts.states[text], texts.mask[text])[:, 1]

        report = evaluate_retrieval(itc, ground_truth(data.truth, 7), itm, k=3)
    for prefix, expected in (("test/", report.itm), ("test_emb/", report.itc)):
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


def test_teacher_stays_frozen_and_out_of_checkpoints(tmp_path: Path) -> None:
    module = tiny_module()
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, train_dataloaders=_loader())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in module.teacher.parameters()}
    assert optimized >= {id(p) for p in module.head.alignment.parameters()}
    assert all(torch.equal(v, module.teacher.state_dict()[k]) for k, v in teacher_before.items())
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    saved = torch.load(checkpoint, weights_only=True)
    assert not [k for k in saved["state_dict"] if k.startswith("teacher.")]
    assert saved["umt_teacher"] == {"name": "clip_b16", "weights": None}
    restored = VideoTextModule.load_from_checkpoint(checkpoint)  # strict: the teacher is put back
    torch.testing.assert_close(restored.model.itm_head.weight, module.model.itm_head.weight)
    finetune = tiny_module(teacher=None, bert=None, checkpoint=str(checkpoint))  # retrieval fine-tuning init
    assert finetune.head.weights == LossWeights(uta=0, vtc=1, vtm=1, mlm=0) and finetune.teacher is None
    torch.testing.assert_close(finetune.model.state_dict(), module.model.state_dict())


def test_lr_groups_warm_up_then_decay(tmp_path: Path) -> None:
    module = tiny_module(teacher=None, lr=1e-3, text_lr=2e-3, warmup_epochs=1, min_lr_ratio=0.01)
    rates: list[tuple[float, ...]] = []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            rates.append(tuple(g["lr"] for g in trainer.optimizers[0].param_groups))

    trainer = _trainer(tmp_path, -1, max_epochs=3, callbacks=[Recorder()], enable_checkpointing=False)
    trainer.fit(module, train_dataloaders=_loader())
    groups = trainer.optimizers[0].param_groups
    text_ids = {id(p) for p in module.model.text_encoder.parameters()}
    for group in groups:
        is_text = {id(p) in text_ids for p in group["params"]}
        assert len(is_text) == 1 and group["initial_lr"] == (2e-3 if is_text.pop() else 1e-3)
        assert group["weight_decay"] == (0.02 if all(p.ndim > 1 for p in group["params"]) else 0.0)
    assert rates[0][0] == pytest.approx(1e-3 * 0.01) and rates[2][0] == pytest.approx(1e-3)  # 2 warm-up steps
    assert rates[-1][0] < rates[3][0] and min(r[0] for r in rates) >= 1e-5 - 1e-12


def test_init_from_a_stage1_student_and_bert(tmp_path: Path) -> None:
    stage1 = UMTPretrainModule(model_options=VISION, teacher_options=TEACHER, align_layers=2)
    official = {f"encoder.{k}": v for k, v in stage1.encoder.state_dict().items()}
    official |= {f"clip_decoder.{k.removeprefix('heads.')}": v for k, v in stage1.head.state_dict().items()}
    torch.save({"model": official}, tmp_path / "stage1.pth")
    module = tiny_module(student_checkpoint=str(tmp_path / "stage1.pth"))
    torch.testing.assert_close(module.model.vision_encoder.encoder.state_dict(), stage1.encoder.state_dict())
    torch.testing.assert_close(module.head.alignment.state_dict(), stage1.head.state_dict())
    with pytest.raises(ValueError, match="not both"):
        tiny_module(checkpoint=str(tmp_path / "stage1.pth"))


def test_init_from_an_official_stage2_file(tmp_path: Path) -> None:
    source = tiny_module(teacher=None).model
    official = {k.replace("vision_encoder.head.fc_norm.", "vision_encoder.pool_norm."): v
                for k, v in source.state_dict().items()}
    torch.save({"model": official | {"clip_teacher.proj": torch.zeros(2, 2)}}, tmp_path / "b16_25m.pth")
    module = tiny_module(teacher=None, bert=None, checkpoint=str(tmp_path / "b16_25m.pth"))
    torch.testing.assert_close(module.model.state_dict(), source.state_dict())

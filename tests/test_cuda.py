"""CUDA checks: the teacher's autocast and a stage-1 Lightning run in bf16 on a GPU (skipped without one)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from conftest import TINY
from umt.heads.alignment import AlignmentHead
from umt.heads.base import DataInfo
from umt.models.teacher import create_teacher
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig, TeacherSpec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SIZES = {k: v for k, v in TINY.items() if k != "num_classes"}
TEACHER = {"width": 64, "layers": 2, "heads": 2, "output_dim": 32, "patch_size": 8, "image_size": 32,
           "return_layers": 2}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_teacher_autocast_matches_fp32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    teacher = create_teacher("clip_b16", autocast_dtype=dtype, **TEACHER)
    video = torch.randn(2, 3, 4, 32, 32)
    reference = teacher(video)
    out = teacher.cuda()(video.cuda())
    assert out.features.dtype == torch.float32 and out.features.device.type == "cuda", out.features.dtype
    cosine = F.cosine_similarity(out.features.cpu(), reference.features, dim=-1)
    assert cosine.min() > 0.99, cosine.min()
    torch.testing.assert_close(out.cls_attention.cpu(), reference.cls_attention, atol=2e-2, rtol=0)
    assert (out.cls_attention.sum(-1) <= 1 + 1e-3).all()  # the CLS token's share of itself is left out


def test_pretrain_bf16_on_gpu_loss_falls() -> None:
    torch.manual_seed(0)
    module = UMTModule([AlignmentHead], encoder=EncoderConfig(**{**SIZES, "img_size": 32, "patch_size": 8},
                                                              final_norm=True, pos_embed="extend", init="xavier"),
                       teacher=TeacherSpec(**TEACHER), optimizer=OptimizerConfig(lr=0.5, min_lr=0.0, warmup_epochs=0),
                       data_info=DataInfo(clips_per_step=4))
    videos = torch.randn(4, 3, 4, 32, 32)
    data = DataLoader([{"video": v} for v in videos] * 10, batch_size=4)
    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(accelerator="cuda", devices=1, precision="bf16-mixed", max_epochs=5, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[Record()])
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    trainer.fit(module, data)
    assert len(losses) == 50 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses
    for key, value in module.teacher.state_dict().items():
        torch.testing.assert_close(value.cpu(), teacher_before[key], atol=0, rtol=0)

"""Sharded training: the FSDP and DeepSpeed overlays of the UMT-L/16 recipes parse, the optimizer keeps its
weight-decay groups when a strategy flattens the parameters, and (CUDA only) a few steps of each strategy stay finite
and their checkpoint reloads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from conftest import TINY
from umt.cli import main
from umt.heads.alignment import AlignmentHead
from umt.heads.base import DataInfo
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig, TeacherSpec
from umt.strategies import UMTFSDPStrategy

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = {"fsdp.yaml": "umt.strategies.UMTFSDPStrategy",
            "deepspeed_zero2.yaml": "lightning.pytorch.strategies.DeepSpeedStrategy",
            "deepspeed_zero3.yaml": "lightning.pytorch.strategies.DeepSpeedStrategy"}
RECIPES = ("pretrain/umt_l16_k710.yaml", "finetune/k400_l16_f16.yaml")
SIZES = {k: v for k, v in TINY.items() if k != "num_classes"}
TEACHER = {"width": 64, "layers": 2, "heads": 2, "output_dim": 32, "patch_size": 8, "image_size": 32,
           "return_layers": 2}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize("recipe", RECIPES)
def test_overlays_parse_over_the_l16_recipes(recipe: str, overlay: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "recipes" / recipe), "--config", str(REPO / "recipes/sharded" / overlay),
              "--print_config"])
    out = capsys.readouterr().out
    config = yaml.safe_load(out[out.index("# lightning"):])  # deepspeed's import may log a line first
    strategy, encoder = config["trainer"]["strategy"], config["model"]["encoder"]
    assert strategy["class_path"] == OVERLAYS[overlay]
    assert strategy["init_args"].get("stage", 3 if "zero3" in overlay else 2) == (3 if "zero3" in overlay else 2)
    assert (encoder["size"], encoder["checkpoint_blocks"]) == ("umt_l16", 24)
    assert config["model"]["optimizer"]["lr"] == (1.5e-4 if recipe.startswith("pretrain") else 1e-5)  # kept


def tiny_stage1() -> UMTModule:
    return UMTModule([AlignmentHead], encoder=EncoderConfig(**{**SIZES, "img_size": 32, "patch_size": 8},
                                                            final_norm=True, pos_embed="extend", init="xavier"),
                     teacher=TeacherSpec(**TEACHER), optimizer=OptimizerConfig(lr=0.5, min_lr=0.0, warmup_epochs=0),
                     data_info=DataInfo(clips_per_step=4))


def decayed(optimizer: torch.optim.Optimizer) -> list[str]:
    return sorted(name for group in optimizer.param_groups if group["weight_decay"] for name in group["param_names"])


def test_weight_decay_groups_survive_flattened_parameters() -> None:
    """FSDP's ``use_orig_params`` turns every parameter into a 1-D shard before ``configure_optimizers``: the module's
    recorded dimensions keep the groups of the unwrapped model."""
    module = tiny_stage1()
    module.trainer = L.Trainer(accelerator="cpu", devices=1, logger=False)
    expected = decayed(module.configure_optimizers()["optimizer"])
    assert expected and all(name.endswith("weight") for name in expected)
    for parameter in module.parameters():
        parameter.data = parameter.data.flatten()
    assert decayed(module.configure_optimizers()["optimizer"]) == expected


def fit_briefly(strategy: object, tmp_path: Path) -> tuple[UMTModule, list[float], Path]:
    """8 bf16 steps of the tiny stage-1 module on one GPU under ``strategy``; its losses and last checkpoint."""
    torch.manual_seed(0)
    module = tiny_stage1()
    data = DataLoader([{"video": v} for v in torch.randn(4, 3, 4, 32, 32)] * 8, batch_size=4)
    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(accelerator="cuda", devices=1, strategy=strategy, precision="bf16-mixed", max_steps=8,
                        logger=False, enable_progress_bar=False, default_root_dir=tmp_path, callbacks=[Record()])
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    return module, losses, tmp_path / "last.ckpt"


@cuda
def test_fsdp_trains_and_its_checkpoint_reloads(tmp_path: Path) -> None:
    module, losses, path = fit_briefly(UMTFSDPStrategy(state_dict_type="full"), tmp_path)
    from torch.distributed.fsdp import FullyShardedDataParallel

    assert not any(isinstance(m, FullyShardedDataParallel) for m in module.teacher.modules())  # left whole
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses))), losses
    assert all(torch.isfinite(value.float()).all() for value in state.values())
    assert not [key for key in state if key.startswith("teacher.")]
    restored = UMTModule.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    for key, value in restored.state_dict().items():
        if not key.startswith("teacher."):
            torch.testing.assert_close(value, state[key].to(value.dtype), atol=0, rtol=0)


@cuda
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed (the deepspeed extra)")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_trains_and_its_checkpoint_reloads(stage: int, tmp_path: Path) -> None:
    from lightning.pytorch.strategies import DeepSpeedStrategy
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    _, losses, folder = fit_briefly(DeepSpeedStrategy(stage=stage), tmp_path)
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses))), losses
    single = tmp_path / "single.ckpt"
    convert_zero_checkpoint_to_fp32_state_dict(folder, single)
    state = torch.load(single, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.isfinite(value.float()).all() for value in state.values())
    restored = UMTModule.load_from_checkpoint(single, map_location="cpu", weights_only=False, strict=False)
    for key, value in restored.encoder.state_dict().items():
        torch.testing.assert_close(value, state["encoder." + key].to(value.dtype), atol=0, rtol=0)

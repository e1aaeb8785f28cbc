"""``umt fit|validate|test|predict``: LightningCLI over ``UMTModule`` and any data module, heads and data
modules named by entry-point name or class path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from umt.heads.base import DataInfo
from umt.module import UMTModule
from umt.plugins import resolve_class_paths

CONFIG_OPTIONS = ("-c", "--config")


def data_info(datamodule: L.LightningDataModule) -> DataInfo:
    """What ``datamodule`` states that the module needs: classes and clips per step (``batch_size *
    num_sample``) from its hyper-parameters or attributes."""
    options = dict(getattr(datamodule, "hparams", {}))
    classes = getattr(datamodule, "num_classes", options.get("num_classes"))
    batch = options.get("batch_size", getattr(datamodule, "batch_size", None))
    clips = None if batch is None else int(batch) * int(options.get("num_sample", 1))
    names = getattr(datamodule, "class_names", None)
    return DataInfo(None if classes is None else int(classes), clips, None if names is None else tuple(names))


def resolve_recipe(config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A parsed recipe with plugin names in ``model.heads[*].class_path`` and ``data.class_path`` replaced by class
    paths; whether anything changed."""
    changed = False
    model = config.get("model")
    if isinstance(model, dict):
        target = model.get("init_args", model)
        if isinstance(target, dict) and "heads" in target:
            target["heads"], changed = resolve_class_paths(target["heads"], "heads")
    data = config.get("data")
    if isinstance(data, dict) and "class_path" in data:
        resolved, data_changed = resolve_class_paths({"class_path": data["class_path"]}, "datamodules")
        data["class_path"] = resolved["class_path"]
        changed |= data_changed
    return config, changed


def resolve_arguments(args: list[str]) -> list[str]:
    """``args`` with every ``--config FILE`` whose recipe names plugins replaced by the resolved recipe text."""
    out: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        value = None
        if arg in CONFIG_OPTIONS and position + 1 < len(args):
            value, position = args[position + 1], position + 2
        elif arg.startswith("--config="):
            value, position = arg.split("=", 1)[1], position + 1
        else:
            out.append(arg)
            position += 1
            continue
        path = Path(value)
        if path.is_file():
            config = yaml.safe_load(path.read_text())
            if isinstance(config, dict):
                config, changed = resolve_recipe(config)
                if changed:
                    value = yaml.safe_dump(config, sort_keys=False)
        out += ["--config", value]
    return out


class UMTCLI(LightningCLI):
    """LightningCLI with ``UMTModule`` as the model; the data module's classes and clips per step are linked into
    ``model.data_info``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data", "model.data_info", compute_fn=data_info, apply_on="instantiate")


def run(args: list[str]) -> None:
    """Run LightningCLI on ``args`` (``fit --config RECIPE.yaml ...``)."""
    UMTCLI(UMTModule, L.LightningDataModule, subclass_mode_data=True, args=resolve_arguments(args),
           save_config_kwargs={"overwrite": True})

"""``umt fit|validate|test|predict``: LightningCLI over ``UMTModule`` and any data module, heads and data
modules named by entry-point name or class path."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from umt.checkpointing import SafeLastCheckpoint, check_complete, newest_last
from umt.errors import UsageError, one_line, reported
from umt.heads.base import DataInfo
from umt.loggers import run_loggers
from umt.module import UMTModule
from umt.parse_errors import OneLineErrors
from umt.plugins import resolve_class_paths

logger = logging.getLogger("umt")

CONFIG_OPTIONS = ("-c", "--config")
USAGE_ERRORS = (ValueError, OSError, "umt.data.decoding.VideoError",
                "lightning.fabric.utilities.exceptions.MisconfigurationException")
"""Errors of a LightningCLI run that are user mistakes (a wrong option, file or data), reported in one line."""


class UMTArgumentParser(OneLineErrors, LightningArgumentParser):
    """LightningCLI's parser with parse errors in one line (``umt.parse_errors``); every value is an option."""

    positional_required = False


def data_info(datamodule: L.LightningDataModule) -> DataInfo:
    """What ``datamodule`` states that the module needs: classes, clips per step (``batch_size * num_sample``)
    and the clips' frames and size from its hyper-parameters or attributes."""
    options = dict(getattr(datamodule, "hparams", {}))
    classes = getattr(datamodule, "num_classes", options.get("num_classes"))
    batch = options.get("batch_size", getattr(datamodule, "batch_size", None))
    clips = None if batch is None else int(batch) * int(options.get("num_sample", 1))
    names = getattr(datamodule, "class_names", None)
    frames, size = (options.get(key, getattr(datamodule, key, None)) for key in ("num_frames", "img_size"))
    return DataInfo(None if classes is None else int(classes), clips, None if names is None else tuple(names),
                    None if frames is None else int(frames), None if size is None else int(size))


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
            out.append(_resolved_option(arg, args[position - 1] if position else ""))
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


def _resolved_option(arg: str, previous: str) -> str:
    """A data-module plugin name given as the value of ``--data.class_path`` (or ``--data``) as its class path."""
    if previous in ("--data.class_path", "--data") and "." not in arg and not arg.startswith("-"):
        return resolve_class_paths({"class_path": arg}, "datamodules")[0]["class_path"]
    for option in ("--data.class_path=", "--data="):
        if arg.startswith(option) and "." not in arg[len(option):]:
            return option + resolve_class_paths({"class_path": arg[len(option):]}, "datamodules")[0]["class_path"]
    return arg


def check_options(args: list[str]) -> None:
    """Raise ``UsageError`` for an option spelled with dashes (``--data.batch-size``): recipe keys use
    underscores."""
    for arg in args:
        key = arg.split("=", 1)[0]
        if key.startswith("--") and "-" in key[2:]:
            raise UsageError(f"option {key}: keys are spelled with underscores: {key[:2] + key[2:].replace('-', '_')}")


def check_devices(devices: object) -> None:
    """Raise ``UsageError`` for a ``--trainer.devices`` string that is none of Lightning's forms: ``auto``, a count
    (``2``), ``-1`` (all) or device indices (``0,1``; a list such as ``[0, 1]`` is parsed as one)."""
    if isinstance(devices, str) and not re.fullmatch(r"auto|-?\d+|(\d+,)+\d*", devices.replace(" ", "")):
        raise UsageError(f"--trainer.devices {devices}: expected a count (2), -1 (all devices), device indices "
                         "(0,1 or [0, 1]) or auto")


def check_classes(datamodule: L.LightningDataModule) -> None:
    """Raise ``UsageError`` when the ``classes.txt`` of the data module's root names more classes than its
    ``num_classes`` (labels out of range; fewer is allowed: a subset, or a small set on a large recipe)."""
    root, classes = getattr(datamodule, "root", None), getattr(datamodule, "num_classes", None)
    names = Path(root) / "classes.txt" if root is not None else None
    if classes is None or names is None or not names.is_file():
        return
    found = len([line for line in names.read_text().splitlines() if line.strip()])
    if found > classes:
        raise UsageError(f"the recipe has {classes} classes but {names} names {found}: set --data.num_classes "
                         f"{found} (and the head's num_classes, if set) or point --data.root at the right data")


def resume_path(ckpt_path: str | None, root: Path) -> str | None:
    """The checkpoint to resume from: ``last`` is the newest ``last.ckpt`` under the run folder ``root`` (None,
    a fresh start, when there is none yet); any file is checked to be whole first.

    Raises:
        UsageError: the file is missing, a folder, truncated or corrupt.
    """
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        found = newest_last(root)
        if found is None:
            logger.info(f"--ckpt_path last: no {root}/**/last.ckpt yet; starting from step 0")
            return None
        logger.info(f"--ckpt_path last: resuming from {found}")
        ckpt_path = str(found)
    check_complete(Path(ckpt_path))
    return ckpt_path


class UMTCLI(LightningCLI):
    """LightningCLI with ``UMTModule`` as the model; the data module's classes, clips per step, frames and size are
    linked into ``model.data_info`` (the encoder's input is stated once, in ``data``); every run keeps a safe
    ``last.ckpt`` (``--last_checkpoint.*``: see ``umt.checkpointing.SafeLastCheckpoint``) and ``--ckpt_path last``
    resumes from the newest one; runs log to TensorBoard and CSV unless ``--trainer.logger`` says otherwise, and
    to W&B with ``--wandb PROJECT``."""

    def _parse_ckpt_path(self) -> None:
        """Keep the model options as the recipe and command line give them with ``--ckpt_path``: Lightning would
        parse the checkpoint's hyper-parameters over them (``umt test --ckpt_path X --model.heads.plot_dir D``
        would lose ``plot_dir``). The module is built from the options; the checkpoint's weights load strictly."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data", "model.data_info", compute_fn=data_info, apply_on="instantiate")
        parser.add_lightning_class_args(SafeLastCheckpoint, "last_checkpoint")
        parser.add_argument("--wandb", type=str | None, default=None,
                            help="also log to this Weights & Biases project (pip install 'unmasked-teacher[wandb]')")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        options = self.config_init.get(self.subcommand, self.config_init)
        trainer = options.get("trainer", {})
        root = trainer.get("default_root_dir") or Path.cwd()
        kwargs.setdefault("logger", run_loggers(trainer.get("logger"), root, options.get("wandb")))
        try:
            return super().instantiate_trainer(**kwargs)
        except TypeError as error:  # the accelerator's own rule, e.g. CPU: `devices` ... should be an int > 0
            if "`devices`" not in str(error):
                raise
            raise UsageError(f"--trainer.devices {trainer.get('devices')}: {one_line(error)}") from error

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        batch = config.get("data", {}).get("init_args", {}).get("batch_size")
        if isinstance(batch, int) and batch < 1:
            raise UsageError(f"--data.batch_size must be at least 1, got {batch}")
        check_devices(config.get("trainer", {}).get("devices"))

    def before_fit(self) -> None:
        check_classes(self.datamodule)
        options = self.config_init["fit"]
        options["ckpt_path"] = resume_path(options.get("ckpt_path"), Path(self.trainer.default_root_dir))


def run(args: list[str]) -> None:
    """Run LightningCLI on ``args`` (``fit --config RECIPE.yaml ...``); user mistakes end in one line (exit 2)."""
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")  # args are sys.argv's

    def cli() -> None:
        check_options(args)
        UMTCLI(UMTModule, L.LightningDataModule, subclass_mode_data=True, args=resolve_arguments(args),
               save_config_kwargs={"overwrite": True}, parser_class=UMTArgumentParser)

    reported(args[0], cli, USAGE_ERRORS)

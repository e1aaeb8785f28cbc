"""The loggers of a ``umt fit|validate|test`` run: TensorBoard and CSV in one version folder of the run folder,
Weights & Biases on request."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from umt.errors import UsageError

LOGS = "lightning_logs"
"""Folder of the run folder holding ``version_N/`` (TensorBoard events, ``metrics.csv``, ``checkpoints/``)."""


def default_loggers(root: str | Path) -> list[Logger]:
    """TensorBoard and CSV loggers writing into the same ``root/lightning_logs/version_N`` (the next free N).

    Args:
        root: the run folder (``--trainer.default_root_dir``).
    """
    table = CSVLogger(root, name=LOGS)  # first: it warns about a version folder that is not empty
    return [table, TensorBoardLogger(root, name=LOGS, version=table.version, default_hp_metric=False)]


def wandb_logger(project: str, root: str | Path) -> Logger:
    """A Weights & Biases logger of ``project`` keeping its local files under the run folder.

    Args:
        project: the W&B project name.
        root: the run folder.

    Raises:
        UsageError: the ``wandb`` package is not installed.
    """
    if importlib.util.find_spec("wandb") is None:
        raise UsageError(f"--wandb {project}: Weights & Biases is not installed: pip install 'unmasked-teacher[wandb]'")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(project=project, save_dir=str(root))


def run_loggers(given: object, root: str | Path, wandb: str | None) -> object:
    """The trainer's ``logger`` argument: the defaults when ``given`` is None or True, ``given`` otherwise, plus
    a W&B logger when ``wandb`` names a project.

    Args:
        given: ``--trainer.logger`` as parsed (None, a bool, a logger or a list of loggers).
        root: the run folder.
        wandb: W&B project (``--wandb``), or None.
    """
    if given is None or given is True:
        given = default_loggers(root)
    if wandb is None:
        return given
    loggers = [] if given is False else list(given) if isinstance(given, (list, tuple)) else [given]
    return [*loggers, wandb_logger(wandb, root)]

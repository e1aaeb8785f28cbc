"""The model zoo: every released official UMT file, its reported result, and its download from the Hugging Face hub.

The table (``zoo.json``, shipped with the package) lists the files of the official MODEL_ZOO pages. A name is
the file stem (``b16_ptk710_ftk710_ftk400_f8_res224``). ``resolve`` finds the file by name wherever it sits in
the hub repository ``OpenGVLab/UMT``, downloads it into the standard Hugging Face cache, and works offline
(``HF_HUB_OFFLINE=1``) from that cache; an existing local path passes through unchanged.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, TextIO

from huggingface_hub import constants, hf_hub_download, list_repo_files, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.file_download import repo_folder_name

from umt.checkpoints import CheckpointError

TASKS = ("pretrain", "classification", "detection", "video_text", "retrieval", "qa", "mc")
"""Tasks of the table: stage-1 students, classifiers, AVA detectors, stage-2 models, retrieval, QA and MC models."""


class ZooError(CheckpointError):
    """A zoo name that is unknown, has no released file, or cannot be found or downloaded."""


@dataclass(frozen=True)
class ZooEntry:
    """One released official file (or, with ``file=None``, a reported result without a released file).

    Attributes:
        name: the file stem, the name ``create_model(..., pretrained=name)`` takes.
        file: the file name in the hub repository, or None when no file was released.
        aliases: other spellings of the file name used by the official links (looked for as well).
        task: one of ``TASKS``.
        family: checkpoint layout: ``pretrain``, ``finetune``, ``ava``, ``mm_model``, ``mm_retrieval``, ``mm_qa``.
        model: the model name of ``umt.create_model`` (``umt_b16``, ``umt_l16``).
        frames: input frames T the file was trained / evaluated with.
        resolution: input side in pixels.
        dataset: what it was trained on (the last stage).
        num_classes: classifier rows (classification and detection), else None.
        metric: what ``reported`` measures, or None.
        reported: the official number (SPEC.md §6), or None.
        results: further official numbers, e.g. ``{"T2V R@1/5/10": [51.0, 76.5, 84.2]}``.
        recipe: the recipe (repository path) that reproduces or evaluates the file, or None.
        recipe_planned: the path that recipe will have, where ``recipe`` is None.
        default: the file ``pretrained=True`` picks for its model and builder.
        sha256: hex digest of the file where known (verified after download); None: not recorded.
        size: file size in bytes where known (verified); None: not recorded.
        notes: caveats from the official pages and issues.
    """

    name: str
    file: str | None
    task: str
    family: str
    model: str
    frames: int
    resolution: int
    dataset: str
    metric: str | None = None
    reported: float | None = None
    results: dict[str, list[float]] = field(default_factory=dict)
    recipe: str | None = None
    recipe_planned: str | None = None
    aliases: tuple[str, ...] = ()
    num_classes: int | None = None
    default: bool = False
    sha256: str | None = None
    size: int | None = None
    notes: str = ""

    @property
    def file_names(self) -> tuple[str, ...]:
        """The file name, then its aliases."""
        return () if self.file is None else (self.file, *self.aliases)

    @property
    def size_label(self) -> str:
        """``B/16`` or ``L/16``."""
        return self.model.removeprefix("umt_").upper().replace("16", "/16")


@cache
def _table() -> tuple[str, tuple[ZooEntry, ...]]:
    data = json.loads(files("umt").joinpath("zoo.json").read_text())
    entries = tuple(ZooEntry(**{**row, "aliases": tuple(row["aliases"])}) for row in data["entries"])
    return data["repo_id"], entries


def repo_id() -> str:
    """The Hugging Face repository that holds the official files (``OpenGVLab/UMT``)."""
    return _table()[0]


def entries(task: str | None = None) -> list[ZooEntry]:
    """Every entry of the table, or those of one ``task`` (see ``TASKS``)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return [e for e in _table()[1] if task is None or e.task == task]


def get(name: str) -> ZooEntry:
    """The entry called ``name`` (``.pth`` suffix allowed).

    Raises:
        ZooError: not in the table (naming the closest names).
    """
    stem = name.removesuffix(".pth")
    by_name = {e.name: e for e in entries()}
    if stem in by_name:
        return by_name[stem]
    close = difflib.get_close_matches(stem, by_name, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ZooError(f"{name!r} is not in the UMT model zoo{hint}. `umt zoo` lists every released file "
                   "(umt.zoo.print_zoo() in Python); a local checkpoint is given by its path")


def default_entry(model: str, families: tuple[str, ...]) -> ZooEntry:
    """The entry ``pretrained=True`` loads for ``model`` among ``families``."""
    for entry in entries():
        if entry.default and entry.model == model and entry.family in families:
            return entry
    raise ZooError(f"the zoo has no default file for {model} ({', '.join(families)}); pass pretrained=NAME")


def _cache_dir(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)


def _cached(entry: ZooEntry, cache_dir: Path, revision: str | None) -> Path | None:
    """The cached copy of ``entry`` at ``revision`` (default ``main``), wherever it sits in the repository."""
    snapshots = cache_dir / repo_folder_name(repo_id=repo_id(), repo_type="model") / "snapshots"
    if not snapshots.is_dir():
        return None
    in_repo = sorted({p.relative_to(s).as_posix() for s in snapshots.iterdir() if s.is_dir()
                      for name in entry.file_names for p in s.rglob(name)})
    for path in in_repo:
        found = try_to_load_from_cache(repo_id(), path, cache_dir=cache_dir, revision=revision)
        if isinstance(found, str):
            return Path(found)
    return None


def _download_hint(entry: ZooEntry, cache_dir: Path) -> str:
    patterns = " ".join(f"'{n}' '*/{n}'" for n in entry.file_names)
    return (f"on a machine with network run `hf download {repo_id()} --include {patterns}` (or, in Python, "
            f"umt.zoo.resolve({entry.name!r})) with HF_HUB_CACHE={cache_dir} and copy that cache folder here, "
            f"or download the file by hand and pass its path")


def _download(entry: ZooEntry, cache_dir: Path, revision: str | None) -> Path:
    """List the hub repository, find the file by name, and download it into the cache."""
    listing = list_repo_files(repo_id(), revision=revision)
    matches = [p for p in listing if p.rsplit("/", 1)[-1] in entry.file_names]
    if not matches:
        raise ZooError(f"{entry.name}: none of {', '.join(entry.file_names)} is in the hub repository {repo_id()}"
                       f"{'' if revision is None else f' at {revision}'} ({len(listing)} files listed)")
    return Path(hf_hub_download(repo_id(), min(matches, key=len), revision=revision, cache_dir=cache_dir))


def _verify(entry: ZooEntry, path: Path) -> None:
    """Check the recorded size and sha256 of ``entry`` (where recorded) against ``path``."""
    if entry.size is not None and path.stat().st_size != entry.size:
        raise ZooError(f"{path}: {path.stat().st_size} bytes, the zoo records {entry.size} for {entry.name}; "
                       "the download is truncated or another file: delete it and download again")
    if entry.sha256 is not None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != entry.sha256.lower():
            raise ZooError(f"{path}: sha256 {digest.hexdigest()} differs from the zoo's {entry.sha256} for "
                           f"{entry.name}: delete it and download again")


def resolve(name: str | Path | ZooEntry, *, cache_dir: str | Path | None = None, revision: str | None = None) -> Path:
    """The local path of a zoo file, downloading it into the Hugging Face cache when needed.

    Args:
        name: a zoo name (``b16_ptk710_ftk710_ftk400_f8_res224``), a ``ZooEntry``, or an existing file path
            (returned unchanged).
        cache_dir: the Hugging Face cache (default: ``HF_HUB_CACHE``, ``~/.cache/huggingface/hub``).
        revision: branch, tag or commit of the hub repository (default ``main``).

    Offline (``HF_HUB_OFFLINE=1``) only the cache is searched; online the repository is listed and the file
    downloaded (the cached copy is used when the hub cannot be reached).

    Raises:
        ZooError: unknown name, no released file, not cached while offline, not in the repository, or a
            recorded size / sha256 that does not match.
    """
    if isinstance(name, (str, Path)) and Path(name).is_file():
        return Path(name)
    if isinstance(name, Path) or (isinstance(name, str) and "/" in name):
        raise ZooError(f"{name}: no such file (and a path is not a zoo name)")
    entry = name if isinstance(name, ZooEntry) else get(str(name))
    if entry.file is None:
        raise ZooError(f"{entry.name}: no file was released ({entry.notes}); the reported {entry.metric} "
                       f"{entry.reported} is listed for reference only")
    folder = _cache_dir(cache_dir)
    if constants.is_offline_mode():
        path = _cached(entry, folder, revision)
        if path is None:
            raise ZooError(f"{entry.file} ({entry.name}) is not in the Hugging Face cache {folder} and "
                           f"HF_HUB_OFFLINE=1 forbids downloading it from {repo_id()}: {_download_hint(entry, folder)}")
    else:
        try:
            path = _download(entry, folder, revision)
        except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as error:
            path = _cached(entry, folder, revision)
            if path is None:
                raise ZooError(f"{entry.file} ({entry.name}) could not be downloaded from {repo_id()} "
                               f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}) and "
                               f"is not in the cache {folder}: {_download_hint(entry, folder)}") from error
    _verify(entry, path)
    return path


def _number(entry: ZooEntry) -> str:
    return "-" if entry.reported is None else f"{entry.metric} {entry.reported:.1f}"


def format_zoo(task: str | None = None) -> str:
    """The table (or one task of it) as aligned text: name, task, size, frames x resolution, dataset,
    reported number, recipe (``planned: PATH`` where it does not exist yet)."""
    rows = [("name", "task", "size", "input", "dataset", "reported", "recipe")]
    for e in entries(task):
        recipe = e.recipe or (f"(planned: {e.recipe_planned})" if e.recipe_planned else "-")
        name = e.name if e.file is not None else f"{e.name} (no file released)"
        rows.append((name, e.task, e.size_label, f"{e.frames}x{e.resolution}", e.dataset.split(" (")[0],
                     _number(e), recipe))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def print_zoo(task: str | None = None, out: TextIO | None = None) -> None:
    """Print ``format_zoo(task)`` and where the files come from (``umt zoo [--task TASK]``)."""
    stream = out if out is not None else sys.stdout
    print(format_zoo(task), file=stream)
    print(f"\nfiles from https://huggingface.co/{repo_id()} (cached in {constants.HF_HUB_CACHE}); "
          "load one with umt.create_model(MODEL, pretrained=NAME)", file=stream)


LOADED_BY = {
    "pretrain": "umt.create_model",
    "finetune": "umt.create_model",
    "mm_model": "umt.create_video_text_model (its video encoder alone: umt.create_model)",
    "mm_retrieval": "umt.create_video_text_model (its video encoder alone: umt.create_model)",
    "mm_qa": "umt.models.qa.create_qa_model (its video encoder alone: umt.create_model)",
    "ava": "umt.detection.create_detector",
}
"""What loads each family of the table."""


def fetch(model: str | None, pretrained: bool | str | Path, families: tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
    """The file for a builder's ``pretrained=`` argument and the model options the zoo implies for it.

    Args:
        model: the builder's model name (``umt_b16``, ``umt_l16``); None: a custom config, not checked.
        pretrained: a zoo name, a local path, or True (the zoo's default file of ``model`` for ``families``).
        families: the checkpoint families the builder loads.

    Returns:
        the local path, and ``{"num_frames", "img_size"}`` of the zoo file (empty for a local path).

    Raises:
        ZooError: unknown name, a file of another model or family (naming what loads it), or not available.
    """
    if pretrained is True:
        if model is None:
            raise ZooError("pretrained=True needs a named model (umt_b16, umt_l16); pass pretrained=NAME")
        entry = default_entry(model, families)
    elif isinstance(pretrained, Path) or Path(pretrained).is_file() or "/" in pretrained:
        return resolve(pretrained), {}
    else:
        entry = get(str(pretrained))
    if model is not None and entry.model != model:
        raise ZooError(f"{entry.name} holds a {entry.model} model, not {model}; build {entry.model} to load it")
    if entry.family not in families:
        raise ZooError(f"{entry.name} is a {entry.task} file ({entry.family} layout), loaded by "
                       f"{LOADED_BY[entry.family]}")
    return resolve(entry), {"num_frames": entry.frames, "img_size": entry.resolution}

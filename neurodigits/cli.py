"""The `neurodigits` command: classify character images, read pages of handwriting, serve a drawing page, sweep.

Imports stay inside the commands: `predict` on the TFLite export must start without TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import glob
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from neurodigits import NeuroDigitsError

if TYPE_CHECKING:
    from neurodigits.inference import Classifier, LineReader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MODEL_BATCH = 64  # images per model call (small: the last call runs after preprocessing ends)
PROGRESS_MIN = 100  # a progress bar for batches at least this large (on a terminal)
MODEL_HELP = ("an export folder, a .tflite file, or an MLflow model URI such as models:/neurodigits/3 or "
              "models:/neurodigits@champion (default: models/export)")


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files as given, folders as their image files and glob patterns as their matches (each sorted).
    An input that names nothing stays as given, so that it gets an error record of its own."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif glob.has_magic(item) and not path.exists():
            found = sorted(glob.glob(item, recursive=True))
        else:
            found = []
        files.extend(found or [item])
    return files


def _records(files: list[str], model: Classifier | LineReader, workers: int | None) -> Iterator[dict]:
    """One record per file, in order: the prediction (a line model's: the text read), or the error. Images
    are preprocessed across processes for large batches and go to the model a batch at a time."""
    import numpy as np  # noqa: PLC0415

    from neurodigits.inference import LineReader, classify  # noqa: PLC0415
    from neurodigits.preprocess import load_images  # noqa: PLC0415

    lines = isinstance(model, LineReader)
    results = load_images(files, model.image_size, workers=workers, lines=lines)
    for start in range(0, len(files), MODEL_BATCH):
        batch = list(itertools.islice(results, MODEL_BATCH))
        good = [r for r in batch if not isinstance(r, NeuroDigitsError)]
        if lines:
            predictions = iter(model.read(good))
        else:
            predictions = iter(classify(model, np.stack(good)) if good else [])
        for path, result in zip(files[start:start + MODEL_BATCH], batch):
            if isinstance(result, NeuroDigitsError):
                yield {"file": path, "error": str(result)}
            elif lines:
                text, confidence = next(predictions)
                yield {"file": path, "text": text, "confidence": confidence}
            else:
                p = next(predictions)
                yield {"file": path, "label": p.label, "probability": p.probability,
                       "top": [{"label": label, "probability": q} for label, q in p.top]}


def _describe(record: dict) -> str:
    """A prediction record as one line of text."""
    if "text" in record:
        return f"{record['file']}: {record['text']}  ({record['confidence']:.1%} sure)"
    top = ", ".join(f"{t['label']} {t['probability']:.1%}" for t in record["top"])
    return f"{record['file']}: {record['label']} ({record['probability']:.1%})  top-3: {top}"


def predict(args: argparse.Namespace) -> int:
    """Classify each image (a line model reads each as one line of text): a line per image (or one JSON / CSV
    record per input, in input order); an error line on stderr per bad file, and a non-zero exit if there
    was one."""
    from neurodigits.inference import LineReader, load_classifier  # noqa: PLC0415

    files = expand_inputs(args.images)
    model = load_classifier(args.model, num_threads=1)  # the cores go to the preprocessing processes
    show = not args.quiet and len(files) >= PROGRESS_MIN and sys.stderr.isatty()
    if show:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(files), unit="img", file=sys.stderr)
    records, failed = [], 0
    for record in _records(files, model, args.workers):
        if show:
            bar.update()
        if "error" in record:
            failed += 1
            print(f"error: {record['error']}", file=sys.stderr)
        elif not (args.json or args.csv):
            print(_describe(record))
        records.append(record)
    if show:
        bar.close()
    if args.json:
        print(json.dumps(records, indent=2))
    if args.csv:
        write_csv(args.csv, records, lines=isinstance(model, LineReader))
    return 1 if failed else 0


def write_csv(path: str, records: list[dict], lines: bool = False) -> None:
    """file, label, probability, top ("7 0.98; 1 0.01; ..."), error (for a line model: file, text,
    confidence, error): one row per record, written atomically."""
    from neurodigits.io import atomic_path  # noqa: PLC0415

    columns = ["file", "text", "confidence", "error"] if lines else ["file", "label", "probability", "top", "error"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in records:
            top = "; ".join(f"{t['label']} {t['probability']:.6f}" for t in r.get("top", []))
            writer.writerow([top if column == "top" else r.get(column, "") for column in columns])


def read(args: argparse.Namespace) -> int:
    """Print the text on a page, one line per line of handwriting (words split at wide gaps), then each
    character's confidence."""
    from neurodigits.inference import LineReader, load_classifier  # noqa: PLC0415
    from neurodigits.page import annotate, line_text, read_page, words  # noqa: PLC0415
    from neurodigits.preprocess import MAX_PAGE_SIDE, read_grayscale  # noqa: PLC0415

    gray = read_grayscale(args.page, max_side=MAX_PAGE_SIDE)
    model = load_classifier(args.model)
    if isinstance(model, LineReader):
        return read_text(gray, model, args)
    lines = read_page(gray, model)
    if args.json:
        print(json.dumps([{"text": line_text(line), "words": [
            {"text": "".join(d.label for d in word),
             "characters": [{"char": d.label, "probability": d.probability, "box": list(d.box)} for d in word]}
            for word in words(line)]} for line in lines], indent=2))
    else:
        print("\n".join(line_text(line) for line in lines))
        for number, line in enumerate(lines, start=1):
            print(f"line {number}: " + " ".join(f"{d.label}:{d.probability:.0%}" for d in line), file=sys.stderr)
    if args.annotate:
        save_png(annotate(gray, ((d.box, f"{d.label} {d.probability:.0%}", d.probability)
                                 for line in lines for d in line)), args.annotate)
    return 0


def read_text(gray, reader, args: argparse.Namespace) -> int:
    """`read` with a line model: each line of handwriting read whole; its confidence on stderr."""
    from neurodigits.page import annotate, read_text_page  # noqa: PLC0415

    lines = read_text_page(gray, reader)
    if args.json:
        print(json.dumps([{"text": line.text, "confidence": line.confidence, "box": list(line.box)}
                          for line in lines], indent=2))
    else:
        print("\n".join(line.text for line in lines))
        for number, line in enumerate(lines, start=1):
            print(f"line {number}: confidence {line.confidence:.0%}", file=sys.stderr)
    if args.annotate:
        save_png(annotate(gray, ((line.box, f"{line.text}  ({line.confidence:.0%})", line.confidence)
                                 for line in lines)), args.annotate)
    return 0


def save_png(image, path: str) -> None:
    from neurodigits.io import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def serve(args: argparse.Namespace) -> int:
    """Run the drawing page and JSON API with uvicorn until interrupted: one worker process per core
    for a TFLite export, one for an MLflow model (TensorFlow uses every core itself)."""
    import os  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from neurodigits.inference import MLFLOW_SCHEMES, load_classifier  # noqa: PLC0415
    from neurodigits.preprocess import available_cores  # noqa: PLC0415
    from neurodigits.server import MODEL_ENV, SAMPLES_ENV, create_app  # noqa: PLC0415

    workers = args.workers or (1 if str(args.model).startswith(MLFLOW_SCHEMES) else available_cores())
    classifier = load_classifier(args.model)  # a bad model stops here, with one line
    check_listen(args.host, args.port)  # so does an address in use (uvicorn would log it, after our banner)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving on http://{host}:{args.port}/ with {workers} worker(s) (Ctrl-C to stop)", file=sys.stderr)
    # uvicorn picks httptools and uvloop (both pinned dependencies): 2.6x the requests/s of h11 and asyncio here
    if workers == 1:
        app = create_app(classifier, samples_dir=args.samples)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    else:
        os.environ[MODEL_ENV], os.environ[SAMPLES_ENV] = str(args.model or ""), str(args.samples)
        uvicorn.run("neurodigits.server:app_from_env", factory=True, workers=workers, host=args.host,
                    port=args.port, log_level="warning")
    return 0


def check_listen(host: str, port: int) -> None:
    """Stop with one line when `host`:`port` cannot be listened on (in use, or not an address of this machine)."""
    import socket  # noqa: PLC0415

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind((host, port))
    except OSError as exc:
        raise NeuroDigitsError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port, "
                               "or a --host of this machine") from None


def positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return int(text)


def port(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TCP port (1 to 65535)")
    return int(text)


def presets(args: argparse.Namespace) -> int:
    """List the presets of presets.yaml with the command that trains each."""
    from neurodigits.presets import load_presets  # noqa: PLC0415

    for name, preset in load_presets().items():
        print(f"{name}: {preset.description}\n  {preset.command()}")
    return 0


def tune(args: argparse.Namespace) -> int:
    """Sweep the search space of params.yaml's tune section with Ray Tune; print the winner's dvc command."""
    from neurodigits.params import check_sweepable, load_params  # noqa: PLC0415
    from neurodigits.presets import load_presets  # noqa: PLC0415

    reference = load_params()
    params = reference
    if args.preset:
        presets = load_presets()
        if args.preset not in presets:
            raise NeuroDigitsError(f"no preset '{args.preset}'; choose one of {', '.join(presets)}")
        params = presets[args.preset].apply(reference)
    check_sweepable(params)
    from neurodigits.tune import REPORT_FILE, sweep  # noqa: PLC0415 - Ray only once the params are valid

    try:
        report = sweep(params, reference, trials=args.trials, address=args.address)
    except KeyboardInterrupt:
        report = {"status": "KILLED"}
    counts = {}
    for trial in report.get("trials", []):
        counts[trial["status"]] = counts.get(trial["status"], 0) + 1
    print(f"sweep {report['status'].lower()}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
          + f"; every trial in {REPORT_FILE} and in MLflow under run {report.get('sweep_run_id')}", file=sys.stderr)
    if report["status"] == "KILLED":
        return 130
    best = report.get("best")
    if not best:
        raise NeuroDigitsError("no trial finished; see the errors above (each failed trial is in MLflow)")
    metric, metrics = report["metric"], best["metrics"]
    held_out = f", held-out accuracy {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics else ""
    print(f"best: {best['trial']} {metric} {metrics[metric]:.4f}{held_out} with {json.dumps(best['params'])}\n"
          f"reproduce it as a pipeline run:\n  {best['command']}")
    return 0


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="neurodigits",
                                          description="Handwriting recognition: digits, letters and lines of text.")
    commands = main_parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("predict", help="classify images of one character each (PNG/JPEG, any size, "
                                            "either polarity)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders (searched recursively) or "
                   "quoted glob patterns such as 'scans/**/*.png'")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print a JSON list, one record per input in input order "
                   "(failures as records with an 'error' field)")
    p.add_argument("--csv", metavar="FILE", help="also write one CSV row per input, in input order")
    p.add_argument("--workers", type=positive, help="processes for preprocessing large batches (default: every core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=predict)

    p = commands.add_parser("read", help="read the handwriting on a page, line by line (a line model reads each "
                                        "line whole; a character model character by character)")
    p.add_argument("page", metavar="PAGE")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--annotate", metavar="OUT.png", help="also save the page with boxes and labels drawn")
    p.add_argument("--json", action="store_true", help="print lines, words, characters, confidences and boxes as JSON")
    p.set_defaults(run=read)

    p = commands.add_parser("serve", help="a web page to draw a character (or, with a line model, a word) on, "
                                          "and a JSON API (POST /api/predict)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--samples", type=Path, default=Path("data/user"),
                   help="where teach mode saves labelled samples, a folder per class (default: data/user)")
    p.add_argument("--workers", type=positive, help="worker processes (default: one per core for a TFLite export, "
                   "one for an MLflow model)")
    p.set_defaults(run=serve)

    p = commands.add_parser("tune", help="hyperparameter sweep over params.yaml's tune.space (Ray Tune, Optuna, "
                                         "ASHA); every trial in MLflow")
    p.add_argument("--trials", type=positive, help="number of trials (default: tune.trials)")
    p.add_argument("--address", metavar="HOST:PORT", help="a Ray cluster to run on (default: RAY_ADDRESS, else Ray "
                                                          "in-process on this machine)")
    p.add_argument("--preset", help="sweep around a preset of presets.yaml (e.g. cnn) instead of params.yaml as is")
    p.set_defaults(run=tune)

    p = commands.add_parser("presets", help="list the presets (presets.yaml) and the dvc command that trains each")
    p.set_defaults(run=presets)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except NeuroDigitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

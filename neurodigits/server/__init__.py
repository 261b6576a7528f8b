"""`neurodigits serve`: a page to draw characters (or words, with a line model) on, and a JSON API for image uploads."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from neurodigits import NeuroDigitsError
from neurodigits.inference import (
    BatchingClassifier,
    Classifier,
    LineReader,
    MLflowClassifier,
    classify,
    load_classifier,
)
from neurodigits.preprocess import (
    WORK_SIDE,
    BlankImageError,
    ImageTooLargeError,
    load_digit,
    load_line,
    preprocess_image,
    read_grayscale,
)
from neurodigits.samples import USER_DIR, BadLabelError, check_label, sample_counts, save_sample

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
STATUS = {BlankImageError: 422, ImageTooLargeError: 413, BadLabelError: 422}  # anything else unreadable: 415
MODEL_ENV, SAMPLES_ENV = "NEURODIGITS_SERVE_MODEL", "NEURODIGITS_SAMPLES"  # what each `serve --workers N` process uses


def _png_data_url(image) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _upload(request: Request, file: UploadFile, max_upload_bytes: int) -> io.BytesIO:
    """The uploaded file's bytes, named after it; 413 when too large, 422 when empty."""
    if int(request.headers.get("content-length") or 0) > max_upload_bytes + 64 * 1024:
        raise HTTPException(413, f"upload over {max_upload_bytes // (1024 * 1024)} MB")
    data = file.file.read(max_upload_bytes + 1)
    if len(data) > max_upload_bytes:
        raise HTTPException(413, f"upload over {max_upload_bytes // (1024 * 1024)} MB")
    if not data:
        raise HTTPException(422, "empty upload; send an image file")
    stream = io.BytesIO(data)
    stream.name = file.filename or "upload"
    return stream


def create_app(classifier: Classifier | LineReader, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               samples_dir: Path = USER_DIR) -> FastAPI:
    """The web app around one loaded model; teach mode saves samples into `samples_dir`. Requests are handled in
    worker threads (the event loop only parses them); concurrent ones share the calls of an MLflow model, which
    cost more than an image (a TFLite call costs about one image: each request calls it, one at a time)."""
    lines = isinstance(classifier, LineReader)  # a line model: the page becomes a wide canvas for a word or number
    if isinstance(classifier, MLflowClassifier):
        classifier = BatchingClassifier(classifier)
    app = FastAPI(title="NeuroDigits", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    def info() -> dict:
        return {"model": classifier.source, "task": "lines" if lines else "characters", "classes": classifier.classes,
                "image_size": classifier.image_size, "max_upload_bytes": max_upload_bytes}

    @app.post("/api/predict", response_model=None)
    def predict(request: Request, file: UploadFile = File(...)) -> JSONResponse | dict:
        """Classify one uploaded image (PNG/JPEG of one character, or the drawing canvas as a PNG blob); a line
        model reads the image as one line of text."""
        stream = _upload(request, file, max_upload_bytes)
        try:
            if lines:
                line = load_line(stream, classifier.image_size)
            else:
                image = load_digit(stream, classifier.image_size)
        except NeuroDigitsError as exc:
            raise HTTPException(STATUS.get(type(exc), 415), str(exc)) from None
        if lines:
            [(text, confidence)] = classifier.read([line])
            return {"text": text, "confidence": confidence, "input": _png_data_url(line)}
        prediction = classify(classifier, image[None])[0]
        return JSONResponse({"label": prediction.label, "probability": prediction.probability,  # plain JSON types:
                             "top": [{"label": label, "probability": p} for label, p in prediction.top],  # no encoder
                             "probabilities": prediction.probabilities, "input": _png_data_url(image)})

    @app.get("/api/samples")
    def samples() -> dict:
        """How many samples teach mode has saved per class, and where."""
        return {"folder": str(samples_dir), "counts": sample_counts(samples_dir)}

    @app.post("/api/samples")
    def teach(request: Request, file: UploadFile = File(...), label: str = Form("")) -> dict:
        """Save one labelled sample (same limits as /api/predict) as a PNG in samples_dir/label/."""
        if lines:
            raise HTTPException(409, "teach mode saves single characters; serve a character model to teach it")
        try:
            check_label(label)
            stream = _upload(request, file, max_upload_bytes)
            gray = read_grayscale(stream, max_side=2 * WORK_SIDE)
            preprocess_image(gray, classifier.image_size)  # the checks prediction makes: ink, not blank
            path = save_sample(samples_dir, label, gray)
        except NeuroDigitsError as exc:
            raise HTTPException(STATUS.get(type(exc), 415), str(exc)) from None
        return {"label": label, "file": path.name, "counts": sample_counts(samples_dir)}

    return app


def app_from_env() -> FastAPI:
    """The app of one `serve --workers N` process: the model named in $NEURODIGITS_SERVE_MODEL (empty: the
    default export), its runtime on one thread, since every core runs a worker."""
    return create_app(load_classifier(os.environ.get(MODEL_ENV) or None, num_threads=1),
                      samples_dir=Path(os.environ.get(SAMPLES_ENV) or USER_DIR))

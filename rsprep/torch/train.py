"""``rsprep smoke-train``: a small CNN trained for a few hundred steps to check that a dataset learns.

A sanity check of a built dataset, not a benchmark model: the loss must fall, the validation macro
mAP must beat the class-prior baseline, inputs and loss must stay finite, and data loading must not
starve the device (docs/smoke-train.md). torch is imported inside the functions.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rsprep.errors import InvalidParameterError, RsprepError

FORMATS = ("lmdb", "zarr")
DEVICES = ("auto", "cuda", "cpu")
BANDS = ("s2", "s1", "all")
REPORT_NAME = "smoke-train.json"
PLOT_NAME = "loss.png"


@dataclass
class SmokeOptions:
    format: str = "lmdb"
    device: str = "auto"
    steps: int = 300
    batch_size: int = 32
    bands: str = "all"
    noise: str | None = None
    lr: float = 1e-3
    seed: int = 0
    num_workers: int = 2
    width: int = 32  # channels of the first conv block (then ×2, ×4, ×4)
    starve_threshold: float = 0.5  # 1.0 disables the starvation verdict
    min_loss_drop: float = 0.1  # relative: last 10 % of steps ≤ (1 - drop) × first 10 %
    map_margin: float = 0.02
    load_batches: int = 20  # batches read without the model to measure loading alone

    def validate(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise InvalidParameterError(f"smoke-train: {what}")

        check(self.format in FORMATS, f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        check(self.device in DEVICES, f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        check(self.bands in BANDS, f"bands {self.bands!r} is not one of {', '.join(BANDS)}")
        check(self.steps >= 10, f"steps must be at least 10, got {self.steps}")
        check(self.batch_size >= 1, f"batch size must be positive, got {self.batch_size}")
        check(self.num_workers >= 0, f"workers must be 0 or more, got {self.num_workers}")
        check(self.width >= 1, f"width must be positive, got {self.width}")
        check(self.lr > 0, f"learning rate must be positive, got {self.lr}")
        check(0.0 < self.starve_threshold <= 1.0, "starve threshold must be in (0, 1]")
        check(0.0 <= self.min_loss_drop < 1.0, "min loss drop must be in [0, 1)")
        check(self.load_batches >= 1, "load batches must be positive")


@dataclass
class SmokeReport:
    device: str
    options: dict
    train_patches: int
    validation_patches: int
    losses: list[float] = field(default_factory=list)
    steps_done: int = 0
    map: float | None = None
    prior_map: float | None = None
    chance_map: float | None = None
    ap_per_class: dict[str, float] = field(default_factory=dict)
    loading_samples_per_s: float = 0.0
    training_samples_per_s: float = 0.0
    wait_fraction: float = 0.0
    nonfinite: str | None = None
    failures: list[str] = field(default_factory=list)
    report_path: Path | None = None
    plot_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["report_path"] = str(self.report_path) if self.report_path else None
        d["plot_path"] = str(self.plot_path) if self.plot_path else None
        return d


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one class: the mean, over the positives, of the precision at each positive's rank
    (scores sorted descending, stable). NaN when there is no positive."""
    targets = np.asarray(targets, dtype=bool)
    if not targets.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = targets[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].mean())


def macro_map(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro mAP over the classes with at least one positive, and the per-class AP (NaN: none)."""
    aps = np.array([average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])])
    return (float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")), aps


def prior_map(targets: np.ndarray) -> float:
    """mAP of a constant score per class (its train frequency): the AP of a constant is the class's
    prevalence, so this is the mean validation prevalence over classes with a positive."""
    prevalence = np.asarray(targets, dtype=np.float64).mean(axis=0)
    present = np.asarray(targets).any(axis=0)
    return float(prevalence[present].mean()) if present.any() else float("nan")


def chance_map(targets: np.ndarray) -> float:
    """Expected mAP of a uniformly random ranking: for n patches and m positives a class's expected AP
    is (H_n + (m - 1) / (n - 1) · (n - H_n)) / n, above its prevalence m / n when n is small."""
    targets = np.asarray(targets, dtype=bool)
    n = targets.shape[0]
    h = float(np.sum(1.0 / np.arange(1, n + 1)))
    m = targets.sum(axis=0)[targets.any(axis=0)].astype(np.float64)
    if m.size == 0:
        return float("nan")
    rest = (m - 1) / (n - 1) * (n - h) if n > 1 else np.zeros_like(m)
    return float(np.mean((h + rest) / n))


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise RsprepError("torch is not installed: pip install 'rsprep[train]'") from exc
    return torch


def _device(name: str):
    torch = _torch()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("smoke-train: --device cuda but torch sees no CUDA device")
    return torch.device(name)


def _model(in_channels: int, classes: int, width: int):
    nn = _torch().nn
    layers, c_in = [], in_channels
    for c_out in (width, 2 * width, 4 * width, 4 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.MaxPool2d(2))
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers)


def _loader(ds, options: SmokeOptions, device, *, shuffle: bool):
    torch = _torch()
    generator = torch.Generator().manual_seed(options.seed)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=options.batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=options.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=options.num_workers > 0,
        worker_init_fn=_seed_worker,
        # spawn: forking a process whose torch already runs OpenMP threads can abort the workers
        multiprocessing_context="spawn" if options.num_workers > 0 else None,
    )


def _seed_worker(worker_id: int) -> None:
    torch = _torch()
    np.random.seed(torch.initial_seed() % 2**32)


def _cycle(loader):
    while True:
        yield from loader


def _first_nonfinite(batch) -> str:
    torch = _torch()
    bad = (~torch.isfinite(batch["image"])).flatten(1).any(dim=1)
    ids = [pid for pid, b in zip(batch["patch_id"], bad.tolist(), strict=True) if b]
    return ", ".join(ids[:5])


def _measure_loading(loader, batches: int) -> float:
    n, start = 0, time.perf_counter()
    for k, batch in enumerate(loader):
        n += batch["image"].shape[0]
        if k + 1 >= batches:
            break
    return n / max(time.perf_counter() - start, 1e-9)


def _train(model, loader, options: SmokeOptions, device, report: SmokeReport, progress) -> None:
    torch = _torch()
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    wait = samples = 0.0
    start = tick = time.perf_counter()
    batches = _cycle(loader)
    for step in range(options.steps):
        batch = next(batches)
        wait += time.perf_counter() - tick
        if not torch.isfinite(batch["image"]).all():
            report.nonfinite = f"non-finite input at step {step} in patch {_first_nonfinite(batch)}"
            break
        x = batch["image"].to(device, non_blocking=cuda)
        y = batch["labels"].to(device, non_blocking=cuda)
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            report.nonfinite = f"non-finite loss at step {step} (batch {', '.join(batch['patch_id'][:5])})"
            break
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        report.losses.append(float(loss.detach()))
        samples += x.shape[0]
        report.steps_done = step + 1
        if progress is not None:
            progress(step + 1, options.steps)
        tick = time.perf_counter()
    total = max(time.perf_counter() - start, 1e-9)
    report.training_samples_per_s = samples / total
    report.wait_fraction = wait / total


def _evaluate(model, loader, device):
    torch = _torch()
    cuda = device.type == "cuda"
    model.eval()
    scores, targets = [], []
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
        for batch in loader:
            logits = model(batch["image"].to(device, non_blocking=cuda))
            scores.append(torch.sigmoid(logits.float()).cpu().numpy())
            targets.append(batch["labels"].numpy())
    return np.concatenate(scores), np.concatenate(targets)


def _verdicts(report: SmokeReport, options: SmokeOptions) -> list[str]:
    if report.nonfinite:
        return [report.nonfinite]
    out = []
    k = max(1, len(report.losses) // 10)
    first, last = float(np.mean(report.losses[:k])), float(np.mean(report.losses[-k:]))
    if not last <= (1.0 - options.min_loss_drop) * first:
        out.append(
            f"loss does not fall: mean of the last {k} steps {last:.4f} is not {options.min_loss_drop:.0%} "
            f"below the first {k} ({first:.4f})"
        )
    if report.map is None or not report.map >= report.prior_map + options.map_margin:
        out.append(
            f"mAP {report.map:.4f} does not beat the class-prior baseline {report.prior_map:.4f} "
            f"by {options.map_margin}"
        )
    if options.starve_threshold < 1.0 and report.wait_fraction > options.starve_threshold:
        out.append(
            f"data loading starves the {report.device} device: {report.wait_fraction:.0%} of training time "
            f"waiting for data (threshold {options.starve_threshold:.0%}); add --workers"
        )
    return out


def smoke_train(
    dataset: Path,
    options: SmokeOptions,
    out: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SmokeReport:
    """Train the smoke model on DATASET's train split and evaluate it on validation; write
    ``smoke-train.json`` and ``loss.png`` to ``out`` (default DATASET/smoke-train)."""
    options.validate()
    torch = _torch()
    from rsprep.torch.dataset import BENDataset

    dataset = Path(dataset)
    device = _device(options.device)
    common = dict(format=options.format, bands=options.bands, return_id=True)
    train_ds = BENDataset(dataset, split="train", noise=options.noise, **common)
    val_ds = BENDataset(dataset, split="validation", **common)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise InvalidParameterError(f"smoke-train: {dataset} needs train and validation patches")
    report = SmokeReport(str(device), asdict(options), len(train_ds), len(val_ds))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(options.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        train_loader = _loader(train_ds, options, device, shuffle=True)
        report.loading_samples_per_s = _measure_loading(train_loader, options.load_batches)
        model = _model(len(train_ds.band_names), len(train_ds.classes), options.width).to(device)
        _train(model, train_loader, options, device, report, progress)
        if report.nonfinite is None:
            scores, targets = _evaluate(model, _loader(val_ds, options, device, shuffle=False), device)
            report.map, aps = macro_map(scores, targets)
            report.prior_map, report.chance_map = prior_map(targets), chance_map(targets)
            report.ap_per_class = {c: float(a) for c, a in zip(train_ds.classes, aps, strict=True) if a == a}
    finally:
        torch.use_deterministic_algorithms(deterministic)
    report.failures = _verdicts(report, options)
    _write(report, Path(out) if out else dataset / "smoke-train")
    return report


def _write(report: SmokeReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report.plot_path = out / PLOT_NAME
    report.plot_path.write_bytes(loss_plot(report.losses))
    report.report_path = out / REPORT_NAME
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False, default=str) + "\n"
    report.report_path.write_text(text, encoding="utf-8")


def loss_plot(losses: list[float]) -> bytes:
    """The loss curve as PNG bytes (Agg, default style, no Software chunk: deterministic bytes)."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=(8.0, 4.0), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(np.arange(1, len(losses) + 1), losses, color="#1f77b4", linewidth=1.0)
        ax.set_xlabel("step")
        ax.set_ylabel("BCE-with-logits loss")
        ax.set_title("smoke-train loss")
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()

"""CSV training log and learning-curve plot."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from legato.fileio import atomic_save, atomic_write_text


class CsvLog:
    """Append-only CSV of per-epoch numbers; the header is fixed by the first row."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))

    def truncate_after(self, epoch: int) -> None:
        """Keep only rows with epoch ≤ ``epoch`` (rows of an epoch that a killed run wrote
        before its checkpoint are dropped on resume)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            rows = [r for r in reader if int(r["epoch"]) <= epoch]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())

    def append(self, row: dict[str, float | int | str]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        if new:
            fields = list(row)
        else:
            with open(self.path, newline="") as fh:
                fields = next(csv.reader(fh))
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})
            fh.flush()
            os.fsync(fh.fileno())


def _fmt(v: float | int | str) -> str:
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


def plot_learning_curves(csv_path: str | Path, png_path: str | Path, title: str = "") -> None:
    """Loss, force RMSE and energy RMSE per epoch (train and validation) and the lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter

    def plain_log_ticks(ax) -> None:  # matplotlib's default (mathtext) labels are slow to lay out
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))

    rows = CsvLog(csv_path).read()
    if not rows:
        return
    ep = [int(r["epoch"]) for r in rows]

    def col(name: str) -> list[float] | None:
        if name not in rows[0] or any(r[name] == "" for r in rows):
            return None
        return [float(r[name]) for r in rows]

    panels = [
        ("loss", "loss", "log"),
        ("forces_rmse_meV_A", "force RMSE (meV/Å)", "log"),
        ("energy_rmse_meV_atom", "energy RMSE (meV/atom)", "log"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (key, label, scale) in zip(axes[:3], panels, strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            y = col(f"{split}_{key}")
            if y is not None:
                ax.plot(ep, y, style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_yscale(scale)
        plain_log_ticks(ax)
        ax.legend()
    lr = col("lr")
    if lr is not None:
        axes[3].plot(ep, lr)
        axes[3].set_yscale("log")
        plain_log_ticks(axes[3])
    axes[3].set_xlabel("epoch")
    axes[3].set_ylabel("learning rate")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_save(png_path, lambda fh: fig.savefig(fh, dpi=110, format="png"))
    finally:
        plt.close(fig)

"""Training: config schema, SAM / ASAM, EMA, loss and metrics, trainer, checkpoints,
sharpness and loss-landscape analysis."""

from legato.train.config import TrainConfig, load_config, parse_config
from legato.train.ema import EMA
from legato.train.loss import LossSpec, loss_terms
from legato.train.metrics import MetricsAccumulator, format_table
from legato.train.sam import SAM

__all__ = [
    "EMA",
    "SAM",
    "LossSpec",
    "MetricsAccumulator",
    "TrainConfig",
    "Trainer",
    "format_table",
    "load_config",
    "loss_terms",
    "parse_config",
    "resume",
    "train",
]


def __getattr__(name: str):
    # the trainer pulls in the model and plotting; import it only when asked for
    if name in ("Trainer", "train", "resume"):
        from legato.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)

"""legato: Allegro-Legato neural-network quantum molecular dynamics."""

from __future__ import annotations

__version__ = "0.1.0"

from legato.errors import LegatoError  # noqa: E402

__all__ = ["LegatoError", "__version__", "save_model", "load_model", "LegatoCalculator"]


def __getattr__(name: str):
    # Lazy imports keep `import legato` cheap (the CLI imports torch only when needed).
    if name in ("save_model", "load_model"):
        from legato.models import io

        return getattr(io, name)
    if name == "LegatoCalculator":
        from legato.calculator import LegatoCalculator

        return LegatoCalculator
    raise AttributeError(name)

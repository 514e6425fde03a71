"""affectlens: privacy-first multimodal affect and video understanding.

Rooms: ``group`` (paper 000), ``spontaneity`` (001), ``expression`` (002), ``videotag`` (003),
``privacy`` (004); shared rooms: ``media``, ``faces``, ``metrics``, ``training``, ``report``,
``scale``. Heavy rooms are imported lazily so ``import affectlens`` stays fast.
"""
from __future__ import annotations

from affectlens.errors import AffectlensError, DataError, MediaError, ShapeError

__version__ = "0.1.0"
__all__ = ["AffectlensError", "DataError", "MediaError", "ShapeError", "__version__", "anonymize"]


def anonymize(src, dst, **kwargs):
    """Anonymize the faces in an image, a video or a folder; see ``affectlens.privacy.anonymize``."""
    from affectlens.privacy.anonymize import anonymize as _anonymize

    return _anonymize(src, dst, **kwargs)

"""The pipeline's error type; defined in :mod:`models.errors` so that ``models/`` stands alone
(a GPU node needs only torch, numpy and h5py to train)."""

from models.errors import PipelineError

__all__ = ["PipelineError"]

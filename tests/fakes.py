"""Backends for tests: fixed answers, registered into pipeline.backends.REGISTRY by fixtures."""

from __future__ import annotations

import numpy as np

from pipeline.backends import Detection


class ListDetector:
    """Answers ``options["boxes"]``, a list of (box_xyxy, score), for every image, except
    nothing on the calls numbered in ``options["empty_calls"]`` (1 = first image)."""

    def __init__(self, options):
        self.boxes = [Detection(np.asarray(b, dtype=np.float64), s) for b, s in options["boxes"]]
        self.empty_calls = set(options.get("empty_calls", ()))
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        if self.calls in self.empty_calls:
            return []
        return list(self.boxes)


def make_detector(options):
    return ListDetector(options)

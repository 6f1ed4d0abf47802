"""MediaPipe Pose backends (offline default): person detector, segmenter and keypoint detector.

All three run the legacy ``mediapipe.solutions.pose.Pose`` graph (``static_image_mode=True``,
``enable_segmentation=True``) with the models bundled in the wheel; each backend object owns one
graph (create once, call per image; ``close()`` or ``with`` releases it, and it is released when
the object is garbage collected). MediaPipe Pose is **single-person**: it returns at most one
person, the most prominent, so ``detect`` and ``keypoints`` return lists of zero or one.

Options (all optional; the ``mediapipe`` mapping of the config):

- ``model_complexity`` (int, 0 or 1, default 1): pose landmark model, 0 lite, 1 full. Only the
  full model is bundled with mediapipe 0.10.21: 0 raises :class:`BackendUnavailable` unless
  ``pose_landmark_lite.tflite`` was put in mediapipe's ``modules/pose_landmark`` folder (MediaPipe
  would download it, which fails offline). 2 (heavy) is refused.
- ``min_detection_confidence`` (float in [0, 1], default 0.5): MediaPipe's person detection
  threshold; below it there is no person.
- ``mask_threshold`` (float in (0, 1), default 0.5): segmentation probability above which a
  pixel is the person (used for the detector's box).

Landmark coordinates: MediaPipe's normalised ``x * W`` is an edge coordinate (0 = left edge of
the image), so pixel-centre coordinates are ``x * W - 0.5`` (same for ``y``). MediaPipe's
"left" is the person's own left, as in COCO-17 and BODY_25.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np

from pipeline.backends import BackendUnavailable, Detection, PersonKeypoints
from pipeline.skeleton import coco17_to_body25

INSTALL_HINT = "pip install mediapipe==0.10.21"

MEDIAPIPE33 = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

# MediaPipe index of each COCO-17 keypoint (pipeline.skeleton.COCO17 order).
COCO17_FROM_MEDIAPIPE33 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

# MediaPipe index of each BODY_25 foot keypoint (left big toe, left small toe, left heel, right
# big toe, right small toe, right heel). MediaPipe's "foot index" (tip of the foot) stands in for
# the big toe; it has no small toe, which is left missing (0) rather than guessed.
FEET_FROM_MEDIAPIPE33 = (31, None, 29, 32, None, 30)

# A visible landmark (for the person box): visibility at least this.
VISIBLE = 0.5
# The detector runs on photos shrunk to at most this side (MediaPipe looks at 224-256 px inputs;
# larger photos only cost time: 0.05 s at 960x540, 0.2 s at 3840x2160, 0.4 s at 5760x3240).
DETECT_MAX_SIDE = 1280
# Margin (fraction of the box's longer side) of the second look, around the first box.
REFINE_MARGIN = 0.25
# How a crop is looked at: MediaPipe's person detector misses people filling the whole image
# (8 of 128 synthetic 512 crops with a 10% margin); zero padding by 1/8 of the side misses 4, by
# 1/4 none. On those 128 crops this ladder (first (pad, mode) that finds the person) gives mask
# IoU 0.945 and PCK@0.1 0.964, against 0.933 and 0.949 for no padding, then 1/4.
PAD_LADDER = ((0.125, "constant"), (0.25, "constant"), (0.5, "edge"), (0.0, "constant"))
# Answers a pose graph remembers (MediaPipePose.find): a subject-action's crops, a few times
# over; each holds one crop-sized float32 mask (1 MiB at 512²).
REMEMBERED = 64


def _landmark_array(landmarks: np.ndarray, name: str) -> np.ndarray:
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (33, 3):
        raise ValueError(f"{name}: MediaPipe landmarks must be (33, 3), got {landmarks.shape}")
    return landmarks


def mediapipe33_to_coco17(landmarks: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints ``(17, 3)`` from MediaPipe's 33 landmarks ``(33, 3)`` (x, y, conf)."""
    out = _landmark_array(landmarks, "mediapipe33_to_coco17")[list(COCO17_FROM_MEDIAPIPE33)]
    out = out.copy()
    out[out[:, 2] <= 0] = 0.0
    return out


def mediapipe33_to_feet(landmarks: np.ndarray) -> np.ndarray:
    """BODY_25 foot keypoints ``(6, 3)`` (see :data:`FEET_FROM_MEDIAPIPE33`) from ``(33, 3)``."""
    landmarks = _landmark_array(landmarks, "mediapipe33_to_feet")
    out = np.zeros((6, 3))
    for j, index in enumerate(FEET_FROM_MEDIAPIPE33):
        if index is not None and landmarks[index, 2] > 0:
            out[j] = landmarks[index]
    return out


def mediapipe33_to_body25(landmarks: np.ndarray) -> np.ndarray:
    """BODY_25 keypoints ``(25, 3)`` from MediaPipe's 33 landmarks ``(33, 3)``."""
    return coco17_to_body25(mediapipe33_to_coco17(landmarks), mediapipe33_to_feet(landmarks))


@dataclass(frozen=True)
class PoseOptions:
    """The backend options (see the module docstring)."""

    model_complexity: int = 1
    min_detection_confidence: float = 0.5
    mask_threshold: float = 0.5

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PoseOptions:
        unknown = sorted(set(options) - {"model_complexity", "min_detection_confidence",
                                         "mask_threshold"})
        if unknown:
            raise ValueError(f"unknown mediapipe option(s) {unknown}; known: model_complexity, "
                             "min_detection_confidence, mask_threshold")
        out = cls(**{k: options[k] for k in options})
        if out.model_complexity not in (0, 1):
            raise ValueError(f"mediapipe model_complexity must be 0 or 1 (2 needs a download), "
                             f"got {out.model_complexity!r}")
        if not 0.0 <= out.min_detection_confidence <= 1.0:
            raise ValueError("mediapipe min_detection_confidence must be in [0, 1], got "
                             f"{out.min_detection_confidence!r}")
        if not 0.0 < out.mask_threshold < 1.0:
            raise ValueError(f"mediapipe mask_threshold must be in (0, 1), got "
                             f"{out.mask_threshold!r}")
        return out


@dataclass(frozen=True)
class PoseResult:
    """One person: ``landmarks`` ``(33, 3)`` = x, y (pixel centres), visibility in [0, 1];
    ``mask`` ``(H, W)`` float32 person probability of the image MediaPipe saw."""

    landmarks: np.ndarray
    mask: np.ndarray

    @property
    def score(self) -> float:
        """Detection confidence: the mean visibility of the 33 landmarks (about 0.9 for a whole
        visible person, 0.5 for an upper-body photo)."""
        return float(np.mean(self.landmarks[:, 2]))


def landmark_model_path(package_dir: Path, model_complexity: int) -> Path:
    """The pose landmark model file MediaPipe loads for ``model_complexity`` (0, 1, 2)."""
    name = ("lite", "full", "heavy")[model_complexity]
    return package_dir / "modules" / "pose_landmark" / f"pose_landmark_{name}.tflite"


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


class MediaPipePose:
    """One MediaPipe Pose graph (static images, with segmentation)."""

    def __init__(self, options: PoseOptions) -> None:
        try:
            import mediapipe
        except ImportError as error:
            raise BackendUnavailable(f"the mediapipe backend needs mediapipe: {INSTALL_HINT} "
                                     f"({error})") from error
        model = landmark_model_path(Path(mediapipe.__file__).parent, options.model_complexity)
        if not model.is_file():
            # MediaPipe would try to download it (and fail offline, or write into the install)
            raise BackendUnavailable(
                f"mediapipe model_complexity={options.model_complexity} needs {model.name}, "
                f"which is not in {model.parent} (mediapipe 0.10.21 bundles only "
                f"pose_landmark_full.tflite): use model_complexity 1, or put the file there")
        self.options = options
        self._found: OrderedDict[tuple, PoseResult | None] = OrderedDict()
        self._pose = mediapipe.solutions.pose.Pose(
            static_image_mode=True, model_complexity=options.model_complexity,
            enable_segmentation=True,
            min_detection_confidence=options.min_detection_confidence)
        self._finalizer = weakref.finalize(self, self._pose.close)

    def close(self) -> None:
        """Release the graph (idempotent)."""
        self._finalizer()
        self._found.clear()

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("MediaPipePose used after close()")

    def __enter__(self) -> MediaPipePose:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, image: np.ndarray, pad: float = 0.0, mode: str = "constant"
                ) -> PoseResult | None:
        """The person in ``image`` (H, W, 3) uint8 RGB, or None when there is none.

        ``pad``: the image is first padded on every side by this fraction of its longer side
        (``mode`` ``constant``: zeros, or ``edge``); results are in ``image``'s pixels.
        """
        self._check_open()
        image = _check_image(image)
        height, width = image.shape[:2]
        margin = round(pad * max(height, width))
        padded = (np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode=mode)
                  if margin else image)
        result = self._pose.process(padded)
        if result.pose_landmarks is None:
            return None
        size = padded.shape[1], padded.shape[0]
        landmarks = np.array([[p.x * size[0] - 0.5 - margin, p.y * size[1] - 0.5 - margin,
                               p.visibility] for p in result.pose_landmarks.landmark])
        landmarks[:, 2] = np.clip(landmarks[:, 2], 0.0, 1.0)
        mask = result.segmentation_mask
        mask = (np.zeros((height, width), np.float32) if mask is None else np.clip(
            np.asarray(mask, dtype=np.float32)[margin:margin + height, margin:margin + width],
            0.0, 1.0))
        return PoseResult(landmarks=landmarks, mask=mask)

    def find(self, image: np.ndarray, ladder: tuple[tuple[float, str], ...] = PAD_LADDER
             ) -> PoseResult | None:
        """The person in ``image``: :meth:`process` with each ``(pad, mode)`` of ``ladder`` in
        turn until one finds them.

        The last :data:`REMEMBERED` answers are kept (read-only), keyed by the image's bytes:
        a segmenter and a keypoint detector sharing this graph (:meth:`_PoseBackend.share`)
        then run one pose pass per crop. The graph works on static images, so an answer
        given again is the one a new pass would give.
        """
        self._check_open()
        image = _check_image(image)
        key = (image.shape, hashlib.blake2b(image.data, digest_size=16).digest(), ladder)
        if key in self._found:
            self._found.move_to_end(key)
            return self._found[key]
        found = None
        for pad, mode in ladder:
            found = self.process(image, pad, mode)
            if found is not None:
                found.landmarks.setflags(write=False)
                found.mask.setflags(write=False)
                break
        self._found[key] = found
        if len(self._found) > REMEMBERED:
            self._found.popitem(last=False)
        return found


def person_box(landmarks: np.ndarray, mask: np.ndarray, threshold: float,
               min_visibility: float = VISIBLE, radius: int = 2) -> np.ndarray | None:
    """The person's box from MediaPipe's landmarks and mask, in the mask's pixels.

    The box is the union of the visible landmarks' extent (clipped to the image) and the mask's
    ``> threshold`` connected components that hold a visible landmark (within ``radius`` px);
    when none does, the largest component meeting the landmarks' extent. Landmarks alone miss
    the top of the head and the soles; the mask alone may miss thin hands.

    Args:
        landmarks: ``(33, 3)`` x, y (pixel centres), visibility.
        mask: ``(H, W)`` person probability.

    Returns:
        ``(4,)`` ``[x0, y0, x1, y1]`` inclusive pixel extents, or None (nothing visible).
    """
    height, width = mask.shape
    xy = np.asarray(landmarks, dtype=np.float64)
    inside = ((xy[:, 2] >= min_visibility) & (xy[:, 0] > -0.5) & (xy[:, 0] < width - 0.5)
              & (xy[:, 1] > -0.5) & (xy[:, 1] < height - 0.5))
    points = np.round(xy[inside, :2]).astype(int)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask > threshold).astype(np.uint8), connectivity=8)
    boxes = []
    if len(points):
        boxes.append([*points.min(axis=0), *points.max(axis=0)])
    if n_labels > 1:
        keep = set()
        for x, y in points:
            window = labels[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1]
            keep.update(int(v) for v in np.unique(window) if v > 0)
        if not keep and len(points):
            lx0, ly0, lx1, ly1 = boxes[0]
            meets = [i for i in range(1, n_labels)
                     if stats[i, 0] <= lx1 and stats[i, 0] + stats[i, 2] - 1 >= lx0
                     and stats[i, 1] <= ly1 and stats[i, 1] + stats[i, 3] - 1 >= ly0]
            keep = {max(meets, key=lambda i: stats[i, cv2.CC_STAT_AREA])} if meets else set()
        for i in keep:
            x, y, w, h = stats[i, :4]
            boxes.append([x, y, x + w - 1, y + h - 1])
    if not boxes:
        return None
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.array([*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)])


def _tiles(length: int, side: int) -> list[int]:
    """Start positions of windows of ``side`` px covering ``length`` px with half overlap."""
    if side >= length:
        return [0]
    n = int(np.ceil((length - side) / (side / 2))) + 1
    return sorted({round(float(v)) for v in np.linspace(0, length - side, n)})


@dataclass(frozen=True)
class _Hit:
    box: np.ndarray  # (4,) photo pixels, inclusive extents
    score: float


class _PoseBackend:
    """A backend owning one :class:`MediaPipePose` (``close()`` or ``with`` releases it)."""

    def __init__(self, options: PoseOptions) -> None:
        self.options = options
        self._pose = MediaPipePose(options)

    def close(self) -> None:
        self._pose.close()

    def share(self, other: object) -> bool:
        """Use ``other``'s pose graph (and its remembered answers) when it is a MediaPipe
        backend with the same options: a crop's mask and keypoints then come from one pass.

        Returns:
            Whether the graph is now shared.
        """
        if not isinstance(other, _PoseBackend) or other.options != self.options:
            return False
        if other._pose is not self._pose:
            self._pose.close()
            self._pose = other._pose
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MediaPipeDetector(_PoseBackend):
    """:class:`~pipeline.backends.PersonDetector` on MediaPipe Pose (single person).

    Looks (each shrunk to at most :data:`DETECT_MAX_SIDE`): the whole photo, then the whole
    photo zero-padded (a person filling the photo is missed otherwise). MediaPipe's person
    detector sees a look letterboxed to 224 px, so a person under about a third of the photo
    height is missed too: then square tiles (side = the photo's short side, then half of it, half
    overlap) are searched and the most confident kept. The person found is looked at again in a
    zero-padded square around their box, and the more confident of the two looks is kept. Box
    IoU vs the truth on 128 synthetic 960x540 views: mean 0.966, median 0.988, 6 under 0.85
    (MediaPipe finding only part of a stylised person).
    """

    def _look(self, image: np.ndarray, window: tuple[int, int, int, int], pad: float = 0.0
              ) -> _Hit | None:
        """The person in ``image[y0:y1, x0:x1]`` (window clipped to the photo; zero-padded by
        ``pad``, see :meth:`MediaPipePose.process`), in photo pixels."""
        height, width = image.shape[:2]
        x0, y0 = max(window[0], 0), max(window[1], 0)
        x1, y1 = min(window[2], width), min(window[3], height)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        part = image[y0:y1, x0:x1]
        scale = min(1.0, DETECT_MAX_SIDE / max(part.shape[:2]))
        if scale < 1.0:
            size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
            part = cv2.resize(part, size, interpolation=cv2.INTER_AREA)
        found = self._pose.process(part, pad)
        if found is None:
            return None
        box = person_box(found.landmarks, found.mask, self.options.mask_threshold)
        if box is None:
            return None
        sx, sy = (x1 - x0) / part.shape[1], (y1 - y0) / part.shape[0]
        # small pixel i covers photo pixels [i * s, (i + 1) * s - 1] (inclusive extents)
        photo = np.array([x0 + box[0] * sx, y0 + box[1] * sy,
                          x0 + (box[2] + 1) * sx - 1, y0 + (box[3] + 1) * sy - 1])
        photo = np.clip(photo, 0, [width - 1, height - 1, width - 1, height - 1])
        return _Hit(box=photo, score=found.score)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The person in ``image`` (H, W, 3) uint8 RGB: ``[]`` or one :class:`Detection`.

        ``score`` is the mean visibility of MediaPipe's 33 landmarks (:attr:`PoseResult.score`).
        """
        image = _check_image(image)
        height, width = image.shape[:2]
        whole = (0, 0, width, height)
        hit = self._look(image, whole) or self._look(image, whole, PAD_LADDER[0][0])
        short = min(height, width)
        for side in (short, short // 2):
            if hit is not None or side < 32 or (side >= height and side >= width):
                continue
            hits = [h for y in _tiles(height, side) for x in _tiles(width, side)
                    if (h := self._look(image, (x, y, x + side, y + side))) is not None]
            hit = max(hits, key=lambda h: h.score, default=None)
        if hit is not None:
            x0, y0, x1, y1 = hit.box
            half = max(x1 - x0, y1 - y0) * (0.5 + REFINE_MARGIN)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            window = (int(cx - half), int(cy - half), int(cx + half) + 1, int(cy + half) + 1)
            again = self._look(image, window, PAD_LADDER[0][0])
            if again is not None and again.score > hit.score:
                hit = again
        return [] if hit is None else [Detection(box_xyxy=hit.box, score=hit.score)]


class MediaPipeSegmenter(_PoseBackend):
    """:class:`~pipeline.backends.Segmenter`: MediaPipe Pose's segmentation of the person."""

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Person probability ``(H, W)`` float32 in [0, 1]; all zeros when there is no person."""
        image = _check_image(image)
        found = self._pose.find(image)
        if found is None:
            return np.zeros(image.shape[:2], np.float32)
        return found.mask


class MediaPipeKeypoints(_PoseBackend):
    """:class:`~pipeline.backends.KeypointDetector`: MediaPipe's 33 landmarks as COCO-17 and
    BODY_25 (confidence = landmark visibility; no small toes); the raw landmarks are in
    ``extra["mediapipe33"]``."""

    def keypoints(self, image: np.ndarray) -> list[PersonKeypoints]:
        """The person's keypoints in ``image`` (H, W, 3) uint8 RGB: ``[]`` or one person."""
        found = self._pose.find(_check_image(image))
        if found is None:
            return []
        landmarks = found.landmarks
        return [PersonKeypoints(coco17=mediapipe33_to_coco17(landmarks),
                                body25=mediapipe33_to_body25(landmarks), score=found.score,
                                extra={"mediapipe33": landmarks.copy()})]


def make_detector(options: Mapping[str, Any]) -> MediaPipeDetector:
    """The ``detect: mediapipe`` backend (options: see the module docstring)."""
    return MediaPipeDetector(PoseOptions.from_mapping(options))


def make_segmenter(options: Mapping[str, Any]) -> MediaPipeSegmenter:
    """The ``mask: mediapipe`` backend (options: see the module docstring)."""
    return MediaPipeSegmenter(PoseOptions.from_mapping(options))


def make_keypoint_detector(options: Mapping[str, Any]) -> MediaPipeKeypoints:
    """The ``keypoints: mediapipe`` backend (options: see the module docstring)."""
    return MediaPipeKeypoints(PoseOptions.from_mapping(options))

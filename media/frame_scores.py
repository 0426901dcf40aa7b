"""Measures of one picture that say whether it is worth showing: how bright, how flat,
how sharp; small pure functions over RGB ``numpy`` arrays (as :mod:`media.keyframes`
samples them), shared by the thumbnail's choice (:mod:`media.thumbnails`) and the
quality analysis (:mod:`media.quality`).

Sharpness is the variance of the Laplacian of the grayscale picture (OpenCV): the
energy of its edges. It grows with the pixel count of a picture of the same scene and
with noise, so the pictures are compared at one scale: :mod:`media.keyframes` samples
every source at about :data:`ANALYSIS_PIXELS` (downscaled, never upscaled).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

#: The pixel count (640x360) pictures are measured at, whatever the source's size.
ANALYSIS_PIXELS = 640 * 360
#: Mean luma (0-255) below which a picture is black (a fade, a black intro).
BLACK_LUMA = 20.0
#: Luma standard deviation below which a picture is blank: one flat colour.
BLANK_STDDEV = 6.0
#: Mean absolute luma difference (0-255) below which two pictures are the same one.
FROZEN_DIFFERENCE = 2.0
#: The side, in pixels, of the coarse picture two samples are compared at, so that
#: compression noise does not count as a change.
_COMPARE_SIZE = (64, 36)

Picture = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class FrameScore:
    luma: float  # mean, 0-255
    contrast: float  # standard deviation of luma
    sharpness: float  # variance of the Laplacian

    @property
    def black(self) -> bool:
        return self.luma < BLACK_LUMA

    @property
    def blank(self) -> bool:
        return not self.black and self.contrast < BLANK_STDDEV


def grayscale(picture: Picture) -> Picture:
    """Luma of an RGB picture."""
    return np.asarray(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def score_frame(picture: Picture) -> FrameScore:
    """The measures of one RGB picture."""
    gray = grayscale(picture)
    mean, stddev = cv2.meanStdDev(gray)
    laplacian = cv2.Laplacian(gray, cv2.CV_64F)
    return FrameScore(
        luma=float(mean[0][0]),
        contrast=float(stddev[0][0]),
        sharpness=float(laplacian.var()),
    )


def same_picture(a: Picture, b: Picture) -> bool:
    """Whether two RGB pictures show the same thing (a frozen or still video)."""
    small_a, small_b = (
        cv2.resize(grayscale(p), _COMPARE_SIZE, interpolation=cv2.INTER_AREA) for p in (a, b)
    )
    difference = cv2.absdiff(small_a, small_b)
    return float(np.mean(difference)) < FROZEN_DIFFERENCE

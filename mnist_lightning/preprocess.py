"""Turning people's digit pictures into MNIST digits, the way MNIST itself was made.

MNIST's digits are white on black, size-normalized to fit a 20x20 box with their
aspect ratio kept, then placed in 28x28 with their centre of mass at the centre.
A photo or scan of dark ink on paper looks nothing like that until it is redone, and
a phone photo holds more than ink: uneven light and shadows, the lines of ruled or
squared paper or of a form's boxes, a finger or the table at the frame's edge. Those
are taken out first (with OpenCV), then MNIST's own steps follow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

# Pictures are read at most this many pixels on their longer side: the digit ends up 20 pixels tall.
WORKING_SIDE = 512
SMALLEST_PHOTO = 40
# Printed lines are searched for this close to horizontal and vertical (paper turned a little on the table), in these steps.
TURN = np.deg2rad(10)
STEP = np.deg2rad(0.5)


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Any PIL mode to float grayscale in 0-255; transparency is laid on paper of the colour the ink is not.

    16- and 32-bit integer and floating-point images are stretched from their darkest to
    their brightest value: their range says nothing about where paper and ink lie, and
    PIL's convert("L") would clip them instead.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(values.min()), float(values.max())
        return ((values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)).astype(np.float32)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        # Transparent paper takes the colour the ink is not: dark ink on white, light ink on black.
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        ink = np.asarray(rgba.convert("L"))[alpha > 127]
        paper = "black" if ink.size and ink.mean() > 127 else "white"
        image = Image.alpha_composite(Image.new("RGBA", image.size, paper), rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


class NoDigit(ValueError):
    """A picture in which no digit stands out from the background."""


def mnist_style(image: Image.Image) -> np.ndarray:
    """A 28x28 uint8 digit, white on black, or ValueError when no ink is found."""
    return centred(find_ink(working_size(to_grayscale(image))))


def working_size(gray: np.ndarray) -> np.ndarray:
    """gray shrunk (averaging) to at most WORKING_SIDE pixels on its longer side."""
    scale = WORKING_SIDE / max(gray.shape)
    if scale >= 1:
        return gray
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return np.asarray(Image.fromarray(gray, "F").resize(size, Image.Resampling.BOX), dtype=np.float32)


def find_ink(gray: np.ndarray) -> np.ndarray:
    """The digit's ink in [0, 1], 0 elsewhere: bright where gray differs from the paper it is on.

    An evenly lit picture (its edges all one shade: a scan, a drawing, MNIST itself) keeps
    one paper level, as MNIST's own steps do; otherwise the paper's level is found around
    every pixel. Printed lines are taken out (writing that crosses or follows a pale one stays),
    and only the strokes that make the digit are kept.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    low, middle, high = np.percentile(gray, [1, 50, 99])
    # Light paper: lit paper along most edges, or else ink that lies on the darker side, the longer tail.
    light_paper = np.percentile(border, 75) > 127 or middle - low > high - middle
    ink = background - gray if light_paper else gray - background
    # Even: a small picture (drawn or scanned, not a photo), or shades of paper along the edges
    # (averaged along them: grain and noise are not light) that differ by less than 30% of the ink's contrast.
    window = max(1, len(border) // 40)
    shades = np.convolve(border, np.ones(window) / window, mode="valid")
    even = min(gray.shape) < SMALLEST_PHOTO or np.ptp(shades) < 0.3 * np.percentile(np.abs(ink), 99.9)
    if not even:
        ink = _evened_out(gray, light_paper)
    ink = np.clip(ink, 0, None)
    peak = float(np.percentile(ink, 99.9))
    if peak < 30:  # nothing stands out from the background by more than ~12%
        raise NoDigit("no digit found (the picture is blank or has no contrast)")
    lines = _printed_lines(ink > 0.12 * peak)  # found on the faint ink too: pale lines break up at 0.25
    lines &= ~_writing_on_pale_print(ink, lines, peak)
    ink = np.where((ink > 0.25 * peak) & ~lines, np.minimum(ink / peak, 1.0), 0.0)  # drop paper grain and noise
    return _digit_strokes(ink, specks=not even)


def _writing_on_pale_print(ink: np.ndarray, lines: np.ndarray, peak: float) -> np.ndarray:
    """The pixels of lines where writing crosses or follows them: on pale print (ruled or squared
    paper, most forms), those darker than halfway from the print's ink to the writing's. Dark print
    cannot be told from the writing this way: then none."""
    writing = ink[(ink > 0.25 * peak) & ~lines]
    if not lines.any() or not writing.size:
        return np.zeros_like(lines)
    printed, written = float(np.percentile(ink[lines], 75)), float(np.percentile(writing, 90))
    if printed > 0.6 * written:
        return np.zeros_like(lines)
    return lines & (ink > (printed + written) / 2)


def _evened_out(gray: np.ndarray, light_paper: bool) -> np.ndarray:
    """How much darker (or lighter, on dark paper) each pixel is than the paper around it, on 0-255.

    The paper's level is a morphological opening as wide as a seventh of the picture: strokes
    are narrower and drop out of it, while shadows, gradients and anything wide (a finger,
    the table) stay in it and so drop out of the ink. On light paper the difference is taken
    relative to the paper's brightness, so that ink in a shadow is as dark as ink in the light.
    """
    import cv2  # only when a picture is read: the other commands start without it

    inked = 255 - gray if light_paper else gray
    size = max(3, round(min(gray.shape) / 7)) | 1  # odd: OpenCV's opening of an even size is shifted by a pixel
    paper = cv2.morphologyEx(inked, cv2.MORPH_OPEN, np.ones((size, size), np.uint8), borderType=cv2.BORDER_REFLECT)
    if not light_paper:
        return inked - paper
    return (inked - paper) * 255 / np.maximum(255 - paper, 16)


def _printed_lines(mask: np.ndarray) -> np.ndarray:
    """The pixels of mask on long straight lines that are not writing: the rules of ruled or squared
    paper (found along most of the picture's width or height, gaps and all), and the sides of
    printed boxes (they meet at corners or end on rules)."""
    import cv2

    h, w = mask.shape
    shorter = min(h, w)
    if shorter < SMALLEST_PHOTO:  # too small to hold a ruled page or a form
        return np.zeros_like(mask)
    band = max(1.5, 0.006 * shorter)
    image = mask.astype(np.uint8)
    rules = [r for r in (_across(mask, a, d, band) for a, d in _straight_lines(image, band)) if r is not None]
    pieces = cv2.HoughLinesP(
        image, 1, STEP, threshold=shorter // 5, minLineLength=int(0.3 * shorter), maxLineGap=max(2, shorter // 100)
    )
    pieces = [] if pieces is None else [p for p in pieces.reshape(-1, 2, 2) if _turn(p) <= TURN]
    if not rules and not pieces:
        return np.zeros_like(mask)
    ends = np.asarray(rules + pieces, dtype=np.float64).reshape(-1, 2, 2)  # [n, 2 ends, (x, y)]
    is_rule = np.arange(len(ends)) < len(rules)
    horizontal = np.abs(ends[:, 1, 0] - ends[:, 0, 0]) >= np.abs(ends[:, 1, 1] - ends[:, 0, 1])
    tolerance = 0.05 * shorter
    # Box sides: each end meets a line across it; repeated until only closed figures are left.
    sides = ~is_rule
    while True:
        kept = is_rule | sides
        meets = np.array(
            [
                all(_meets(end, ends[kept & (horizontal != horizontal[i])], tolerance) for end in ends[i])
                for i in range(len(ends))
            ]
        )
        if (sides & meets == sides).all():
            break
        sides &= meets
    across = np.where(horizontal, ends[:, :, 1].mean(1), ends[:, :, 0].mean(1))[sides]
    if not (np.diff(np.sort(across)) > 4 * band).any():
        sides[:] = False  # one stroke between two rules is writing (a 1 on ruled paper), not a box
    ys, xs = np.nonzero(mask)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    thickness = np.array([_thickness(mask, segment, band) for segment in ends])  # a wide stroke is no printed line
    reach = thickness / 2 + 1
    on_rules = _near_segments(points, ends[is_rule], reach[is_rule])
    on_sides = _near_segments(points, ends[sides], reach[sides])
    if mask.sum() - (on_rules | on_sides).sum() < 0.1 * (mask.sum() - on_rules.sum()):
        on_sides[:] = False  # the "box" was the writing itself (a square 0)
    lines = np.zeros_like(mask)
    lines[ys[on_rules | on_sides], xs[on_rules | on_sides]] = True
    return lines


def _straight_lines(image: np.ndarray, band: float) -> list[tuple[float, float]]:
    """(angle, distance) of the whole straight lines with ink along 30% of the picture's shorter side,
    x cos(angle) + y sin(angle) = distance: each the strongest within 2 bands and 5 degrees, at most 80."""
    import cv2

    found = []  # [distance, angle, votes]: near vertical (both sides of 0) and near horizontal
    for low, high in ((0, TURN), (np.pi / 2 - TURN, np.pi / 2 + TURN), (np.pi - TURN, np.pi - STEP / 2)):
        lines = cv2.HoughLinesWithAccumulator(
            image, 1, STEP, int(0.3 * min(image.shape)), min_theta=low, max_theta=high
        )
        if lines is not None:
            found.append(lines.reshape(-1, 3))
    if not found:
        return []
    distance, angle, votes = np.concatenate(found).T.astype(np.float64)
    turned = angle > np.pi / 2 + TURN  # the same line as at angle - pi, with the distance's sign turned
    distance, angle = np.where(turned, -distance, distance), np.where(turned, angle - np.pi, angle)
    # Hough's local maxima are many along a thick or noisy line: keep those no stronger one is near.
    near = (np.abs(distance[:, None] - distance) <= 2 * band) & (np.abs(angle[:, None] - angle) <= np.deg2rad(5))
    strongest = ~(near & (votes[None, :] > votes[:, None])).any(axis=1)
    kept: list[tuple[float, float]] = []
    for i in np.flatnonzero(strongest)[np.argsort(-votes[strongest], kind="stable")]:
        if all(abs(distance[i] - d) > 2 * band or abs(angle[i] - a) > np.deg2rad(5) for a, d in kept):
            kept.append((float(angle[i]), float(distance[i])))
    return kept[:80]


def _turn(segment: np.ndarray) -> float:
    """How far (radians) segment ([2, (x, y)]) is turned from the nearest of horizontal and vertical."""
    (x0, y0), (x1, y1) = segment
    angle = np.arctan2(abs(y1 - y0), abs(x1 - x0))
    return float(min(angle, np.pi / 2 - angle))


def _across(mask: np.ndarray, angle: float, distance: float, band: float) -> list[list[float]] | None:
    """The line (Hough's angle and distance) as a segment across the picture, if mask has ink
    along at least 3/4 of it (a ruled line, broken by gaps, faint stretches and the writing); else None."""
    h, w = mask.shape
    steps = np.arange(max(h, w), dtype=np.float64)
    if abs(np.cos(angle)) > abs(np.sin(angle)):  # a steep line: x from y
        ys = steps[steps < h]
        xs = (distance - ys * np.sin(angle)) / np.cos(angle)
    else:
        xs = steps[steps < w]
        ys = (distance - xs * np.cos(angle)) / np.sin(angle)
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    xs, ys = xs[inside], ys[inside]
    if len(xs) < 0.75 * min(h, w):
        return None
    reach = int(np.ceil(band))
    found = np.zeros(len(xs), dtype=bool)
    for offset in range(-reach, reach + 1):  # ink within band of the line, across it
        if abs(np.cos(angle)) > abs(np.sin(angle)):
            x = np.clip(np.round(xs + offset).astype(int), 0, w - 1)
            found |= mask[ys.round().astype(int), x]
        else:
            y = np.clip(np.round(ys + offset).astype(int), 0, h - 1)
            found |= mask[y, xs.round().astype(int)]
    if found.mean() < 0.75:
        return None
    return [[xs[0], ys[0]], [xs[-1], ys[-1]]]


def _thickness(mask: np.ndarray, segment: np.ndarray, band: float) -> float:
    """How thick the ink along segment is (the median run of ink across it, where there is ink), or
    infinity where it is no thin line: thicker than 3 bands, or ink just beside it along most of it
    (writing or a pen crosses a printed line or lies along part of it; a wide stroke has ink all along)."""
    (x0, y0), (x1, y1) = segment
    length = max(1.0, float(np.hypot(x1 - x0, y1 - y0)))
    t = np.linspace(0, 1, int(length) + 1)
    xs, ys = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
    nx, ny = -(y1 - y0) / length, (x1 - x0) / length  # across the line
    offsets = np.arange(-np.ceil(4 * band), np.ceil(4 * band) + 1)
    x = np.clip(np.round(xs[:, None] + offsets * nx).astype(int), 0, mask.shape[1] - 1)
    y = np.clip(np.round(ys[:, None] + offsets * ny).astype(int), 0, mask.shape[0] - 1)
    across = mask[y, x]  # [positions, offsets]
    centre = len(offsets) // 2
    on = across[:, centre - int(np.ceil(band)) : centre + int(np.ceil(band)) + 1].any(axis=1)
    if not on.any():
        return np.inf
    thickness = float(np.median(across[on].sum(axis=1)))
    if thickness > 3 * band:
        return np.inf
    edge = int(np.ceil(thickness / 2 + band))
    beside = across[:, : centre - edge].any(axis=1) | across[:, centre + edge + 1 :].any(axis=1)
    return thickness if beside[on].mean() <= 0.5 else np.inf


def _meets(point: np.ndarray, segments: np.ndarray, tolerance: float) -> bool:
    """Whether point lies within tolerance of one of the segments ([n, 2, 2])."""
    return bool(len(segments)) and bool((_distances(point[None], segments) <= tolerance).any())


def _near_segments(points: np.ndarray, segments: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Which points lie within reach (one per segment; infinite: none) of any of the segments."""
    keep = np.isfinite(reach)
    if not keep.any():
        return np.zeros(len(points), dtype=bool)
    return (_distances(points, segments[keep]) <= reach[keep]).any(axis=1)


def _distances(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """[points, segments] distances from each point to each segment."""
    a, b = segments[:, 0], segments[:, 1]
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    return np.linalg.norm(points[:, None] - (a + t[..., None] * ab), axis=-1)


def _digit_strokes(ink: np.ndarray, specks: bool) -> np.ndarray:
    """ink without what is not writing: shapes at the frame's edge (a pen, the rest of a finger,
    the paper's edge) and specks away from the digit. The digit is the largest shape clear of
    the edge, unless that is a speck beside a larger shape at the edge (a tightly cropped digit
    touches it); the strokes near it stay with it (a 5's flag, a 4 in two strokes). Specks, away
    from the digit or at the edge, are dropped only when `specks` (in an even picture they may be
    its own strokes)."""
    import cv2

    mask = ink > 0
    reach = max(1, round(min(ink.shape) / 100))  # strokes broken by a faint pen still belong together
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    count, labels = cv2.connectedComponents(cv2.dilate(mask.astype(np.uint8), cross, iterations=reach), connectivity=8)
    count -= 1  # label 0 is the background
    if count <= 1:
        return ink
    ys, xs = np.nonzero(mask)
    shape = labels[ys, xs] - 1  # each inked pixel's shape
    mass = np.bincount(shape, weights=ink[ys, xs], minlength=count)
    top, left = np.full(count, ink.shape[0]), np.full(count, ink.shape[1])
    bottom, right = np.zeros(count, dtype=int), np.zeros(count, dtype=int)
    np.minimum.at(top, shape, ys), np.minimum.at(left, shape, xs)
    np.maximum.at(bottom, shape, ys + 1), np.maximum.at(right, shape, xs + 1)
    at_edge = (top == 0) | (left == 0) | (bottom == ink.shape[0]) | (right == ink.shape[1])
    inner = np.where(at_edge, 0.0, mass)
    main = int(np.argmax(inner)) if inner.max() >= 0.05 * mass.max() else int(np.argmax(mass))
    margin = 0.5 * max(bottom[main] - top[main], right[main] - left[main])
    apart = [top[main] - bottom, top - bottom[main], left[main] - right, left - right[main], np.zeros_like(top)]
    gap = np.maximum.reduce(apart)  # how far each shape's box lies from the digit's, 0 where they overlap
    edge_shape = at_edge & (np.arange(count) != main) & (specks | (mass >= 0.1 * mass[main]))
    keep = ~edge_shape & (~specks | (gap <= margin))
    return np.where(np.concatenate([[False], keep])[labels] & mask, ink, 0.0)


def centred(ink: np.ndarray) -> np.ndarray:
    """MNIST's steps on ink in [0, 1]: cropped to the digit, 20 px on its longer side, centred by mass in 28x28."""
    # Find the digit's box on a blurred copy: strokes survive the blur, isolated
    # specks of sensor or JPEG noise fade below the threshold and cannot widen it.
    radius = max(1.0, min(ink.shape) / 100)
    smooth = np.asarray(_gray_image(ink).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    if smooth.max() <= 0:
        raise NoDigit("no digit found (the picture is blank or has no contrast)")
    ys, xs = np.nonzero(smooth > 0.3 * smooth.max())
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]

    height, width = crop.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = np.asarray(_gray_image(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    digit *= 255 / digit.max()  # thin strokes shrunk a lot come out faint; MNIST's ink peaks at 255

    canvas = np.zeros((28, 28), dtype=np.float32)
    total = digit.sum()
    cy, cx = (np.indices(digit.shape) * digit).reshape(2, -1).sum(1) / total
    top = int(np.clip(round(14 - cy), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - digit.shape[1]))
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return canvas.round().astype(np.uint8)


def _gray_image(values: np.ndarray) -> Image.Image:
    """An 8-bit PIL image of values in [0, 1] (PIL's filters and resizing want one)."""
    return Image.fromarray((values * 255).round().astype(np.uint8))

# Copyright (c) mmaff contributors. All rights reserved.
"""Generate the demo dataset: a small, deterministic PASCAL VOC 2012 layout.

Usage::

    python tools/dataset_converters/make_demo_dataset.py OUT_DIR \\
        [--seed 0] [--num-train 240] [--num-val 60] [--size 112]

writes::

    OUT_DIR/JPEGImages/<id>.jpg             RGB images, JPEG quality 90, 4:4:4
    OUT_DIR/SegmentationClass/<id>.png      P-mode label maps, VOC palette:
                                            0 background, 1..C classes,
                                            255 boundary band on contours
    OUT_DIR/SegmentationClassAug/<id>.png   byte-identical copies (voc_aug)
    OUT_DIR/Annotations/<id>.xml            VOC XML, one <object> per object
    OUT_DIR/ImageSets/Segmentation/{train,val,trainval,trainaug,holdout}.txt
    OUT_DIR/classes.txt                     class names, background first
    OUT_DIR/meta.json                       the settings and generator version

Each image is a cluttered background (smooth random colour fields, noise,
distractor strokes and blobs drawn from the same colours as the objects)
with 1-3 objects. Every object has a body (a mildly deformed ellipse in one
of the shared body colours and textures) that carries only a weak class cue
(most often, not always, its class's own body colour) and a small
class-specific *part* (15-35 % of the object's visible area) whose pattern
(dots, stripes, rings, checks or a cross, in a colour shared by all
classes, drawn over the body's texture so that the object stays one
coherent colour region) is what tells the class. The label of the whole
object (body + part) is the class, so a classifier's CAM is strong on the
part and weak on the body, and the affinity / random-walk stages must
recover the body.

Everything is drawn from ``numpy.random.default_rng`` seeded by
``(seed, stream, index)``, one stream per image, so the same settings give
byte-identical files, and any single image can be rebuilt on its own: a
re-run on a complete dataset writes nothing, and a partial one (an
interrupted run, deleted files) is completed. Files are written atomically.

The generator lives in this file (plain functions, importable with
``importlib``): :func:`render_sample` draws one image with its label map,
instance map and per-object masks; :func:`generate` writes the dataset.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from mmengine.utils import ProgressBar

from mmaff.utils.io import (atomic_write, remove_stale_temp_files,
                            save_label_png)

GENERATOR_VERSION = '2.1'
#: Every HOLDOUT_EVERY-th training image (the 1st, 9th, 17th, ...) is in the
#: ``holdout`` split: labelled images for choosing settings, which the
#: demo's reported figures leave out.
HOLDOUT_EVERY = 8

#: Label names; index = label id. Foreground classes are named after their
#: discriminative part pattern.
CLASSES = ('background', 'dots', 'stripes', 'rings', 'checks', 'cross')
NUM_FOREGROUND = len(CLASSES) - 1
IGNORE_INDEX = 255
JPEG_QUALITY = 90
#: Width in pixels of the 255 band drawn along every object contour (one
#: pixel on each side of the contour).
BOUNDARY_WIDTH = 2
#: Guaranteed range of (visible part area) / (visible object area).
PART_FRACTION_RANGE = (0.15, 0.35)
#: Range the part fraction is aimed at before occlusion.
_PART_TARGET = (0.18, 0.32)
#: Object extent (long side) as a fraction of the image side.
OBJECT_SIDE_RANGE = (0.15, 0.5)
#: Probabilities of 1, 2 and 3 objects in an image.
_NUM_OBJECTS_P = (0.4, 0.4, 0.2)
#: Probability that a further object repeats a class already in the image.
_SAME_CLASS_P = 0.35
#: Probability that an object's body tries its class's own body colour
#: first (colour i + 1 is class i + 1's; the sixth colour is no class's).
_BODY_CLASS_P = 0.6
#: An occluded object keeps at least this share of its area and its part.
_MIN_VISIBLE = 0.6
_MIN_SIZE = 64

# Random streams: keys (seed, stream, index) all of the same length (numpy's
# SeedSequence treats trailing zeros as absent, so keys of different lengths
# could collide).
_STREAM_IMAGE = 1
_STREAM_CLASS_PLAN = 2

# RGB colours in [0, 1], shared by all classes.
_BODY_COLORS = np.array(
    [
        [0.78, 0.36, 0.26],  # brick
        [0.28, 0.52, 0.78],  # steel blue
        [0.36, 0.66, 0.34],  # leaf green
        [0.86, 0.74, 0.32],  # ochre
        [0.58, 0.40, 0.68],  # lavender
        [0.52, 0.50, 0.46],  # warm grey
    ],
    dtype=np.float32)
_PART_COLORS = np.array(
    [
        [0.96, 0.95, 0.90],  # white
        [0.08, 0.08, 0.10],  # black
        [0.92, 0.12, 0.12],  # red
        [0.10, 0.80, 0.86],  # cyan
        [1.00, 0.56, 0.00],  # orange
        [0.10, 0.16, 0.52],  # navy
        [0.86, 0.22, 0.70],  # magenta
    ],
    dtype=np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BODY_TEXTURES = ('gradient', 'speckle', 'mottle')
_PART_SHAPES = ('disc', 'square')


def sample_id(index: int) -> str:
    """The image id of the ``index``-th image (train first, then val)."""
    return f'demo_{index:05d}'


def split_ids(num_train: int, num_val: int) -> Dict[str, List[str]]:
    """Ids of every split file.

    Args:
        num_train (int): Number of training images (indices
            ``0..num_train-1``).
        num_val (int): Number of validation images (the next ``num_val``).

    Returns:
        dict[str, list[str]]: ``train``, ``val``, ``trainval`` and
        ``trainaug`` (= ``train``, mmseg's voc_aug convention) and
        ``holdout`` (every :data:`HOLDOUT_EVERY`-th training image from the
        first: the images on which the demo chooses its settings; they stay
        in ``train``, and the demo's metrics leave them out of the reported
        figures).
    """
    train = [sample_id(i) for i in range(num_train)]
    val = [sample_id(i) for i in range(num_train, num_train + num_val)]
    holdout = train[::HOLDOUT_EVERY]
    return dict(
        train=train,
        val=val,
        trainval=train + val,
        trainaug=train,
        holdout=holdout)


# ----------------------------------------------------------------- drawing
def _smooth_field(rng: np.random.Generator, size: int, grid: int,
                  channels: int) -> np.ndarray:
    """Random values on a coarse grid, upsampled smoothly: (S, S, ch)."""
    low = rng.random((grid, grid, channels), dtype=np.float32)
    field = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    return field.reshape(size, size, channels)


def _fill_polygon(size: int, points: np.ndarray) -> np.ndarray:
    """Rasterise a polygon given as (N, 2) float x, y: bool (S, S)."""
    mask = np.zeros((size, size), np.uint8)
    pts = np.round(points * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _paint(canvas: np.ndarray, mask: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` (S, S, 3) or (3,) into ``canvas`` where ``mask``."""
    if values.ndim == 1:
        canvas[mask] = values
    else:
        canvas[mask] = values[mask]


def _textured_fill(rng: np.random.Generator, size: int, color: np.ndarray,
                   texture: str) -> np.ndarray:
    """A colour with one of the shared, class-agnostic textures."""
    base = np.broadcast_to(color, (size, size, 3)).astype(np.float32)
    if texture == 'gradient':
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        ramp = np.cos(angle) * xs + np.sin(angle) * ys
        ramp = (ramp - ramp.mean())[..., None]
        out = base * (1 + rng.uniform(0.3, 0.5) * ramp)
    elif texture == 'speckle':
        out = base + rng.normal(0, 0.06, (size, size, 3)).astype(np.float32)
    elif texture == 'mottle':
        field = _smooth_field(rng, size, int(rng.integers(6, 12)), 1) - 0.5
        out = base * (1 + 0.45 * field)
    else:
        raise ValueError(f'unknown texture {texture!r}')
    out += rng.normal(0, 0.015, (size, size, 3)).astype(np.float32)
    return out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour fields + noise + class-agnostic distractors."""
    img = 0.1 + 0.8 * _smooth_field(rng, size, int(rng.integers(2, 5)), 3)
    img += 0.3 * (_smooth_field(rng, size, int(rng.integers(7, 13)), 3) - 0.5)
    img += rng.normal(0, rng.uniform(0.02, 0.05),
                      (size, size, 3)).astype(np.float32)
    palette = np.concatenate([_BODY_COLORS, _PART_COLORS])

    def _color():
        if rng.random() < 0.7:
            color = palette[rng.integers(len(palette))]
        else:
            color = rng.random(3, dtype=np.float32)
        return color * rng.uniform(0.85, 1.15)

    # Distractor blobs: small ellipses with the objects' body textures.
    for _ in range(int(rng.integers(1, 5))):
        mask = np.zeros((size, size), np.uint8)
        center = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(max(2, v)) for v in rng.uniform(0.03, 0.1, 2) * size)
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1,
                    -1)
        texture = _BODY_TEXTURES[rng.integers(len(_BODY_TEXTURES))]
        _paint(img, mask.astype(bool),
               _textured_fill(rng, size, _color(), texture))
    # Distractor strokes: polylines of any colour.
    for _ in range(int(rng.integers(2, 7))):
        mask = np.zeros((size, size), np.uint8)
        num = int(rng.integers(2, 5))
        start = rng.uniform(0, size, 2)
        steps = rng.normal(0, 0.25 * size, (num - 1, 2))
        pts = np.concatenate([start[None], start + np.cumsum(steps, 0)])
        cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1,
                      int(rng.integers(1, 4)))
        _paint(img, mask.astype(bool), _color())
    return img


def _body_outline(cx: float, cy: float, radius: float, aspect: float,
                  theta: float, harmonics: np.ndarray) -> np.ndarray:
    """A mildly deformed, rotated ellipse as an (N, 2) polygon."""
    phi = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    rad = radius * (1 + sum(amp * np.cos(k * phi + phase)
                            for k, amp, phase in harmonics))
    x, y = rad * np.cos(phi), rad * aspect * np.sin(phi)
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _part_outline(px: float, py: float, half: float, shape: str,
                  beta: float) -> np.ndarray:
    """The part region (a disc or a rotated square) as an (N, 2) polygon."""
    if shape == 'disc':
        phi = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    else:
        phi = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        half = half * np.sqrt(2)  # corners of a square of half-side `half`
    phi = phi + beta
    return np.stack([px + half * np.cos(phi), py + half * np.sin(phi)], 1)


def _pattern(name: str, rng: np.random.Generator, size: int, px: float,
             py: float, half: float) -> np.ndarray:
    """The 'on' pixels of a class's part pattern around (px, py): bool."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    alpha = rng.uniform(0, np.pi)
    dx, dy = xs - px, ys - py
    u = np.cos(alpha) * dx + np.sin(alpha) * dy
    v = -np.sin(alpha) * dx + np.cos(alpha) * dy
    if name == 'dots':
        g = max(5.0, 0.75 * half)
        du = np.mod(u + rng.uniform(0, g), g) - g / 2
        dv = np.mod(v + rng.uniform(0, g), g) - g / 2
        return du**2 + dv**2 < (0.32 * g)**2
    if name == 'stripes':
        g = max(4.0, 0.6 * half)
        return np.mod(u + rng.uniform(0, g), g) < g / 2
    if name == 'rings':
        g = max(4.0, 0.55 * half)
        return np.mod(np.sqrt(u**2 + v**2), g) < g / 2
    if name == 'checks':
        g = max(4.0, 0.6 * half)
        cells = (
            np.floor((u + rng.uniform(0, g)) / g) + np.floor(
                (v + rng.uniform(0, g)) / g))
        return np.mod(cells, 2) == 0
    if name == 'cross':
        w = max(1.5, 0.25 * half)
        return (np.abs(u) < w) | (np.abs(v) < w)
    raise ValueError(f'no part pattern for class {name!r}')


def _sample_geometry(rng: np.random.Generator, size: int,
                     shrink: float) -> Optional[dict]:
    """Sample an object's body and part masks (unoccluded)."""
    side = rng.uniform(*OBJECT_SIDE_RANGE) * shrink
    radius = side * size / 2
    aspect = rng.uniform(0.65, 1.0)
    theta = rng.uniform(0, np.pi)
    harmonics = np.stack([
        np.array([2.0, 3.0]),
        rng.uniform(0, 0.07, 2),
        rng.uniform(0, 2 * np.pi, 2)
    ], 1)
    reach = radius * (1 + harmonics[:, 1].sum()) + 1
    if 2 * reach >= size - 2:
        return None
    cx, cy = rng.uniform(reach, size - 1 - reach, 2)
    body = _fill_polygon(
        size, _body_outline(cx, cy, radius, aspect, theta, harmonics))
    area = body.sum()
    if area == 0:
        return None
    # The part sits off-centre, inside the body (like a face or marking).
    rho, psi = rng.uniform(0.2, 0.5), rng.uniform(0, 2 * np.pi)
    ox, oy = rho * radius * np.cos(psi), rho * radius * aspect * np.sin(psi)
    px = cx + np.cos(theta) * ox - np.sin(theta) * oy
    py = cy + np.sin(theta) * ox + np.cos(theta) * oy
    shape = _PART_SHAPES[rng.integers(len(_PART_SHAPES))]
    beta = rng.uniform(0, np.pi)
    target = rng.uniform(*_PART_TARGET)
    # Bisection on the part's half-size: the regions are nested, so the
    # covered share of the body grows with it.
    lo, hi = 0.5, 2.0 * radius
    for _ in range(14):
        mid = (lo + hi) / 2
        part = body & _fill_polygon(size,
                                    _part_outline(px, py, mid, shape, beta))
        if part.sum() < target * area:
            lo = mid
        else:
            hi = mid
    half = hi
    part = body & _fill_polygon(size, _part_outline(px, py, half, shape, beta))
    return dict(body=body, part=part, part_center=(px, py), part_half=half)


def _visible_ok(body: np.ndarray, part: np.ndarray, vis: np.ndarray) -> bool:
    """Whether an object, as far as visible, still meets the guarantees."""
    vis_area, vis_part = vis.sum(), (part & vis).sum()
    if vis_area < _MIN_VISIBLE * body.sum():
        return False
    # Some pixel must lie off the 255 band (its 3x3 neighbourhood inside).
    if not cv2.erode(vis.astype(np.uint8), np.ones((3, 3), np.uint8)).any():
        return False
    if vis_part < _MIN_VISIBLE * part.sum():
        return False
    frac = vis_part / max(vis_area, 1)
    return PART_FRACTION_RANGE[0] <= frac <= PART_FRACTION_RANGE[1]


def _class_plan(seed: int, index: int, rng: np.random.Generator) -> List[int]:
    """Class ids of the objects to place (1-based), before placement.

    The first object's class cycles through a random permutation of the
    classes over each block of ``NUM_FOREGROUND`` consecutive images, so any
    run of images covers every class evenly.
    """
    block_rng = np.random.default_rng(
        [seed, _STREAM_CLASS_PLAN, index // NUM_FOREGROUND])
    first = int(
        block_rng.permutation(NUM_FOREGROUND)[index % NUM_FOREGROUND]) + 1
    plan = [first]
    num = int(rng.choice(3, p=_NUM_OBJECTS_P)) + 1
    for _ in range(num - 1):
        absent = [c for c in range(1, NUM_FOREGROUND + 1) if c not in plan]
        if rng.random() < _SAME_CLASS_P or not absent:
            plan.append(int(plan[rng.integers(len(plan))]))
        else:
            plan.append(int(absent[rng.integers(len(absent))]))
    return plan


def _boundary_band(instances: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds two instance ids: bool."""
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(instances, kernel) != cv2.erode(instances, kernel)


def render_sample(seed: int, index: int, size: int = 112) -> dict:
    """Draw one image with its annotations (deterministic).

    Args:
        seed (int): Dataset seed (>= 0).
        index (int): Image index (>= 0); the image depends on nothing else.
        size (int): Image side in pixels. Defaults to 112.

    Returns:
        dict: ``image`` (S, S, 3) uint8 RGB before JPEG encoding; ``label``
        (S, S) uint8 label ids with the 255 boundary band; ``instances``
        (S, S) uint8, 0 = background, k + 1 = the k-th object, before the
        band; ``objects``: per object, in drawing order (later ones occlude
        earlier ones), a dict with ``label`` (id), ``name``, ``mask`` and
        ``part_mask`` (bool (S, S), visible pixels of the whole object and
        of its discriminative part), ``part_fraction`` (their area ratio),
        ``bbox`` (xmin, ymin, xmax, ymax) 0-based inclusive pixel extent of
        ``mask``.
    """
    _check_settings(seed, 1, 1, size)
    if int(index) < 0:
        raise ValueError(f'image index must be >= 0, got {index}')
    rng = np.random.default_rng([seed, _STREAM_IMAGE, index])
    plan = _class_plan(seed, index, rng)
    canvas = _background(rng, size)
    placed = []  # dicts with class, body, part, pattern state
    for cls in plan:
        geom = None
        for attempt in range(48):
            cand = _sample_geometry(rng, size, 0.9**(attempt // 12))
            if cand is None:
                continue
            ok = _visible_ok(cand['body'], cand['part'], cand['body'])
            for obj in placed:
                if not ok:
                    break
                ok = _visible_ok(obj['body'], obj['part'],
                                 obj['vis'] & ~cand['body'])
            if ok:
                geom = cand
                break
        if geom is None:
            continue  # no room left: place fewer objects
        for obj in placed:
            obj['vis'] = obj['vis'] & ~geom['body']
        geom['vis'] = geom['body'].copy()
        geom['label'] = cls
        placed.append(geom)
        _draw_object(rng, canvas, geom, placed)
    if not placed:
        raise RuntimeError(f'image {index}: no object could be placed')

    image = np.clip(canvas + rng.normal(0, 0.01, canvas.shape), 0, 1)
    image = np.round(image * 255).astype(np.uint8)
    instances = np.zeros((size, size), np.uint8)
    label = np.zeros((size, size), np.uint8)
    objects = []
    for k, obj in enumerate(placed):
        instances[obj['vis']] = k + 1
        label[obj['vis']] = obj['label']
    label[_boundary_band(instances)] = IGNORE_INDEX
    for k, obj in enumerate(placed):
        vis = obj['vis']
        part = obj['part'] & vis
        ys, xs = np.nonzero(vis)
        if not (label[vis] == obj['label']).any():
            raise RuntimeError(f'image {index}: object {k} is covered by the '
                               'boundary band')
        objects.append(
            dict(
                label=int(obj['label']),
                name=CLASSES[obj['label']],
                mask=vis,
                part_mask=part,
                part_fraction=float(part.sum() / vis.sum()),
                bbox=(int(xs.min()), int(ys.min()), int(xs.max()),
                      int(ys.max()))))
    return dict(image=image, label=label, instances=instances, objects=objects)


def _draw_object(rng: np.random.Generator, canvas: np.ndarray, obj: dict,
                 placed: Sequence[dict]) -> None:
    """Paint an object's body and part onto the canvas (in place)."""
    size = canvas.shape[0]
    body = obj['body']
    # Body colour: unused in this image (so touching objects differ) and
    # contrasting with what lies around the object.
    ring = cv2.dilate(body.astype(np.uint8), np.ones((5, 5), np.uint8))
    ring = ring.astype(bool) & ~body
    around = canvas[ring].mean(0) if ring.any() else canvas.mean((0, 1))
    used = {o['body_color'] for o in placed if 'body_color' in o}
    free = [i for i in range(len(_BODY_COLORS)) if i not in used]
    order = [int(i) for i in rng.permutation(free)]
    # A weak class cue: most often the class's own body colour comes first
    # (as on real objects, whose whole body says a little about the class
    # while a part says most), so a classifier's CAM is strong on the part
    # and weak on the body.
    own = obj['label'] - 1
    if own in order and rng.random() < _BODY_CLASS_P:
        order.remove(own)
        order.insert(0, own)
    best, best_dist = None, -1.0
    for i in order:
        color = _BODY_COLORS[i] * rng.uniform(0.9, 1.1)
        dist = float(np.linalg.norm(color - around))
        if dist > best_dist:
            best, best_dist = (int(i), color), dist
        if dist >= 0.3:
            break
    obj['body_color'] = best[0]
    texture = _BODY_TEXTURES[rng.integers(len(_BODY_TEXTURES))]
    _paint(canvas, body, _textured_fill(rng, size, best[1], texture))
    # Part: the class's pattern in a shared part colour drawn over the
    # body's own texture (like markings on a coat): between the pattern's
    # strokes the part shows the body, so the object is one coherent colour
    # region and colour-based refinement can carry a part-peaked CAM over
    # the body.
    body_luma = float(best[1] @ _LUMA)
    luma = _PART_COLORS @ _LUMA
    options = [
        i for i in range(len(_PART_COLORS))
        if abs(luma[i] - body_luma) >= 0.25
    ]
    color = _PART_COLORS[options[rng.integers(len(options))]]
    on = _pattern(CLASSES[obj['label']], rng, size, *obj['part_center'],
                  obj['part_half'])
    part_img = color + rng.normal(0, 0.02, (size, size, 3)).astype(np.float32)
    on &= obj['part']
    _paint(canvas, on, part_img)


# ------------------------------------------------------------------ writing
def voc_xml(image_id: str, size: int, objects: Sequence[dict]) -> str:
    """A VOC annotation (1-based, inclusive pixel coordinates).

    Args:
        image_id (str): The image id.
        size (int): Image side.
        objects (Sequence[dict]): ``name`` and 0-based ``bbox`` of each
            object, as :func:`render_sample` returns them.

    Returns:
        str: The XML text.
    """
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'demo'
    ET.SubElement(root, 'filename').text = f'{image_id}.jpg'
    source = ET.SubElement(root, 'source')
    ET.SubElement(source, 'database').text = 'mmaff demo dataset'
    size_el = ET.SubElement(root, 'size')
    ET.SubElement(size_el, 'width').text = str(size)
    ET.SubElement(size_el, 'height').text = str(size)
    ET.SubElement(size_el, 'depth').text = '3'
    ET.SubElement(root, 'segmented').text = '1'
    for obj in objects:
        el = ET.SubElement(root, 'object')
        ET.SubElement(el, 'name').text = obj['name']
        ET.SubElement(el, 'pose').text = 'Unspecified'
        ET.SubElement(el, 'truncated').text = '0'
        ET.SubElement(el, 'difficult').text = '0'
        box = ET.SubElement(el, 'bndbox')
        for key, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), obj['bbox']):
            ET.SubElement(box, key).text = str(int(value) + 1)
    ET.indent(root)
    return ET.tostring(root, encoding='unicode') + '\n'


def _write_text(path: str, text: str) -> None:

    def _write(tmp):
        with open(tmp, 'w', encoding='utf-8', newline='\n') as f:
            f.write(text)

    atomic_write(path, _write)


def _write_jpeg(path: str, image_rgb: np.ndarray) -> None:
    # No chroma subsampling (4:4:4): the images are small and the part
    # patterns are only a few pixels wide.
    params = [
        cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
    ]
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                           params)
    if not ok:
        raise RuntimeError(f'{path}: JPEG encoding failed')

    def _write(tmp):
        with open(tmp, 'wb') as f:
            f.write(buf.tobytes())

    atomic_write(path, _write)


def _check_settings(seed: int, num_train: int, num_val: int,
                    size: int) -> None:
    for name, value, low in (('seed', seed, 0), ('num_train', num_train, 1),
                             ('num_val', num_val, 1), ('size', size,
                                                       _MIN_SIZE)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f'{name} must be an int, got {value!r}')
        if value < low:
            raise ValueError(f'{name} must be >= {low}, got {value}')
    if size > 2048:
        raise ValueError(f'size must be <= 2048, got {size}')


def _meta(seed: int, num_train: int, num_val: int, size: int) -> dict:
    return dict(
        generator='mmaff tools/dataset_converters/make_demo_dataset.py',
        version=GENERATOR_VERSION,
        seed=int(seed),
        num_train=int(num_train),
        num_val=int(num_val),
        size=int(size),
        jpeg_quality=JPEG_QUALITY,
        jpeg_sampling='4:4:4',
        classes=list(CLASSES),
        ignore_index=IGNORE_INDEX,
        boundary_width=BOUNDARY_WIDTH,
        part_fraction_range=list(PART_FRACTION_RANGE),
        object_side_range=list(OBJECT_SIDE_RANGE))


def _image_files(out_dir: str, image_id: str) -> Dict[str, str]:
    return dict(
        jpg=osp.join(out_dir, 'JPEGImages', f'{image_id}.jpg'),
        png=osp.join(out_dir, 'SegmentationClass', f'{image_id}.png'),
        aug=osp.join(out_dir, 'SegmentationClassAug', f'{image_id}.png'),
        xml=osp.join(out_dir, 'Annotations', f'{image_id}.xml'))


def _check_target(out_dir: str, meta: dict) -> bool:
    """Refuse a folder made with other settings or not by this tool.

    Returns:
        bool: Whether ``meta.json`` already exists (and matches).
    """
    meta_path = osp.join(out_dir, 'meta.json')
    if osp.isfile(meta_path):
        try:
            with open(meta_path, encoding='utf-8') as f:
                old = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f'{meta_path}: unreadable ({err}); remove '
                             f'{out_dir} to regenerate the dataset') from err
        if old != meta:
            keys = sorted(
                k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            diffs = ', '.join(f'{k}: {old.get(k)!r} -> {meta.get(k)!r}'
                              for k in keys)
            raise ValueError(
                f'{out_dir} holds a demo dataset made with other settings '
                f'({diffs}); remove it or choose another folder')
        return True
    for sub in ('JPEGImages', 'SegmentationClass', 'Annotations'):
        folder = osp.join(out_dir, sub)
        if osp.isdir(folder) and os.listdir(folder):
            raise ValueError(
                f'{out_dir} already holds data ({folder} is not empty) but '
                'no meta.json of this tool: refusing to write into it')
    return False


#: The folders the generators write into, relative to the dataset root.
OUTPUT_FOLDERS = ('.', 'JPEGImages', 'SegmentationClass',
                  'SegmentationClassAug', 'Annotations',
                  osp.join('ImageSets', 'Segmentation'))


def remove_leftovers(out_dir: str) -> int:
    """Remove the temporary files that a killed run left in the dataset's
    folders (see :func:`mmaff.utils.io.remove_stale_temp_files`).

    Args:
        out_dir (str): Dataset root.

    Returns:
        int: Number of files removed (printed when > 0).
    """
    removed = 0
    for sub in OUTPUT_FOLDERS:
        removed += len(
            remove_stale_temp_files(osp.normpath(osp.join(out_dir, sub))))
    if removed:
        print(f'{out_dir}: removed {removed} temporary files of an '
              'interrupted run')
    return removed


def _class_counts(out_dir: str, ids: Dict[str, List[str]]) -> dict:
    """Number of images of each split that contain each class (from XML)."""
    counts = {}
    for split in ('train', 'val'):
        per_class = {name: 0 for name in CLASSES[1:]}
        for image_id in ids[split]:
            path = osp.join(out_dir, 'Annotations', f'{image_id}.xml')
            names = {el.text for el in ET.parse(path).getroot().iter('name')}
            for name in names:
                per_class[name] += 1
        counts[split] = per_class
    return counts


def generate(out_dir: str,
             seed: int = 0,
             num_train: int = 240,
             num_val: int = 60,
             size: int = 112,
             show_progress: bool = True) -> dict:
    """Write (or complete) the demo dataset in ``out_dir``.

    Idempotent: files that exist are kept (every file is written atomically,
    and each image can be rebuilt alone), so a re-run on a complete dataset
    writes nothing and a partial one is completed.

    Args:
        out_dir (str): Dataset root (created if missing).
        seed (int): Random seed (>= 0). Defaults to 0.
        num_train (int): Training images. Defaults to 240.
        num_val (int): Validation images. Defaults to 60.
        size (int): Image side in pixels (>= 64). Defaults to 112.
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        dict: ``out_dir``, ``seed``, ``size``, ``num_train``, ``num_val``,
        ``classes``; ``written`` (files written by this call), ``rendered``
        (images drawn), ``was_complete`` (nothing had to be done) and
        ``class_image_counts`` (per split, images containing each class).
    """
    _check_settings(seed, num_train, num_val, size)
    out_dir = osp.abspath(out_dir)
    meta = _meta(seed, num_train, num_val, size)
    have_meta = _check_target(out_dir, meta)
    remove_leftovers(out_dir)
    ids = split_ids(num_train, num_val)
    written = 0
    if not have_meta:
        os.makedirs(out_dir, exist_ok=True)
        _write_text(
            osp.join(out_dir, 'meta.json'),
            json.dumps(meta, indent=2, sort_keys=True) + '\n')
        written += 1
    texts = {osp.join(out_dir, 'classes.txt'): '\n'.join(CLASSES) + '\n'}
    for split, split_list in ids.items():
        path = osp.join(out_dir, 'ImageSets', 'Segmentation', f'{split}.txt')
        texts[path] = ''.join(f'{i}\n' for i in split_list)
    for path, text in texts.items():
        if not osp.isfile(path):
            _write_text(path, text)
            written += 1

    todo = []
    for index, image_id in enumerate(ids['trainval']):
        files = _image_files(out_dir, image_id)
        if not all(osp.isfile(p) for p in files.values()):
            todo.append((index, image_id, files))
    rendered = 0
    if todo:
        bar = ProgressBar(len(todo)) if show_progress else None
        for index, image_id, files in todo:
            if not all(osp.isfile(files[k]) for k in ('jpg', 'png', 'xml')):
                sample = render_sample(seed, index, size)
                rendered += 1
                if not osp.isfile(files['jpg']):
                    _write_jpeg(files['jpg'], sample['image'])
                    written += 1
                if not osp.isfile(files['png']):
                    save_label_png(files['png'], sample['label'])
                    written += 1
                if not osp.isfile(files['xml']):
                    _write_text(files['xml'],
                                voc_xml(image_id, size, sample['objects']))
                    written += 1
            if not osp.isfile(files['aug']):
                atomic_write(
                    files['aug'],
                    lambda tmp, src=files['png']: shutil.copyfile(src, tmp))
                written += 1
            if bar is not None:
                bar.update()
        if bar is not None:
            sys.stdout.write('\n')
    was_complete = written == 0
    if was_complete:
        print(f'{out_dir}: the demo dataset is complete, nothing to do')
    else:
        print(f'{out_dir}: wrote {written} files ({rendered} images drawn)')
    return dict(
        out_dir=out_dir,
        seed=int(seed),
        size=int(size),
        num_train=int(num_train),
        num_val=int(num_val),
        classes=list(CLASSES),
        written=written,
        rendered=rendered,
        was_complete=was_complete,
        class_image_counts=_class_counts(out_dir, ids))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the deterministic demo dataset (VOC 2012 '
        'layout) for the mmaff CPU demo.')
    parser.add_argument('out_dir', help='dataset root to write')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--num-train', type=int, default=240, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=60, help='validation images')
    parser.add_argument(
        '--size', type=int, default=112, help='image side in pixels')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    summary = generate(
        args.out_dir,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        size=args.size)
    for split, counts in summary['class_image_counts'].items():
        print(f'{split}: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))
    return summary


if __name__ == '__main__':
    main()

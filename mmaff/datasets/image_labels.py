# Copyright (c) mmaff contributors. All rights reserved.
"""Image-level label sources: VOC XML, segmentation masks, a label file.

The one home of reading image-level labels. Each reader returns the sorted
label ids (1..C, background 0 excluded) of one image, and names the file and
the problem when the input is bad.

Label file format (``tools/dataset_converters/make_image_labels.py`` writes
it): one line per image, ``<image id> <class name> <class name> ...``
separated by whitespace; an image with no foreground class has its id alone.
A class name with spaces (COCO's "traffic light") is written with
underscores ("traffic_light") and read back in either form. Lines starting
with ``#`` are comments. Another format (JSON, CSV) is
refused with an error that names the file and this format.
"""
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image


def _name_to_id(class_names: Sequence[str]) -> Dict[str, int]:
    return {name: i for i, name in enumerate(class_names) if i > 0}


def label_token(name: str) -> str:
    """A class name as one label-file token: runs of whitespace become
    ``_`` ('traffic light' -> 'traffic_light')."""
    return '_'.join(name.split())


def _token_to_id(class_names: Sequence[str]) -> Dict[str, int]:
    """Label-file token -> label id: each name as it is and as
    :func:`label_token` writes it; two classes sharing a token is an error."""
    lut = _name_to_id(class_names)
    for name, i in list(lut.items()):
        token = label_token(name)
        if lut.setdefault(token, i) != i:
            raise ValueError(
                f'class names {class_names[lut[token]]!r} and {name!r} are '
                f'the same label-file token {token!r}')
    return lut


def labels_from_xml(path: str, class_names: Sequence[str]) -> List[int]:
    """Label ids of all objects of a VOC XML annotation (difficult too).

    Args:
        path (str): The XML file.
        class_names (Sequence[str]): Class names, background first.

    Returns:
        list[int]: Sorted unique label ids.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation file not found: {path}')
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f'{path}: corrupt XML annotation ({err})') from err
    lut = _name_to_id(class_names)
    ids = set()
    for obj in root.iter('object'):
        name = (obj.findtext('name') or '').strip()
        if name not in lut:
            raise ValueError(f'{path}: object name {name!r} is not one of '
                             f'the dataset classes {list(class_names[1:])}')
        ids.add(lut[name])
    return sorted(ids)


def labels_from_mask(path: str,
                     num_classes: int,
                     ignore_index: int = 255) -> List[int]:
    """Label ids present in a segmentation mask (other than 0 and ignore).

    Args:
        path (str): The mask PNG (label ids).
        num_classes (int): Number of classes, background included.
        ignore_index (int): Defaults to 255.

    Returns:
        list[int]: Sorted unique label ids.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'segmentation mask not found: {path}')
    try:
        with Image.open(path) as img:
            mask = np.array(img)
    except (OSError, SyntaxError) as err:
        raise ValueError(f'{path}: corrupt mask image ({err})') from err
    if mask.ndim != 2:
        raise ValueError(f'{path}: a mask must be single-channel, got shape '
                         f'{mask.shape}')
    values = np.unique(mask)
    bad = [int(v) for v in values if v >= num_classes and v != ignore_index]
    if bad:
        raise ValueError(f'{path}: mask values {bad} lie outside the class '
                         f'range 0..{num_classes - 1} (ignore '
                         f'{ignore_index})')
    return [
        int(v) for v in values if 0 < v < num_classes and v != ignore_index
    ]


#: The label file format, quoted by the errors about a malformed file.
LABEL_FILE_FORMAT = ('a text file with one line per image, '
                     "'<image id> <class name> <class name> ...' separated "
                     "by whitespace ('#' starts a comment line)")

#: Characters of another format (JSON, CSV) that an image id or an unknown
#: class name of this format is taken not to contain.
_FOREIGN_CHARS = frozenset(',;"{}[]')


def _label_file_lines(path: str) -> List[Tuple[int, List[str]]]:
    """The (line number, tokens) of the non-comment lines of a label file;
    a binary, JSON or empty file is an error naming it."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f'{path}: not a text file ({err}); expected '
                         f'{LABEL_FILE_FORMAT}') from err
    lines = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if parts and not parts[0].startswith('#'):
            lines.append((lineno, parts))
    if not lines:
        raise ValueError(f'{path}: the label file lists no images; expected '
                         f'{LABEL_FILE_FORMAT}')
    if lines[0][1][0][0] in '{[':
        raise ValueError(f'{path}: this looks like a JSON file; expected '
                         f'{LABEL_FILE_FORMAT}')
    return lines


def read_label_file(path: str,
                    class_names: Sequence[str]) -> Dict[str, List[int]]:
    """Read a label file (image id -> class names).

    Args:
        path (str): The label file (format: see the module docstring).
        class_names (Sequence[str]): Class names, background first.

    Returns:
        dict[str, list[int]]: Image id -> sorted label ids. A missing,
        binary, empty or JSON/CSV file, an unknown class name and an image
        listed twice are errors naming the file (and line).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'label file not found: {path}')
    lut = _token_to_id(class_names)
    labels: Dict[str, List[int]] = {}
    for lineno, parts in _label_file_lines(path):
        img_id, names = parts[0], parts[1:]
        unknown = [n for n in names if n not in lut]
        foreign = [t for t in [img_id] + unknown if _FOREIGN_CHARS & set(t)]
        if foreign:
            raise ValueError(
                f'{path}:{lineno}: malformed line (token {foreign[0]!r}: '
                f'a JSON or CSV file?); expected {LABEL_FILE_FORMAT}')
        if unknown:
            raise ValueError(
                f'{path}:{lineno}: unknown class name(s) {unknown} for '
                f'image {img_id!r}; dataset classes are '
                f'{list(class_names[1:])}')
        if img_id in labels:
            raise ValueError(f'{path}:{lineno}: image {img_id!r} is '
                             'listed twice')
        labels[img_id] = sorted({lut[n] for n in names})
    return labels


def write_label_file(path: str, labels: Dict[str, Sequence[int]],
                     class_names: Sequence[str]) -> None:
    """Write a label file (atomically); names with spaces as
    :func:`label_token` writes them, so that they read back.

    Args:
        path (str): Output path.
        labels (dict[str, Sequence[int]]): Image id -> label ids.
        class_names (Sequence[str]): Class names, background first.
    """
    from mmaff.utils.io import atomic_write
    _token_to_id(class_names)  # every class has a token of its own
    lines = [
        ' '.join([img_id] + [label_token(class_names[i]) for i in sorted(ids)])
        for img_id, ids in labels.items()
    ]

    def _write(tmp):
        with open(tmp, 'w') as f:
            f.write('\n'.join(lines) + '\n')

    atomic_write(path, _write)

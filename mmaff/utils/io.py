# Copyright (c) mmaff contributors. All rights reserved.
"""File formats between the stages, written atomically and read with checks.

* CAM file ``<id>.npz``: the normalised CAMs (K, H, W) of the image's
  present classes at full image resolution, ``labels`` int (K,) their label
  ids (1..C), ``img_shape`` (H, W). The CAMs are stored in one of two
  encodings (:func:`save_cam_file`'s ``dtype``), both read by
  :func:`load_cam_file`:

  - ``cams``: float16 (the default; ~480 KiB a class for 640 x 480);
  - ``cams_u8_delta``: the CAMs quantised to uint8 (``round(255 * cam)``,
    error <= 1/510) and delta-coded along both image axes (modulo 256) before
    the zip compression; smooth maps then compress ~9x better than float16
    (for COCO-sized sets). Decoded with plain numpy as
    ``np.cumsum(np.cumsum(d, 1, dtype=np.uint8), 2, dtype=np.uint8) / 255``.
* Label map ``<id>.png``: single-channel P-mode PNG of label ids with the VOC
  palette, 255 = ignore (confident-region maps and pseudo labels).

Every writer writes a temporary file in the target folder and renames it, so
a reader never sees a half-written file and an interrupted export resumes by
skipping the files that exist.
"""
import io
import json
import os
import os.path as osp
import re
import socket
import tempfile
import zipfile
import zlib
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image


def _file_mode() -> int:
    """Mode of a new file under the current umask (mkstemp makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _host_tag() -> str:
    """This machine's name, reduced to letters and digits."""
    return re.sub(r'[^A-Za-z0-9]', '', socket.gethostname())[:32] or 'host'


#: ``.<name>.tmp-<host>-<pid>-<random><ext>``: the temporary files of
#: :func:`atomic_write`, named after the writing process.
_TEMP_NAME = re.compile(r'^\..+\.tmp-([A-Za-z0-9]+)-(\d+)-[A-Za-z0-9_]+')


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped,
    does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f'/proc/{pid}/stat') as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ('Z', 'X')


def remove_stale_temp_files(folder: str) -> List[str]:
    """Remove what killed writers left: :func:`atomic_write`'s temporary
    files in ``folder`` whose writing process (on this machine) is gone.

    Call it when a run that writes into ``folder`` starts. Files of live
    processes (another rank, a worker) and of other machines are kept.

    Args:
        folder (str): The output folder (may not exist).

    Returns:
        list[str]: The files removed.
    """
    if not osp.isdir(folder):
        return []
    host, removed = _host_tag(), []
    for name in os.listdir(folder):
        match = _TEMP_NAME.match(name)
        if match and match.group(1) == host and not _alive(
                int(match.group(2))):
            path = osp.join(folder, name)
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


def atomic_write(path: str, write_fn: Callable[[str], None]) -> None:
    """Write a file through a temporary name in the same folder + rename.

    The temporary name (``.<name>.tmp-<host>-<pid>-<random><ext>``) names
    the writing process, so that :func:`remove_stale_temp_files` can tell
    the leftovers of a killed run from the files being written.

    Args:
        path (str): Final path.
        write_fn (Callable[[str], None]): Writes the content to the path it
            is given (the temporary file).
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = osp.splitext(osp.basename(path))
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{base}.tmp-{_host_tag()}-{os.getpid()}-',
        suffix=ext,
        dir=folder)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj, **kwargs) -> None:
    """Write ``obj`` as a JSON file (newline-terminated), atomically.

    Args:
        path (str): Output file.
        obj: A JSON-serialisable object.
        **kwargs: Arguments of :func:`json.dumps` (``indent``,
            ``sort_keys``, ...).
    """
    text = json.dumps(obj, **kwargs) + '\n'

    def _write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)

    atomic_write(path, _write)


def check_unique_ids(ids: Sequence[str], path: str) -> None:
    """Refuse a split that lists an image twice (it would count twice).

    Args:
        ids (Sequence[str]): The image ids, in file order.
        path (str): The split file, named in the error.
    """
    seen, twice = set(), []
    for img_id in ids:
        if img_id in seen:
            twice.append(img_id)
        seen.add(img_id)
    if twice:
        raise ValueError(f'split file {path} lists {len(twice)} image(s) '
                         f'more than once, e.g. {twice[0]!r}')


def read_split(path: str) -> List[str]:
    """Read a split file: one image id a line (its first token).

    Args:
        path (str): The split file.

    Returns:
        list[str]: The image ids, in order; an error names a missing or
        empty file and ids listed twice.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'split file not found: {path}')
    with open(path, encoding='utf-8') as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise ValueError(f'split file {path} lists no images')
    check_unique_ids(ids, path)
    return ids


def voc_palette(num: int = 256) -> np.ndarray:
    """The standard VOC colour map.

    Args:
        num (int): Number of entries. Defaults to 256.

    Returns:
        np.ndarray: (num, 3) uint8.
    """
    palette = np.zeros((num, 3), dtype=np.uint8)
    for i in range(num):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def save_label_png(path: str, label: np.ndarray) -> None:
    """Save a label map as a P-mode PNG with the VOC palette, atomically.

    Args:
        path (str): Output path.
        label (np.ndarray): (H, W) integer label ids in [0, 255].
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f'{path}: a label map must be 2-D, got shape '
                         f'{label.shape}')
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f'{path}: label ids must lie in [0, 255]')
    img = Image.fromarray(label.astype(np.uint8), mode='P')
    img.putpalette(voc_palette().reshape(-1).tolist())
    atomic_write(path, lambda tmp: img.save(tmp, format='PNG'))


def _open_label_png(path: str) -> Image.Image:
    """Open a label PNG (header only) and refuse a multi-channel one."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'label map not found: {path}')
    try:
        img = Image.open(path)
    except (OSError, SyntaxError) as err:
        raise ValueError(f'{path}: corrupt label image ({err})') from err
    if img.mode not in ('P', 'L'):
        img.close()
        raise ValueError(f'{path}: expected a single-channel (P or L mode) '
                         f'PNG of label ids, got mode {img.mode}')
    return img


def check_label_png_mode(path: str) -> Tuple[int, int]:
    """Check that a label PNG is single-channel (P or L mode), from its
    header only (nothing is decoded).

    A colour rendering (RGB), an alpha channel or a 16-bit image would be
    misread by a reader that converts to uint8: these are refused.

    Args:
        path (str): The PNG.

    Returns:
        tuple[int, int]: Its (H, W).
    """
    with _open_label_png(path) as img:
        width, height = img.size
    return height, width


def check_label_map(label: np.ndarray,
                    path: str,
                    expected_shape: Optional[Tuple[int, int]] = None,
                    num_classes: Optional[int] = None,
                    ignore_index: int = 255) -> None:
    """Check a decoded label map: 2-D, its size and its ids.

    Args:
        label (np.ndarray): The label map as read.
        path (str): Its file, named in the errors.
        expected_shape (tuple, optional): (H, W) it must have (the image's).
        num_classes (int, optional): Ids must be < num_classes or equal to
            ``ignore_index``.
        ignore_index (int): Defaults to 255.
    """
    if label.ndim != 2:
        raise ValueError(f'{path}: a label map must be single-channel, got '
                         f'shape {label.shape}')
    if expected_shape is not None and label.shape != tuple(expected_shape):
        raise ValueError(f'{path}: label size {label.shape} does not match '
                         f'the image size {tuple(expected_shape)}')
    if num_classes is not None:
        bad = (label >= num_classes) & (label != ignore_index)
        if bad.any():
            raise ValueError(
                f'{path}: label values {np.unique(label[bad]).tolist()} lie '
                f'outside the class range 0..{num_classes - 1} '
                f'(and ignore {ignore_index})')


def load_label_png(path: str,
                   expected_shape: Optional[Tuple[int, int]] = None,
                   num_classes: Optional[int] = None,
                   ignore_index: int = 255) -> np.ndarray:
    """Read a label PNG (P or L mode) and check it.

    The one reader of label maps: :func:`check_label_png_mode` and
    :func:`check_label_map` are its checks, also applied by
    :class:`mmaff.datasets.transforms.CheckLabelMap` to the maps that
    mmseg's ``LoadAnnotations`` reads.

    Args:
        path (str): The PNG.
        expected_shape (tuple, optional): (H, W) it must have.
        num_classes (int, optional): Ids must be < num_classes or equal to
            ``ignore_index``.
        ignore_index (int): Defaults to 255.

    Returns:
        np.ndarray: (H, W) uint8.
    """
    img = _open_label_png(path)
    try:
        with img:
            label = np.array(img)
    except (OSError, SyntaxError) as err:
        raise ValueError(f'{path}: corrupt label image ({err})') from err
    check_label_map(label, path, expected_shape, num_classes, ignore_index)
    return label


def save_cam_file(path: str,
                  cams: np.ndarray,
                  labels: Sequence[int],
                  dtype: str = 'float16') -> None:
    """Save normalised CAMs of the present classes, atomically.

    Args:
        path (str): Output ``.npz`` path.
        cams (np.ndarray): (K, H, W) values in [0, 1].
        labels (Sequence[int]): Label id of each channel (K,).
        dtype (str): ``'float16'`` (key ``cams``) or ``'uint8'`` (key
            ``cams_u8_delta``: quantised to 1/255 and delta-coded, see the
            module doc). Defaults to ``'float16'``.
    """
    if dtype not in CAM_DTYPES:
        raise ValueError(f'{path}: CAM dtype must be one of {CAM_DTYPES}, '
                         f'got {dtype!r}')
    cams = np.asarray(cams, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if cams.ndim != 3 or cams.shape[0] != labels.shape[0]:
        raise ValueError(f'{path}: cams {cams.shape} do not match '
                         f'{labels.shape[0]} labels')
    if not np.isfinite(cams).all():
        raise ValueError(f'{path}: CAMs contain non-finite values')
    if cams.size and (cams.min() < -CAM_TOLERANCE
                      or cams.max() > 1 + CAM_TOLERANCE):
        raise ValueError(f'{path}: CAM values span [{cams.min():.4g}, '
                         f'{cams.max():.4g}]; normalised CAMs lie in [0, 1]')
    if len(set(labels.tolist())) != labels.shape[0]:
        raise ValueError(f'{path}: a class is listed twice in {labels}')
    if dtype == 'uint8':
        stored = dict(cams_u8_delta=encode_cams_u8(cams))
    else:
        stored = dict(cams=cams.astype(np.float16))

    def _write(tmp):
        with open(tmp, 'wb') as f:
            np.savez_compressed(
                f,
                **stored,
                labels=labels.astype(np.int16),
                img_shape=np.asarray(cams.shape[1:], dtype=np.int32))

    atomic_write(path, _write)


#: The encodings of CAM files (:func:`save_cam_file`'s ``dtype``).
CAM_DTYPES = ('float16', 'uint8')


def encode_cams_u8(cams: np.ndarray) -> np.ndarray:
    """Quantise CAMs in [0, 1] to uint8 and delta-code them (the
    ``cams_u8_delta`` encoding; :func:`decode_cams_u8` inverts it).

    Args:
        cams (np.ndarray): (K, H, W) values in [0, 1].

    Returns:
        np.ndarray: (K, H, W) uint8: the differences (modulo 256) of
        ``round(255 * cams)`` to the left, then to the upper neighbour.
    """
    q = np.round(np.clip(cams, 0, 1) * 255).astype(np.uint8)
    q = np.diff(q, axis=2, prepend=np.zeros_like(q[:, :, :1]))
    return np.diff(q, axis=1, prepend=np.zeros_like(q[:, :1, :]))


def decode_cams_u8(delta: np.ndarray) -> np.ndarray:
    """Invert :func:`encode_cams_u8`.

    Args:
        delta (np.ndarray): (K, H, W) uint8 as stored.

    Returns:
        np.ndarray: (K, H, W) float32 in [0, 1], multiples of 1/255.
    """
    q = np.cumsum(delta, axis=1, dtype=np.uint8)
    q = np.cumsum(q, axis=2, dtype=np.uint8)
    return q.astype(np.float32) / 255


#: Largest excursion of a stored CAM value beyond [0, 1] that is taken for
#: float16 rounding (one float16 step at 1, 2 ** -10) and clipped.
CAM_TOLERANCE = 2.0**-10


def load_cam_file(
    path: str,
    expected_shape: Optional[Tuple[int, int]] = None,
    image_labels: Optional[Sequence[int]] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Read a CAM file and check it against the image and its labels.

    Args:
        path (str): The ``.npz`` file.
        expected_shape (tuple, optional): The image's (H, W).
        image_labels (Sequence[int], optional): The image-level label ids:
            the file must hold a CAM of each of them and of no other class.

    Returns:
        tuple[np.ndarray, np.ndarray]: cams (K, H, W) float32 in [0, 1] and
        labels (K,) int64. Values beyond [0, 1] by more than
        :data:`CAM_TOLERANCE` (float16 rounding) are an error naming the
        file; smaller excursions are clipped.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'CAM file not found: {path}')
    try:
        data = np.load(path)
        if not hasattr(data, 'files'):  # a plain .npy array, not an archive
            raise ValueError('not an .npz archive of named arrays')
        with data:
            files = set(data.files)
            key = 'cams' if 'cams' in files else 'cams_u8_delta'
            if {key, 'labels'} <= files:
                if key == 'cams':
                    cams = data['cams'].astype(np.float32)
                else:
                    delta = data[key]
                    if delta.dtype != np.uint8 or delta.ndim != 3:
                        raise ValueError(
                            f'{key} must be a 3-D uint8 array, got '
                            f'{delta.dtype} of shape {delta.shape}')
                    cams = decode_cams_u8(delta)
                labels = data['labels'].astype(np.int64).reshape(-1)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError,
            io.UnsupportedOperation, KeyError, zlib.error) as err:
        raise ValueError(f'{path}: corrupt CAM file ({err})') from err
    missing = {key, 'labels'} - files
    if missing:
        raise ValueError(f'{path}: not a CAM file, missing keys '
                         f'{sorted(missing)} (CAMs are stored as `cams` or '
                         '`cams_u8_delta`)')
    if cams.ndim != 3 or cams.shape[0] != labels.shape[0]:
        raise ValueError(f'{path}: cams {cams.shape} do not match '
                         f'{labels.shape[0]} labels')
    if expected_shape is not None and cams.shape[1:] != tuple(expected_shape):
        raise ValueError(f'{path}: CAM size {cams.shape[1:]} does not match '
                         f'the image size {tuple(expected_shape)}')
    if image_labels is not None:
        _check_cam_classes(path, labels, image_labels)
    if not np.isfinite(cams).all():
        raise ValueError(f'{path}: CAMs contain non-finite values')
    if cams.size and (cams.min() < -CAM_TOLERANCE
                      or cams.max() > 1 + CAM_TOLERANCE):
        raise ValueError(
            f'{path}: CAM values lie outside [0, 1] (min {cams.min():.4g}, '
            f'max {cams.max():.4g}); a CAM file holds normalised CAMs '
            '(each class map divided by its maximum)')
    return np.clip(cams, 0, 1, out=cams), labels


def _check_cam_classes(path: str, labels: np.ndarray,
                       image_labels: Sequence[int]) -> None:
    """A CAM file has a CAM for every image class and for no other."""
    expected = sorted({int(i) for i in image_labels})
    present = set(labels.tolist())
    if len(present) != len(labels):
        raise ValueError(f'{path}: a class has two CAMs ({labels.tolist()})')
    extra = sorted(present - set(expected))
    if extra:
        raise ValueError(f'{path}: CAMs for classes {extra} that are absent '
                         f'from the image labels {expected}')
    missing = [i for i in expected if i not in present]
    if missing:
        raise ValueError(
            f'{path}: no CAM for the image label(s) {missing} (the file has '
            f'CAMs of {sorted(present)}, the image labels are {expected}); '
            'export the CAMs again for these labels')


def read_rgb(path: str, shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB, as the test pipelines do.

    Args:
        path (str): Image file.
        shape (Sequence[int], optional): The (H, W) it must have (e.g. its
            CAMs' size).

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.
    """
    import mmcv
    if not osp.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    image = mmcv.imread(path, flag='color', channel_order='bgr')
    if image is None:
        raise ValueError(f'cannot decode the image {path}')
    image = image[:, :, ::-1]
    if shape is not None and image.shape[:2] != tuple(shape):
        raise ValueError(f'{path}: image size {image.shape[:2]} does not '
                         f'match its CAMs / scores {tuple(shape)}')
    return np.ascontiguousarray(image, dtype=np.uint8)

# Copyright (c) mmaff contributors. All rights reserved.
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmaff.utils.io import (atomic_write, load_cam_file, load_label_png,
                            save_cam_file, save_label_png, voc_palette,
                            write_json)


def _voc_colour(label: int):
    """VOC colour of ``label`` from the colour-map definition: bit 3k+c of
    the id becomes bit 7-k of channel c (c = 0 red, 1 green, 2 blue)."""
    rgb = [0, 0, 0]
    for bit in range(24):
        if label >> bit & 1:
            channel, k = bit % 3, bit // 3
            rgb[channel] += 2**(7 - k)
    return tuple(rgb)


# ---------------------------------------------------------------- atomic


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / 'out.txt'
    path.write_text('old')

    def write(tmp):
        assert osp.dirname(tmp) == str(tmp_path)  # same folder -> rename
        assert tmp != str(path)
        with open(tmp, 'w') as f:
            f.write('new')

    atomic_write(str(path), write)
    assert path.read_text() == 'new'
    assert sorted(os.listdir(tmp_path)) == ['out.txt']


def test_atomic_write_creates_missing_folder(tmp_path):
    path = tmp_path / 'a' / 'b' / 'x.bin'
    atomic_write(str(path), lambda tmp: open(tmp, 'wb').close())
    assert path.is_file()
    assert os.listdir(tmp_path / 'a' / 'b') == ['x.bin']


@pytest.mark.parametrize('error', [RuntimeError, KeyboardInterrupt])
def test_atomic_write_failure_keeps_old_file(tmp_path, error):
    path = tmp_path / 'out.txt'
    path.write_text('old content')
    seen = []

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        seen.append(tmp)
        raise error('boom')

    with pytest.raises(error, match='boom'):
        atomic_write(str(path), write)
    assert path.read_text() == 'old content'
    assert not osp.exists(seen[0])
    assert sorted(os.listdir(tmp_path)) == ['out.txt']


def test_atomic_write_failure_without_old_file(tmp_path):
    path = tmp_path / 'new.txt'

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write('x')
        raise ValueError('bad')

    with pytest.raises(ValueError):
        atomic_write(str(path), write)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------- CAM files


def test_cam_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    cams = rng.random((2, 7, 9)).astype(np.float32)
    cams[0, 3, 4] = 1.0
    cams[1, 0, 0] = 0.0
    path = str(tmp_path / 'cams' / 'img.npz')
    save_cam_file(path, cams, [3, 15])
    assert sorted(os.listdir(tmp_path / 'cams')) == ['img.npz']

    out, labels = load_cam_file(
        path, expected_shape=(7, 9), image_labels=[3, 15])
    assert out.dtype == np.float32 and out.shape == (2, 7, 9)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 15]
    # float16 keeps 11 significant bits: error <= 2**-12 for values < 1
    np.testing.assert_allclose(out, cams, rtol=0, atol=2.0**-12)
    assert out[0, 3, 4] == 1.0 and out[1, 0, 0] == 0.0

    # readable with plain numpy, CAMs stored as float16
    with np.load(path) as data:
        assert data['cams'].dtype == np.float16
        assert data['labels'].tolist() == [3, 15]
        assert data['img_shape'].tolist() == [7, 9]


def test_cam_file_without_classes(tmp_path):
    path = str(tmp_path / 'empty.npz')
    save_cam_file(path, np.zeros((0, 5, 6)), [])
    cams, labels = load_cam_file(path, expected_shape=(5, 6), image_labels=[])
    assert cams.shape == (0, 5, 6) and labels.shape == (0, )


def test_save_cam_file_checks(tmp_path):
    path = str(tmp_path / 'bad.npz')
    with pytest.raises(ValueError, match='bad.npz'):
        save_cam_file(path, np.zeros((2, 4, 4)), [1])
    with pytest.raises(ValueError, match='bad.npz'):
        save_cam_file(path, np.zeros((4, 4)), [1])
    cams = np.zeros((1, 4, 4))
    cams[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match='bad.npz.*non-finite'):
        save_cam_file(path, cams, [1])
    assert os.listdir(tmp_path) == []


def _write_npz(path, **arrays):
    with open(path, 'wb') as f:
        np.savez(f, **arrays)


def test_load_cam_file_missing(tmp_path):
    path = str(tmp_path / 'nope.npz')
    with pytest.raises(FileNotFoundError, match='nope.npz'):
        load_cam_file(path)


@pytest.mark.parametrize(
    'kind',
    ['garbage', 'empty', 'truncated', 'flip3', 'flip4', 'flip20', 'npy'])
def test_load_cam_file_corrupt(tmp_path, kind):
    path = str(tmp_path / 'c.npz')
    save_cam_file(path, np.random.default_rng(0).random((2, 30, 30)), [1, 2])
    raw = open(path, 'rb').read()
    if kind == 'garbage':
        raw = b'this is not a numpy file at all' * 4
    elif kind == 'empty':
        raw = b''
    elif kind == 'truncated':
        raw = raw[:len(raw) // 2]
    elif kind.startswith('flip'):  # damage the compressed CAM data
        # (at 1/3 zip's CRC check fails, at 1/4 and 1/20 zlib's inflate)
        mid = len(raw) // int(kind[4:])
        raw = raw[:mid] + bytes(b ^ 0xFF for b in raw[mid:mid + 64]) + \
            raw[mid + 64:]
    if kind == 'npy':  # a plain array, not an archive of named arrays
        with open(path, 'wb') as f:
            np.save(f, np.zeros((2, 3, 3)))
    else:
        with open(path, 'wb') as f:
            f.write(raw)
    with pytest.raises(ValueError, match='c.npz'):
        load_cam_file(path)


def test_load_cam_file_missing_keys(tmp_path):
    path = str(tmp_path / 'k.npz')
    _write_npz(path, cams=np.zeros((1, 3, 3), np.float16))
    with pytest.raises(ValueError, match=r'k.npz.*missing keys.*labels'):
        load_cam_file(path)


def test_load_cam_file_count_mismatch(tmp_path):
    path = str(tmp_path / 'n.npz')
    _write_npz(
        path, cams=np.zeros((2, 3, 3), np.float16), labels=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match='n.npz'):
        load_cam_file(path)
    _write_npz(path, cams=np.zeros((3, 3), np.float16), labels=np.array([1]))
    with pytest.raises(ValueError, match='n.npz'):
        load_cam_file(path)


def test_load_cam_file_size_mismatch(tmp_path):
    path = str(tmp_path / 's.npz')
    save_cam_file(path, np.zeros((1, 4, 6)), [7])
    load_cam_file(path, expected_shape=(4, 6))
    with pytest.raises(ValueError, match=r's.npz.*\(6, 4\)'):
        load_cam_file(path, expected_shape=(6, 4))


def test_load_cam_file_class_not_in_image_labels(tmp_path):
    path = str(tmp_path / 'l.npz')
    save_cam_file(path, np.zeros((2, 4, 4)), [3, 15])
    load_cam_file(path, image_labels=(15, 3))
    with pytest.raises(ValueError, match=r'l.npz.*\[15\]'):
        load_cam_file(path, image_labels=[3])


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_load_cam_file_non_finite(tmp_path, value):
    path = str(tmp_path / 'f.npz')
    cams = np.zeros((1, 3, 3), np.float16)
    cams[0, 2, 1] = value
    _write_npz(path, cams=cams, labels=np.array([4], np.int16))
    with pytest.raises(ValueError, match='f.npz.*non-finite'):
        load_cam_file(path)


# ------------------------------------------------------------- label PNGs


def test_voc_palette_matches_definition():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    for i in range(256):
        assert tuple(palette[i]) == _voc_colour(i), i
    # a few colours everybody knows
    known = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        3: (128, 128, 0),
        15: (192, 128, 128),
        20: (0, 64, 128),
        255: (224, 224, 192)
    }
    for i, rgb in known.items():
        assert _voc_colour(i) == rgb
        assert tuple(palette[i]) == rgb


def test_label_png_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 21, (13, 17)).astype(np.uint8)
    label[0] = 255
    path = str(tmp_path / 'lab' / 'x.png')
    save_label_png(path, label.astype(np.int64))
    assert os.listdir(tmp_path / 'lab') == ['x.png']
    with Image.open(path) as img:
        assert img.format == 'PNG' and img.mode == 'P'
        assert img.size == (17, 13)
        pal = np.array(img.getpalette()[:768]).reshape(-1, 3)
        for i in (0, 1, 15, 20, 255):
            assert tuple(pal[i]) == _voc_colour(i)
        np.testing.assert_array_equal(np.array(img), label)
    out = load_label_png(path, expected_shape=(13, 17), num_classes=21)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, label)


def test_save_label_png_range_checks(tmp_path):
    path = str(tmp_path / 'bad.png')
    with pytest.raises(ValueError, match='bad.png'):
        save_label_png(path, np.full((3, 3), 256))
    with pytest.raises(ValueError, match='bad.png'):
        save_label_png(path, np.full((3, 3), -1))
    with pytest.raises(ValueError, match='bad.png.*2-D'):
        save_label_png(path, np.zeros((3, 3, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_load_label_png_checks(tmp_path):
    label = np.zeros((4, 5), np.uint8)
    label[1, 1], label[2, 2] = 20, 255
    path = str(tmp_path / 'y.png')
    save_label_png(path, label)
    with pytest.raises(ValueError, match=r'y.png.*\(5, 4\)'):
        load_label_png(path, expected_shape=(5, 4))
    load_label_png(path, num_classes=21)  # 255 is ignore, 20 < 21
    with pytest.raises(ValueError, match=r'y.png.*\[20\]'):
        load_label_png(path, num_classes=20)
    with pytest.raises(FileNotFoundError, match='missing.png'):
        load_label_png(str(tmp_path / 'missing.png'))
    rgb = str(tmp_path / 'rgb.png')
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(rgb)
    with pytest.raises(ValueError, match='rgb.png.*mode RGB'):
        load_label_png(rgb)
    gray = str(tmp_path / 'gray.png')
    Image.fromarray(label, mode='L').save(gray)
    np.testing.assert_array_equal(load_label_png(gray), label)
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'\x89PNG not really')
    with pytest.raises(ValueError, match='corrupt.png'):
        load_label_png(str(corrupt))


def test_atomic_write_gives_files_the_usual_mode(tmp_path):
    import os
    import stat

    from mmaff.utils.io import atomic_write
    old = os.umask(0o022)
    try:
        path = tmp_path / 'x.txt'
        atomic_write(str(path), lambda p: open(p, 'w').write('a'))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    finally:
        os.umask(old)


def test_read_split(tmp_path):
    from mmaff.utils.io import read_split
    path = tmp_path / 'split.txt'
    path.write_text('a 1\n\nb\n  c  \n')
    assert read_split(str(path)) == ['a', 'b', 'c']
    path.write_text('a\nb\na\n')
    with pytest.raises(ValueError, match=r'split\.txt.*more than once.*a'):
        read_split(str(path))
    path.write_text('\n')
    with pytest.raises(ValueError, match='lists no images'):
        read_split(str(path))
    with pytest.raises(FileNotFoundError, match='nosuch'):
        read_split(str(tmp_path / 'nosuch.txt'))


def test_remove_stale_temp_files_keeps_live_writers(tmp_path):
    import subprocess
    import sys

    from mmaff.utils import io as mio
    folder = tmp_path / 'out'
    folder.mkdir()
    # a writer killed mid-write leaves its temporary file behind
    script = (
        'import os, sys\n'
        'from mmaff.utils.io import atomic_write\n'
        'def write(tmp):\n'
        '    open(tmp, "w").write("partial")\n'
        '    os.kill(os.getpid(), 9)\n'
        f'atomic_write({str(folder / "a.png")!r}, write)\n')
    proc = subprocess.run([sys.executable, '-c', script])
    assert proc.returncode == -9
    left = [n for n in os.listdir(folder)]
    assert len(left) == 1 and left[0].startswith('.a.tmp-')
    # this process's own temporary file (a write in progress) stays, and
    # so do other files and other machines' temporary files
    live = folder / f'.b.tmp-{mio._host_tag()}-{os.getpid()}-xyz.png'
    other = folder / '.c.tmp-otherhost-1-xyz.png'
    for path in (live, other, folder / 'done.png'):
        path.write_text('x')
    removed = mio.remove_stale_temp_files(str(folder))
    assert removed == [str(folder / left[0])]
    assert sorted(os.listdir(folder)) == sorted(
        [live.name, other.name, 'done.png'])
    assert mio.remove_stale_temp_files(str(tmp_path / 'nosuch')) == []


# ------------------------------------ CAM files: every class, values in [0, 1]


def test_load_cam_file_lacks_an_image_class(tmp_path):
    # the exported labels would silently miss class 15
    path = str(tmp_path / 'short.npz')
    save_cam_file(path, np.full((1, 4, 4), 0.5), [3])
    load_cam_file(path, image_labels=[3])
    with pytest.raises(ValueError,
                       match=r'short\.npz: no CAM for .*\[15, 20\]'):
        load_cam_file(path, image_labels=[20, 3, 15])
    load_cam_file(path)  # without image labels: the file's own classes


@pytest.mark.parametrize('value', [50.0, 1.01, -0.01, -3.0])
def test_load_cam_file_values_outside_unit_range(tmp_path, value):
    path = str(tmp_path / 'range.npz')
    cams = np.zeros((2, 3, 3), np.float16)
    cams[1, 2, 1] = value
    _write_npz(path, cams=cams, labels=np.array([4, 9], np.int16))
    with pytest.raises(ValueError, match=r'range\.npz.*\[0, 1\]'):
        load_cam_file(path)


def test_load_cam_file_float16_rounding_is_tolerated(tmp_path):
    # one float16 step beyond [0, 1]: rounding, clipped back into the range
    path = str(tmp_path / 'round.npz')
    cams = np.zeros((1, 2, 2), np.float16)
    cams[0, 0, 0] = 1 + 2.0**-10
    cams[0, 1, 1] = -2.0**-10
    _write_npz(path, cams=cams, labels=np.array([1], np.int16))
    out, _ = load_cam_file(path)
    assert out.min() == 0.0 and out.max() == 1.0


def test_cam_files_refuse_out_of_range_values_and_repeated_classes(tmp_path):
    path = str(tmp_path / 'a.npz')
    with pytest.raises(ValueError, match=r'a\.npz.*\[0, 1\]'):
        save_cam_file(path, np.full((1, 2, 2), 3.0, np.float32), [1])
    with pytest.raises(ValueError, match=r'a\.npz.*twice'):
        save_cam_file(path, np.zeros((2, 2, 2), np.float32), [4, 4])
    # a file written by other means is refused by the reader
    np.savez(
        path,
        cams=np.zeros((2, 2, 2), np.float16),
        labels=np.array([4, 4], np.int16),
        img_shape=np.array([2, 2], np.int32))
    with pytest.raises(ValueError, match=r'a\.npz.*two CAMs'):
        load_cam_file(path, image_labels=[4])


def test_a_killed_but_unreaped_writer_counts_as_gone():
    import subprocess
    import sys
    import time

    from mmaff.utils import io as mio
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    assert mio._alive(os.getpid())
    deadline = time.time() + 30
    while mio._alive(proc.pid) and time.time() < deadline:
        time.sleep(0.05)  # exited but not reaped: a zombie
    assert not mio._alive(proc.pid)
    proc.wait()


# ------------------------------------------------ CAM files: uint8 encoding


def _smooth_cams(k, h, w, seed=0):
    """CAM-like maps: coarse random fields, bilinearly upsampled (as the
    CAM op upsamples its stride-8 maps), ReLU, each divided by its max."""
    import cv2
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        low = rng.normal(size=(h // 8, w // 8)).astype(np.float32)
        up = np.maximum(cv2.resize(low, (w, h), cv2.INTER_LINEAR), 0)
        out.append(up / up.max())
    return np.stack(out)


def test_cam_file_uint8_round_trip(tmp_path):
    cams = _smooth_cams(3, 48, 64)
    cams[0, :5, :7] = 0.0
    cams[1, 10, 20] = 1.0
    path = str(tmp_path / 'q.npz')
    save_cam_file(path, cams, [2, 7, 80], dtype='uint8')
    out, labels = load_cam_file(
        path, expected_shape=(48, 64), image_labels=[80, 2, 7])
    assert out.dtype == np.float32 and labels.tolist() == [2, 7, 80]
    # quantised to the nearest multiple of 1/255
    np.testing.assert_array_equal(out, np.round(cams * 255) / 255)
    assert np.abs(out - cams).max() <= 0.5 / 255 + 1e-7
    assert out[0, :5, :7].max() == 0.0 and out[1, 10, 20] == 1.0
    # stored under its own key, delta-coded; the module doc's numpy recipe
    with np.load(path) as data:
        assert 'cams' not in data.files
        delta = data['cams_u8_delta']
        assert delta.dtype == np.uint8 and delta.shape == (3, 48, 64)
        # not the quantised values themselves (those are decoded)
        assert not np.array_equal(delta, np.round(cams * 255))
        plain = np.cumsum(
            np.cumsum(delta, 1, dtype=np.uint8), 2, dtype=np.uint8) / 255
        np.testing.assert_allclose(plain, out, atol=1e-7)
        assert data['img_shape'].tolist() == [48, 64]


def test_cam_file_uint8_random_values_and_wrap_around(tmp_path):
    # noisy maps make the differences wrap modulo 256 in both directions
    cams = np.random.default_rng(3).random((2, 9, 11)).astype(np.float32)
    cams[:, ::2] = 1.0
    cams[:, 1::2] = 0.0 + cams[:, 1::2] * 0.01
    path = str(tmp_path / 'w.npz')
    save_cam_file(path, cams, [1, 2], dtype='uint8')
    out, _ = load_cam_file(path)
    np.testing.assert_array_equal(out, np.round(cams * 255) / 255)
    save_cam_file(str(tmp_path / 'e.npz'), np.zeros((0, 4, 5)), [],
                  dtype='uint8')
    out, labels = load_cam_file(str(tmp_path / 'e.npz'), (4, 5), [])
    assert out.shape == (0, 4, 5) and labels.shape == (0, )


def test_cam_file_uint8_is_much_smaller_on_smooth_cams(tmp_path):
    cams = _smooth_cams(2, 240, 320, seed=1)
    f16, u8 = str(tmp_path / 'f16.npz'), str(tmp_path / 'u8.npz')
    save_cam_file(f16, cams, [1, 2])
    save_cam_file(u8, cams, [1, 2], dtype='uint8')
    assert os.path.getsize(u8) * 2.5 < os.path.getsize(f16)


def test_float16_cam_files_of_earlier_versions_still_read(tmp_path):
    """A file as the float16-only writer wrote it (the same keys and
    dtypes, built here by hand) reads as before."""
    cams = _smooth_cams(2, 16, 24, seed=2)
    path = str(tmp_path / 'old.npz')
    with open(path, 'wb') as f:
        np.savez_compressed(
            f,
            cams=cams.astype(np.float16),
            labels=np.array([5, 9], np.int16),
            img_shape=np.array([16, 24], np.int32))
    out, labels = load_cam_file(path, (16, 24), [5, 9])
    np.testing.assert_array_equal(out, cams.astype(np.float16))
    assert labels.tolist() == [5, 9]
    # and the default writer still writes exactly that layout
    save_cam_file(str(tmp_path / 'new.npz'), cams, [5, 9])
    with np.load(str(tmp_path / 'new.npz')) as data:
        assert sorted(data.files) == ['cams', 'img_shape', 'labels']
        assert data['cams'].dtype == np.float16


def test_cam_file_dtype_checks(tmp_path):
    path = str(tmp_path / 'd.npz')
    with pytest.raises(ValueError, match=r'd\.npz.*float16.*uint8'):
        save_cam_file(path, np.zeros((1, 2, 2)), [1], dtype='int8')
    assert os.listdir(tmp_path) == []
    # a cams_u8_delta that is not uint8 is refused, naming the file
    _write_npz(
        path,
        cams_u8_delta=np.zeros((1, 2, 2), np.float32),
        labels=np.array([1], np.int16))
    with pytest.raises(ValueError, match=r'd\.npz.*uint8'):
        load_cam_file(path)
    _write_npz(path, labels=np.array([1], np.int16))
    with pytest.raises(ValueError,
                       match=r'd\.npz.*missing keys.*cams_u8_delta'):
        load_cam_file(path)


def test_write_json_round_trips_atomically(tmp_path):
    import json
    path = tmp_path / 'sub' / 'out.json'
    obj = {'b': [1, 2.5], 'a': 'traffic light'}
    write_json(str(path), obj, indent=1, sort_keys=True)
    text = path.read_text(encoding='utf-8')
    assert text == json.dumps(obj, indent=1, sort_keys=True) + '\n'
    assert json.loads(text) == obj
    assert os.listdir(tmp_path / 'sub') == ['out.json']  # no temp file
    # a value JSON cannot hold: the error, and the old file kept
    with pytest.raises(TypeError):
        write_json(str(path), {'x': object()})
    assert path.read_text(encoding='utf-8') == text
    assert os.listdir(tmp_path / 'sub') == ['out.json']

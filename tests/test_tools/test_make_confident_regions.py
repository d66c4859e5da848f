# Copyright (c) mmaff contributors. All rights reserved.
"""tools/make_confident_regions.py: stage 2 from CAM files.

The tool is a thin driver of :class:`ConfidentRegionHook` (the CAM test
run's exporter) over CAM files that exist. Tested here: the maps against an
independent computation (the image read as RGB, the CAM file, the op), the
resuming, the worker pool, the errors (each naming the image or file), the
scores against a computation from the files, the stats JSON, the command
line (in process and as a subprocess), and a killed tool.
"""
import json
import multiprocessing as mp
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from mmaff_testing import load_tool
from PIL import Image

from mmaff.ops.confident import confident_region_map
from mmaff.utils import io as mio
from mmaff.utils.io import (load_cam_file, load_label_png, save_cam_file,
                            save_label_png)

TOOL = osp.join(
    osp.dirname(osp.abspath(__file__)), '..', '..', 'tools',
    'make_confident_regions.py')
SCORE_KEYS = ('fg_precision', 'bg_precision', 'fg_recall', 'bg_recall',
              'unsure_fraction')


@pytest.fixture(scope='module')
def tool():
    yield load_tool('tools/make_confident_regions.py',
                    'make_confident_regions_tool')
    sys.modules.pop('make_confident_regions_tool', None)


# id -> (height, width, label ids)
IMAGES = {
    'a': (30, 41, [3]),
    'b': (24, 24, [5, 12]),
    'c': (19, 33, []),
    'd': (40, 28, [1, 20]),
}


def _make_image(height, width, ids, seed):
    """An image with one coloured rectangle per class, CAM blobs on them
    (not exact in float16) and a mask with some ignored pixels."""
    rng = np.random.default_rng(seed)
    img = np.clip(
        np.full(
            (height, width, 3), 120.0) + rng.normal(0, 5, (height, width, 3)),
        0, 255)
    yy, xx = np.mgrid[:height, :width]
    cams, gt = [], np.zeros((height, width), np.uint8)
    for k, cls in enumerate(ids):
        cy = height * (k + 1) // (len(ids) + 1)
        cx = width * (k + 1) // (len(ids) + 1)
        box = (abs(yy - cy) <= height // 5) & (abs(xx - cx) <= width // 5)
        img[box] = rng.integers(0, 255, 3)
        gt[box] = cls
        cam = np.exp(-((yy - cy)**2 + (xx - cx)**2) / (2 * (height / 5)**2))
        cams.append(cam / (cam.max() + 1e-5))
    gt[0, :3] = 255  # some ignored ground truth
    cams = np.stack(cams) if cams else np.zeros((0, height, width))
    return img.astype(np.uint8), cams.astype(np.float32), gt


@pytest.fixture()
def dataset(tmp_path):
    img_dir, cam_dir, gt_dir = (tmp_path / n for n in ('img', 'cam', 'gt'))
    for d in (img_dir, cam_dir, gt_dir):
        d.mkdir()
    samples = []
    for seed, (img_id, (h, w, ids)) in enumerate(IMAGES.items()):
        img, cams, gt = _make_image(h, w, ids, seed)
        Image.fromarray(img).save(img_dir / f'{img_id}.png')
        save_cam_file(str(cam_dir / f'{img_id}.npz'), cams, ids)
        save_label_png(str(gt_dir / f'{img_id}.png'), gt)
        samples.append(
            dict(
                img_id=img_id,
                img_path=str(img_dir / f'{img_id}.png'),
                img_labels=list(ids)))
    return dict(
        root=tmp_path,
        img_dir=str(img_dir),
        cam_dir=str(cam_dir),
        gt_dir=str(gt_dir),
        samples=samples)


def expected_map(img_path, cam_path, **settings):
    """The map from its definition: the image read as RGB (PIL; cv2 for
    JPEG, as decoders may differ), the CAMs as the file stores them."""
    if img_path.endswith('.jpg'):
        image = cv2.cvtColor(cv2.imread(img_path), cv2.COLOR_BGR2RGB)
    else:
        image = np.array(Image.open(img_path).convert('RGB'))
    with np.load(cam_path) as data:
        cams = data['cams'].astype(np.float32)
        labels = data['labels'].tolist()
    return confident_region_map(image, cams, labels, **settings)


def expected_scores(pairs):
    """Precision / recall / unsure fraction straight from the files."""
    conf = np.concatenate([np.array(Image.open(c)).ravel() for c, _ in pairs])
    gt = np.concatenate([np.array(Image.open(g)).ravel() for _, g in pairs])
    valid = gt != 255
    conf, gt = conf[valid], gt[valid]
    fg = (conf != 0) & (conf != 255)
    bg = conf == 0
    right_fg = (fg & (conf == gt)).sum()
    right_bg = (bg & (gt == 0)).sum()

    def ratio(num, den):
        return round(float(num) / den, 4) if den else None

    return dict(
        fg_precision=ratio(right_fg, fg.sum()),
        bg_precision=ratio(right_bg, bg.sum()),
        fg_recall=ratio(right_fg, (gt != 0).sum()),
        bg_recall=ratio(right_bg, (gt == 0).sum()),
        unsure_fraction=ratio((conf == 255).sum(), valid.sum()))


def _listing(folder):
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


def _mtimes(folder):
    return {
        n: os.stat(osp.join(folder, n)).st_mtime_ns
        for n in _listing(folder)
    }


def _bytes(folder):
    out = {}
    for name in _listing(folder):
        with open(osp.join(folder, name), 'rb') as f:
            out[name] = f.read()
    return out


def _check_maps(ds, out, ids, **settings):
    for img_id in ids:
        written = load_label_png(osp.join(out, f'{img_id}.png'))
        expected = expected_map(
            osp.join(ds['img_dir'], f'{img_id}.png'),
            osp.join(ds['cam_dir'], f'{img_id}.npz'), **settings)
        np.testing.assert_array_equal(written, expected, err_msg=img_id)
        assert set(np.unique(written).tolist()) <= {0, 255, *IMAGES[img_id][2]}


def test_fixture_maps_have_every_kind_of_pixel(dataset):
    """The fixture is informative: its maps (default settings) hold
    confident foreground, confident background and unsure pixels, and its
    CAM files are not the computed float32 CAMs (float16)."""
    values = set()
    for img_id in IMAGES:
        values |= set(
            np.unique(
                expected_map(dataset['img_dir'] + f'/{img_id}.png',
                             dataset['cam_dir'] + f'/{img_id}.npz')).tolist())
    assert {0, 255, 3, 1, 20} <= values
    _, cams, _ = _make_image(*IMAGES['a'], 0)
    stored, _ = load_cam_file(dataset['cam_dir'] + '/a.npz')
    assert (stored != cams).any()


def test_writes_expected_maps_and_resumes(tool, dataset):
    out = str(dataset['root'] / 'conf')
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res == dict(
        total=4, processed=4, skipped=0, stats=None, stats_path=None)
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    _check_maps(dataset, out, IMAGES)
    assert (load_label_png(osp.join(out, 'c.png')) == 0).all()
    # without --gt-dir no stats file
    assert not osp.exists(dataset['root'] / 'confident_regions_stats.json')

    # a second run skips every map (nothing is rewritten)
    before = _mtimes(out)
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res['processed'] == 0 and res['skipped'] == 4
    assert _mtimes(out) == before

    # only the missing map is written (in a worker)
    os.remove(osp.join(out, 'b.png'))
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=2)
    assert res['processed'] == 1 and res['skipped'] == 3
    after = _mtimes(out)
    assert sorted(after) == sorted(before)
    assert all(after[n] == before[n] for n in after if n != 'b.png')
    _check_maps(dataset, out, ['b'])


def test_workers_give_identical_bytes(tool, dataset):
    out0 = str(dataset['root'] / 'conf0')
    out2 = str(dataset['root'] / 'conf2')
    tool.run(dataset['samples'], dataset['cam_dir'], out0, workers=0)
    res = tool.run(dataset['samples'], dataset['cam_dir'], out2, workers=2)
    assert res['processed'] == 4
    assert _listing(out2) == ['a.png', 'b.png', 'c.png', 'd.png']
    assert _bytes(out0) == _bytes(out2)
    assert not mp.active_children()  # the pool is shut down


def test_stats_with_ground_truth(tool, dataset, monkeypatch):
    out = str(dataset['root'] / 'conf')
    res = tool.run(
        dataset['samples'],
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'])
    expected = expected_scores([(osp.join(out, f'{i}.png'),
                                 osp.join(dataset['gt_dir'], f'{i}.png'))
                                for i in IMAGES])
    assert all(v is not None and 0 < v < 1 for v in expected.values())
    assert res['stats'] == dict(expected, num_images=4)
    path = str(dataset['root'] / 'confident_regions_stats.json')
    assert res['stats_path'] == path
    with open(path) as f:
        saved = json.load(f)
    assert saved == dict(
        expected, num_images=4, alpha_low=4, alpha_high=24, stride=8)
    # written through a temporary file: nothing else in its folder
    assert _listing(str(dataset['root'])) == [
        'cam', 'conf', 'confident_regions_stats.json', 'gt', 'img'
    ]

    # a resumed run (everything skipped) scores the existing maps
    custom = str(dataset['root'] / 'custom.json')
    res = tool.run(
        dataset['samples'],
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'],
        stats_out=custom)
    assert res['skipped'] == 4 and res['stats_path'] == custom
    assert res['stats'] == dict(expected, num_images=4)
    with open(custom) as f:
        assert json.load(f) == saved

    # a write that fails half-way leaves the old file whole, no temp file
    def failing(path, write_fn):

        def write(tmp):
            write_fn(tmp)
            raise OSError('disk full')

        mio.atomic_write(path, write)

    monkeypatch.setattr(tool, 'atomic_write', failing)
    with pytest.raises(OSError, match='disk full'):
        tool.run(
            dataset['samples'][:1],
            dataset['cam_dir'],
            out,
            workers=0,
            gt_dir=dataset['gt_dir'],
            stats_out=custom)
    with open(custom) as f:
        assert json.load(f) == saved
    assert not [n for n in _listing(str(dataset['root'])) if '.tmp-' in n]


def test_undefined_ratios_are_none(tool, dataset):
    """'c' has no class: no confident foreground and no ground-truth
    foreground, so both foreground ratios are None (JSON null)."""
    out = str(dataset['root'] / 'conf')
    stats = str(dataset['root'] / 'c.json')
    res = tool.run(
        dataset['samples'][2:3],
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'],
        stats_out=stats)
    assert res['stats'] == dict(
        fg_precision=None,
        bg_precision=1.0,
        fg_recall=None,
        bg_recall=1.0,
        unsure_fraction=0.0,
        num_images=1)
    with open(stats) as f:
        saved = json.load(f)
    assert saved['fg_precision'] is None and saved['fg_recall'] is None
    assert 'null' in open(stats).read()


def _assert_no_output_for(out, img_id):
    names = _listing(out)
    assert f'{img_id}.png' not in names
    assert not [n for n in names if '.tmp-' in n]


@pytest.mark.parametrize('workers', [0, 2])
def test_class_absent_from_image_labels(tool, dataset, workers):
    samples = [dict(s) for s in dataset['samples']]
    samples[1]['img_labels'] = [5]  # the CAM file also has class 12
    out = str(dataset['root'] / 'conf')
    cam = osp.join(dataset['cam_dir'], 'b.npz')
    with pytest.raises(RuntimeError) as info:
        tool.run(samples, dataset['cam_dir'], out, workers=workers)
    msg = str(info.value)
    assert f'image b ({samples[1]["img_path"]})' in msg
    assert cam in msg and 'classes [12] that are absent' in msg
    _assert_no_output_for(out, 'b')
    assert not mp.active_children()  # no pool left behind


def test_class_missing_from_cam_file(tool, dataset):
    samples = [dict(s) for s in dataset['samples']]
    samples[0]['img_labels'] = [3, 8]
    out = str(dataset['root'] / 'conf')
    with pytest.raises(
            RuntimeError,
            match=r'image a .*a\.npz: no CAM for the image label\(s\) \[8\]'):
        tool.run(samples, dataset['cam_dir'], out, workers=0)
    _assert_no_output_for(out, 'a')


@pytest.mark.parametrize('workers', [0, 2])
def test_size_mismatch_corrupt_file_missing_image(tool, dataset, workers):
    ds = dataset
    # a CAM file of another size than the image
    d_cam = osp.join(ds['cam_dir'], 'd.npz')
    save_cam_file(d_cam, np.zeros((2, 40, 27), np.float32), [1, 20])
    out = str(ds['root'] / 'conf_d')
    with pytest.raises(RuntimeError) as info:
        tool.run(ds['samples'], ds['cam_dir'], out, workers=workers)
    msg = str(info.value)
    assert f'image d ({ds["samples"][3]["img_path"]})' in msg
    assert 'image size (40, 28) does not match' in msg and '(40, 27)' in msg
    _assert_no_output_for(out, 'd')

    # a corrupt CAM file
    out = str(ds['root'] / 'conf_a')
    a_cam = osp.join(ds['cam_dir'], 'a.npz')
    with open(a_cam, 'wb') as f:
        f.write(b'PK\x03\x04 this is not a zip archive')
    with pytest.raises(RuntimeError) as info:
        tool.run(ds['samples'][:3], ds['cam_dir'], out, workers=workers)
    assert 'image a ' in str(info.value)
    assert a_cam in str(info.value) and 'corrupt' in str(info.value)
    _assert_no_output_for(out, 'a')

    # a missing image
    out = str(ds['root'] / 'conf_b')
    os.remove(ds['samples'][1]['img_path'])
    with pytest.raises(RuntimeError) as info:
        tool.run(ds['samples'][1:3], ds['cam_dir'], out, workers=workers)
    msg = str(info.value)
    assert f'image b ({ds["samples"][1]["img_path"]})' in msg
    assert 'FileNotFoundError' in msg
    _assert_no_output_for(out, 'b')
    # a missing CAM file
    out = str(ds['root'] / 'conf_c')
    os.remove(osp.join(ds['cam_dir'], 'c.npz'))
    with pytest.raises(RuntimeError, match=r'image c .*CAM file not found'):
        tool.run(ds['samples'][2:3], ds['cam_dir'], out, workers=workers)
    _assert_no_output_for(out, 'c')


def test_bad_ground_truth(tool, dataset):
    ds = dataset
    out = str(ds['root'] / 'conf')
    stats = str(ds['root'] / 'stats.json')
    # a missing mask is named
    gt_c = osp.join(ds['gt_dir'], 'c.png')
    os.remove(gt_c)
    with pytest.raises(FileNotFoundError, match=re.escape(gt_c)):
        tool.run(
            ds['samples'][2:3],
            ds['cam_dir'],
            out,
            workers=0,
            gt_dir=ds['gt_dir'],
            stats_out=stats)
    assert not osp.exists(stats)

    # an id out of the class range is named with its file
    gt_b = osp.join(ds['gt_dir'], 'b.png')
    gt = load_label_png(gt_b)
    gt[5, 5] = 21  # VOC has ids 0..20 (and 255)
    save_label_png(gt_b, gt)
    with pytest.raises(ValueError) as info:
        tool.run(
            ds['samples'][:2],
            ds['cam_dir'],
            out,
            workers=0,
            gt_dir=ds['gt_dir'],
            stats_out=stats)
    msg = str(info.value)
    assert gt_b in msg and '[21]' in msg
    assert 'outside the class range 0..20' in msg
    assert not osp.exists(stats)
    # fewer classes: d's class 20 is out of range; 21 classes are fine
    gt_d = osp.join(ds['gt_dir'], 'd.png')
    samples = [ds['samples'][0], ds['samples'][3]]
    with pytest.raises(ValueError, match=re.escape(gt_d) + r'.*\[20\]'):
        tool.run(
            samples,
            ds['cam_dir'],
            out,
            workers=0,
            gt_dir=ds['gt_dir'],
            stats_out=stats,
            num_classes=13)
    res = tool.run(
        samples,
        ds['cam_dir'],
        out,
        workers=0,
        gt_dir=ds['gt_dir'],
        stats_out=stats)
    assert res['stats']['num_images'] == 2
    # and on the command line
    split = ds['root'] / 'split.txt'
    split.write_text('a\nd\n')
    common = [
        '--img-dir', ds['img_dir'], '--cam-dir', ds['cam_dir'], '--out-dir',
        out, '--img-suffix', '.png', '--workers', '0', '--split',
        str(split), '--gt-dir', ds['gt_dir'], '--stats-out', stats
    ]
    with pytest.raises(ValueError, match=re.escape(gt_d) + r'.*\[20\]'):
        tool.main(common + ['--num-classes', '6'])
    assert tool.main(common)['stats'] == res['stats']


def test_duplicate_ids_are_refused(tool, dataset):
    out = str(dataset['root'] / 'conf')
    with pytest.raises(ValueError, match=r"duplicate image ids.*\['a'\]"):
        tool.run(
            dataset['samples'] + dataset['samples'][:1],
            dataset['cam_dir'],
            out,
            workers=0)
    assert not osp.exists(out)  # refused before anything is written


def test_stale_temp_files_are_removed_at_the_start(tool, dataset):
    """Temporary files of dead writers go, those of live ones stay."""
    out = dataset['root'] / 'conf'
    out.mkdir()
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    host = mio._host_tag()
    stale = out / f'.a.tmp-{host}-{dead.pid}-x.png'
    live = out / f'.b.tmp-{host}-{os.getpid()}-y.png'
    for path in (stale, live):
        path.write_bytes(b'partial')
    res = tool.run(dataset['samples'], dataset['cam_dir'], str(out), workers=0)
    assert res['processed'] == 4
    assert _listing(
        str(out)) == [live.name, 'a.png', 'b.png', 'c.png', 'd.png']


#: Non-default settings of the command-line test, and their options.
CLI_SETTINGS = dict(
    alpha_low=6, alpha_high=20, stride=4, crf=dict(bilateral_sxy=3))
CLI_OPTIONS = [
    '--alpha-low', '6', '--alpha-high', '20', '--stride', '4',
    '--crf-bilateral-sxy', '3'
]


def test_command_line(tool, dataset):
    ds = dataset
    out = str(ds['root'] / 'conf')
    common = [
        '--img-dir', ds['img_dir'], '--cam-dir', ds['cam_dir'], '--img-suffix',
        '.png', '--workers', '0'
    ]
    split = ds['root'] / 'split.txt'
    split.write_text('b\n\nd\n')
    res = tool.main(common + ['--out-dir', out, '--split', str(split)])
    assert res['processed'] == 2 and res['total'] == 2
    assert _listing(out) == ['b.png', 'd.png']
    _check_maps(ds, out, ['b', 'd'])
    # without a split: every CAM file, labels from the CAM files
    res = tool.main(common + ['--out-dir', out])
    assert res['processed'] == 2 and res['skipped'] == 2
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    _check_maps(ds, out, IMAGES)

    # the options reach the maps and the stats file
    opts = str(ds['root'] / 'conf_opts')
    stats = str(ds['root'] / 's.json')
    res = tool.main(
        common +
        ['--out-dir', opts, '--gt-dir', ds['gt_dir'], '--stats-out', stats] +
        CLI_OPTIONS)
    assert res['processed'] == 4
    _check_maps(ds, opts, IMAGES, **CLI_SETTINGS)
    # (each option matters: without it some map would differ)
    for key in CLI_SETTINGS:
        partial = {k: v for k, v in CLI_SETTINGS.items() if k != key}
        assert any((load_label_png(osp.join(opts, f'{i}.png')) != expected_map(
            osp.join(ds['img_dir'], f'{i}.png'),
            osp.join(ds['cam_dir'], f'{i}.npz'), **partial)).any()
                   for i in IMAGES), key
    with open(stats) as f:
        saved = json.load(f)
    assert (saved['alpha_low'], saved['alpha_high'],
            saved['stride']) == (6, 20, 4)
    assert saved['num_images'] == 4
    # a split naming an image twice is refused
    split.write_text('b\nb\n')
    with pytest.raises(ValueError, match='more than once'):
        tool.main(common + ['--out-dir', out, '--split', str(split)])
    with pytest.raises(SystemExit):
        tool.main(['--img-dir', ds['img_dir']])  # --cam-dir, --out-dir


def test_script_on_voc_layout(tiny_voc, tmp_path):
    """The script itself (2 workers) on a VOC-layout folder with a split."""
    cam_dir = tmp_path / 'cams'
    height, width = tiny_voc.img_shape
    yy, xx = np.mgrid[:height, :width]
    for img_id in tiny_voc.ids:
        mask = tiny_voc.masks[img_id]
        cams = []
        for cls in tiny_voc.labels[img_id]:
            ys, xs = np.nonzero(mask == cls)
            cam = np.exp(-((yy - ys.mean())**2 + (xx - xs.mean())**2) /
                         (2 * 6.0**2))
            cams.append(cam / (cam.max() + 1e-5))
        cams = np.stack(cams) if cams else np.zeros((0, height, width))
        save_cam_file(
            str(cam_dir / f'{img_id}.npz'), cams, tiny_voc.labels[img_id])
    out = tmp_path / 'work' / 'conf'
    cmd = [
        sys.executable,
        TOOL,
        '--img-dir',
        tiny_voc.path('JPEGImages'),
        '--cam-dir',
        str(cam_dir),
        '--out-dir',
        str(out),
        '--split',
        tiny_voc.path('ImageSets', 'Segmentation', 'train.txt'),
        '--gt-dir',
        tiny_voc.path('SegmentationClass'),
        '--workers',
        '2',
        '--crf-bilateral-sxy',
        '3'  # 40 x 56 images: some confident fg
    ]
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (f'ConfidentRegionHook: 4 images, 4 written to {out}, 0 skipped'
            in proc.stdout + proc.stderr)
    train = tiny_voc.splits['train']
    assert _listing(str(out)) == sorted(f'{i}.png' for i in train)
    pairs = []
    for img_id in train:
        conf = load_label_png(
            str(out / f'{img_id}.png'), expected_shape=(height, width))
        np.testing.assert_array_equal(
            conf,
            expected_map(
                tiny_voc.path('JPEGImages', f'{img_id}.jpg'),
                str(cam_dir / f'{img_id}.npz'),
                crf=dict(bilateral_sxy=3)))
        pairs.append((str(out / f'{img_id}.png'),
                      tiny_voc.path('SegmentationClass', f'{img_id}.png')))
    with open(tmp_path / 'work' / 'confident_regions_stats.json') as f:
        stats = json.load(f)
    assert stats == dict(
        expected_scores(pairs),
        num_images=4,
        alpha_low=4,
        alpha_high=24,
        stride=8)
    assert all(stats[k] is not None and 0 < stats[k] for k in SCORE_KEYS)
    # a second run skips everything
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert ('ConfidentRegionHook: 4 images, 0 written to '
            in proc.stdout + proc.stderr)
    assert '4 skipped (files exist)' in proc.stdout + proc.stderr


# -- a killed tool: no leftovers, no orphaned workers -------------------------

#: Runs the tool with a slowed-down ``atomic_write``: SLOW_TASK seconds
#: before each write, SLOW_WRITE seconds between writing the temporary file
#: and renaming it.
SLOW_TOOL = f"""
import os, runpy, sys, time
import mmaff.utils.io as mio
real = mio.atomic_write
def slow(path, write_fn):
    time.sleep(float(os.environ.get('SLOW_TASK', 0)))
    def write(tmp):
        write_fn(tmp)
        time.sleep(float(os.environ.get('SLOW_WRITE', 0)))
    real(path, write)
mio.atomic_write = slow
sys.argv = [{TOOL!r}] + sys.argv[1:]
runpy.run_path({TOOL!r}, run_name='__main__')
"""


def _start_slow_tool(tmp_path, args, **slow):
    script = tmp_path / 'slow_tool.py'
    script.write_text(SLOW_TOOL)
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    env.update((key, str(value)) for key, value in slow.items())
    return subprocess.Popen(
        [sys.executable, str(script)] + args,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def _wait_for(predicate, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f'the tool exited ({proc.returncode}) '
                                 'before the test could kill it')
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError('timed out waiting for the tool')
        time.sleep(0.02)


def _temp_names(folder):
    return [n for n in _listing(folder) if '.tmp-' in n]


def _stat_fields(pid):
    """Fields of /proc/<pid>/stat after the command name (None: gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None


def _children(pid):
    kids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _running(pid):
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ('Z', 'X')


needs_proc = pytest.mark.skipif(
    not osp.isdir('/proc/self'), reason='needs Linux /proc')


def test_killed_mid_write_rerun_leaves_no_temp_file(tool, dataset, tmp_path):
    out = str(tmp_path / 'conf')
    args = [
        '--img-dir', dataset['img_dir'], '--cam-dir', dataset['cam_dir'],
        '--out-dir', out, '--img-suffix', '.png', '--workers', '0'
    ]
    proc = _start_slow_tool(tmp_path, args, SLOW_WRITE=60)
    try:
        _wait_for(lambda: _temp_names(out), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # killed while writing a.png: its temporary file is left behind
    assert len(_temp_names(out)) == 1 and 'a.png' not in _listing(out)

    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res['processed'] == 4
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    ref = str(tmp_path / 'ref')
    tool.run(dataset['samples'], dataset['cam_dir'], ref, workers=0)
    assert _bytes(out) == _bytes(ref)


@needs_proc
def test_workers_die_with_the_killed_tool(tool, dataset, tmp_path):
    # 24 images, 0.5 s before each write
    img_dir, cam_dir = tmp_path / 'many_img', tmp_path / 'many_cam'
    img_dir.mkdir()
    cam_dir.mkdir()
    names = [f'm{i:02d}' for i in range(24)]
    for name in names:
        shutil.copyfile(
            osp.join(dataset['img_dir'], 'b.png'), img_dir / f'{name}.png')
        shutil.copyfile(
            osp.join(dataset['cam_dir'], 'b.npz'), cam_dir / f'{name}.npz')
    out = str(tmp_path / 'conf')
    args = [
        '--img-dir',
        str(img_dir), '--cam-dir',
        str(cam_dir), '--out-dir', out, '--img-suffix', '.png', '--workers',
        '2'
    ]
    proc = _start_slow_tool(tmp_path, args, SLOW_TASK=0.5)
    workers = []
    try:
        _wait_for(
            lambda: any(
                n.endswith('.png') and '.tmp-' not in n
                for n in _listing(out)), proc)
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
    finally:
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        deadline = time.monotonic() + 1.5
        while any(_running(p)
                  for p in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        alive = [p for p in workers if _running(p)]
        before = _mtimes(out)
        time.sleep(1)
        late = [
            n for n in _listing(out) if n.endswith('.png')
            and os.stat(osp.join(out, n)).st_mtime > killed_at + 0.2
        ]
        assert not alive, f'pool workers {alive} outlived the killed tool'
        assert _mtimes(out) == before, 'files were written after the kill'
        assert not late, f'written after the kill: {late}'
    finally:
        for pid in workers:  # do not leave them behind, whatever the result
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    # a re-run completes the maps and leaves no temporary file, once the
    # killed workers are gone (a zombie's pid still counts as a live writer)
    deadline = time.monotonic() + 30
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = tool.build_samples(str(img_dir), str(cam_dir), None, '.png')
    res = tool.run(samples, str(cam_dir), out, workers=0, progress=False)
    assert res['processed'] + res['skipped'] == 24
    assert _listing(out) == sorted(f'{n}.png' for n in names)

# Copyright (c) mmaff contributors. All rights reserved.
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmaff.ops.confident import (confident_region_map, confident_region_stats,
                                 summarize_confident_stats)
from mmaff.utils.io import load_label_png, save_cam_file, save_label_png

TOOL = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'make_confident_regions.py')


@pytest.fixture(scope='module')
def tool():
    name = 'make_confident_regions_tool'
    spec = importlib.util.spec_from_file_location(name, TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that worker processes can unpickle it
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


# id -> (height, width, label ids)
IMAGES = {
    'a': (30, 41, [3]),
    'b': (24, 24, [5, 12]),
    'c': (19, 33, []),
    'd': (40, 28, [1, 20]),
}


def _make_image(height, width, ids, seed):
    """An image with one coloured rectangle per class + CAM blobs on them."""
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
    samples, truth = [], {}
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
        # expected map: CAMs as the file stores them (float16)
        truth[img_id] = (img, cams.astype(np.float16).astype(np.float32), ids,
                         gt)
    return dict(
        root=tmp_path,
        img_dir=str(img_dir),
        cam_dir=str(cam_dir),
        gt_dir=str(gt_dir),
        samples=samples,
        truth=truth)


def _listing(folder):
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


def _mtimes(folder):
    return {
        n: os.stat(osp.join(folder, n)).st_mtime_ns
        for n in _listing(folder)
    }


def test_writes_expected_maps_and_resumes(tool, dataset):
    out = str(dataset['root'] / 'conf')
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res['processed'] == 4 and res['skipped'] == 0
    assert res['stats'] is None
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    for img_id, (img, cams, ids, _) in dataset['truth'].items():
        written = load_label_png(osp.join(out, f'{img_id}.png'))
        expected = confident_region_map(img, cams, ids)
        np.testing.assert_array_equal(written, expected)
        assert set(np.unique(written).tolist()) <= {0, 255, *ids}
    assert (load_label_png(osp.join(out, 'c.png')) == 0).all()

    before = _mtimes(out)
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res['processed'] == 0 and res['skipped'] == 4
    assert _mtimes(out) == before

    os.remove(osp.join(out, 'b.png'))
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=2)
    assert res['processed'] == 1 and res['skipped'] == 3
    after = _mtimes(out)
    assert sorted(after) == sorted(before)
    assert all(after[n] == before[n] for n in after if n != 'b.png')


def test_workers_give_identical_bytes(tool, dataset):
    out0 = str(dataset['root'] / 'conf0')
    out2 = str(dataset['root'] / 'conf2')
    tool.run(dataset['samples'], dataset['cam_dir'], out0, workers=0)
    tool.run(
        dataset['samples'], dataset['cam_dir'], out2, workers=2, chunksize=1)
    assert _listing(out0) == _listing(out2) == [
        'a.png', 'b.png', 'c.png', 'd.png'
    ]
    for name in _listing(out0):
        with open(osp.join(out0, name), 'rb') as f0, \
                open(osp.join(out2, name), 'rb') as f2:
            assert f0.read() == f2.read()


def test_stats_with_ground_truth(tool, dataset):
    out = str(dataset['root'] / 'conf')
    res = tool.run(
        dataset['samples'],
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'])
    per_image = [
        confident_region_stats(confident_region_map(img, cams, ids), gt)
        for img, cams, ids, gt in dataset['truth'].values()
    ]
    expected = summarize_confident_stats(per_image)
    assert res['stats'] == pytest.approx(expected, nan_ok=True)
    assert res['stats']['pixels'] == sum(
        int((t[3] != 255).sum()) for t in dataset['truth'].values())
    path = osp.join(dataset['root'], 'confident_regions_stats.json')
    assert res['stats_path'] == path
    with open(path) as f:
        saved = json.load(f)
    assert saved['fg_precision'] == pytest.approx(expected['fg_precision'])
    assert saved['num_images'] == 4 and saved['alpha_low'] == 4
    # a resumed run (everything skipped) scores the existing maps
    custom = str(dataset['root'] / 'custom.json')
    res = tool.run(
        dataset['samples'],
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'],
        stats_out=custom)
    assert res['skipped'] == 4
    assert res['stats'] == pytest.approx(expected, nan_ok=True)
    assert osp.isfile(custom)


def _assert_no_output_for(out, img_id):
    names = _listing(out)
    assert f'{img_id}.png' not in names
    assert not [n for n in names if '.tmp' in n]


@pytest.mark.parametrize('workers', [0, 2])
def test_class_absent_from_image_labels(tool, dataset, workers):
    samples = [dict(s) for s in dataset['samples']]
    samples[1]['img_labels'] = [5]  # the CAM file also has class 12
    out = str(dataset['root'] / 'conf')
    cam = osp.join(dataset['cam_dir'], 'b.npz')
    with pytest.raises(RuntimeError) as info:
        tool.run(samples, dataset['cam_dir'], out, workers=workers)
    assert cam in str(info.value) and 'absent' in str(info.value)
    _assert_no_output_for(out, 'b')


def test_class_missing_from_cam_file(tool, dataset):
    samples = [dict(s) for s in dataset['samples']]
    samples[0]['img_labels'] = [3, 8]
    out = str(dataset['root'] / 'conf')
    with pytest.raises(RuntimeError, match=r'a\.npz: no CAM for .*\[8\]'):
        tool.run(samples, dataset['cam_dir'], out, workers=0)
    _assert_no_output_for(out, 'a')


def test_size_mismatch_and_corrupt_file(tool, dataset):
    out = str(dataset['root'] / 'conf')
    d_cam = osp.join(dataset['cam_dir'], 'd.npz')
    save_cam_file(d_cam, np.zeros((2, 40, 27), np.float32), [1, 20])
    with pytest.raises(RuntimeError) as info:
        tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert d_cam in str(info.value)
    assert 'does not match the image size' in str(info.value)
    _assert_no_output_for(out, 'd')

    # a corrupt file, in a worker process (a fresh output folder; 'd' left
    # out as it is still broken)
    out = str(dataset['root'] / 'conf_b')
    a_cam = osp.join(dataset['cam_dir'], 'a.npz')
    with open(a_cam, 'wb') as f:
        f.write(b'PK\x03\x04 this is not a zip archive')
    with pytest.raises(RuntimeError) as info:
        tool.run(
            dataset['samples'][:3],
            dataset['cam_dir'],
            out,
            workers=2,
            chunksize=1)
    assert a_cam in str(info.value) and 'corrupt' in str(info.value)
    _assert_no_output_for(out, 'a')


def test_bad_ground_truth_and_duplicate_ids(tool, dataset):
    out = str(dataset['root'] / 'conf')
    os.remove(osp.join(dataset['gt_dir'], 'c.png'))
    with pytest.raises(RuntimeError, match=r"image 'c'.*c\.png"):
        tool.run(
            dataset['samples'][2:3],
            dataset['cam_dir'],
            out,
            workers=0,
            gt_dir=dataset['gt_dir'])
    _assert_no_output_for(out, 'c')
    with pytest.raises(ValueError, match=r"duplicate image ids.*'a'"):
        tool.run(dataset['samples'] + dataset['samples'][:1],
                 dataset['cam_dir'], out)


def test_command_line(tool, dataset):
    out = str(dataset['root'] / 'conf')
    common = [
        '--img-dir', dataset['img_dir'], '--cam-dir', dataset['cam_dir'],
        '--out-dir', out, '--img-suffix', '.png', '--workers', '0'
    ]
    split = dataset['root'] / 'split.txt'
    split.write_text('b\n\nd\n')
    res = tool.main(common + ['--split', str(split)])
    assert res['processed'] == 2
    assert _listing(out) == ['b.png', 'd.png']
    # without a split: every CAM file, labels from the CAM files
    stats = str(dataset['root'] / 's.json')
    res = tool.main(common + [
        '--gt-dir', dataset['gt_dir'], '--stats-out', stats, '--alpha-low', '6'
    ])
    assert res['processed'] == 2 and res['skipped'] == 2
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    img, cams, ids, _ = dataset['truth']['a']
    np.testing.assert_array_equal(
        load_label_png(osp.join(out, 'a.png')),
        confident_region_map(img, cams, ids, alpha_low=6))
    with open(stats) as f:
        assert json.load(f)['alpha_low'] == 6


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
        sys.executable, TOOL, '--img-dir',
        tiny_voc.path('JPEGImages'), '--cam-dir',
        str(cam_dir), '--out-dir',
        str(out), '--split',
        tiny_voc.path('ImageSets', 'Segmentation', 'train.txt'), '--gt-dir',
        tiny_voc.path('SegmentationClass'), '--workers', '2'
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '0 already written (skipped), 4 to do' in proc.stdout
    train = tiny_voc.splits['train']
    assert _listing(str(out)) == sorted(f'{i}.png' for i in train)
    for img_id in train:
        conf = load_label_png(
            str(out / f'{img_id}.png'), expected_shape=(height, width))
        assert set(
            np.unique(conf).tolist()) <= {0, 255, *tiny_voc.labels[img_id]}
    with open(tmp_path / 'work' / 'confident_regions_stats.json') as f:
        stats = json.load(f)
    assert stats['num_images'] == 4
    assert stats['pixels'] == sum(
        int((tiny_voc.masks[i] != 255).sum()) for i in train)
    # a second run skips everything
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '4 already written (skipped), 0 to do' in proc.stdout

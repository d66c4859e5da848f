# Copyright (c) mmaff contributors. All rights reserved.
"""Every COCO config of the project runs end to end, as a user runs it.

A user's working directory is built in a temporary folder: ``configs`` and
``projects`` linked to the repository's, stand-in weights at the paths the
configs name (``tools/misc/make_stand_in_weights.py``), and a tiny COCO 2014
tree in the official layout at the configs' ``data/coco2014``: JPEG images
of 64-112 px and instance JSONs with every one of COCO's 80 categories
(ids 1..90 with gaps, 15 names with a space), polygon, compressed and
uncompressed RLE and crowd annotations, overlapping instances and an image
without instances. The pipeline config is run by ``tools/run_pipeline.py
--smoke`` from the converter to the val2014 test (every stage a subprocess
of the standard tool, reading the previous stage's real outputs); the only
overrides are iterations and images (the smoke mode), batch size and
workers (``CPU_OPTIONS`` of ``tests/test_configs/test_run_configs.py``).
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
PY = sys.executable
PROJECT = 'projects/coco2014/configs'
PIPELINE = f'{PROJECT}/pipeline_affinitynet_resnet38d_coco2014.py'
CAM_CONFIG = f'{PROJECT}/affinitynet-cam_resnet38d_4xb4-5e_coco2014-448x448.py'
AFF_CONFIG = f'{PROJECT}/affinitynet_resnet38d_4xb2-2e_coco2014-448x448.py'
SEG_CONFIG = (f'{PROJECT}/deeplabv3_r101-d8_4xb4-80k_coco2014-512x512_'
              'affinitynet-pseudo.py')
SMOKE_IMAGES = 4

# COCO 2014's 80 categories (id, name), typed here from the official
# instances JSON's category list.
COCO_CATEGORIES = [(1, 'person'), (2, 'bicycle'),
                   (3, 'car'), (4, 'motorcycle'), (5, 'airplane'), (6, 'bus'),
                   (7, 'train'), (8, 'truck'), (9, 'boat'),
                   (10, 'traffic light'), (11, 'fire hydrant'),
                   (13, 'stop sign'), (14, 'parking meter'), (15, 'bench'),
                   (16, 'bird'), (17, 'cat'), (18, 'dog'), (19, 'horse'),
                   (20, 'sheep'), (21, 'cow'), (22, 'elephant'), (23, 'bear'),
                   (24, 'zebra'), (25, 'giraffe'), (27, 'backpack'),
                   (28, 'umbrella'), (31, 'handbag'), (32, 'tie'),
                   (33, 'suitcase'), (34, 'frisbee'), (35, 'skis'),
                   (36, 'snowboard'), (37, 'sports ball'), (38, 'kite'),
                   (39, 'baseball bat'), (40, 'baseball glove'),
                   (41, 'skateboard'), (42, 'surfboard'),
                   (43, 'tennis racket'), (44, 'bottle'), (46, 'wine glass'),
                   (47, 'cup'), (48, 'fork'), (49, 'knife'), (50, 'spoon'),
                   (51, 'bowl'), (52, 'banana'),
                   (53, 'apple'), (54, 'sandwich'), (55, 'orange'),
                   (56, 'broccoli'), (57, 'carrot'), (58, 'hot dog'),
                   (59, 'pizza'), (60, 'donut'), (61, 'cake'), (62, 'chair'),
                   (63, 'couch'), (64, 'potted plant'), (65, 'bed'),
                   (67, 'dining table'), (70, 'toilet'), (72, 'tv'),
                   (73, 'laptop'), (74, 'mouse'), (75, 'remote'),
                   (76, 'keyboard'), (77, 'cell phone'), (78, 'microwave'),
                   (79, 'oven'), (80, 'toaster'), (81, 'sink'),
                   (82, 'refrigerator'), (84, 'book'), (85, 'clock'),
                   (86, 'vase'), (87, 'scissors'), (88, 'teddy bear'),
                   (89, 'hair drier'), (90, 'toothbrush')]
LABEL_OF = {cid: k + 1 for k, (cid, _) in enumerate(COCO_CATEGORIES)}


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the RLE encoder and run-length helpers written (and checked) for the
# converter's tests, and the config-run test's CPU overrides
_prep_tests = _load('test_prepare_coco',
                    'projects/coco2014/tests/test_prepare_coco.py')
CPU_OPTIONS = _load('test_run_configs',
                    'tests/test_configs/test_run_configs.py').CPU_OPTIONS
_run_tool = _load('mmaff_testing', 'tests/mmaff_testing.py').run_tool_process


def _run(args, cwd, env=None):
    """``python ARGS`` in ``cwd`` as the other tool tests run it."""
    return _run_tool(args, cwd, env=env, timeout=3600)


def _ellipse(h, w, cy, cx, ry, rx):
    ys, xs = np.mgrid[0:h, 0:w]
    return ((ys - cy) / ry)**2 + ((xs - cx) / rx)**2 <= 1


def _rle(mask, compressed):
    runs = _prep_tests.mask_to_runs(mask)
    counts = _prep_tests.encode_rle_string(runs) if compressed else runs
    return dict(size=list(mask.shape), counts=counts)


def _poly(cx, cy, r, n=7, phase=0.3):
    ang = phase + np.arange(n) * 2 * np.pi / n
    return [
        round(float(v), 2)
        for p in zip(cx + r * np.cos(ang), cy + r * 0.8 * np.sin(ang))
        for v in p
    ]


def make_tiny_coco(root, seed=0):
    """Write a tiny COCO 2014 tree (official layout) under ``root``.

    Returns:
        dict: split -> the instance JSON written.
    """
    rng = np.random.default_rng(seed)
    cats = [dict(id=c, name=n, supercategory='x') for c, n in COCO_CATEGORIES]
    # (file id, h, w, [(category id, kind, geometry, iscrowd)])
    train = [
        (
            9,
            80,
            112,
            [
                (1, 'poly', _poly(50, 40, 34), 0),  # a large person ...
                (3, 'poly', _poly(46, 38, 14, 5), 0),  # ... a car on top
                (1, 'rle', _ellipse(80, 112, 15, 95, 12, 14), 1),  # crowd
            ]),
        (25, 96, 64, [
            (10, 'crle', _ellipse(96, 64, 30, 32, 20, 12), 0),
            (18, 'poly', _poly(30, 70, 18), 0),
        ]),
        (30, 64, 80, []),  # no instance: not in the split
        (34, 72, 96, [
            (11, 'poly', _poly(30, 36, 16, 6), 0),
            (1, 'crle', _ellipse(72, 96, 36, 70, 22, 18), 0),
        ]),
        (
            42,
            64,
            64,
            [
                (67, 'crle', _ellipse(64, 64, 40, 32, 20, 28), 0),  # table
                (47, 'poly', _poly(32, 34, 8, 6), 0),  # a cup over it
            ]),
        (49, 80, 80, [(88, 'rle', _ellipse(80, 80, 40, 40, 25, 20), 0)]),
    ]
    val = [
        (73, 64, 96, [(1, 'poly', _poly(40, 32, 24), 0),
                      (10, 'crle', _ellipse(64, 96, 30, 80, 14, 8), 0)]),
        (74, 80, 64, [(3, 'poly', _poly(32, 40, 20, 5), 0)]),
        (75, 72, 72, [(18, 'crle', _ellipse(72, 72, 36, 36, 20, 24), 0),
                      (1, 'rle', _ellipse(72, 72, 10, 10, 6, 6), 1)]),
    ]
    data = {}
    for split, images in (('train2014', train), ('val2014', val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        coco = dict(categories=cats, images=[], annotations=[])
        for img_id, h, w, anns in images:
            name = f'COCO_{split}_{img_id:012d}.jpg'
            coco['images'].append(
                dict(id=img_id, file_name=name, height=h, width=w))
            pixels = rng.integers(60, 140, (h, w, 3)).astype(np.uint8)
            for k, (cat, kind, geom, crowd) in enumerate(anns):
                if kind == 'poly':
                    seg = [geom]
                    mask = np.zeros((h, w), np.uint8)
                    pts = np.round(np.reshape(geom, (-1, 2))).astype(np.int32)
                    cv2.fillPoly(mask, [pts], 1)
                    mask = mask.astype(bool)
                else:
                    seg, mask = _rle(geom, kind == 'crle'), geom
                # each class its own colour, so that a network could tell
                pixels[mask] = (LABEL_OF[cat] * 37 % 256,
                                LABEL_OF[cat] * 91 % 256, 200 - k * 40)
                coco['annotations'].append(
                    dict(
                        id=img_id * 10 + k,
                        image_id=img_id,
                        category_id=cat,
                        iscrowd=crowd,
                        segmentation=seg))
            cv2.imwrite(osp.join(root, split, name), pixels)
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        with open(
                osp.join(root, 'annotations', f'instances_{split}.json'),
                'w') as f:
            json.dump(coco, f)
        data[split] = coco
    return data


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A user's working dir: linked configs and projects, tiny COCO,
    stand-in weights."""
    ws = tmp_path_factory.mktemp('coco_workspace')
    for name in ('configs', 'projects'):
        os.symlink(osp.join(REPO, name), ws / name)
    make_tiny_coco(str(ws / 'data' / 'coco2014'))
    _run([
        osp.join(REPO, 'tools/misc/make_stand_in_weights.py'), '--torch-home',
        str(ws / 'torch_home')
    ],
         cwd=ws)
    return ws


@pytest.fixture(scope='module')
def coco_smoke(workspace):
    """The COCO pipeline, smoke mode, on the tiny COCO set."""
    out = _run(
        [
            osp.join(REPO, 'tools/run_pipeline.py'), PIPELINE, '--smoke',
            '--smoke-iters', '1', '--smoke-images',
            str(SMOKE_IMAGES), '--cfg-options'
        ] + CPU_OPTIONS,
        cwd=workspace,
        env=dict(TORCH_HOME=str(workspace / 'torch_home')))
    return workspace, out


def _config(path):
    import mmaff  # noqa: F401  (mmseg:: bases of the seg config)
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO, path))


def _lines(path):
    with open(path) as f:
        return f.read().split('\n')[:-1]


def test_coco_pipeline_runs_every_stage(coco_smoke):
    from mmaff.datasets.image_labels import read_label_file
    from mmaff.utils.io import load_cam_file, load_label_png
    ws, out = coco_smoke
    data = ws / 'data' / 'coco2014'
    work = ws / 'work_dirs' / 'affinitynet_resnet38d_coco2014_smoke'
    # every stage ran, in order, the converter first
    names = [
        'prepare_data', 'check_data', 'cam_train', 'cam_export_train',
        'aff_train', 'rw_export_train', 'seg_deeplabv3_r101_train',
        'seg_deeplabv3_r101_test'
    ]
    at = [out.index(f'[pipeline] {n}: finished') for n in names]
    assert at == sorted(at)
    with open(work / 'summary.json') as f:
        summary = json.load(f)
    assert set(summary) == {
        'cam', 'confident_regions', 'cam_at_rw', 'rw', 'rw_crf',
        'seg_deeplabv3_r101'
    }
    for key in ('cam', 'cam_at_rw', 'rw', 'rw_crf', 'seg_deeplabv3_r101'):
        assert 0 <= summary[key]['mIoU'] <= 100, summary
    # the converter's split leaves out the image without instances
    train = _lines(data / 'ImageSets' / 'train2014.txt')
    assert train == [f'COCO_train2014_{i:012d}' for i in (9, 25, 34, 42, 49)]
    # the configs' classes are the converter's classes.txt, 81 of them
    classes = _lines(data / 'classes.txt')
    assert len(classes) == 81 and 'traffic_light' in classes
    assert list(_config(CAM_CONFIG).coco_classes) == classes
    labels = read_label_file(
        str(data / 'ImageLabels' / 'train2014.txt'), classes)
    assert labels['COCO_train2014_000000000025'] == [
        classes.index('traffic_light'),
        classes.index('dog')
    ]
    # the smoke subset's hand-overs, all in the smoke work dir
    smoke_ids = train[:SMOKE_IMAGES]
    for folder, suffix in (('cams', '.npz'), ('conf', '.png'),
                           ('pseudo_rw', '.png'), ('pseudo_rw_crf', '.png')):
        assert sorted(os.listdir(
            work / folder)) == [i + suffix for i in smoke_ids], folder
    for img_id in smoke_ids:
        shape = cv2.imread(str(data / 'train2014' / f'{img_id}.jpg')).shape
        # CAM files in the uint8 encoding, one CAM per image label
        path = str(work / 'cams' / f'{img_id}.npz')
        with np.load(path) as npz:
            assert 'cams_u8_delta' in npz.files
        cams, cam_labels = load_cam_file(path, shape[:2], labels[img_id])
        assert cam_labels.tolist() == labels[img_id]
        for folder in ('conf', 'pseudo_rw', 'pseudo_rw_crf'):
            label = load_label_png(
                str(work / folder / f'{img_id}.png'), shape[:2], 81)
            assert set(np.unique(label).tolist()) <= {0, 255} | set(
                labels[img_id]), (folder, img_id)
    # the segmentation network was tested on val2014 (its masks: 81 ids)
    with open(work / 'seg_deeplabv3_r101_metrics.json') as f:
        assert 'mIoU' in json.load(f)
    assert 'val2014' in (work / 'logs' /
                         'seg_deeplabv3_r101_test.log').read_text()
    assert not osp.exists(ws / 'work_dirs' / 'affinitynet_resnet38d_coco2014')


def test_converter_masks_are_read_by_the_configs(coco_smoke):
    """Masks of the tiny set: crowd 255, the smaller instance on top."""
    from mmaff.utils.io import load_label_png
    ws, _ = coco_smoke
    seg = ws / 'data' / 'coco2014' / 'SegmentationClass'
    person, car = LABEL_OF[1], LABEL_OF[3]
    label = load_label_png(
        str(seg / 'train2014' / 'COCO_train2014_000000000009.png'))
    assert label[38, 46] == car  # the car's centre, over the person
    assert label[40, 30] == person
    assert label[15, 95] == 255  # the crowd
    empty = load_label_png(
        str(seg / 'train2014' / 'COCO_train2014_000000000030.png'))
    assert not empty.any()


def test_head_sizes_and_classes_of_every_coco_config():
    cam, aff, seg = (_config(p) for p in (CAM_CONFIG, AFF_CONFIG, SEG_CONFIG))
    assert cam.model.cam_head.num_classes == 80
    assert seg.model.decode_head.num_classes == 81
    assert seg.model.auxiliary_head.num_classes == 81
    # background + mmseg's COCO-Stuff thing classes (the same 80 in the same
    # order), spaces as the label files write them
    import mmaff  # noqa: F401
    from mmseg.datasets import COCOStuffDataset
    things = COCOStuffDataset.METAINFO['classes'][:80]
    expected = ['background'] + [c.replace(' ', '_') for c in things]
    assert [n for _, n in COCO_CATEGORIES] == list(things)
    datasets = [
        cam.train_dataloader.dataset, cam.test_dataloader.dataset,
        aff.train_dataloader.dataset, aff.test_dataloader.dataset,
        seg.train_dataloader.dataset, seg.test_dataloader.dataset
    ]
    for dataset in datasets:
        assert list(dataset.metainfo['classes']) == expected
        assert dataset.data_root == 'data/coco2014'
    # train2014 everywhere but the segmentation test (val2014)
    for dataset in datasets[:-1]:
        assert dataset.ann_file == 'ImageSets/train2014.txt'
    assert datasets[-1].ann_file == 'ImageSets/val2014.txt'
    assert datasets[-1].data_prefix.seg_map_path == \
        'SegmentationClass/val2014'
    # the CAM files are written in the compact encoding
    export = [h for h in cam.custom_hooks if h.type == 'CAMExportHook']
    assert export[0].dtype == 'uint8'


def test_every_coco_config_is_a_pipeline_stage():
    pipeline = _config(PIPELINE)
    used = {
        arg.replace('{cam_config}', pipeline.cam_config).replace(
            '{aff_config}',
            pipeline.aff_config).replace('{seg_config}', pipeline.seg_config)
        for stage in pipeline.stages
        for arg in stage.get('args', [])
    }
    shipped = {
        f'{PROJECT}/{name}'
        for name in os.listdir(osp.join(REPO, PROJECT))
        if name.endswith('.py') and not name.startswith(('_', 'pipeline'))
    }
    assert shipped == {CAM_CONFIG, AFF_CONFIG, SEG_CONFIG}
    assert shipped <= used
    assert pipeline.stages[0].script == \
        'projects/coco2014/tools/prepare_coco.py'


def test_dry_run_lists_the_commands_from_the_repository_root():
    proc = subprocess.run(
        [PY,
         osp.join(REPO, 'tools/run_pipeline.py'), PIPELINE, '--dry-run'],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().split('\n')
    assert lines[0] == '# prepare_data'
    assert lines[1] == ('python projects/coco2014/tools/prepare_coco.py '
                        'data/coco2014 --splits train2014 val2014 '
                        '--workers 8')
    assert f'python tools/train.py {CAM_CONFIG}' in proc.stdout
    assert f'python tools/test.py {SEG_CONFIG}' in proc.stdout
    assert proc.stdout.count(
        'handover_root=work_dirs/affinitynet_resnet38d_coco2014') == 6

# Copyright (c) mmaff contributors. All rights reserved.
"""Hand-overs are named once: no config writes a stage's folder by hand."""
import ast
import glob
import os.path as osp
import re
from collections import Counter

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True) +
    glob.glob(osp.join(REPO, 'projects', '*', 'configs', '**', '*.py'),
              recursive=True))
#: Top-level keys that may hold a folder: the roots everything hangs off
#: (the COCO project's base names its stage configs' handover_root
#: ``coco_handover_root``: two bases may not define the same key).
ROOT_KEYS = {'handover_root', 'work_dir', 'coco_handover_root'}


def _strings(path):
    """(top-level key, string literal) of every string in a config."""
    tree = ast.parse(open(path).read(), path)
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        key = node.targets[0].id if isinstance(node.targets[0],
                                               ast.Name) else None
        for sub in ast.walk(node.value):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                yield key, sub.value


def test_work_dir_folders_appear_only_as_roots():
    wrong = [(osp.relpath(p, REPO), key, s) for p in CONFIGS
             for key, s in _strings(p)
             if 'work_dirs/' in s and key not in ROOT_KEYS]
    assert not wrong, f'hand-over folders written by hand: {wrong}'


def test_no_config_names_a_checkpoint_iteration():
    wrong = [(osp.relpath(p, REPO), s) for p in CONFIGS
             for _, s in _strings(p) if re.search(r'(iter|epoch)_\d+\.pth', s)]
    assert not wrong, wrong


def test_every_handover_folder_is_one_key():
    """The folders under a root are named in handovers.py alone."""
    subfolders = Counter(
        s for p in CONFIGS for _, s in _strings(p)
        if s.startswith('{handover_root}/'))
    own = [s for _, s in _strings(
        osp.join(REPO, 'configs', '_base_', 'handovers.py'))
           if s.startswith('{handover_root}/')]
    assert sorted(subfolders.elements()) == sorted(own)
    assert len(set(own)) == len(own)


def test_every_stage_config_resolves_its_hand_overs():
    """Each stage config loads through the tools' loader with every
    '{handovers.NAME}' it names defined and filled in."""
    from mmaff.utils.tool_utils import load_tool_config
    stage_configs = [
        p for p in CONFIGS if not osp.basename(p).startswith(('pipeline',
                                                               '_base_'))
        and f'{osp.sep}_base_{osp.sep}' not in p
    ]
    assert stage_configs
    for path in stage_configs:
        cfg = load_tool_config(path, {'handover_root': '/elsewhere'})
        assert '{handovers.' not in cfg.pretty_text, path

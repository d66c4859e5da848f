# Copyright (c) mmaff contributors. All rights reserved.
"""Every config that the model index, metafiles and READMEs name exists,
and every config loads."""
import glob
import os.path as osp
import re

import pytest
import yaml
from mmengine.config import Config

import mmaff  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _metafiles():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    return [osp.join(REPO, p) for p in index['Import']]


def test_metafiles_point_at_existing_configs_and_readmes():
    files = _metafiles()
    assert files
    for path in files:
        assert osp.isfile(path), path
        with open(path) as f:
            meta = yaml.safe_load(f)
        for coll in meta['Collections']:
            assert osp.isfile(osp.join(REPO, coll['README'])), coll['README']
        for model in meta['Models']:
            cfg = osp.join(REPO, model['Config'])
            assert osp.isfile(cfg), cfg
            assert model['Name'] == osp.splitext(osp.basename(cfg))[0]


def test_readme_links_point_at_existing_files():
    readmes = [osp.join(REPO, 'README.md')] + glob.glob(
        osp.join(REPO, 'configs', '*', 'README.md'))
    checked = 0
    for readme in readmes:
        text = open(readme).read()
        for link in re.findall(r'\]\((\.{0,2}/?[^)#:]+\.py)\)', text):
            target = osp.normpath(osp.join(osp.dirname(readme), link))
            assert osp.isfile(target), f'{readme}: {link}'
            checked += 1
        for path in re.findall(r'`(configs/[\w./-]+\.py)`', text):
            assert osp.isfile(osp.join(REPO, path)), f'{readme}: {path}'
            checked += 1
    assert checked > 5


@pytest.mark.parametrize(
    'config',
    sorted(
        p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                             recursive=True)
        if '_base_' not in p and not osp.basename(p).startswith('_')))
def test_every_config_loads(config):
    cfg = Config.fromfile(config)
    if 'stages' in cfg:  # a pipeline config
        for stage in cfg.stages:
            assert osp.isfile(osp.join(REPO, stage['script']))
    else:
        assert cfg.default_scope == 'mmaff'
        assert 'model' in cfg

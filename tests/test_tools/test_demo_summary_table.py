# Copyright (c) mmaff contributors. All rights reserved.
"""The README's demo table is ``demo_summary_table.py``'s output for the
summary of the run it reports (``docs/demo_summary.json``)."""
import json
import os.path as osp
import sys

import pytest
from mmaff_testing import REPO, load_tool


@pytest.fixture(scope='module')
def tool():
    yield load_tool('tools/analysis_tools/demo_summary_table.py',
                    'demo_summary_table_tool')
    sys.modules.pop('demo_summary_table_tool', None)


def test_readme_table_is_the_tool_output(tool):
    with open(osp.join(REPO, 'docs', 'demo_summary.json')) as f:
        summary = json.load(f)
    table = tool.summary_table(summary)
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    assert table in readme


def test_rows_and_ratio(tool):
    table = tool.summary_table(
        dict(
            cam=dict(mIoU=50.0, bg_threshold=0.4),
            rw_tune=dict(alpha=2.0, beta=8.0, steps=4, mIoU=61.5),
            cam_at_rw=dict(mIoU=50.0),
            rw=dict(mIoU=60.0),
            seg=dict(mIoU=55.25)))
    lines = table.splitlines()
    assert lines[0] == '| stage | measured on | summary key | figure |'
    assert any('threshold 0.40' in line and '**50.00**' in line
               for line in lines)
    assert any('alpha 2, beta 8, 4 steps (61.50)' in line for line in lines)
    assert lines[-2].endswith('| `rw / cam_at_rw` | 1.200 |')
    assert lines[-1].endswith('| `seg` | **55.25** |')
    # stages the summary lacks have no row
    assert not any('confident' in line or 'trivial' in line
                   for line in lines)

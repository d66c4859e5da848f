# Copyright (c) mmaff contributors. All rights reserved.
"""RandomStateHook: the generators' states go into a checkpoint, load with
``weights_only`` and are restored on resume only. (The end-to-end check, a
resumed demo training ending with the uninterrupted run's weights, is in
``tests/test_configs/test_determinism.py``.)"""
import random
from types import SimpleNamespace

import numpy as np
import torch

from mmaff.engine.hooks import RandomStateHook
from mmaff.utils.tool_utils import add_random_state_hook


def _draws():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(),
            [random.random() for _ in range(3)])


def test_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    hook = RandomStateHook()
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    _draws()
    checkpoint = dict(meta=dict(iter=5))
    hook.before_save_checkpoint(None, checkpoint)
    expected = _draws()  # what the uninterrupted run draws next
    path = tmp_path / 'iter_5.pth'
    torch.save(checkpoint, path)
    loaded = torch.load(path, weights_only=True)  # no code from the file
    assert loaded['meta']['iter'] == 5
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), loaded)
    assert _draws() == expected


def test_not_restored_unless_resuming():
    hook = RandomStateHook()
    torch.manual_seed(1)
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = torch.rand(3).tolist()
    torch.manual_seed(7)
    after_seed_7 = torch.rand(3).tolist()
    torch.manual_seed(7)
    hook.after_load_checkpoint(SimpleNamespace(_resume=False), checkpoint)
    assert torch.rand(3).tolist() == after_seed_7 != expected
    # a checkpoint without the states resumes as before
    torch.manual_seed(7)
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), {'meta': {}})
    assert torch.rand(3).tolist() == after_seed_7


def test_train_tool_adds_the_hook_once():
    from mmengine.config import Config
    cfg = Config(dict(custom_hooks=[dict(type='NumClassesCheckHook')]))
    add_random_state_hook(cfg)
    add_random_state_hook(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == [
        'NumClassesCheckHook', 'mmaff.RandomStateHook'
    ]
    empty = Config(dict())
    add_random_state_hook(empty)
    assert [h['type'] for h in empty.custom_hooks] == [
        'mmaff.RandomStateHook'
    ]

# Copyright (c) mmaff contributors. All rights reserved.
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from mmaff.registry import HOOKS

#: Key of the states in ``checkpoint['meta']``.
META_KEY = 'random_state'


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Keep the main process's random generators in training checkpoints.

    mmengine's checkpoints hold the weights, the optimizer and the data
    position but not the state of the random generators, so a training
    resumed after an interruption draws other dropout masks than the
    uninterrupted run would have, and ends with other weights. This hook
    saves the states of torch's CPU generator (and of every CUDA device's,
    when CUDA is initialised), numpy's global generator and Python's
    ``random`` with each checkpoint, and restores them when a training
    resumes, so that the resumed run goes on exactly as the uninterrupted
    one (data loader workers are seeded by mmengine from the run's seed).

    The states are stored as a uint8 tensor and plain lists of ints, which
    load without unpickling code (``weights_only``). A checkpoint without
    them (an older one, or one of another tool) resumes as before; a
    checkpoint given as ``load_from`` (not resumed) leaves the generators
    alone. mmaff's ``tools/train.py`` adds this hook to every training
    (:func:`mmaff.utils.tool_utils.add_random_state_hook`).
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add the generators' states to ``checkpoint['meta']``."""
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        state = dict(
            torch=torch.get_rng_state(),
            numpy=[
                kind,
                [int(k) for k in keys],
                int(pos),
                int(has_gauss),
                float(cached)
            ],
            python=[version, list(internal), gauss])
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})[META_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the states saved by :meth:`before_save_checkpoint` when
        the training resumes (not for ``load_from`` or a test run)."""
        state: Optional[dict] = (checkpoint.get('meta') or {}).get(META_KEY)
        if not state or not getattr(runner, '_resume', False):
            return
        torch.set_rng_state(state['torch'])
        kind, keys, pos, has_gauss, cached = state['numpy']
        np.random.set_state(
            (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))
        if state.get('cuda') and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])

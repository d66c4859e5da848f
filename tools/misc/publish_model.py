# Copyright (c) mmaff contributors. All rights reserved.
"""Turn a training checkpoint into a publishable model file.

Drops the optimizer state and every non-plain object (message hubs, numpy
values), so that the result loads with ``torch.load(..., weights_only=True)``,
and names it ``{stem}-{sha256[:8]}.pth`` with the hash taken over the file it
writes.

The input is read without running code from it: tensors, plain Python types
and what mmengine training checkpoints hold (see
:func:`mmaff.utils.compat.load_checkpoint_file`). A file that needs full
unpickling is refused unless you trust it: ``--trust-checkpoint`` or the
environment variable ``MMAFF_TRUST_CHECKPOINTS=1``.

Example:
    python tools/misc/publish_model.py work_dirs/cam/iter_600.pth cam_demo.pth
    # -> cam_demo-1a2b3c4d.pth
"""
import argparse
import hashlib
import os
import os.path as osp
import sys
from collections import OrderedDict

import numpy as np
import torch

import mmaff  # noqa: F401
from mmaff.utils.compat import CheckpointRefusedError, load_checkpoint_file
from mmaff.utils.io import atomic_write

_PLAIN = (str, int, float, bool, type(None))


def _plain(value):
    """Plain Python copy of meta values, or None if not representable."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None and v is not None
                           for i, v in zip(items, value)) else items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            pv = _plain(v)
            if isinstance(k, str) and (pv is not None or v is None):
                out[k] = pv
        return out
    return None


def publish(in_file: str, out_file: str, trust: bool = False) -> str:
    """Write the published model and return its final path.

    Args:
        in_file (str): A training checkpoint.
        out_file (str): Output path; the hash is inserted before ``.pth``.
        trust (bool): Fully unpickle ``in_file`` (it may run code from the
            file). False loads it safely, refusing files that need more than
            mmengine's training checkpoints hold (unless
            ``MMAFF_TRUST_CHECKPOINTS=1``). Defaults to False.

    Returns:
        str: The path written, ``{stem}-{sha256[:8]}.pth``.
    """
    ckpt = load_checkpoint_file(
        in_file, map_location='cpu', weights_only=False if trust else None)
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict) or not all(
            torch.is_tensor(v) for v in state.values()):
        raise ValueError(f'{in_file}: no state_dict of tensors found')
    meta = _plain(ckpt.get('meta', {})) or {}
    meta.pop('hook_msgs', None)
    out = dict(
        state_dict=OrderedDict((k, v.cpu()) for k, v in state.items()),
        meta=meta)
    stem = out_file[:-4] if out_file.endswith('.pth') else out_file
    tmp = stem + '.unhashed.pth'
    atomic_write(tmp, lambda p: torch.save(out, p))
    with open(tmp, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    final = f'{stem}-{digest[:8]}.pth'
    os.replace(tmp, final)
    return final


def main():
    parser = argparse.ArgumentParser(
        description='Process a checkpoint to be published')
    parser.add_argument('in_file', help='input checkpoint filename')
    parser.add_argument('out_file', help='output checkpoint filename')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='fully unpickle the input (can run code from it: only for files '
        'you trust); by default it is loaded safely')
    args = parser.parse_args()
    if not osp.isfile(args.in_file):
        parser.error(f'checkpoint not found: {args.in_file}')
    try:
        final = publish(args.in_file, args.out_file, args.trust_checkpoint)
    except CheckpointRefusedError as err:
        sys.exit(f'error: {err}')
    print(final)


if __name__ == '__main__':
    main()

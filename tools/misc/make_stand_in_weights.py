# Copyright (c) mmaff contributors. All rights reserved.
"""Write random stand-in weights where the VOC configs look for pretrained
ones, so that their real loading paths run without a download.

Usage::

    python tools/misc/make_stand_in_weights.py [--root .] [--torch-home DIR]

writes, in the key layout of the real files (random values, float16):

* ``<root>/checkpoints/resnet38d_imagenet_mmaff.pth``: what
  ``tools/model_converters/resnet38d_mxnet2mmaff.py`` makes of the authors'
  ImageNet ResNet-38 (``init_cfg`` of the ResNet-38 configs);
* ``<torch-home>/hub/checkpoints/resnet{50,101}_v1c-*.pth``: the files that
  mmengine caches for ``open-mmlab://resnet50_v1c`` / ``resnet101_v1c``
  (run the tools with ``TORCH_HOME=<torch-home>``).

For tests, CI and smoke runs on machines without the real weights only:
nothing trained from these means anything. Existing files are kept.
"""
import argparse
import os
import os.path as osp
from typing import List

import torch

#: open-mmlab:// names -> (ResNetV1c depth, the file mmengine caches).
OPENMMLAB_RESNETS = {
    'resnet50_v1c': (50, 'resnet50_v1c-2cccc1ad.pth'),
    'resnet101_v1c': (101, 'resnet101_v1c-e67eebb6.pth'),
}
RESNET38D_FILE = osp.join('checkpoints', 'resnet38d_imagenet_mmaff.pth')


def save_random_weights(path: str, model_cfg: dict) -> None:
    """Save a freshly initialised model's weights as ``{'state_dict'}``.

    Args:
        path (str): Output file (its folder is created).
        model_cfg (dict): The model (registered in mmaff/mmseg).
    """
    import mmaff  # noqa: F401  (registers the models)
    from mmaff.registry import MODELS
    from mmaff.utils.io import atomic_write
    state = {
        k: (v.half() if v.is_floating_point() else v)
        for k, v in MODELS.build(model_cfg).state_dict().items()
    }
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(dict(state_dict=state), tmp))


def make_stand_in_weights(root: str, torch_home: str) -> List[str]:
    """Write every stand-in file that is missing.

    Args:
        root (str): The working directory the configs run from.
        torch_home (str): The ``TORCH_HOME`` the tools will run with.

    Returns:
        list[str]: The files written.
    """
    todo = [(osp.join(root, RESNET38D_FILE), dict(type='ResNet38d'))]
    for depth, name in OPENMMLAB_RESNETS.values():
        todo.append((osp.join(torch_home, 'hub', 'checkpoints', name),
                     dict(type='ResNetV1c', depth=depth)))
    written = []
    for path, model_cfg in todo:
        if not osp.isfile(path):
            save_random_weights(path, model_cfg)
            written.append(path)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--root', default='.', help='working directory of the configs')
    parser.add_argument(
        '--torch-home',
        default=os.environ.get('TORCH_HOME',
                               osp.expanduser('~/.cache/torch')),
        help='TORCH_HOME of the runs (default: $TORCH_HOME or '
        '~/.cache/torch)')
    args = parser.parse_args()
    for path in make_stand_in_weights(args.root, args.torch_home):
        print(f'wrote {path}')


if __name__ == '__main__':
    main()

# Copyright (c) mmaff contributors. All rights reserved.
"""Convert the MXNet-named ResNet-38 ImageNet weights to ``ResNet38d`` keys.

The released ImageNet model of "Wider or Deeper" (model A1,
``ilsvrc-cls_rna-a1_cls1000_ep-0001.params``) uses MXNet names::

    conv1a_weight                     -> conv1a.weight
    res2a_branch1_weight              -> b2.conv_branch1.weight
    res2a_branch2a_weight             -> b2.conv_branch2a.weight
    res4b3_branch2b1_weight           -> b4_3.conv_branch2b1.weight
    res6a_branch2b2_weight            -> b6.conv_branch2b2.weight
    bn2a_branch2a_gamma / _beta       -> b2.bn_branch2a.weight / .bias
    bn2a_branch2a_moving_mean / _var  -> b2.bn_branch2a.running_mean / _var
    bn7_gamma, ..., bn7_moving_var    -> bn7.weight, ..., bn7.running_var

(block ``a`` is the first block of a stage, ``bK`` the (K+1)-th; the BN
``bnNX_branchY`` pre-activates the conv ``resNX_branchY``). MXNet's
``arg:``/``aux:`` name prefixes are stripped; the ImageNet classifier
(``linear1000_*``) is dropped, as it is not part of the backbone. Any other
unknown key, any missing key and any shape that differs from ``ResNet38d``
is an error that lists them. ``num_batches_tracked`` (absent in MXNet) is
added as 0 for every BN, so the result loads with ``strict=True``.

Input: a torch-saved ``dict`` of name -> tensor (``.pth``/``.pt``, or any
file written by ``torch.save``). MXNet's own binary ``.params`` format
cannot be read here (it needs mxnet). With mxnet installed, turn it into a
torch state dict first (one command; the line breaks fall inside
Python brackets, so it can be pasted as is)::

    python -c "import sys, mxnet, torch; torch.save({k: torch.from_numpy(
        v.asnumpy()) for k, v in mxnet.nd.load(sys.argv[1]).items()},
        sys.argv[2])" \
        ilsvrc-cls_rna-a1_cls1000_ep-0001.params resnet38_mxnet.pth

Output: ``{'state_dict': ..., 'meta': {...}}`` written atomically. Keys are
the backbone's own (``conv1a.weight``) by default, which is what
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` on ``ResNet38d``
expects. ``--prefix backbone.`` gives keys of a full model whose backbone
sits in ``model.backbone`` (for ``load_from=DST``, or ``Pretrained`` with
``prefix='backbone.'``).

Usage::

    python tools/model_converters/resnet38d_mxnet2mmaff.py \
        resnet38_mxnet.pth pretrain/resnet38d_in1k.pth [--prefix backbone.]
"""
import argparse
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

from mmaff.models.backbones import ResNet38d
from mmaff.utils.compat import load_checkpoint_file
from mmaff.utils.io import atomic_write

_BN_PARAMS = {
    'weight': 'gamma',
    'bias': 'beta',
    'running_mean': 'moving_mean',
    'running_var': 'moving_var'
}
_DROPPED = re.compile(r'^linear1000_')
_BLOCK = re.compile(r'^b(\d)(?:_(\d+))?$')
_LAYER = re.compile(r'^(conv|bn)_branch(1|2a|2b\d)$')


def mxnet_name(key: str) -> str:
    """The MXNet name of a ``ResNet38d`` state-dict key.

    Args:
        key (str): e.g. ``'b4_3.bn_branch2b1.running_var'``.

    Returns:
        str: e.g. ``'bn4b3_branch2b1_moving_var'``.
    """
    parts = key.split('.')
    if parts == ['conv1a', 'weight']:
        return 'conv1a_weight'
    if len(parts) == 2 and parts[0] == 'bn7' and parts[1] in _BN_PARAMS:
        return f'bn7_{_BN_PARAMS[parts[1]]}'
    if len(parts) == 3:
        block, layer, param = parts
        block_m, layer_m = _BLOCK.match(block), _LAYER.match(layer)
        if block_m and layer_m:
            stage, index = block_m.groups()
            unit = 'a' if index is None else f'b{index}'
            kind, branch = layer_m.groups()
            if kind == 'conv' and param == 'weight':
                return f'res{stage}{unit}_branch{branch}_weight'
            if kind == 'bn' and param in _BN_PARAMS:
                return f'bn{stage}{unit}_branch{branch}_{_BN_PARAMS[param]}'
    raise KeyError(f'no MXNet name for the ResNet38d key {key!r}')


def _strip_mxnet_prefix(name: str) -> str:
    for prefix in ('arg:', 'aux:'):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def convert(src: Dict[str, torch.Tensor],
            prefix: str = '') -> 'OrderedDict[str, torch.Tensor]':
    """Rename an MXNet-named ResNet-38 state dict to ``ResNet38d`` keys.

    Args:
        src (dict[str, torch.Tensor]): MXNet names (optionally with
            ``arg:``/``aux:``) to tensors.
        prefix (str): Prepended to every output key, e.g. ``'backbone.'``.
            Defaults to ''.

    Returns:
        OrderedDict[str, torch.Tensor]: In the order of
        ``ResNet38d().state_dict()``, ``num_batches_tracked`` included.

    Raises:
        ValueError: On unknown, missing, duplicate, non-tensor or
            wrongly-shaped entries (all of them listed).
    """
    if not isinstance(src, dict):
        raise ValueError('the source must be a dict of name -> tensor, got '
                         f'{type(src).__name__}')
    # The target layout, without allocating 105M parameters.
    with torch.device('meta'):
        target = ResNet38d().state_dict()
    to_torch = {
        mxnet_name(k): k
        for k in target if not k.endswith('num_batches_tracked')
    }

    renamed: Dict[str, Tuple[str, torch.Tensor]] = {}
    unknown: List[str] = []
    duplicate: List[str] = []
    not_tensor: List[str] = []
    for name, value in src.items():
        plain = _strip_mxnet_prefix(str(name))
        if _DROPPED.match(plain):
            continue
        if plain not in to_torch:
            unknown.append(str(name))
            continue
        if not isinstance(value, torch.Tensor):
            not_tensor.append(f'{name} ({type(value).__name__})')
            continue
        key = to_torch[plain]
        if key in renamed:
            duplicate.append(f'{renamed[key][0]} / {name}')
            continue
        renamed[key] = (name, value)
    missing = [m for m, k in to_torch.items() if k not in renamed]
    bad_shape = [
        f'{name}: {tuple(value.shape)}, expected {tuple(target[key].shape)}'
        for key, (name, value) in renamed.items()
        if value.shape != target[key].shape
    ]
    errors = []
    for what, items in (('unknown keys', unknown), ('missing keys', missing),
                        ('keys given twice', duplicate),
                        ('values that are not tensors', not_tensor),
                        ('shape mismatches', bad_shape)):
        if items:
            errors.append(f'{len(items)} {what}: ' + ', '.join(items))
    if errors:
        raise ValueError('cannot convert to ResNet38d: ' + '; '.join(errors))

    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, meta_value in target.items():
        if key.endswith('num_batches_tracked'):
            value = torch.zeros((), dtype=meta_value.dtype)
        else:
            value = renamed[key][1].detach().to('cpu', torch.float32)
        out[prefix + key] = value.clone().contiguous()
    return out


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert MXNet-named ResNet-38 (model A1) weights to '
        'mmaff ResNet38d keys.')
    parser.add_argument(
        'src', help='torch-saved dict of MXNet names -> tensors')
    parser.add_argument('dst', help='output checkpoint path')
    parser.add_argument(
        '--prefix',
        default='',
        help="prefix of the output keys: '' (default) for the backbone's "
        "Pretrained init_cfg, 'backbone.' for a full model (load_from)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Command-line entry point.

    Args:
        argv (list[str], optional): Arguments; None reads ``sys.argv``.
    """
    args = parse_args(argv)
    try:
        src = load_checkpoint_file(
            args.src, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - torch raises many types
        raise ValueError(
            f'{args.src}: cannot read it as a torch-saved state dict '
            f'({err}). An MXNet .params file must first be turned into one '
            'with mxnet (see this script\'s docstring).') from err
    if isinstance(src, dict) and isinstance(src.get('state_dict'), dict):
        src = src['state_dict']
    try:
        state_dict = convert(src, prefix=args.prefix)
    except ValueError as err:
        raise ValueError(f'{args.src}: {err}') from err
    dropped = sorted(
        k for k in src if _DROPPED.match(_strip_mxnet_prefix(str(k))))
    if dropped:
        print(f'dropped the ImageNet classifier: {", ".join(dropped)}')
    checkpoint = dict(
        state_dict=state_dict,
        meta=dict(
            source=str(args.src),
            converter='tools/model_converters/resnet38d_mxnet2mmaff.py',
            prefix=args.prefix))
    atomic_write(args.dst, lambda tmp: torch.save(checkpoint, tmp))
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()

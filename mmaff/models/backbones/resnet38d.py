# Copyright (c) mmaff contributors. All rights reserved.
"""ResNet-38 (Wu et al., "Wider or Deeper", model A1) with output stride 8.

The layout and the attribute names follow the AffinityNet authors' PyTorch
port (``conv1a``, ``b2``, ``b2_1``, ..., ``b7``, ``bn7``; inside a block
``bn_branch2a``, ``conv_branch2a``, ...), so their state dicts map 1:1 and
the MXNet release converts with ``tools/model_converters/
resnet38d_mxnet2mmaff.py``.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmaff.registry import MODELS


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: two 3x3 convs.

    ``out = shortcut + conv_branch2b1(relu(bn_branch2b1(conv_branch2a(a))))``
    with ``a = relu(bn_branch2a(x))``; the shortcut is ``x`` itself when the
    shape is kept, else ``conv_branch1(a)`` (1x1, strided).

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Output channels of the first 3x3 conv.
        out_channels (int): Output channels.
        stride (int): Stride of the first conv and the shortcut.
            Defaults to 1.
        dilation (int): Dilation of the second conv (and of the first unless
            ``first_dilation`` is given). Defaults to 1.
        first_dilation (int, optional): Dilation of the first conv.
            Defaults to None (= ``dilation``).
        norm_cfg (dict): Config of the norm layers. Defaults to
            ``dict(type='BN')``.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 first_dilation: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        if first_dilation is None:
            first_dilation = dilation
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv_branch2a = nn.Conv2d(
            in_channels,
            mid_channels,
            3,
            stride=stride,
            padding=first_dilation,
            dilation=first_dilation,
            bias=False)
        self.bn_branch2b1 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.conv_branch2b1 = nn.Conv2d(
            mid_channels,
            out_channels,
            3,
            padding=dilation,
            dilation=dilation,
            bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Forward.

        Args:
            x (torch.Tensor): (N, C_in, H, W).

        Returns:
            tuple[torch.Tensor, torch.Tensor]: The block output and the
            pre-activated input ``relu(bn_branch2a(x))``.
        """
        act = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(act)
        out = self.conv_branch2a(act)
        out = self.conv_branch2b1(F.relu(self.bn_branch2b1(out)))
        return shortcut + out, act


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck with dropout: 1x1 -> 3x3 (dilated) -> 1x1.

    Branch: ``bn_branch2a -> relu -> conv_branch2a (1x1) -> bn_branch2b1 ->
    relu -> dropout_2b1 -> conv_branch2b1 (3x3) -> bn_branch2b2 -> relu ->
    dropout_2b2 -> conv_branch2b2 (1x1)``; the shortcut is as in
    :class:`PreActBasicBlock`. Channels: ``in -> out/4 -> out/2 -> out``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (divisible by 4).
        stride (int): Stride of the first conv and the shortcut.
            Defaults to 1.
        dilation (int): Dilation of the 3x3 conv. Defaults to 1.
        dropout (float): Dropout2d probability of both dropouts.
            Defaults to 0.
        norm_cfg (dict): Config of the norm layers. Defaults to
            ``dict(type='BN')``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 dropout: float = 0.,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        if out_channels % 4 != 0:
            raise ValueError('PreActBottleneck: out_channels must be '
                             f'divisible by 4, got {out_channels}')
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv_branch2a = nn.Conv2d(
            in_channels, out_channels // 4, 1, stride=stride, bias=False)
        self.bn_branch2b1 = build_norm_layer(norm_cfg, out_channels // 4)[1]
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(
            out_channels // 4,
            out_channels // 2,
            3,
            padding=dilation,
            dilation=dilation,
            bias=False)
        self.bn_branch2b2 = build_norm_layer(norm_cfg, out_channels // 2)[1]
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(
            out_channels // 2, out_channels, 1, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Forward.

        Args:
            x (torch.Tensor): (N, C_in, H, W).

        Returns:
            tuple[torch.Tensor, torch.Tensor]: The block output and the
            pre-activated input ``relu(bn_branch2a(x))``.
        """
        act = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(act)
        out = self.conv_branch2a(act)
        out = self.dropout_2b1(F.relu(self.bn_branch2b1(out)))
        out = self.conv_branch2b1(out)
        out = self.dropout_2b2(F.relu(self.bn_branch2b2(out)))
        out = self.conv_branch2b2(out)
        return shortcut + out, act


@MODELS.register_module()
class ResNet38d(BaseModule):
    """ResNet-38 (model A1 of "Wider or Deeper") at output stride 8.

    The backbone of AffinityNet (Ahn & Kwak, CVPR 2018). Layer table
    (pre-activation blocks, all convs bias-free; strides are those of the
    first block of a stage)::

        conv1a   3x3 conv 3->64                               stride 1
        b2..b2_2 3 basic blocks, 128 ch                        stride 2
        b3..b3_2 3 basic blocks, 256 ch                        stride 2
        b4..b4_5 6 basic blocks, 512 ch                        stride 2
        b5..b5_2 3 basic blocks, (512, 1024) ch, dilation 2
                 (b5's first conv: dilation 1)
        b6       bottleneck 1024 -> (512, 1024, 2048), dilation 4,
                 Dropout2d(0.3) x2 in the branch
        b7       bottleneck 2048 -> (1024, 2048, 4096), dilation 4,
                 Dropout2d(0.5) x2 in the branch
        bn7      BN + ReLU, 4096 ch at stride 8

    An input of size HxW gives maps of size ceil(H/8) x ceil(W/8) from b4 on
    (ceil(H/2) after b2, ceil(H/4) after b3).

    Feature taps (``out_keys``):

    * ``'conv1a'``, ``'b2'``, ``'b3'``, ``'b4'``, ``'b5'``, ``'b6'``,
      ``'b7'``: the raw (not activated) output of the stem / the last block
      of each stage; channels 64, 128, 256, 512, 1024, 2048, 4096.
    * ``'b4_act'`` (512 ch) and ``'b5_act'`` (1024 ch): the same maps after
      the BN + ReLU that pre-activates the next stage (``b5.bn_branch2a``,
      ``b6.bn_branch2a``). These are the stage-5 / stage-6 input features
      that AffinityNet taps in the authors' code (their ``conv4``/``conv5``).
    * ``'bn7'``: the final 4096-ch map after ``bn7`` + ReLU (``conv6``), the
      one the CAM head uses.

    AffinityNet uses ``out_keys=('b4_act', 'b5_act', 'bn7')``. The forward
    stops after the deepest requested tap.

    Training behaviour as in the paper: with ``norm_eval=True`` every BN
    stays in eval mode and its affine parameters are frozen
    (``requires_grad=False``); ``frozen_stages`` freezes the stem and the
    first stages (parameters frozen and kept in eval mode).

    Args:
        out_keys (Sequence[str]): Taps returned by :meth:`forward`, in this
            order. Defaults to ``('bn7',)``.
        dropout_ratios (Sequence[float]): Dropout2d probabilities inside b6
            and b7. Defaults to ``(0.3, 0.5)``.
        norm_cfg (dict): Config of the norm layers. Defaults to
            ``dict(type='BN')``.
        norm_eval (bool): Keep every norm layer in eval mode during training
            and freeze its affine parameters. Defaults to True.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages``
            stages: -1 freezes nothing, 0 the stem (conv1a), 1 also
            b2..b2_2, ..., 6 everything (b7 and bn7 included).
            Defaults to 1.
        init_cfg (dict or list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint='resnet38d_in1k.pth')``
            with the converter's output. Defaults to None (PyTorch's
            default initialisation).
    """

    # (name, stage index) of each block, in forward order.
    _BLOCKS = (('b2', 1), ('b2_1', 1), ('b2_2', 1), ('b3', 2), ('b3_1', 2),
               ('b3_2', 2), ('b4', 3), ('b4_1', 3), ('b4_2', 3), ('b4_3', 3),
               ('b4_4', 3), ('b4_5', 3), ('b5', 4), ('b5_1', 4), ('b5_2', 4),
               ('b6', 5), ('b7', 6))
    # Raw taps: the block whose output is the tap.
    _RAW_TAPS = {
        'b2': 'b2_2',
        'b3': 'b3_2',
        'b4': 'b4_5',
        'b5': 'b5_2',
        'b6': 'b6',
        'b7': 'b7'
    }
    # Activated taps: the block whose pre-activation is the tap.
    _ACT_TAPS = {'b4_act': 'b5', 'b5_act': 'b6'}
    TAP_CHANNELS = {
        'conv1a': 64,
        'b2': 128,
        'b3': 256,
        'b4': 512,
        'b5': 1024,
        'b6': 2048,
        'b7': 4096,
        'b4_act': 512,
        'b5_act': 1024,
        'bn7': 4096
    }
    num_stages = 6

    def __init__(self,
                 out_keys: Sequence[str] = ('bn7', ),
                 dropout_ratios: Sequence[float] = (0.3, 0.5),
                 norm_cfg: dict = dict(type='BN'),
                 norm_eval: bool = True,
                 frozen_stages: int = 1,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(out_keys, str):
            out_keys = (out_keys, )
        out_keys = tuple(out_keys)
        if not out_keys:
            raise ValueError('ResNet38d: out_keys must name at least one tap '
                             f'of {sorted(self.TAP_CHANNELS)}')
        unknown = [k for k in out_keys if k not in self.TAP_CHANNELS]
        if unknown:
            raise ValueError(f'ResNet38d: unknown out_keys {unknown}; '
                             f'choose among {sorted(self.TAP_CHANNELS)}')
        if len(dropout_ratios) != 2 or not all(
                0 <= p <= 1 for p in dropout_ratios):
            raise ValueError('ResNet38d: dropout_ratios must be two '
                             'probabilities (b6, b7), got '
                             f'{tuple(dropout_ratios)}')
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError('ResNet38d: frozen_stages must lie in '
                             f'[-1, {self.num_stages}], got {frozen_stages}')
        self.out_keys = out_keys
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages

        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = PreActBasicBlock(64, 128, 128, 2, norm_cfg=norm_cfg)
        self.b2_1 = PreActBasicBlock(128, 128, 128, norm_cfg=norm_cfg)
        self.b2_2 = PreActBasicBlock(128, 128, 128, norm_cfg=norm_cfg)
        self.b3 = PreActBasicBlock(128, 256, 256, 2, norm_cfg=norm_cfg)
        self.b3_1 = PreActBasicBlock(256, 256, 256, norm_cfg=norm_cfg)
        self.b3_2 = PreActBasicBlock(256, 256, 256, norm_cfg=norm_cfg)
        self.b4 = PreActBasicBlock(256, 512, 512, 2, norm_cfg=norm_cfg)
        for i in range(1, 6):
            setattr(self, f'b4_{i}',
                    PreActBasicBlock(512, 512, 512, norm_cfg=norm_cfg))
        self.b5 = PreActBasicBlock(
            512, 512, 1024, dilation=2, first_dilation=1, norm_cfg=norm_cfg)
        self.b5_1 = PreActBasicBlock(
            1024, 512, 1024, dilation=2, norm_cfg=norm_cfg)
        self.b5_2 = PreActBasicBlock(
            1024, 512, 1024, dilation=2, norm_cfg=norm_cfg)
        self.b6 = PreActBottleneck(
            1024,
            2048,
            dilation=4,
            dropout=dropout_ratios[0],
            norm_cfg=norm_cfg)
        self.b7 = PreActBottleneck(
            2048,
            4096,
            dilation=4,
            dropout=dropout_ratios[1],
            norm_cfg=norm_cfg)
        self.bn7 = build_norm_layer(norm_cfg, 4096)[1]

        self._last_block = self._deepest_block(out_keys)
        self._freeze()

    def _deepest_block(self, out_keys: Sequence[str]) -> Optional[str]:
        """The last block the forward must run (None: the full network)."""
        order = [name for name, _ in self._BLOCKS]
        last = -1
        for key in out_keys:
            if key == 'bn7':
                return None
            if key == 'conv1a':
                continue
            block = self._RAW_TAPS.get(key) or self._ACT_TAPS[key]
            last = max(last, order.index(block))
        return order[last] if last >= 0 else ''

    def _stage_modules(self, stage: int) -> List[nn.Module]:
        """Modules of a stage: 0 is the stem, 6 includes bn7."""
        if stage == 0:
            return [self.conv1a]
        modules = [getattr(self, n) for n, s in self._BLOCKS if s == stage]
        if stage == self.num_stages:
            modules.append(self.bn7)
        return modules

    def _freeze(self) -> None:
        """Apply ``frozen_stages`` and ``norm_eval`` to requires_grad/mode."""
        for stage in range(self.frozen_stages + 1):
            for module in self._stage_modules(stage):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False
        if self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    for param in module.parameters():
                        param.requires_grad = False

    def train(self, mode: bool = True) -> 'ResNet38d':
        """Set the train mode, keeping frozen stages and (with
        ``norm_eval``) every BN in eval mode.

        Args:
            mode (bool): Train mode. Defaults to True.

        Returns:
            ResNet38d: self.
        """
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Forward.

        Args:
            x (torch.Tensor): Images (N, 3, H, W); any H, W >= 1.

        Returns:
            tuple[torch.Tensor, ...]: The maps named by ``out_keys``, in
            that order.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError('ResNet38d expects images of shape (N, 3, H, W), '
                             f'got {tuple(x.shape)}')
        taps: Dict[str, torch.Tensor] = OrderedDict()
        x = self.conv1a(x)
        taps['conv1a'] = x
        raw_of = {block: key for key, block in self._RAW_TAPS.items()}
        act_of = {block: key for key, block in self._ACT_TAPS.items()}
        if self._last_block != '':
            for name, _ in self._BLOCKS:
                x, act = getattr(self, name)(x)
                if name in act_of:
                    taps[act_of[name]] = act
                if name in raw_of:
                    taps[raw_of[name]] = x
                if name == self._last_block:
                    break
            else:
                taps['bn7'] = F.relu(self.bn7(x))
        return tuple(taps[key] for key in self.out_keys)

# Copyright (c) mmaff contributors. All rights reserved.
"""Single-image inference: CAMs and a pseudo label from two checkpoints.

The same code as the export path: :class:`CAMClassifier.predict` for the
CAMs, float16 storage as in the CAM files, :class:`AffinityNet.predict` for
the walk (with the model's ``test_cfg``) and :func:`mmaff.ops.refine_label`
with the config's refiner (the dCRF by default). So the labels equal those
that ``tools/test.py`` + ``RandomWalkHook`` write for the same image.
"""
import copy
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmseg.structures import SegDataSample

from mmaff.models.refiners import BaseRefiner, build_refiner
from mmaff.ops import refine_label
from mmaff.registry import MODELS
from mmaff.utils import register_all_modules
from mmaff.utils.compat import weights_only_mode
from mmaff.utils.handover import resolve_handovers

ImageLike = Union[str, np.ndarray]


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               weights_only: bool = True) -> torch.nn.Module:
    """Build a model from a config and load a checkpoint.

    Args:
        config (str | Config): Config file or object.
        checkpoint (str, optional): Checkpoint to load.
        device (str): Defaults to 'cpu'.
        weights_only (bool): Load tensors and plain containers only
            (published models, ``tools/misc/publish_model.py``). False also
            accepts mmengine training checkpoints, still without running
            code from the file (see
            :func:`mmaff.utils.compat.load_checkpoint_file`); a file that
            needs full unpickling is refused unless the environment variable
            ``MMAFF_TRUST_CHECKPOINTS=1`` is set. Defaults to True.

    Returns:
        nn.Module: The model in eval mode, with ``cfg`` attached.
    """
    register_all_modules()
    cfg = Config.fromfile(config) if isinstance(config, str) else \
        copy.deepcopy(config)
    resolve_handovers(cfg)
    model_cfg = cfg.model.copy()
    model_cfg.pop('init_cfg', None)
    backbone = model_cfg.get('backbone', {})
    if isinstance(backbone, dict):
        backbone = dict(backbone)
        backbone.pop('init_cfg', None)  # no pretrained download
        model_cfg['backbone'] = backbone
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        if weights_only:
            with weights_only_mode():
                load_checkpoint(model, checkpoint, map_location='cpu')
        else:
            load_checkpoint(model, checkpoint, map_location='cpu')
    model.cfg = cfg
    return model.to(device).eval()


def refiner_from_config(cfg: Config) -> BaseRefiner:
    """The refiner of a stage-4 config: its ``RandomWalkHook``'s.

    Args:
        cfg (Config): An AffinityNet (stage 3-4) config.

    Returns:
        BaseRefiner: The hook's ``refiner`` (or deprecated ``crf``); the
        dense CRF with the reference's values when the config has no
        ``RandomWalkHook`` or the hook names none.
    """
    for hook in cfg.get('custom_hooks', []) or []:
        if hook.get('type') == 'RandomWalkHook':
            return build_refiner(
                hook.get('refiner'), hook.get('crf'), 'RandomWalkHook')
    return build_refiner(None, None, 'refiner_from_config')


def _read_bgr(img: ImageLike) -> Tuple[np.ndarray, str]:
    if isinstance(img, str):
        image = mmcv.imread(img, flag='color')
        if image is None:
            raise FileNotFoundError(f'cannot read the image {img}')
        return image, img
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError('img must be a path or an (H, W, 3) BGR array')
    return img, ''


def _prepare(model, image_bgr: np.ndarray, labels: Sequence[int],
             img_path: str, **meta):
    h, w = image_bgr.shape[:2]
    sample = SegDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            img_labels=tuple(int(c) for c in labels),
            img_path=img_path,
            **meta))
    inputs = torch.from_numpy(
        np.ascontiguousarray(image_bgr.transpose(2, 0, 1)))
    return model.data_preprocessor(
        dict(inputs=[inputs], data_samples=[sample]), False)


@torch.no_grad()
def inference_cams(model, img: ImageLike,
                   labels: Optional[Sequence[int]] = None,
                   score_thr: float = 0.5) -> Tuple[np.ndarray, list]:
    """Normalised CAMs of one image, as the CAM files store them.

    Args:
        model (CAMClassifier): A stage-1 model from :func:`init_model`.
        img (str | np.ndarray): Image path or BGR array.
        labels (Sequence[int], optional): Image-level label ids. None: the
            classes whose single-scale sigmoid score exceeds ``score_thr``.
        score_thr (float): See ``labels``. Defaults to 0.5.

    Returns:
        tuple: cams (K, H, W) float32 (float16-rounded, as exported) and the
        K label ids.
    """
    image, path = _read_bgr(img)
    if labels is None:
        data = _prepare(model, image, [], path)
        probs = model.cam_head.predict(model.extract_feat(data['inputs']))
        labels = [i + 1 for i in torch.nonzero(
            probs[0] > score_thr).flatten().tolist()]
    labels = sorted(int(c) for c in labels)
    data = _prepare(model, image, labels, path)
    sample = model.predict(data['inputs'], data['data_samples'])[0]
    cams = sample.pred_cams.data[[c - 1 for c in labels]].float().cpu()
    return cams.half().float().numpy(), labels


@torch.no_grad()
def inference_pseudo_label(
        cam_model,
        aff_model,
        img: ImageLike,
        labels: Optional[Sequence[int]] = None,
        refiner: Union[None, str, dict, BaseRefiner] = None,
        crf: Optional[dict] = None) -> dict:
    """CAMs and the random-walk pseudo label of one image.

    The walk's settings are the AffinityNet model's ``test_cfg``.

    Args:
        cam_model (CAMClassifier): Stage-1 model.
        aff_model (AffinityNet): Stage-3 model.
        img (str | np.ndarray): Image path or BGR array.
        labels (Sequence[int], optional): Image-level label ids (see
            :func:`inference_cams`).
        refiner (str | dict | BaseRefiner, optional): Refine the walked
            scores into ``rw_crf`` with this refiner: ``'config'`` (the
            ``RandomWalkHook`` refiner of ``aff_model.cfg``, see
            :func:`refiner_from_config`: the label then equals the
            exported file), a config dict (``dict(type='DenseCRF', ...)``,
            ``dict(type='PAR', ...)``) or a built refiner. None: no refined
            label.
        crf (dict, optional): Deprecated: ``dense_crf`` kwargs, the same as
            ``refiner=dict(type='DenseCRF', **crf)``.

    Returns:
        dict: ``cams`` (K, H, W), ``labels``, ``rw`` (H, W) label ids and,
        with a refiner, ``rw_crf`` (the refined label; the name is the
        paper's RW + dCRF, also with another refiner).
    """
    if isinstance(refiner, str):
        if refiner != 'config':
            raise ValueError("inference_pseudo_label: refiner must be "
                             "'config', a dict, a refiner or None, got "
                             f'{refiner!r}')
        if crf is not None:
            raise ValueError("inference_pseudo_label: refiner='config' and "
                             'crf=... exclude each other')
        refiner = refiner_from_config(aff_model.cfg)
    elif refiner is not None or crf is not None:
        refiner = build_refiner(refiner, crf, 'inference_pseudo_label')
    image, path = _read_bgr(img)
    cams, labels = inference_cams(cam_model, image, labels)
    data = _prepare(
        aff_model, image, labels, path, cams=cams, cam_labels=tuple(labels))
    sample = aff_model.predict(data['inputs'], data['data_samples'])[0]
    scores = sample.seg_logits.data.cpu()
    out = dict(
        cams=cams,
        labels=labels,
        rw=sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8))
    if refiner is not None:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        out['rw_crf'] = refine_label(rgb, scores, labels,
                                     refiner).numpy().astype(np.uint8)
    return out

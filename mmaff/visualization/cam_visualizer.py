# Copyright (c) mmaff contributors. All rights reserved.
from typing import List, Optional, Sequence

import cv2
import mmcv
import numpy as np
from mmengine.dist import master_only
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from mmaff.registry import VISUALIZERS


@VISUALIZERS.register_module()
class CAMLocalVisualizer(SegLocalVisualizer):
    """mmseg's local visualizer that draws CAMs as heat maps.

    A data sample with ``pred_cams`` (C x H x W, normalised CAMs of the C
    foreground classes, as predicted by
    :class:`~mmaff.models.CAMClassifier`) gets, as its prediction panel, the
    image blended with a jet heat map of the maximum CAM over the image's
    present classes (metainfo ``img_labels``, 1-based label ids: label id
    ``c`` is channel ``c - 1``; every channel when the metainfo has none).
    Each pixel is blended with the weight ``cam_alpha * CAM``, so the image
    stays as it is where the CAMs are 0. With ``with_labels``, the names of
    the present classes are written in the top-left corner. The ground-truth
    panel, and every sample without ``pred_cams`` (e.g. the random walk's or
    a segmentor's ``pred_sem_seg``), are drawn by
    :class:`~mmseg.visualization.SegLocalVisualizer`.

    Args:
        name (str): Name of the instance. Defaults to 'visualizer'.
        cam_alpha (float): Weight of the heat map where the CAM is 1.
            Defaults to 0.6.
        **kwargs: The other arguments of
            :class:`~mmseg.visualization.SegLocalVisualizer`.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 cam_alpha: float = 0.6,
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.cam_alpha = cam_alpha

    def _draw_cams(self,
                   image: np.ndarray,
                   cams: PixelData,
                   labels: Optional[Sequence[int]],
                   classes: Optional[Sequence[str]],
                   with_labels: bool = True) -> np.ndarray:
        """Blend the image with a heat map of the present classes' CAMs.

        Args:
            image (np.ndarray): RGB image, (H, W, 3) uint8.
            cams (PixelData): Normalised CAMs, (C, h, w) in [0, 1].
            labels (Sequence[int], optional): Present 1-based label ids;
                None for every channel.
            classes (Sequence[str], optional): Class names by label id.
            with_labels (bool): Write the present class names. Defaults to
                True.

        Returns:
            np.ndarray: The drawn RGB image, (H, W, 3) uint8.
        """
        data = cams.cpu().data
        data = np.asarray(
            data.numpy() if hasattr(data, 'numpy') else data, dtype=np.float32)
        if labels is None:
            labels = list(range(1, data.shape[0] + 1))
        labels = [int(c) for c in labels if 0 < int(c) <= data.shape[0]]
        heat = data[[c - 1 for c in labels]].max(0) if labels else \
            np.zeros(data.shape[1:], np.float32)
        if heat.shape != image.shape[:2]:
            heat = cv2.resize(heat, image.shape[1::-1])
        heat = np.clip(heat, 0, 1)
        color = cv2.applyColorMap(
            np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        weight = self.cam_alpha * heat[..., None]
        drawn = (image * (1 - weight) + color * weight).astype(np.uint8)
        if with_labels:
            names = [
                classes[c] if classes and c < len(classes) else str(c)
                for c in labels
            ]
            drawn = self._draw_title(drawn, ', '.join(names) or 'no class')
        self.set_image(drawn)
        return drawn

    @staticmethod
    def _draw_title(image: np.ndarray, text: str) -> np.ndarray:
        """Write ``text`` on a black box in the top-left corner."""
        font = cv2.FONT_HERSHEY_SIMPLEX
        scale = min(image.shape[:2]) / 500  # mmseg's label size
        thickness = 1 if min(image.shape[:2]) < 300 else 2
        (width, height), baseline = cv2.getTextSize(text, font, scale,
                                                    thickness)
        image = np.ascontiguousarray(image)
        cv2.rectangle(image, (0, 0), (width + 2, height + baseline + 2),
                      (0, 0, 0), -1)
        cv2.putText(image, text, (1, height + 1), font, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
        return image

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[SegDataSample] = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       with_labels: Optional[bool] = True) -> None:
        """Draw a data sample: ground truth left, CAM heat map right.

        Arguments as in
        :meth:`mmseg.visualization.SegLocalVisualizer.add_datasample`; a
        sample without ``pred_cams``, or ``draw_pred=False``, is drawn by
        that method.
        """
        if not (draw_pred and data_sample is not None
                and 'pred_cams' in data_sample):
            return super().add_datasample(name, image, data_sample, draw_gt,
                                          draw_pred, show, wait_time, out_file,
                                          step, with_labels)
        classes = self.dataset_meta.get('classes', None)
        palette = self.dataset_meta.get('palette', None)
        panels: List[np.ndarray] = []
        if draw_gt and 'gt_sem_seg' in data_sample:
            assert classes is not None, 'class information is not provided'
            panels.append(
                self._draw_sem_seg(image, data_sample.gt_sem_seg, classes,
                                   palette, with_labels))
        panels.append(
            self._draw_cams(image, data_sample.pred_cams,
                            data_sample.metainfo.get('img_labels', None),
                            classes, bool(with_labels)))
        drawn_img = np.concatenate(panels, axis=1)
        if show:
            self.show(drawn_img, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn_img), out_file)
        else:
            self.add_image(name, drawn_img, step)

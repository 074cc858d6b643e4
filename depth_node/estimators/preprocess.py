"""Depth Anything's official pre- and post-processing, without transformers (numpy, torch, cv2).

Every Depth Anything backend - torch (:mod:`~depth_node.estimators.depth_anything`), ONNX
Runtime and TensorRT - runs these functions, so they agree on the network input, and an ONNX or
TensorRT deployment does not need transformers installed:

1. ``rgb / 255`` in float64; resize (``cv2.INTER_CUBIC``) keeping the aspect ratio so that both
   sides are at least ``input_size`` ("lower_bound") and multiples of 14, with the official
   rounding (:func:`network_input_size`); ImageNet mean/std; float32 ``[1, 3, h, w]``
   (:func:`preprocess_image`; :func:`preprocess_on_device` does the same with torch ops on a
   GPU).
2. The network (the backend's ``infer``).
3. Bilinear resize (``align_corners=True``) back to the input ``H, W``
   (:func:`resize_prediction`).

:class:`DepthAnythingPredictor` joins the three into ``predict`` for a backend that defines
``input_size``, ``name`` and ``infer``. :func:`interpolate_pos_embed_official` is the official
DINOv2 resampling of the position embeddings (see :mod:`~depth_node.estimators.depth_anything`
for why it differs from transformers').
"""

from __future__ import annotations

import math
from typing import Optional, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import check_input_image, check_prediction

__all__ = ['DepthAnythingPredictor', 'IMAGENET_MEAN', 'IMAGENET_STD', 'PATCH_SIZE',
           'interpolate_pos_embed_official', 'network_input_size', 'preprocess_image',
           'preprocess_on_device', 'resize_prediction']

#: Side of a ViT patch in pixels; network inputs are multiples of it.
PATCH_SIZE = 14
#: ImageNet statistics, as the official transform uses them (RGB order).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def check_input_size(input_size: object) -> int:
    """``estimator.input_size`` as an int; :class:`ConfigError` unless an integer >= 14 px."""
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) \
            or input_size < PATCH_SIZE:
        raise ConfigError('estimator.input_size', f'must be an integer >= {PATCH_SIZE} '
                          'pixels', input_size)
    return int(input_size)


def network_input_size(height: int, width: int, input_size: int = 518,
                       multiple: int = PATCH_SIZE) -> tuple[int, int]:
    """Network input ``(h, w)`` for an image ``height x width``, as the official transform picks.

    Keeps the aspect ratio with the larger of the two scales (both sides end up
    ``>= input_size``), rounds each side to the nearest multiple of ``multiple`` with numpy's
    round-half-to-even, and rounds up instead when that would fall below ``input_size``.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    input_size : int
        Lower bound for both sides of the network input, pixels.
    multiple : int
        Both sides are multiples of this (the ViT patch size).

    Returns
    -------
    tuple of int
        ``(h, w)`` in pixels.
    """
    scale = max(input_size / height, input_size / width)

    def constrain(x: float) -> int:
        y = int(np.round(x / multiple) * multiple)
        if y < input_size:
            y = int(np.ceil(x / multiple) * multiple)
        return y

    return constrain(scale * height), constrain(scale * width)


def preprocess_image(rgb: np.ndarray, input_size: int) -> torch.Tensor:
    """Network input ``[1, 3, h, w]`` float32 (CPU) from an RGB image ``[H, W, 3]`` uint8.

    ``h, w`` are given by :func:`network_input_size`; values are ImageNet-normalised.
    Float64 up to the final cast, as the official transform.
    """
    check_input_image(rgb)
    height, width = rgb.shape[:2]
    net_h, net_w = network_input_size(height, width, input_size)
    image = rgb / 255.0  # [H, W, 3] float64
    image = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
    image = (image - IMAGENET_MEAN) / IMAGENET_STD  # [h, w, 3] float64
    chw = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)  # [3, h, w]
    return torch.from_numpy(chw).unsqueeze(0)  # [1, 3, h, w]


def preprocess_on_device(rgb: np.ndarray, input_size: int, device: Union[str, torch.device],
                         size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Network input ``[1, 3, h, w]`` float32 on ``device`` from an RGB ``[H, W, 3]`` uint8.

    The official pre-processing (``/255``, bicubic resize to :func:`network_input_size`,
    ImageNet mean/std) with torch ops where the image lives, instead of OpenCV in float64 on
    the CPU; it matches :func:`preprocess_image` to about 1e-3 of the normalised range
    (torch's bicubic vs OpenCV's). ``size`` forces the network size ``(h, w)`` (calibration
    images).
    """
    check_input_image(rgb)
    height, width = rgb.shape[:2]
    net_h, net_w = size or network_input_size(height, width, input_size)
    image = torch.from_numpy(np.ascontiguousarray(rgb)).to(device, non_blocking=True)
    image = image.permute(2, 0, 1)[None].float() / 255.0  # [1, 3, H, W]
    image = F.interpolate(image, (net_h, net_w), mode='bicubic', align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    return ((image - mean) / std).contiguous()  # [1, 3, h, w]


def resize_prediction(pred: torch.Tensor, height: int, width: int) -> np.ndarray:
    """The first prediction of ``pred`` ``[B, h, w]`` resized to ``[height, width]`` float32.

    Bilinear with ``align_corners=True``, as the official ``infer_image``; returned on the CPU.
    """
    with torch.inference_mode():
        out = F.interpolate(pred[:1, None].float(), (height, width), mode='bilinear',
                            align_corners=True)[0, 0]  # [H, W]
        return out.cpu().numpy()


def interpolate_pos_embed_official(position_embeddings: torch.Tensor, rows: int,
                                   cols: int) -> torch.Tensor:
    """DINOv2 position embeddings ``[1, 1 + rows * cols, C]`` for a grid of ``rows x cols``.

    ``position_embeddings`` ``[1, 1 + g * g, C]`` (class token first) is the stored square
    grid; its patch part is resampled bicubically with the official scale factor
    ``(n + 0.1) / g`` per side (``n`` = patches on that side), in float32, and returned in
    the stored dtype.
    """
    num_positions = position_embeddings.shape[1] - 1
    grid = math.sqrt(num_positions)
    dim = position_embeddings.shape[-1]
    class_pos = position_embeddings[:, :1]
    patch_pos = position_embeddings[:, 1:].float()
    patch_pos = patch_pos.reshape(1, int(grid), int(grid), dim).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, scale_factor=((rows + 0.1) / grid,
                                                       (cols + 0.1) / grid),
                              mode='bicubic', antialias=False)  # [1, C, rows, cols]
    if tuple(patch_pos.shape[-2:]) != (rows, cols):
        raise DepthNodeError('position-embedding interpolation gave a grid of '
                             f'{tuple(patch_pos.shape[-2:])} for {rows} x {cols} patches')
    patch_pos = patch_pos.to(position_embeddings.dtype)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
    return torch.cat((class_pos, patch_pos), dim=1)


class DepthAnythingPredictor:
    """``preprocess`` and ``predict`` of every Depth Anything backend.

    A subclass defines ``input_size`` (int, pixels), ``name`` (str) and
    ``infer(pixel_values [B, 3, h, w]) -> [B, h, w]`` (float32, any device); it may override
    :meth:`preprocess` (TensorRT pre-processes on the GPU).
    """

    input_size: int
    name: str

    def infer(self, pixel_values: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """Network input ``[1, 3, h, w]`` float32 (CPU): :func:`preprocess_image`."""
        return preprocess_image(rgb, self.input_size)

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Prediction ``[H, W]`` float32 for an RGB image ``[H, W, 3]`` uint8.

        Disparity (relative, non-negative, larger = nearer) or metric depth in metres, see
        the backend's ``output``.
        """
        pixel_values = self.preprocess(rgb)  # [1, 3, h, w]
        height, width = rgb.shape[:2]
        with torch.inference_mode():
            pred = self.infer(pixel_values)  # [1, h, w]
        return check_prediction(resize_prediction(pred, height, width), height, width,
                                self.name)

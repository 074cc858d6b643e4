"""The one builder of Depth Anything V2 configurations: official encoders and student sizes.

:data:`PRESETS` lists every architecture this package builds: the four official encoders of
Depth Anything V2 (``vits``, ``vitb``, ``vitl``, ``vitg``, as the official ``DepthAnythingV2``
builds them) and the student sizes that train on a CPU (``small`` = ViT-S, ``tiny`` = the
shipped student, ``micro`` = tests). :func:`depth_anything_config` turns one into the
transformers ``DepthAnythingConfig``; the estimator (official checkpoints), the ONNX export,
the training and the tests' tiny models all call it.
"""

from __future__ import annotations

from typing import Any

try:
    from transformers import DepthAnythingConfig, Dinov2Config
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError('Depth Anything configurations need Hugging Face transformers: '
                      f'pip install transformers ({_exc})') from _exc

from depth_node.core.errors import ConfigError
from depth_node.estimators.preprocess import PATCH_SIZE

__all__ = ['ENCODERS', 'PRESETS', 'STUDENTS', 'depth_anything_config']

#: Architectures: DINOv2 width (``hidden``), depth (``layers``), attention heads, MLP ratio,
#: SwiGLU MLP (ViT-g); the DPT neck widths (``neck``, the official ``out_channels``), fusion
#: width (``features``), head width (``head``) and the (0-based) blocks whose outputs feed the
#: head (``taps``).
PRESETS: dict[str, dict[str, Any]] = {
    'vits': {'hidden': 384, 'layers': 12, 'heads': 6, 'mlp': 4, 'swiglu': False,
             'features': 64, 'neck': (48, 96, 192, 384), 'taps': (2, 5, 8, 11), 'head': 32},
    'vitb': {'hidden': 768, 'layers': 12, 'heads': 12, 'mlp': 4, 'swiglu': False,
             'features': 128, 'neck': (96, 192, 384, 768), 'taps': (2, 5, 8, 11), 'head': 32},
    'vitl': {'hidden': 1024, 'layers': 24, 'heads': 16, 'mlp': 4, 'swiglu': False,
             'features': 256, 'neck': (256, 512, 1024, 1024), 'taps': (4, 11, 17, 23),
             'head': 32},
    'vitg': {'hidden': 1536, 'layers': 40, 'heads': 24, 'mlp': 4, 'swiglu': True,
             'features': 384, 'neck': (1536, 1536, 1536, 1536), 'taps': (9, 19, 29, 39),
             'head': 32},
    'small': {'hidden': 384, 'layers': 12, 'heads': 6, 'mlp': 4, 'swiglu': False,
              'features': 64, 'neck': (48, 96, 192, 384), 'taps': (2, 5, 8, 11), 'head': 32},
    'tiny': {'hidden': 192, 'layers': 6, 'heads': 3, 'mlp': 3, 'swiglu': False,
             'features': 48, 'neck': (24, 48, 96, 192), 'taps': (1, 2, 4, 5), 'head': 32},
    'micro': {'hidden': 32, 'layers': 4, 'heads': 2, 'mlp': 2, 'swiglu': False,
              'features': 16, 'neck': (8, 8, 16, 16), 'taps': (0, 1, 2, 3), 'head': 8},
}
#: The official encoders (checkpoints ``depth_anything_v2_<encoder>.pth``).
ENCODERS: dict[str, dict[str, Any]] = {k: PRESETS[k] for k in ('vits', 'vitb', 'vitl', 'vitg')}
#: The student sizes of :mod:`depth_node.training`.
STUDENTS: tuple[str, ...] = ('small', 'tiny', 'micro')


def depth_anything_config(preset: str, metric: bool = False, max_depth: int = 1,
                          grid: int = 37, parameter: str = 'estimator.encoder',
                          **overrides: Any) -> DepthAnythingConfig:
    """Transformers configuration of the Depth Anything V2 architecture ``preset``.

    Parameters
    ----------
    preset : str
        One of :data:`PRESETS`.
    metric : bool
        Sigmoid head scaled by ``max_depth`` (official metric models) instead of ReLU
        (relative disparity).
    max_depth : int
        Maximum depth of a metric head, metres (20 indoor / Hypersim, 80 outdoor / VKITTI);
        transformers' configuration only accepts an integer. Ignored for relative models.
    grid : int
        Side of the stored position-embedding grid in patches (37 = 518 px, as DINOv2); any
        other network input resamples it.
    parameter : str
        Name the :class:`ConfigError` gives for a bad ``preset`` (or ``grid``).
    **overrides
        Replace entries of the preset (keys of :data:`PRESETS` values, e.g. ``hidden``).

    Raises
    ------
    ConfigError
        Unknown preset or override, or ``grid`` < 1.
    """
    if preset not in PRESETS:
        raise ConfigError(parameter, 'must be one of ' + ', '.join(PRESETS), preset)
    unknown = sorted(set(overrides) - set(PRESETS[preset]))
    if unknown:
        raise ConfigError(parameter, f'unknown architecture overrides {unknown}', preset)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ConfigError('grid', 'must be an integer >= 1 patch', grid)
    p = {**PRESETS[preset], **overrides}
    backbone = Dinov2Config(
        image_size=grid * PATCH_SIZE, patch_size=PATCH_SIZE, hidden_size=p['hidden'],
        num_hidden_layers=p['layers'], num_attention_heads=p['heads'], mlp_ratio=p['mlp'],
        qkv_bias=True, layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act='gelu',
        use_swiglu_ffn=p['swiglu'], apply_layernorm=True, reshape_hidden_states=False,
        # hidden_states[0] is the embedding output, so block i is hidden state i + 1.
        out_indices=[i + 1 for i in p['taps']])
    return DepthAnythingConfig(
        backbone_config=backbone, patch_size=PATCH_SIZE, reassemble_hidden_size=p['hidden'],
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=list(p['neck']),
        fusion_hidden_size=p['features'], head_in_index=-1, head_hidden_size=p['head'],
        depth_estimation_type='metric' if metric else 'relative',
        max_depth=max_depth if metric else 1)

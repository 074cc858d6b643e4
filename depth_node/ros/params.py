"""The node's parameters: one table, declared once, validated in one gate.

Each row gives name, default, description, range or choices, and whether the value may change
while the node runs (``read_only`` ones need a restart: model, topics, QoS). ``config/depth.yaml``
lists the same parameters with their defaults; a test keeps the two in step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.transforms import RigidTransform
from depth_node.messages.point_time import TimeFieldSettings
from depth_node.estimators.base import EstimatorConfig
from depth_node.pipeline.frame import PipelineConfig
from depth_node.pipeline.input_limits import InputLimits
from depth_node.pipeline.keyframes import KeyframeConfig, KeyframePolicy
from depth_node.pipeline.published import PublishSettings
from depth_node.pipeline.runner import RunnerConfig
from depth_node.pipeline.sweep_motion import DeskewSettings


@dataclass(frozen=True)
class Param:
    """One parameter: its default fixes its type."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    range: Optional[tuple[float, float]] = None  # inclusive
    choices: Optional[tuple[str, ...]] = None
    deprecated: bool = False  # still accepted (with a warning), not in config/depth.yaml


PARAMETERS: tuple[Param, ...] = (
    # --- estimator (restart to change) ---
    Param('estimator.type', 'depth_anything',
          "Estimator: 'depth_anything' (torch), 'depth_anything_onnxruntime', "
          "'depth_anything_tensorrt', 'depth_anything_auto' (TensorRT > ONNX Runtime > torch, "
          "first that runs), or a custom factory as 'package.module:factory'.",
          read_only=True),
    Param('estimator.model_path', '',
          'Local Hugging Face folder (Depth-Anything-V2-*-hf), official .pth checkpoint, or '
          ".onnx file (ONNX Runtime / TensorRT backends); '' = the shipped student (trained on "
          'synthetic streets only: for demos and tests, not for real cameras).',
          read_only=True),
    Param('estimator.encoder', '',
          "Encoder of an official .pth: vits, vitb, vitl, vitg; '' infers it from the name.",
          read_only=True, choices=('', 'vits', 'vitb', 'vitl', 'vitg')),
    Param('estimator.input_size', 0,
          'Model input: the shorter image side is resized to this (rounded to 14); 0 = the '
          "model's own (preprocessor_config.json of a Hugging Face folder, else 518).",
          read_only=True, range=(0, 4102)),
    Param('estimator.device', 'cpu', "Device: 'cpu', 'cuda' or 'cuda:N'.",
          read_only=True),
    Param('estimator.threads', 0,
          "torch CPU threads of the node's process; 0 = measured at start-up (1, 2, 4, ... "
          'cores: the fastest, cached per machine, model and input size).',
          read_only=True, range=(0, 256)),
    Param('estimator.precision', 'auto',
          "Inference precision: fp32, fp16, bf16; int8 (TensorRT only, with calibration); "
          "'auto': the torch estimator measures fp32 and bf16 (+ fp16 on CUDA) at start-up and "
          'keeps the fastest that agrees with fp32 (cached per machine; other backends: fp32).',
          read_only=True, choices=('auto', 'fp32', 'fp16', 'bf16', 'int8')),
    Param('estimator.options', '{}',
          'JSON object: keyword arguments of a custom estimator factory, or backend options '
          '(onnx, checkpoint, engine_cache, image_sizes, max_batch, workspace_mb, '
          'calibration_images, threads, optimization, providers; see README).', read_only=True),
    # --- what one frame may ask of the network ---
    Param('input.max_aspect', 4.0,
          'Longer / shorter image side the network takes; a thinner image is letterboxed to it '
          'or refused (input.oversize): a 640x1 image would stall inference for minutes.',
          range=(1.0, 1000.0)),
    Param('input.max_pixels', 16_777_216,
          'Images with more pixels (width x height; 4096 x 4096) are refused: bounds what one '
          'frame allocates.', range=(1, 2 ** 31 - 1)),
    Param('input.oversize', 'letterbox',
          "Images thinner than input.max_aspect: 'letterbox' (padded, centred, black, for the "
          "network only; outputs keep the image size) or 'refuse' (dropped).",
          choices=('letterbox', 'refuse')),
    Param('watchdog.timeout', 10.0,
          'Seconds: a frame whose processing takes longer turns /diagnostics ERROR, while it '
          'runs and once it is done (0: off).', range=(0.0, 3600.0)),
    # --- LiDAR ---
    Param('lidar.max_age', 0.1,
          'Seconds: a frame uses the LiDAR sweep nearest its stamp if no further than this.',
          range=(0.0, 10.0)),
    Param('lidar.wait', 0.05,
          'Seconds a frame waits for its LiDAR sweep (none within max_age yet) or for the '
          'first camera_info.',
          range=(0.0, 1.0)),
    Param('lidar.min_depth', 0.5, 'Metres: LiDAR points nearer to the camera are dropped.',
          range=(0.0, 1000.0)),
    Param('lidar.max_depth', 120.0, 'Metres: LiDAR points farther from the camera are dropped.',
          range=(0.01, 9999.0)),
    Param('lidar.buffer_size', 10, 'LiDAR sweeps kept to match camera stamps.',
          read_only=True, range=(1, 1000)),
    Param('lidar.overlap', True,
          "Check the image and project the sweep on a helper thread while the model runs "
          "(false: before it, on the inference thread); the same result, sooner when the "
          "model leaves a core free (a GPU, or torch threads below the cores)."),
    Param('lidar.deskew', True,
          "Move every LiDAR return to the image stamp with the vehicle's motion (motion.*): "
          'by its own time when the cloud has per-point time, else the whole sweep from its '
          'stamp.'),
    Param('lidar.time_field', '',
          "Per-point time field; '' detects t (Ouster, ns), time (Velodyne, s), timestamp "
          "(Hesai, Robosense: absolute s), offset_time (Livox, ns); 'none': ignore it."),
    Param('lidar.time_unit', '', "Unit of the time field ('' = by its name).",
          choices=('', 'ns', 'us', 's')),
    Param('lidar.sweep_offset', 0.0,
          'Seconds after its stamp that a cloud without per-point time was taken (0: at the '
          'stamp; half the period for a spinning LiDAR stamped at its sweep start that faces '
          'the camera half way through).', range=(-1.0, 1.0)),
    Param('lidar.time_reference', '',
          "'sweep': the time counts from the cloud's stamp; 'absolute': same clock as the "
          "stamp ('' = by its name).", choices=('', 'sweep', 'absolute')),
    # --- the vehicle's motion (deskew) ---
    Param('motion.odom_frame', 'odom', 'tf2: fixed frame of the odometry.', read_only=True),
    Param('motion.base_frame', 'base_link', 'tf2: the vehicle frame moving in odom_frame.',
          read_only=True),
    Param('motion.odometry_topic', '',
          "nav_msgs/Odometry of the vehicle (pose of child_frame_id in odom), used when tf2 "
          "has no odom_frame -> base_frame; '' = none.", read_only=True),
    Param('motion.max_extrapolation', 0.25,
          'Seconds past the newest (or before the oldest) pose that the motion is '
          'extrapolated at constant velocity; further: no deskew.', range=(0.0, 10.0)),
    Param('motion.buffer_size', 400, 'Poses of the vehicle kept (50 Hz: 8 s).',
          read_only=True, range=(2, 100_000)),
    Param('motion.lidar_translation', [0.0, 0.0, 0.0],
          'Metres [x, y, z]: LiDAR origin in base_frame, when tf2 cannot look it up.'),
    Param('motion.lidar_rotation', [0.0, 0.0, 0.0, 1.0],
          'LiDAR orientation in base_frame, [qx, qy, qz, qw] or [roll, pitch, yaw], when tf2 '
          'cannot look it up.'),
    # --- extrinsic ---
    Param('extrinsic.source', 'parameters',
          "'parameters': the translation/rotation below; 'tf': look up the transform with "
          'tf2 at the image stamp (needs tf2_ros).',
          read_only=True, choices=('parameters', 'tf')),
    Param('extrinsic.translation', [0.0, 0.0, 0.0],
          'Metres [x, y, z]: LiDAR origin in the camera optical frame, as '
          'static_transform_publisher --frame-id <camera_optical> --child-frame-id <lidar>.'),
    Param('extrinsic.rotation', [0.0, 0.0, 0.0, 1.0],
          'LiDAR orientation in the camera optical frame: [qx, qy, qz, qw] or '
          '[roll, pitch, yaw] in radians (static_transform_publisher convention).'),
    Param('extrinsic.camera_frame', '',
          "tf only: camera optical frame; '' uses the image's header.frame_id.", read_only=True),
    Param('extrinsic.lidar_frame', '',
          "tf only: LiDAR frame; '' uses the cloud's header.frame_id.", read_only=True),
    Param('extrinsic.tf_timeout', 0.05, 'tf only: seconds to wait for a transform.',
          read_only=True, range=(0.0, 5.0)),
    # --- fit ---
    Param('fit.min_points', 20, 'Fewest LiDAR pixels for a fresh scale/shift fit.',
          range=(2, 10_000_000)),
    Param('fit.method', 'robust',
          "'robust': IRLS with log-depth residuals (rejects outliers); 'lsq': plain least "
          'squares in the fit space.', choices=('robust', 'lsq')),
    Param('fit.loss', 'tukey', 'Robust weight function.', choices=('tukey', 'huber')),
    Param('fit.max_residual', 0.25,
          'Robust fit: refused when the residual sigma (log depth, 0.25 ~ 25 %) is larger.',
          range=(0.001, 10.0)),
    Param('fit.see_through', True,
          'Drop LiDAR returns that see past foreground edges (a nearer return close by).'),
    Param('fit.see_through_window', 7, 'Pixels: odd side of the see-through neighbourhood.',
          range=(3, 31)),
    Param('fit.see_through_gap', 0.1,
          'Relative depth gap (0.1 ~ 9 % nearer) that marks a neighbour as occluding.',
          range=(0.001, 10.0)),
    Param('fit.hold_time', 1.0,
          'Seconds a good fit is reused when no fresh one is possible; then only relative '
          'outputs are published.', range=(0.0, 3600.0)),
    # --- temporal filter ---
    Param('filter.enable', True,
          'Kalman-filter scale and shift over time (smooths jitter; resets on real jumps).'),
    Param('filter.process_noise', 0.02,
          'Random-walk std of log-scale per sqrt(second): larger follows faster.',
          range=(0.0, 10.0)),
    Param('filter.gate', 4.0,
          'Sigmas: a fit further from the filter than this does not update it.',
          range=(0.1, 100.0)),
    Param('filter.reset_after', 2,
          'Consecutive, mutually consistent gated fits that reset the filter to them.',
          range=(1, 100)),
    # --- local alignment ---
    Param('local.enable', False,
          'Spatially varying scale from LiDAR residuals (corrects low-frequency model error).'),
    Param('local.sigma', 0.06,
          'Smoothness of the local scale field, as a fraction of the larger image side.',
          range=(0.005, 1.0)),
    # --- fusion, uncertainty, refusal ---
    Param('fusion.enable', True,
          'Fuse the network with the LiDAR after the global fit: follows the LiDAR next to '
          'returns, the network\'s shape between them, the global fit far from them.'),
    Param('fusion.cell', 4, 'Pixels: grid cell of the fusion.', range=(1, 64)),
    Param('fusion.fine_sigma', 1.0, 'Cells: reach of the fine (local) filter.',
          range=(0.1, 100.0)),
    Param('fusion.coarse_sigma', 16.0, 'Cells: reach of the coarse filter (fills gaps).',
          range=(0.5, 1000.0)),
    Param('fusion.edge_sigma', 0.005,
          '1/m: disparity step between neighbouring cells that stops the filter (object '
          'edges); smaller is more edge-aware.', range=(1e-5, 10.0)),
    Param('fusion.beam_gap', 40.0,
          'Pixels: LiDAR returns of consecutive beams at most this far apart down the image, '
          'whose depths agree within 20 %, are joined linearly in disparity (the LiDAR\'s own '
          'interpolation replaces the network between them); 0 = off.', range=(0.0, 10000.0)),
    Param('fusion.edge_step', 0.1,
          'Log-depth step between neighbouring pixels of the fused depth that marks a '
          'silhouette: pixels within one pixel of it take the LiDAR\'s interpolation between '
          'the nearest returns above and below (the edge fill); 0 = off.', range=(0.0, 10.0)),
    Param('uncertainty.enable', True,
          'Per-pixel sigma (depth/uncertainty) and the per-pixel refusal of '
          'output.max_relative_uncertainty.'),
    Param('uncertainty.calibration', '',
          "JSON weights of the uncertainty model; '' = the shipped calibration.",
          read_only=True),
    Param('uncertainty.self_check_period', 1.0,
          'Seconds between held-out checks of sigma against the frame\'s own LiDAR (half the '
          'returns predict the other half; the result scales sigma where LiDAR supports it); '
          '0 = off.', range=(0.0, 3600.0)),
    Param('uncertainty.teacher_hold', 10.0,
          'Seconds of image time a keyframe\'s check of sigma holds: where the keyframe teacher '
          'disagrees with the published depth beyond its sigma and no LiDAR return is near, '
          'sigma there is widened by that much until then (keyframes.enable).',
          range=(0.001, 3600.0)),
    Param('extrinsic_check.enable', True,
          'Check that the LiDAR\'s depth edges fall on the image\'s edges (a wrong '
          'LiDAR -> camera extrinsic); a misalignment widens sigma where depth changes fast '
          'and diagnostics warn (extrinsic_shift_px).'),
    Param('extrinsic_check.period', 1.0,
          'Seconds of image time between extrinsic checks (about 3 ms each at 640x480); 0 = '
          'every frame.', range=(0.0, 3600.0)),
    Param('refusal.image_check', True,
          'Refuse metric depth from blind, saturated, flat or noise images.'),
    Param('refusal.min_lidar_share', 0.05,
          'Share of the image LiDAR must support for a frame to publish metric depth.',
          range=(0.0, 1.0)),
    # --- Marigold keyframes (the teacher) ---
    Param('keyframes.enable', False,
          'Run a Marigold teacher on keyframes, off the real-time path (keyframe/* topics).',
          read_only=True),
    Param('keyframes.model_path', '',
          'Local diffusers folder of a Marigold depth checkpoint (e.g. '
          'prs-eth/marigold-depth-v1-1, LCM variants too).', read_only=True),
    Param('keyframes.device', 'cpu', "Device of the teacher: 'cpu', 'cuda' or 'cuda:N'.",
          read_only=True),
    Param('keyframes.precision', 'fp32', 'Teacher precision: fp32; fp16 or bf16 on CUDA.',
          read_only=True, choices=('fp32', 'fp16', 'bf16')),
    Param('keyframes.every_n', 0, 'A keyframe every N camera frames (0: off).',
          range=(0, 1_000_000)),
    Param('keyframes.every_t', 5.0, 'A keyframe at least every T seconds (0: off).',
          range=(0.0, 3600.0)),
    Param('keyframes.scene_change', 0.0,
          'A keyframe when the image-difference score (mean abs difference of grey '
          'thumbnails, 0..1) since the last keyframe exceeds this (0: off).',
          range=(0.0, 0.99)),
    Param('keyframes.num_inference_steps', 0,
          'Denoising steps (0: the checkpoint default).', read_only=True, range=(0, 1000)),
    Param('keyframes.ensemble_size', 5,
          'Predictions per keyframe; > 1 gives the uncertainty (median absolute deviation).',
          read_only=True, range=(1, 64)),
    Param('keyframes.processing_resolution', 0,
          'Longer side the teacher works at (0: the checkpoint default).', read_only=True,
          range=(0, 4096)),
    Param('keyframes.batch_size', 1, 'Ensemble members per batch.', read_only=True,
          range=(1, 64)),
    Param('keyframes.seed', 0, 'Seed of the diffusion noise (reproducible keyframes).',
          read_only=True, range=(0, 2 ** 31 - 1)),
    Param('keyframes.options', '{}',
          'JSON object of further MarigoldEstimator options, e.g. {"ensembling_kwargs": '
          '{"reduction": "median", "max_res": 256}}.', read_only=True),
    Param('keyframes.mode', 'process',
          "'process': the teacher in its own low-priority process (keeps the real-time path's "
          "latency); 'thread': in this process.", read_only=True,
          choices=('process', 'thread')),
    Param('keyframes.teacher_threads', 1, 'Torch threads of the teacher.', read_only=True,
          range=(1, 256)),
    Param('keyframes.teacher_nice', 19,
          'Niceness of the teacher process (19: lowest priority).', read_only=True,
          range=(0, 19)),
    Param('keyframes.points', False, 'Also publish keyframe/points (XYZ cloud).'),
    # --- outputs ---
    Param('output.max_depth', 80.0, 'Metres: metric depth beyond this is published as NaN.',
          range=(0.01, 9999.0)),
    Param('output.max_relative_uncertainty', 0.2,
          'sigma/z above which a pixel is NaN in depth and dropped from depth/points.',
          range=(0.001, 100.0)),
    Param('output.uncertainty', True, 'Publish sigma (m, 32FC1) on depth/uncertainty.'),
    Param('output.relative', True, 'Publish the raw model output on depth/relative.'),
    Param('output.colored', True, 'Publish an rgb8 preview on depth/colored.'),
    Param('output.colormap_min', 1.0, 'Metres: nearest depth of the preview colour scale.',
          range=(0.01, 9999.0)),
    Param('output.colormap_max', 80.0, 'Metres: farthest depth of the preview colour scale.',
          range=(0.01, 9999.0)),
    Param('cloud.enable', True, 'Publish the metric cloud on depth/points.'),
    Param('cloud.stride', 2, 'Cloud keeps every n-th pixel in each direction.', range=(1, 64)),
    Param('cloud.color', False, 'XYZRGB cloud (colours from the image) instead of XYZ.'),
    Param('cloud.sigma', False, "Add a 'sigma' field (m, the depth's sigma) to depth/points."),
    # --- transport (deprecated: qos_overrides.<topic>.<entity>.*, see ros/qos.py) ---
    Param('qos.sensor_data', True,
          'Deprecated (qos_overrides.<topic>.subscription.reliability): sensor-data QoS '
          '(best effort) for the inputs; false: reliable.', read_only=True, deprecated=True),
    Param('qos.output_reliable', True,
          'Deprecated (qos_overrides.<topic>.publisher.reliability): publishers reliable; '
          'false: best effort.', read_only=True, deprecated=True),
    Param('qos.depth', 5,
          'Deprecated (qos_overrides.<topic>.<entity>.depth): history depth of the inputs '
          'and outputs.', read_only=True, range=(1, 1000), deprecated=True),
    Param('diagnostics.period', 1.0, 'Seconds between /diagnostics messages.',
          read_only=True, range=(0.05, 60.0)),
)

BY_NAME = {p.name: p for p in PARAMETERS}


@dataclass
class NodeConfig:
    """Typed view of all parameter values."""

    estimator: EstimatorConfig
    pipeline: PipelineConfig
    lidar_max_age: float
    lidar_wait: float
    lidar_buffer_size: int
    extrinsic_source: str
    extrinsic: RigidTransform
    camera_frame: str
    lidar_frame: str
    tf_timeout: float
    publish: PublishSettings  # output.*, cloud.*: what goes out for each frame
    qos_sensor_data: bool
    qos_output_reliable: bool
    qos_depth: int
    diagnostics_period: float
    watchdog_timeout: float = 10.0
    keyframes: Optional['KeyframeSettings'] = None
    motion: 'MotionSettings' = field(default_factory=lambda: MotionSettings())
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def runner(self) -> RunnerConfig:
        """What the per-frame runner takes (the node's and the evaluation's)."""
        return RunnerConfig(self.pipeline, self.publish, self.extrinsic, self.lidar_max_age,
                            self.watchdog_timeout, self.motion.deskew)


@dataclass(frozen=True)
class MotionSettings:
    """The ``lidar.deskew``, ``lidar.time_*`` and ``motion.*`` parameters."""

    deskew: DeskewSettings = field(default_factory=DeskewSettings)
    time_field: TimeFieldSettings = field(default_factory=TimeFieldSettings)
    odom_frame: str = 'odom'
    base_frame: str = 'base_link'
    odometry_topic: str = ''
    buffer_size: int = 400
    lidar_in_base: RigidTransform = field(default_factory=RigidTransform.identity)


@dataclass
class KeyframeSettings:
    """The ``keyframes.*`` parameters, as the keyframe worker and policy take them."""

    teacher: EstimatorConfig
    policy: KeyframePolicy
    worker: KeyframeConfig
    points: bool


def check_value(param: Param, value: Any) -> None:
    """Raise ConfigError if ``value`` breaks ``param``'s type, range or choices."""
    default = param.default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(param.name, f'must be of type {type(default).__name__}', value)
    if param.range is not None and not (param.range[0] <= value <= param.range[1]):
        raise ConfigError(param.name, f'must be in [{param.range[0]}, {param.range[1]}]', value)
    if param.choices is not None and value not in param.choices:
        allowed = ', '.join(repr(c) for c in param.choices)
        raise ConfigError(param.name, f'must be one of {allowed}', value)


def build_config(values: dict[str, Any]) -> NodeConfig:
    """Check every value and the rules between them; return the typed configuration.

    Raises
    ------
    ConfigError
        Naming the first parameter that breaks a rule, the rule and the value.
    """
    unknown = set(values) - set(BY_NAME)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(name, 'is not a parameter of depth_node', values[name])
    v = {p.name: values.get(p.name, p.default) for p in PARAMETERS}
    for p in PARAMETERS:
        check_value(p, v[p.name])
    options = _json_object(v, 'estimator.options')
    device = _device(v, 'estimator.device')
    try:
        extrinsic = RigidTransform.from_parameters(v['extrinsic.translation'],
                                                   v['extrinsic.rotation'])
    except DepthNodeError as exc:
        name = 'extrinsic.translation' if 'translation' in str(exc) else 'extrinsic.rotation'
        raise ConfigError(name, str(exc), v[name]) from None
    if v['output.colormap_max'] <= v['output.colormap_min']:
        raise ConfigError('output.colormap_max', 'must be > output.colormap_min',
                          v['output.colormap_max'])
    pipeline = PipelineConfig(
        lidar_min_depth=float(v['lidar.min_depth']), lidar_max_depth=float(v['lidar.max_depth']),
        max_depth=float(v['output.max_depth']), min_fit_points=int(v['fit.min_points']),
        hold_time=float(v['fit.hold_time']), cloud_stride=int(v['cloud.stride']),
        lidar_overlap=bool(v['lidar.overlap']),
        fit_method=v['fit.method'], fit_loss=v['fit.loss'],
        max_residual=float(v['fit.max_residual']), see_through=bool(v['fit.see_through']),
        see_through_window=int(v['fit.see_through_window']),
        see_through_gap=float(v['fit.see_through_gap']), temporal=bool(v['filter.enable']),
        filter_process_noise=float(v['filter.process_noise']),
        filter_gate=float(v['filter.gate']), filter_reset_after=int(v['filter.reset_after']),
        local=bool(v['local.enable']), local_sigma=float(v['local.sigma']),
        fusion=bool(v['fusion.enable']), fusion_cell=int(v['fusion.cell']),
        fusion_fine_sigma=float(v['fusion.fine_sigma']),
        fusion_coarse_sigma=float(v['fusion.coarse_sigma']),
        fusion_edge_sigma=float(v['fusion.edge_sigma']),
        fusion_beam_gap=float(v['fusion.beam_gap']),
        fusion_edge_step=float(v['fusion.edge_step']),
        uncertainty=bool(v['uncertainty.enable']),
        uncertainty_calibration=v['uncertainty.calibration'],
        uncertainty_self_check_period=float(v['uncertainty.self_check_period']),
        uncertainty_teacher_hold=float(v['uncertainty.teacher_hold']),
        max_relative_uncertainty=float(v['output.max_relative_uncertainty']),
        extrinsic_check=bool(v['extrinsic_check.enable']),
        extrinsic_check_period=float(v['extrinsic_check.period']),
        min_lidar_share=float(v['refusal.min_lidar_share']),
        image_check=bool(v['refusal.image_check']),
        input_limits=InputLimits(max_aspect=float(v['input.max_aspect']),
                                 max_pixels=int(v['input.max_pixels']),
                                 oversize=v['input.oversize']))
    pipeline.validate()
    estimator = EstimatorConfig(
        type=v['estimator.type'], model_path=v['estimator.model_path'],
        encoder=v['estimator.encoder'], input_size=int(v['estimator.input_size']),
        device=device, precision=v['estimator.precision'], options=options,
        threads=int(v['estimator.threads']))
    if 0 < estimator.input_size < 14:
        raise ConfigError('estimator.input_size', 'must be 0 (the model\'s own) or >= 14 '
                          'pixels', estimator.input_size)
    keyframes = _keyframe_settings(v, pipeline) if v['keyframes.enable'] else None
    return NodeConfig(
        keyframes=keyframes, estimator=estimator, pipeline=pipeline,
        lidar_max_age=float(v['lidar.max_age']), lidar_wait=float(v['lidar.wait']),
        lidar_buffer_size=int(v['lidar.buffer_size']),
        extrinsic_source=v['extrinsic.source'], extrinsic=extrinsic,
        camera_frame=v['extrinsic.camera_frame'], lidar_frame=v['extrinsic.lidar_frame'],
        tf_timeout=float(v['extrinsic.tf_timeout']),
        publish=PublishSettings(
            relative=bool(v['output.relative']), colored=bool(v['output.colored']),
            colormap_range=(float(v['output.colormap_min']), float(v['output.colormap_max'])),
            cloud=bool(v['cloud.enable']), cloud_color=bool(v['cloud.color']),
            cloud_stride=pipeline.cloud_stride, uncertainty=bool(v['output.uncertainty']),
            cloud_sigma=bool(v['cloud.sigma'])),
        qos_sensor_data=bool(v['qos.sensor_data']),
        qos_output_reliable=bool(v['qos.output_reliable']), qos_depth=int(v['qos.depth']),
        diagnostics_period=float(v['diagnostics.period']),
        watchdog_timeout=float(v['watchdog.timeout']), motion=_motion_settings(v), raw=v)


def _motion_settings(v: dict[str, Any]) -> MotionSettings:
    try:
        lidar_in_base = RigidTransform.from_parameters(v['motion.lidar_translation'],
                                                       v['motion.lidar_rotation'])
    except DepthNodeError as exc:
        name = 'motion.lidar_translation' if 'translation' in str(exc) \
            else 'motion.lidar_rotation'
        raise ConfigError(name, str(exc), v[name]) from None
    for name in ('motion.odom_frame', 'motion.base_frame'):
        if not v[name].strip('/'):
            raise ConfigError(name, 'must name a tf2 frame', v[name])
    return MotionSettings(
        deskew=DeskewSettings(bool(v['lidar.deskew']), float(v['motion.max_extrapolation']),
                              float(v['lidar.sweep_offset'])),
        time_field=TimeFieldSettings(v['lidar.time_field'], v['lidar.time_unit'],
                                     v['lidar.time_reference']),
        odom_frame=v['motion.odom_frame'].lstrip('/'),
        base_frame=v['motion.base_frame'].lstrip('/'),
        odometry_topic=v['motion.odometry_topic'], buffer_size=int(v['motion.buffer_size']),
        lidar_in_base=lidar_in_base)


def _json_object(v: dict[str, Any], name: str) -> dict[str, Any]:
    """Parameter ``name`` parsed as a JSON object (ConfigError naming it otherwise)."""
    try:
        obj = json.loads(v[name])
    except json.JSONDecodeError as exc:
        raise ConfigError(name, f'must be a JSON object ({exc})', v[name]) from None
    if not isinstance(obj, dict):
        raise ConfigError(name, 'must be a JSON object', v[name])
    return obj


def _device(v: dict[str, Any], name: str) -> str:
    """Parameter ``name`` checked as a device string: cpu, cuda or cuda:N."""
    device = v[name]
    if not (device in ('cpu', 'cuda') or (device.startswith('cuda:') and device[5:].isdigit())):
        raise ConfigError(name, "must be 'cpu', 'cuda' or 'cuda:N'", device)
    return device


def _keyframe_settings(v: dict[str, Any], pipeline: PipelineConfig) -> KeyframeSettings:
    if not v['keyframes.model_path']:
        raise ConfigError('keyframes.model_path', 'must name a local Marigold checkpoint folder '
                          'when keyframes.enable is true', '')
    options = _json_object(v, 'keyframes.options')
    device = _device(v, 'keyframes.device')
    options = {'ensemble_size': int(v['keyframes.ensemble_size']),
               'batch_size': int(v['keyframes.batch_size']), 'seed': int(v['keyframes.seed']),
               **({'num_inference_steps': int(v['keyframes.num_inference_steps'])}
                  if v['keyframes.num_inference_steps'] else {}),
               **({'processing_resolution': int(v['keyframes.processing_resolution'])}
                  if v['keyframes.processing_resolution'] else {}),
               **options}
    teacher = EstimatorConfig(type='marigold', model_path=v['keyframes.model_path'],
                              device=device, precision=v['keyframes.precision'],
                              options=options)
    policy = KeyframePolicy(every_n=int(v['keyframes.every_n']),
                            every_t=float(v['keyframes.every_t']),
                            scene_change=float(v['keyframes.scene_change']))
    worker = KeyframeConfig(mode=v['keyframes.mode'],
                            teacher_threads=int(v['keyframes.teacher_threads']),
                            teacher_nice=int(v['keyframes.teacher_nice']), alignment=pipeline)
    return KeyframeSettings(teacher, policy, worker, bool(v['keyframes.points']))


def changed_read_only(names: Sequence[str]) -> Optional[str]:
    """First of ``names`` that may not change at run time, or None."""
    for n in names:
        if n in BY_NAME and BY_NAME[n].read_only:
            return n
    return None


if __name__ == '__main__':  # config/depth.yaml
    from depth_node.ros.param_files import params_yaml
    print(params_yaml(), end='')

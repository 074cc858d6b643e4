"""Temporal filtering of per-frame scale/shift fits: a Kalman filter with innovation gating.

A per-frame fit jitters: the LiDAR sees a different part of the scene each sweep and the model's
errors change with the view, so the metric depth of a static scene would breathe from frame to
frame. :class:`AffineFilter` smooths the fit over time, ignores refused fits (the prediction
just ages), and resets when the scene or the model output truly jumps.

State. The filter tracks ``a = log(scale)`` and ``c = shift / y_ref``, where ``y_ref`` is the
fit target at a reference depth ``z_ref`` (``1 / z_ref`` in disparity space, ``z_ref`` in depth
space). Both are dimensionless and comparable: near ``z_ref`` a change of 0.01 in either moves
the metric depth by about 1 %, so one noise level serves both and the map stays consistent (the
two components get the same gain; averaging ``(a, c)`` averages the affine maps). The model is a
random walk: ``x_k = x_{k-1} + w``, ``Cov(w) = process_noise**2 * dt * I``.

Measurement noise comes from the fit: the per-point relative residual ``sigma_p`` over the
number of points that carried the fit, plus a floor for what does not average out over points
(correlated LiDAR points, model errors that change with the view)::

    R = (sigma_p**2 / n + measurement_floor**2) * I

``sigma_p`` is ``fit.residual`` for a robust fit (:func:`depth_node.core.robust.
fit_affine_robust`: a log-depth sigma, ``inliers >= 0``) and ``sqrt(pi / 2) * fit.abs_rel`` for
a least-squares fit (:func:`depth_node.core.align.fit_affine`, whose residual is in the units
of its space; ``inliers == -1``).

Gating and reset. A measurement whose innovation is more than ``gate`` sigmas away (Mahalanobis
distance with ``S = P + R``) does not update the state; the output is the prediction. When
``reset_after`` consecutive measurements are gated and agree with each other (within ``gate``
sigmas of measurement noise), the state is reset to the latest: a true step in scale (new
model, zoom, extrinsic change, a scene cut in a replay) is followed within ``reset_after``
frames, while a single outlier fit is ignored. The state is also reset when time goes backwards
(a replay restarted), when the fit space changes, and when no fit was accepted for ``max_age``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from depth_node.core.align import AffineFit, OutputKind
from depth_node.core.compat import StrEnum
from depth_node.core.errors import ConfigError


@dataclass(frozen=True)
class FilterConfig:
    """Parameters of :class:`AffineFilter`; validated on construction (:class:`ConfigError`)."""

    process_noise: float = 0.02  # 1/sqrt(s): random-walk std of log-scale (and c) per sqrt(s)
    measurement_floor: float = 0.02  # per-frame relative noise that does not average out
    gate: float = 4.0  # sigmas: innovations beyond this do not update the state
    reset_after: int = 2  # consecutive, mutually consistent gated fits that reset the state
    max_age: float = 1.0  # s without an accepted fit after which the state is dropped
    reference_depth: float = 10.0  # m: z_ref of the shift normalisation

    def __post_init__(self) -> None:
        for name in ('process_noise', 'measurement_floor'):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f'filter.{name}', 'must be a finite number >= 0', v)
        if self.process_noise == 0 and self.measurement_floor == 0:
            raise ConfigError('filter.measurement_floor',
                              'must be > 0 when filter.process_noise is 0', 0.0)
        if not self.gate > 0:
            raise ConfigError('filter.gate', 'must be > 0', self.gate)
        if not isinstance(self.reset_after, int) or self.reset_after < 1:
            raise ConfigError('filter.reset_after', 'must be an integer >= 1', self.reset_after)
        if not self.max_age > 0:
            raise ConfigError('filter.max_age', 'must be > 0', self.max_age)
        if not (math.isfinite(self.reference_depth) and self.reference_depth > 0):
            raise ConfigError('filter.reference_depth', 'must be a positive number',
                              self.reference_depth)


class FilterEvent(StrEnum):
    """What one :meth:`AffineFilter.update` did (str-valued: reports keep the text)."""

    INIT = 'init'  # first accepted fit
    UPDATE = 'update'  # fit accepted into the state
    GATED = 'gated'  # fit too far from the state: output is the prediction
    RESET = 'reset'  # state dropped (confirmed jump, time backwards, other fit space)
    PREDICT = 'predict'  # refused fit: output is the prediction
    STALE = 'stale'  # nothing accepted for max_age: state dropped
    NONE = 'none'  # no state and a refused fit


class AffineFilter:
    """Kalman filter over successive :class:`AffineFit` results of one camera.

    Call :meth:`update` once per frame, in time order, with that frame's fit (refused or not).
    ``last_event`` then says what happened (a :class:`FilterEvent`). Not thread-safe.
    """

    def __init__(self, config: Optional[FilterConfig] = None) -> None:
        self.config = config if config is not None else FilterConfig()
        self.last_event = FilterEvent.NONE
        self.reset()

    def reset(self) -> None:
        """Forget the state (the next accepted fit initialises it)."""
        self._x: Optional[np.ndarray] = None  # [2] (log scale, shift / y_ref)
        self._p = np.zeros((2, 2))  # [2, 2] state covariance
        self._space: Optional[OutputKind] = None
        self._stamp = -math.inf  # s, last update call
        self._accepted_stamp = -math.inf  # s, last fit that entered the state
        self._last: Optional[AffineFit] = None  # last accepted fit (its diagnostics are kept)
        self._pending: Optional[tuple[np.ndarray, float]] = None  # gated run: last (x, var)
        self._gated = 0  # consecutive gated fits

    @property
    def initialized(self) -> bool:
        """Whether the filter holds a state (a fit was accepted and not dropped since)."""
        return self._x is not None

    @property
    def age(self) -> float:
        """Seconds from the last accepted fit to the last update call (inf: no state)."""
        return self._stamp - self._accepted_stamp if self._x is not None else math.inf

    def update(self, fit: AffineFit, stamp: float) -> AffineFit:
        """Filter one frame's ``fit`` made at ``stamp`` (s); returns the fit to apply.

        Returns the filtered fit (``ok=True``; ``points``, ``residual``, ``abs_rel``,
        ``inliers`` are those of the latest accepted fit), or ``fit`` itself when there is no
        state and ``fit`` is refused, or a refused fit when the state went stale.
        """
        cfg = self.config
        stamp = float(stamp)
        restarted = self._x is not None and (stamp < self._stamp or fit.space is not self._space)
        if restarted:
            self.reset()  # time went backwards (replay restarted) or another estimator
        usable = fit.ok and math.isfinite(fit.scale) and fit.scale > 0 \
            and math.isfinite(fit.shift)
        if self._x is None:
            if not usable:
                self.last_event = FilterEvent.RESET if restarted else FilterEvent.NONE
                self._stamp = stamp
                return fit
            return self._initialise(fit, stamp,
                                    FilterEvent.RESET if restarted else FilterEvent.INIT)
        dt = stamp - self._stamp
        self._stamp = stamp
        # Predict: a random walk, the covariance grows with elapsed time.
        self._p = self._p + np.eye(2) * (cfg.process_noise ** 2 * dt)
        if not usable:
            if stamp - self._accepted_stamp > cfg.max_age:
                age = stamp - self._accepted_stamp
                space = self._space or fit.space
                self.reset()
                self._stamp = stamp
                self.last_event = FilterEvent.STALE
                return AffineFit.refused(space, fit.points, f'no fit accepted for {age:.3g} s '
                                                            f'(max_age {cfg.max_age:.3g} s)')
            self.last_event = FilterEvent.PREDICT
            return self._output()
        z, r_var = self._measure(fit)
        nu = z - self._x
        s_var = self._p + np.eye(2) * r_var
        d2 = float(nu @ np.linalg.solve(s_var, nu))
        if d2 <= cfg.gate ** 2:
            gain = self._p @ np.linalg.inv(s_var)
            self._x = self._x + gain @ nu
            self._p = (np.eye(2) - gain) @ self._p
            self._accepted(fit, stamp)
            self.last_event = FilterEvent.UPDATE
            return self._output()
        if stamp - self._accepted_stamp > cfg.max_age:
            # The state is older than max_age: a usable fit replaces it rather than being
            # gated against it (else fits that never agree with each other keep it for ever).
            return self._initialise(fit, stamp, FilterEvent.RESET)
        # Gated: count it if it agrees with the previous gated fit, else start a new run.
        if self._pending is not None:
            z0, v0 = self._pending
            agree = float(np.sum((z - z0) ** 2)) / (v0 + r_var) <= cfg.gate ** 2
            self._gated = self._gated + 1 if agree else 1
        else:
            self._gated = 1
        self._pending = (z, r_var)
        if self._gated >= cfg.reset_after:
            return self._initialise(fit, stamp, FilterEvent.RESET)
        self.last_event = FilterEvent.GATED
        return self._output()

    def _y_ref(self, space: OutputKind) -> float:
        z_ref = self.config.reference_depth
        return 1.0 / z_ref if space is OutputKind.DISPARITY else z_ref

    def _measure(self, fit: AffineFit) -> tuple[np.ndarray, float]:
        """The fit as a state vector [2] and its measurement variance (per component)."""
        if fit.inliers >= 0:  # robust fit: residual is a log-depth sigma
            sigma_p, n = fit.residual, fit.inliers
        else:  # least squares: residual in the space's units; use abs_rel instead
            sigma_p, n = math.sqrt(math.pi / 2) * fit.abs_rel, fit.points
        sampling = sigma_p ** 2 / max(n, 1) if math.isfinite(sigma_p) else 0.0
        var = sampling + self.config.measurement_floor ** 2
        z = np.array([math.log(fit.scale), fit.shift / self._y_ref(fit.space)])
        return z, max(var, 1e-12)

    def _initialise(self, fit: AffineFit, stamp: float, event: 'FilterEvent') -> AffineFit:
        z, r_var = self._measure(fit)
        self._x = z
        self._p = np.eye(2) * r_var
        self._space = fit.space
        self._stamp = stamp
        self._accepted(fit, stamp)
        self.last_event = event
        return self._output()

    def _accepted(self, fit: AffineFit, stamp: float) -> None:
        self._accepted_stamp = stamp
        self._last = fit
        self._pending = None
        self._gated = 0

    def _output(self) -> AffineFit:
        x, last = self._x, self._last
        if x is None or last is None:
            raise RuntimeError('AffineFilter has no state to output')  # unreachable
        return replace(last, scale=float(math.exp(x[0])),
                       shift=float(x[1] * self._y_ref(last.space)), ok=True, reason='')

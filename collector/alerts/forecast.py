"""Server-side anomaly detector: an online autoregressive forecaster whose one-step-ahead
residual is scored against its own exponentially weighted mean and variance.

A plain EWMA z-score (what the boards run) flags every fast but ordinary change, such as a
heating cycle; an AR(p) model fitted online by recursive least squares learns such dynamics and
leaves only the surprises in its residual. The model is refitted with every sample (a forgetting
factor lets it follow slow drift), and its whole state is a few numbers that fit in a JSON row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.detectors.ewma import EwmaDetector

_P0 = 1000.0  # initial covariance: "know nothing" about the coefficients


class ArForecaster:
    """AR(``order``) with an intercept, fitted by recursive least squares with ``forgetting``."""

    def __init__(self, order: int = 2, forgetting: float = 0.995) -> None:
        self.order = order
        self.forgetting = forgetting
        n = order + 1
        self.theta = np.zeros(n)
        self.p = np.eye(n) * _P0
        self.history: list[float] = []  # the last `order` values, oldest first

    def _regressors(self) -> np.ndarray | None:
        if len(self.history) < self.order:
            return None
        return np.array([1.0, *reversed(self.history)])

    def predict(self) -> float | None:
        """The forecast of the next value, or None until ``order`` values were seen."""
        phi = self._regressors()
        if phi is None:
            return None
        if not self.theta.any():
            return self.history[-1]  # before any fit, "same as last time"
        return float(phi @ self.theta)

    def update(self, value: float) -> None:
        phi = self._regressors()
        if phi is not None:
            p_phi = self.p @ phi
            gain = p_phi / (self.forgetting + phi @ p_phi)
            self.theta = self.theta + gain * (value - phi @ self.theta)
            self.p = (self.p - np.outer(gain, p_phi)) / self.forgetting
            # Keep P symmetric and bounded: long steady stretches otherwise blow it up.
            self.p = np.clip((self.p + self.p.T) / 2, -1e6, 1e6)
        self.history.append(value)
        if len(self.history) > self.order:
            del self.history[0]

    def get_state(self) -> dict[str, Any]:
        return {"theta": self.theta.tolist(), "p": self.p.tolist(), "h": list(self.history)}

    def set_state(self, saved: dict[str, Any]) -> bool:
        try:
            theta = np.array(saved["theta"], dtype=float)
            p = np.array(saved["p"], dtype=float)
            history = [float(x) for x in saved["h"]]
            n = self.order + 1
            ok = (
                theta.shape == (n,)
                and p.shape == (n, n)
                and len(history) <= self.order
                and bool(np.isfinite(theta).all() and np.isfinite(p).all())
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if ok:
            self.theta, self.p, self.history = theta, p, history
        return ok


class ResidualAnomalyDetector:
    """Scores each value by the z of its forecast residual; anomalous beyond ``z_limit``."""

    def __init__(
        self,
        *,
        order: int = 2,
        forgetting: float = 0.995,
        alpha: float = 0.05,
        z_limit: float = 5.0,
        warmup: int = 30,
        min_std_c: float = 0.0625,
    ) -> None:
        self.forecaster = ArForecaster(order, forgetting)
        # A surprise must not teach the residual statistics that surprises are normal.
        self.residuals = EwmaDetector(alpha, z_limit, warmup, min_std_c, update_on_anomaly=False)

    def update(self, value: float) -> tuple[float | None, bool]:
        forecast = self.forecaster.predict()
        self.forecaster.update(value)
        if forecast is None:
            return None, False
        z, anomalous = self.residuals.update(value - forecast)
        return z, anomalous

    def get_state(self) -> dict[str, Any]:
        return {"ar": self.forecaster.get_state(), "ewma": self.residuals.get_state()}

    def set_state(self, saved: dict[str, Any]) -> None:
        if not isinstance(saved, dict):
            return
        if "ar" in saved:
            self.forecaster.set_state(saved["ar"])
        if "ewma" in saved:
            self.residuals.set_state(saved["ewma"])

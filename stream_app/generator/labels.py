"""When ground truth arrives. Fraud is learnt from chargebacks, hours to days later; a legitimate
transaction is declared clean once it has matured without a dispute. The lag is what makes the
label-driven merchant fraud rate a *lagging* feature, as in production."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from stream_app.generator.config import DAY_US, HOUR_US
from stream_app.generator.population import IntArray

FRAUD_DELAY_US: tuple[int, int] = (2 * HOUR_US, 10 * DAY_US)
LEGIT_DELAY_US: tuple[int, int] = (1 * DAY_US, 3 * DAY_US)


def label_delay_us(rng: np.random.Generator, is_fraud: npt.NDArray[np.bool_]) -> IntArray:
    """Fraud: log-uniform over 2 h - 10 d (median about 22 h; most chargebacks are quick, a tail is
    slow). Legit: uniform over 1 - 3 d. Always inside the stated bounds."""
    n = len(is_fraud)
    f_lo, f_hi = FRAUD_DELAY_US
    fraud = np.exp(rng.uniform(np.log(f_lo), np.log(f_hi), size=n))
    legit = rng.uniform(*LEGIT_DELAY_US, size=n)
    delay = np.where(is_fraud, np.clip(fraud, f_lo, f_hi), legit)
    return np.floor(delay).astype(np.int64)

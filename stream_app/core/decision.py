"""What the worker decides for one scored event; predictions on the wire carry it as is."""

from __future__ import annotations

from typing import Literal

Decision = Literal["approve", "decline"]

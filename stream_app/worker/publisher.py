"""Delivers predictions and dead letters through the Faust app's producer and waits for the broker's
acknowledgement, so the runner only persists state for events whose outputs are durable."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from stream_app.contract import DeadLetter, Prediction, encode
from stream_app.errors import ServiceUnavailableError


class FaustPublisher:
    def __init__(self, predictions_topic: Any, dlq_topic: Any) -> None:
        self.predictions_topic = predictions_topic
        self.dlq_topic = dlq_topic

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[DeadLetter]) -> None:
        pending: list[Awaitable[Any]] = []
        try:
            for prediction in predictions:
                pending.append(await self.predictions_topic.send(key=prediction.event_id.encode(),
                                                                 value=encode(prediction)))
            for letter in dead_letters:
                key = None if letter.key is None else base64.b64decode(letter.key)  # the original key
                pending.append(await self.dlq_topic.send(key=key, value=encode(letter)))
            if pending:
                await asyncio.gather(*pending)
        except KafkaError as exc:
            raise ServiceUnavailableError(f"Kafka did not take the batch's outputs: {exc}") from exc

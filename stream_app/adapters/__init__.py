"""Thin adapters between the pure core and the outside: Kafka administration, Redis, Feast and files.
Each maps its library's errors to streamscore's exception tree."""

"""Thin adapters between the pure core and the outside: Kafka, Faust, Feast/Redis and files.
Each maps its library's errors to streamscore's exception tree."""

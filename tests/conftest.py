"""Shared fixtures live in tests/fixtures/ and are loaded here. Integration fixtures start real services
(see tests/fixtures/services.py) and never skip."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.kafka_cluster",
    "tests.fixtures.workers",
    "tests.fixtures.history",
    "tests.fixtures.redis_server",
    "tests.fixtures.redis_sentinel",
    "tests.fixtures.prometheus",
    "tests.fixtures.secure_services",
]

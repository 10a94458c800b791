"""ProfileCache with a fake registry stamp and clock: profiles are kept until a materialization lands,
the registry is asked at most every refresh_s, and each view is bounded (LRU)."""

from __future__ import annotations

import pytest

from stream_app.adapters.online_store import ProfileCache
from stream_app.errors import ConfigError


class Registry:
    """The stamp a fake registry reports, and how often it was asked."""

    def __init__(self) -> None:
        self.stamp = 1
        self.asked = 0

    def __call__(self) -> object:
        self.asked += 1
        return self.stamp


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_profiles_are_kept_until_a_new_materialization_is_seen_after_refresh_s() -> None:
    registry, clock = Registry(), Clock()
    cache = ProfileCache(10, 5.0, registry, clock)
    cache.refresh()
    cache.put("user_profile", 1, {"home_country": "DE"})
    assert cache.get("user_profile", 1) == {"home_country": "DE"}
    assert cache.get("merchant_profile", 1) is None  # views are apart

    registry.stamp = 2  # a materialization landed
    clock.now += 4.9
    cache.refresh()  # not looked yet: still served from the cache
    assert registry.asked == 1
    assert cache.get("user_profile", 1) == {"home_country": "DE"}

    clock.now += 0.1
    cache.refresh()
    assert registry.asked == 2
    assert cache.get("user_profile", 1) is None  # dropped: the next batch reads it from Redis
    assert cache.drops == 1

    cache.put("user_profile", 1, {"home_country": "FR"})
    clock.now += 5.0
    cache.refresh()  # asked again, nothing new: kept
    assert registry.asked == 3
    assert cache.get("user_profile", 1) == {"home_country": "FR"}
    assert (cache.hits, cache.misses, cache.drops) == (3, 2, 1)


def test_each_view_is_bounded_least_recently_used_first() -> None:
    cache = ProfileCache(2, 5.0, Registry(), Clock())
    cache.put("user_profile", 1, {"n": 1})
    cache.put("user_profile", 2, {"n": 2})
    assert cache.get("user_profile", 1) == {"n": 1}  # 1 is now the most recently used
    cache.put("user_profile", 3, {"n": 3})
    assert cache.get("user_profile", 2) is None
    assert cache.get("user_profile", 1) == {"n": 1}
    assert cache.get("user_profile", 3) == {"n": 3}
    cache.put("merchant_profile", 9, {"n": 9})  # another view's entries do not evict these
    assert cache.get("user_profile", 1) is not None


def test_size_zero_keeps_nothing_and_never_asks_the_registry() -> None:
    registry = Registry()
    cache = ProfileCache(0, 5.0, registry, Clock())
    cache.refresh()
    cache.put("user_profile", 1, {"n": 1})
    assert cache.get("user_profile", 1) is None
    assert registry.asked == 0


def test_bad_settings_are_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ProfileCache(-1, 5.0, Registry())
    with pytest.raises(ConfigError):
        ProfileCache(1, 0.0, Registry())


def test_the_age_is_that_of_the_first_profile_put_since_the_cache_was_last_emptied() -> None:
    registry, clock = Registry(), Clock()
    cache = ProfileCache(10, 5.0, registry, clock)
    cache.refresh()
    assert cache.oldest_age_s() == 0.0
    cache.put("user_profile", 1, {"home_country": "DE"})
    clock.now += 3
    cache.put("user_profile", 2, {"home_country": "FR"})
    clock.now += 4
    assert cache.oldest_age_s() == 7.0
    registry.stamp = 2  # a materialization landed: everything is dropped
    cache.refresh()
    assert cache.oldest_age_s() == 0.0

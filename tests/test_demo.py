"""fsdkit demo: the order its students run in."""

from __future__ import annotations

from fsdkit.demo import _cache_order


def test_students_reading_teacher_features_run_first_so_their_cache_serves_the_others():
    assert _cache_order(["vkd", "fsd"]) == ["fsd", "vkd"]
    assert _cache_order(["nds", "vkd", "fsdi", "pkd"]) == ["fsdi", "pkd", "nds", "vkd"]  # stable otherwise

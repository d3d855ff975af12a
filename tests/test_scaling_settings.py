"""The task-count settings: min_tasks and max_tasks around desired_count, and what they refuse."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from deployer.errors import SettingsError
from deployer.settings import MAX_TASKS, Settings, validate


@pytest.mark.parametrize(
    ("given", "task_range", "count", "autoscaling"),
    [
        pytest.param({}, (1, 1), 1, False, id="defaults-as-before"),
        pytest.param({"desired_count": 3}, (3, 3), 3, False, id="desired-count-alone-is-fixed"),
        pytest.param({"max_tasks": 4}, (1, 4), 1, True, id="max-alone-scales-from-desired"),
        pytest.param({"min_tasks": 2}, (2, 2), 2, False, id="min-alone-raises-max"),
        pytest.param({"min_tasks": 2, "max_tasks": 6}, (2, 6), 2, True, id="desired-clamped-up-to-min"),
        pytest.param({"desired_count": 9, "max_tasks": 6}, (9, 6), 6, False, id="desired-above-max"),
        pytest.param({"desired_count": 3, "min_tasks": 2, "max_tasks": 6}, (2, 6), 3, True, id="desired-inside"),
        pytest.param({"min_tasks": 4, "max_tasks": 4}, (4, 4), 4, False, id="equal-is-fixed"),
        pytest.param({"desired_count": 0}, (0, 0), 0, False, id="parked"),
    ],
)
def test_task_range_count_and_autoscaling(
    given: dict[str, Any], task_range: tuple[int, int], count: int, autoscaling: bool
) -> None:
    settings = replace(Settings(), **given)
    assert settings.task_range == task_range
    assert settings.autoscaling is autoscaling
    if task_range[0] <= task_range[1]:
        assert settings.task_count == count


@pytest.mark.parametrize(
    ("given", "key", "fragment"),
    [
        ({"min_tasks": 3, "max_tasks": 2}, "min_tasks/max_tasks", "min_tasks 3 is above max_tasks 2"),
        ({"desired_count": 9, "max_tasks": 6}, "min_tasks/max_tasks", "min_tasks 9 is above max_tasks 6"),
        ({"max_tasks": MAX_TASKS + 1}, "max_tasks", f"outside 1-{MAX_TASKS}"),
        ({"min_tasks": 0}, "min_tasks", f"0 is outside 1-{MAX_TASKS}"),
        ({"desired_count": MAX_TASKS + 1}, "desired_count", f"outside 0-{MAX_TASKS}"),
        ({"desired_count": 0, "max_tasks": 2}, "desired_count", "parks the stack"),
        ({"scale_cpu_percent": 9}, "scale_cpu_percent", "percent of the task's cpu"),
        ({"scale_memory_percent": 91}, "scale_memory_percent", "percent of the task's memory"),
        (
            {"max_tasks": 11, "subnet_cidrs": ("172.31.32.0/28", "172.31.48.0/28")},
            "subnet_cidrs",
            "172.31.32.0/28 has 10 addresses for tasks",
        ),
        (
            {"network": "private", "max_tasks": 11, "private_subnet_cidrs": ("172.31.64.0/28", "172.31.80.0/28")},
            "private_subnet_cidrs",
            "172.31.64.0/28 has 10 addresses",
        ),
    ],
)
def test_refused(given: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as refused:
        validate(replace(Settings(), **given))
    assert f"Invalid setting '{key}'" in str(refused.value)
    assert fragment in str(refused.value)


def test_a_rollout_of_max_tasks_fits_exactly() -> None:
    """A /28 leaves 10 addresses a subnet: max_tasks 10 runs 20 tasks in a rollout, 10 in each subnet."""
    validate(replace(Settings(), max_tasks=10, subnet_cidrs=("172.31.32.0/28", "172.31.48.0/28")))

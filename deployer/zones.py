"""Which two availability zones the subnets go in.

Zone *names* (`us-west-1a`) are shuffled per account in the older regions, so `us-west-1a`
in one account can be another building than in the next; zone *IDs* (`usw1-az1`) name the
same physical zone in every account ("AZ IDs", https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-availability-zones.html).
Fargate runs in every zone of most regions, but only in some zone IDs of a few: a subnet in
another zone gets no task. So the zones are chosen by ID, from `FARGATE_ZONE_IDS`.

The user may name the zones (setting `availability_zones`, names or IDs, in any mix); they
are checked against the region's zones before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from deployer.errors import DeployerError, SettingsError

# Where Amazon ECS runs Linux containers on Fargate, for the regions where that is only some
# zone IDs ("Linux containers on AWS Fargate": "The supported Availability Zone IDs are noted
# when applicable"). Any region not listed here: every zone.
# Source: Amazon ECS Developer Guide, "Supported Regions for Amazon ECS on AWS Fargate",
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/AWS_Fargate-Regions.html
# (the China regions' copy: https://docs.amazonaws.cn/en_us/AmazonECS/latest/developerguide/AWS_Fargate-Regions.html),
# read 2026-11-30. Earlier versions of the page also limited ca-central-1 to cac1-az1 and
# cac1-az2; the page read no longer does.
FARGATE_ZONE_IDS: dict[str, frozenset[str]] = {
    "us-west-1": frozenset({"usw1-az1", "usw1-az3"}),
    "ap-northeast-1": frozenset({"apne1-az1", "apne1-az2", "apne1-az4"}),
    "cn-north-1": frozenset({"cnn1-az1", "cnn1-az2"}),
}


@dataclass(frozen=True)
class Zone:
    """One zone of the region as DescribeAvailabilityZones reports it."""

    name: str  # us-west-1a: this account's label
    zone_id: str  # usw1-az3: the physical zone, the same in every account
    state: str = "available"

    def __str__(self) -> str:
        return f"{self.name} ({self.zone_id})"


def fargate_runs_in(region: str, zone_id: str) -> bool:
    allowed = FARGATE_ZONE_IDS.get(region)
    return allowed is None or zone_id in allowed


def by_id(zone: Zone) -> tuple[str, int, str]:
    """usw1-az2 before usw1-az10: by the number, not the text."""
    match = re.fullmatch(r"(.*-az)(\d+)", zone.zone_id)
    return (match.group(1), int(match.group(2)), zone.zone_id) if match else (zone.zone_id, 0, zone.zone_id)


def choose(region: str, zones: Sequence[Zone], wanted: Sequence[str]) -> list[Zone]:
    """The two zones for the subnets: the first two the user named, else the first two zone IDs
    (in ID order: the same physical zones in every account) that are available and run Fargate."""
    if wanted:
        return _named(region, zones, wanted)[:2]
    usable = sorted((z for z in zones if z.state == "available" and fargate_runs_in(region, z.zone_id)), key=by_id)
    if len(usable) < 2:
        found = ", ".join(str(z) for z in sorted(zones, key=by_id)) or "none"
        raise DeployerError(
            f"Region {region} has fewer than two available zones where Fargate runs (zones: {found})",
            where="the choice of availability zones, before anything was created",
            todo="Deploy to another region, or name two zones with the availability_zones setting",
        )
    return usable[:2]


def _named(region: str, zones: Sequence[Zone], wanted: Sequence[str]) -> list[Zone]:
    """The zones the user named (by name or ID), each checked: known, available, running Fargate."""
    by_key = {key: zone for zone in zones for key in (zone.name, zone.zone_id)}
    known = ", ".join(str(z) for z in sorted(zones, key=by_id))
    chosen: list[Zone] = []
    for entry in wanted:
        zone = by_key.get(entry)
        if zone is None:
            _refuse(f"'{entry}' is not an availability zone of {region} (its zones: {known})", region, zones)
        elif zone.state != "available":
            _refuse(f"{zone} is {zone.state}, not available", region, zones)
        elif not fargate_runs_in(region, zone.zone_id):
            _refuse(f"Fargate does not run in {zone} (AWS's Fargate Regions page)", region, zones)
        elif zone in chosen:
            _refuse(f"'{entry}' names {zone} again", region, zones)
        else:
            chosen.append(zone)
    if len(chosen) < 2:
        _refuse("give at least two different zones", region, zones)
    return chosen


def _refuse(what: str, region: str, zones: Sequence[Zone]) -> None:
    usable = [str(z) for z in sorted(zones, key=by_id) if fargate_runs_in(region, z.zone_id)]
    raise SettingsError(
        f"Invalid setting 'availability_zones': {what}",
        where="settings (deploy.toml), checked against the region's zones before anything was created",
        todo=f"Name two zones of {region} where Fargate runs, by name or zone ID (zones: {', '.join(usable)}), "
        "or leave availability_zones empty to let the tool choose",
    )

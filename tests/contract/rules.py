"""AWS rules that the botocore model does not carry: the one table, each rule with its public source.

A rule is a function of the request (service, operation, the caller's parameters)
returning what is wrong, or None. Rules that depend on the account's state (the
DependencyViolation family) read it with `request.reader(service)`: a client on the
same endpoint and credentials, *without* the contract hook or any test's handlers,
so its describe calls are neither recorded by CallLog nor hit by fault injection.
Such a rule answers None when it cannot read (no reader, or the describe fails):
it never invents a refusal.

Not covered (AWS refuses, moto accepts, and no cheap describe tells): ENIs that an NLB
or a stopped Fargate task still holds while their subnet or group is deleted (moto never
releases the ENIs of its fake ECS tasks, so those - description "moto ECS" - are ignored),
a VPC's non-main route tables, endpoints, NAT gateways or peering connections on DeleteVpc (a NAT
gateway's interface does hold its subnet, see `subnet_dependencies`),
and every account quota (tags aside).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tests.contract.model import compile_pattern

Reader = Callable[[str], Any]


@dataclass(frozen=True)
class Request:
    service: str  # botocore's service name: ec2, elbv2, ecs, iam, logs, ...
    operation: str  # the API name: CreateSecurityGroup
    params: Mapping[str, Any]
    reader: Reader | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    operations: frozenset[tuple[str, str]]
    check: Callable[[Request], str | None] = field(compare=False)
    member: str | None = None  # the member the rule is about, for the violation's path


def _read(request: Request, service: str, call: Callable[[Any], Any]) -> Any:
    """`call(client)` on the state reader, or None if there is none or AWS refuses the read."""
    if request.reader is None:
        return None
    try:
        return call(request.reader(service))
    except (ClientError, BotoCoreError):
        return None


# --- EC2 -----------------------------------------------------------------------------------------


def security_group_name(request: Request) -> str | None:
    name = request.params.get("GroupName")
    if isinstance(name, str) and name.lower().startswith("sg-"):
        return f"GroupName {name!r} starts with 'sg-'"
    return None


VPC_ATTRIBUTES = ("EnableDnsHostnames", "EnableDnsSupport", "EnableNetworkAddressUsageMetrics")


def one_vpc_attribute(request: Request) -> str | None:
    given = [name for name in VPC_ATTRIBUTES if name in request.params]
    if len(given) != 1:
        return f"exactly one attribute per ModifyVpcAttribute call; sent {given or 'none'}"
    return None


def main_route_table(request: Request) -> str | None:
    table_id = request.params.get("RouteTableId")
    answer = _read(request, "ec2", lambda ec2: ec2.describe_route_tables(RouteTableIds=[table_id]))
    for table in (answer or {}).get("RouteTables", []):
        if any(association.get("Main") for association in table.get("Associations", [])):
            return f"{table_id} is the main route table of {table.get('VpcId')} (DependencyViolation)"
    return None


def vpc_dependencies(request: Request) -> str | None:
    vpc_id = request.params.get("VpcId")
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    held: list[str] = []
    gateways = _read(
        request,
        "ec2",
        lambda ec2: ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]),
    )
    held += [g["InternetGatewayId"] for g in (gateways or {}).get("InternetGateways", [])]
    subnets = _read(request, "ec2", lambda ec2: ec2.describe_subnets(Filters=in_vpc))
    held += [s["SubnetId"] for s in (subnets or {}).get("Subnets", [])]
    groups = _read(request, "ec2", lambda ec2: ec2.describe_security_groups(Filters=in_vpc))
    held += [g["GroupId"] for g in (groups or {}).get("SecurityGroups", []) if g.get("GroupName") != "default"]
    if held:
        return f"{vpc_id} still has {', '.join(held)} (DependencyViolation)"
    return None


def _live_interfaces(request: Request, name: str, value: str) -> list[str]:
    answer = _read(
        request,
        "ec2",
        lambda ec2: ec2.describe_network_interfaces(Filters=[{"Name": name, "Values": [value]}]),
    )
    released = _deleted_nat_interfaces(request)
    return [
        eni["NetworkInterfaceId"]
        for eni in (answer or {}).get("NetworkInterfaces", [])
        if eni.get("Description") != "moto ECS"  # moto never releases a fake task's ENI
        and eni["NetworkInterfaceId"] not in released
    ]


def _deleted_nat_interfaces(request: Request) -> set[str]:
    """Interfaces of deleted NAT gateways: AWS removes them with the gateway, moto keeps them."""
    answer = _read(request, "ec2", lambda ec2: ec2.describe_nat_gateways())
    return {
        address.get("NetworkInterfaceId", "")
        for gateway in (answer or {}).get("NatGateways", [])
        if gateway.get("State") == "deleted"
        for address in gateway.get("NatGatewayAddresses", [])
    }


def associated_network_acl(request: Request) -> str | None:
    acl_id = request.params.get("NetworkAclId")
    answer = _read(request, "ec2", lambda ec2: ec2.describe_network_acls(NetworkAclIds=[acl_id]))
    for acl in (answer or {}).get("NetworkAcls", []):
        subnets = [a.get("SubnetId") for a in acl.get("Associations", [])]
        if subnets:
            return f"{acl_id} is still associated with {', '.join(map(str, subnets))} (DependencyViolation)"
    return None


def address_in_use(request: Request) -> str | None:
    allocation_id = request.params.get("AllocationId")
    answer = _read(request, "ec2", lambda ec2: ec2.describe_nat_gateways())
    for gateway in (answer or {}).get("NatGateways", []):
        used = {a.get("AllocationId") for a in gateway.get("NatGatewayAddresses", [])}
        if gateway.get("State") != "deleted" and allocation_id in used:
            return f"{allocation_id} is used by the NAT gateway {gateway.get('NatGatewayId')} (InvalidIPAddress.InUse)"
    return None


def subnet_dependencies(request: Request) -> str | None:
    subnet_id = request.params.get("SubnetId")
    held = _live_interfaces(request, "subnet-id", str(subnet_id))
    return f"{subnet_id} still has network interfaces {', '.join(held)} (DependencyViolation)" if held else None


def security_group_dependencies(request: Request) -> str | None:
    group_id = request.params.get("GroupId")
    if not isinstance(group_id, str):
        return None  # by name: EC2-Classic style, not used with VPCs
    mine = _read(request, "ec2", lambda ec2: ec2.describe_security_groups(GroupIds=[group_id]))
    groups = (mine or {}).get("SecurityGroups", [])
    if not groups:
        return None
    vpc = [{"Name": "vpc-id", "Values": [groups[0].get("VpcId", "")]}]
    others = _read(request, "ec2", lambda ec2: ec2.describe_security_groups(Filters=vpc))
    referrers = [
        other["GroupId"]
        for other in (others or {}).get("SecurityGroups", [])
        if other["GroupId"] != group_id
        and any(
            pair.get("GroupId") == group_id
            for permission in [*other.get("IpPermissions", []), *other.get("IpPermissionsEgress", [])]
            for pair in permission.get("UserIdGroupPairs", [])
        )
    ]
    if referrers:
        return f"{group_id} is referenced by the rules of {', '.join(referrers)} (DependencyViolation)"
    held = _live_interfaces(request, "group-id", group_id)
    if held:
        return f"{group_id} is used by network interfaces {', '.join(held)} (DependencyViolation)"
    return None


def attached_internet_gateway(request: Request) -> str | None:
    gateway_id = request.params.get("InternetGatewayId")
    answer = _read(request, "ec2", lambda ec2: ec2.describe_internet_gateways(InternetGatewayIds=[gateway_id]))
    for gateway in (answer or {}).get("InternetGateways", []):
        attached = [a.get("VpcId") for a in gateway.get("Attachments", []) if a.get("State") != "detached"]
        if attached:
            return f"{gateway_id} is still attached to {', '.join(map(str, attached))} (DependencyViolation)"
    return None


# --- ECS -----------------------------------------------------------------------------------------

# cpu units -> the memory (MiB) Fargate accepts with it: the "Task size" table.
FARGATE_SIZES: dict[int, frozenset[int]] = {
    256: frozenset({512, 1024, 2048}),
    512: frozenset(range(1024, 4096 + 1, 1024)),
    1024: frozenset(range(2048, 8192 + 1, 1024)),
    2048: frozenset(range(4096, 16384 + 1, 1024)),
    4096: frozenset(range(8192, 30720 + 1, 1024)),
    8192: frozenset(range(16384, 61440 + 1, 4096)),
    16384: frozenset(range(32768, 122880 + 1, 8192)),
}


def protected_load_balancer(request: Request) -> str | None:
    arn = request.params.get("LoadBalancerArn")
    answer = _read(request, "elbv2", lambda elbv2: elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn))
    attributes = {a.get("Key"): a.get("Value") for a in (answer or {}).get("Attributes", [])}
    if attributes.get("deletion_protection.enabled") == "true":
        return f"{arn} has deletion protection on (OperationNotPermitted)"
    return None


def _units(text: Any, unit: str, per_unit: int) -> int | None:
    """'1024' -> 1024; '1 vCPU' / '2GB' / '2 GB' -> units * per_unit; None if unreadable."""
    if not isinstance(text, str):
        return None
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned.isdigit():
        return int(cleaned)
    if cleaned.endswith(unit):
        try:
            return int(float(cleaned[: -len(unit)]) * per_unit)
        except ValueError:
            return None
    return None


def fargate_task_size(request: Request) -> str | None:
    if "FARGATE" not in (request.params.get("requiresCompatibilities") or []):
        return None
    cpu_text, memory_text = request.params.get("cpu"), request.params.get("memory")
    if cpu_text is None or memory_text is None:
        return "FARGATE task definitions need task-level cpu and memory"
    cpu, memory = _units(cpu_text, "vcpu", 1024), _units(memory_text, "gb", 1024)
    if cpu not in FARGATE_SIZES:
        return f"cpu {cpu_text!r} is not a Fargate task size ({sorted(FARGATE_SIZES)})"
    if memory not in FARGATE_SIZES[cpu]:
        allowed = sorted(FARGATE_SIZES[cpu])
        return f"memory {memory_text!r} does not go with cpu {cpu_text!r} on Fargate ({allowed[0]}..{allowed[-1]})"
    return None


# --- CloudWatch Logs -----------------------------------------------------------------------------

RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)


def retention_days(request: Request) -> str | None:
    days = request.params.get("retentionInDays")
    if days not in RETENTION_DAYS:
        return f"retentionInDays {days!r} is not one of {sorted(RETENTION_DAYS)}"
    return None


# --- ELBv2 ---------------------------------------------------------------------------------------


def health_check_timing(request: Request) -> str | None:
    """Both values as sent, or on ModifyTargetGroup the one not sent as the group has it now.
    On CreateTargetGroup an omitted value is AWS's default, which is not modelled here."""
    timeout = request.params.get("HealthCheckTimeoutSeconds")
    interval = request.params.get("HealthCheckIntervalSeconds")
    if (timeout is None) != (interval is None) and request.operation == "ModifyTargetGroup":
        arn = request.params.get("TargetGroupArn")
        answer = _read(request, "elbv2", lambda elbv2: elbv2.describe_target_groups(TargetGroupArns=[arn]))
        for group in (answer or {}).get("TargetGroups", []):
            timeout = group.get("HealthCheckTimeoutSeconds") if timeout is None else timeout
            interval = group.get("HealthCheckIntervalSeconds") if interval is None else interval
    if isinstance(timeout, int) and isinstance(interval, int) and timeout > interval:
        return f"health check timeout ({timeout}s) must not exceed the interval ({interval}s)"
    return None


ELBV2_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?")


def elbv2_name(request: Request) -> str | None:
    name = request.params.get("Name")
    if not isinstance(name, str):
        return None
    if len(name) > 32:
        return f"max length 32: {len(name)} characters"
    if not ELBV2_NAME.fullmatch(name):
        return "only letters, digits and hyphens, not starting or ending with a hyphen"
    if request.operation == "CreateLoadBalancer" and name.startswith("internal-"):
        return "a load balancer name must not start with 'internal-'"
    return None


# --- Tags (ELBv2, IAM, ECS, CloudWatch Logs) ------------------------------------------------------

TAG_CHARSET = r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$"
MAX_TAGS = 50


def _tag_pairs(params: Mapping[str, Any]) -> Iterable[tuple[str, str]] | None:
    tags = params.get("Tags", params.get("tags"))
    if isinstance(tags, Mapping):  # CloudWatch Logs: {key: value}
        return [(str(k), str(v)) for k, v in tags.items()]
    if isinstance(tags, list):  # [{Key, Value}] or ECS's [{key, value}]
        return [
            (str(t.get("Key", t.get("key", ""))), str(t.get("Value", t.get("value", ""))))
            for t in tags
            if isinstance(t, Mapping)
        ]
    return None


def tag_rules(request: Request) -> str | None:
    pairs = _tag_pairs(request.params)
    if pairs is None:
        return None
    pairs = list(pairs)
    if len(pairs) > MAX_TAGS:
        return f"{len(pairs)} tags: at most {MAX_TAGS} per resource"
    charset = compile_pattern(TAG_CHARSET)
    for key, value in pairs:
        for part in (key, value):
            if charset is not None and charset.fullmatch(part) is None:
                return f"tag {key!r}={value!r}: only letters, numbers, spaces and _ . : / = + - @ are allowed"
        if key.lower().startswith("aws:"):
            return f"tag key {key!r}: the aws: prefix is reserved"
    return None


TAGGING = frozenset(
    {
        ("elbv2", "CreateLoadBalancer"),
        ("elbv2", "CreateTargetGroup"),
        ("elbv2", "CreateListener"),
        ("elbv2", "CreateRule"),
        ("elbv2", "AddTags"),
        ("iam", "CreateRole"),
        ("iam", "CreatePolicy"),
        ("iam", "TagRole"),
        ("iam", "TagPolicy"),
        ("ecs", "CreateCluster"),
        ("ecs", "CreateService"),
        ("ecs", "RegisterTaskDefinition"),
        ("ecs", "TagResource"),
        ("logs", "CreateLogGroup"),
        ("logs", "TagLogGroup"),
        ("logs", "TagResource"),
    }
)

EC2_API = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference"

RULES: tuple[Rule, ...] = (
    Rule(
        "security group name must not start with sg-",
        f'{EC2_API}/API_CreateSecurityGroup.html (GroupName: "Can\'t start with sg-")',
        frozenset({("ec2", "CreateSecurityGroup")}),
        security_group_name,
    ),
    Rule(
        "ModifyVpcAttribute takes exactly one attribute",
        f'{EC2_API}/API_ModifyVpcAttribute.html ("You cannot modify the DNS resolution and DNS hostnames '
        'attributes in the same request")',
        frozenset({("ec2", "ModifyVpcAttribute")}),
        one_vpc_attribute,
    ),
    Rule(
        "the main route table cannot be deleted",
        f'{EC2_API}/API_DeleteRouteTable.html ("You can\'t delete the main route table")',
        frozenset({("ec2", "DeleteRouteTable")}),
        main_route_table,
    ),
    Rule(
        "DeleteVpc needs its subnets, security groups and internet gateways gone",
        f'{EC2_API}/API_DeleteVpc.html ("you must detach or delete all gateways and resources that are '
        'associated with the VPC")',
        frozenset({("ec2", "DeleteVpc")}),
        vpc_dependencies,
    ),
    Rule(
        "DeleteSubnet needs its network interfaces gone",
        f'{EC2_API}/API_DeleteSubnet.html ("You must terminate all running instances in the subnet")',
        frozenset({("ec2", "DeleteSubnet")}),
        subnet_dependencies,
    ),
    Rule(
        "DeleteSecurityGroup refuses a group that is referenced or in use",
        f'{EC2_API}/API_DeleteSecurityGroup.html ("If you attempt to delete a security group that is '
        "associated with an instance or network interface, is referenced by another security group ... "
        'the operation fails with DependencyViolation")',
        frozenset({("ec2", "DeleteSecurityGroup")}),
        security_group_dependencies,
    ),
    Rule(
        "DeleteNetworkAcl needs it disassociated from every subnet",
        f"{EC2_API}/API_DeleteNetworkAcl.html (\"You can't delete the ACL if it's associated with any subnets\")",
        frozenset({("ec2", "DeleteNetworkAcl")}),
        associated_network_acl,
    ),
    Rule(
        "ReleaseAddress needs the address free: a NAT gateway holds it until deleted",
        f"{EC2_API}/API_ReleaseAddress.html and https://docs.aws.amazon.com/vpc/latest/userguide/"
        'nat-gateway-working-with.html ("the NAT gateway ... releases the Elastic IP address" when deleted)',
        frozenset({("ec2", "ReleaseAddress")}),
        address_in_use,
    ),
    Rule(
        "DeleteInternetGateway needs it detached",
        f'{EC2_API}/API_DeleteInternetGateway.html ("You must detach the internet gateway from the VPC")',
        frozenset({("ec2", "DeleteInternetGateway")}),
        attached_internet_gateway,
    ),
    Rule(
        "DeleteLoadBalancer refuses a load balancer with deletion protection on",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-delete.html"
        " (\"You can't delete a Network Load Balancer if deletion protection is enabled\"); botocore's elbv2"
        " model lists OperationNotPermitted for DeleteLoadBalancer",
        frozenset({("elbv2", "DeleteLoadBalancer")}),
        protected_load_balancer,
    ),
    Rule(
        "Fargate cpu/memory must be a supported task size",
        "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size"
        " and https://docs.aws.amazon.com/AmazonECS/latest/userguide/task-cpu-memory-error.html",
        frozenset({("ecs", "RegisterTaskDefinition")}),
        fargate_task_size,
    ),
    Rule(
        "log retention must be one of the allowed day counts",
        "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html",
        frozenset({("logs", "PutRetentionPolicy")}),
        retention_days,
    ),
    Rule(
        "ELBv2 load balancer and target group names: 1-32 letters, digits, hyphens",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html and"
        " https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html (Name)",
        frozenset({("elbv2", "CreateTargetGroup"), ("elbv2", "CreateLoadBalancer")}),
        elbv2_name,
        member="Name",
    ),
    Rule(
        "target group health check timeout must not exceed its interval",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html"
        " (NLB: timeout 2-120 s, not above the interval, as aws-cdk validates since PR #26023; ALBs answer"
        ' ValidationError "Health check interval must be greater than the timeout" - stricter, not checked)',
        frozenset({("elbv2", "CreateTargetGroup"), ("elbv2", "ModifyTargetGroup")}),
        health_check_timing,
    ),
    Rule(
        "tags: at most 50, letters/numbers/spaces and _.:/=+-@ only, no aws: prefix",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-tags.html,"
        " https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html#id_tags_rules_creating,"
        " https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-using-tags.html#tag-restrictions,"
        " https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html"
        " (EC2's tags are laxer and not checked)",
        TAGGING,
        tag_rules,
    ),
)


def rules_for(service: str, operation: str) -> list[Rule]:
    return [rule for rule in RULES if (service, operation) in rule.operations]

"""The AWS contract layer itself (tests/contract/): the model checks, each AWS rule, and its hooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ParamValidationError

from deployer.clients import AwsClients
from tests.conftest import PROJECT_DIR, REGION, MotoServer, script_env
from tests.contract import RULES, ContractViolation, Request, check_request, drain, skipped_patterns
from tests.contract.hook import install, reader_for
from tests.contract.model import compile_pattern
from tests.contract.rules import rules_for

SESSION = botocore.session.get_session()


def operation(service: str, name: str) -> Any:
    return SESSION.get_service_model(service).operation_model(name)


def violations(service: str, name: str, reader: Any = None, **params: Any) -> list[str]:
    return [f"{v.path}: {v.rule}" for v in check_request(service, operation(service, name), params, reader)]


def refused(service: str, name: str, **params: Any) -> str:
    found = violations(service, name, **params)
    assert found, f"{service} {name} {params} passed"
    return "\n".join(found)


def test_a_planted_too_long_target_group_name_is_refused_with_the_member_and_rule(aws: AwsClients) -> None:
    with pytest.raises(ContractViolation) as caught:
        aws.elbv2.create_target_group(Name="n" * 33, Protocol="TCP", Port=80, VpcId="vpc-1", TargetType="ip")
    drain()  # expected here: keep the plugin from failing this test with it
    assert caught.value.service == "elbv2"
    assert caught.value.operation == "CreateTargetGroup"
    assert "CreateTargetGroup.Name" in str(caught.value)
    assert "max length 32" in str(caught.value)


def test_model_lengths_enums_ranges_and_nested_members() -> None:
    assert "CreateRole.RoleName: max length 64" in refused(
        "iam", "CreateRole", RoleName="r" * 65, AssumeRolePolicyDocument="{}"
    )
    assert "not one of the enum" in refused("elbv2", "CreateTargetGroup", Name="tg", Protocol="tcp")
    assert "above maximum 65535" in refused("elbv2", "CreateTargetGroup", Name="tg", Port=70000)
    assert "below minimum 5" in refused("elbv2", "CreateTargetGroup", Name="tg", HealthCheckIntervalSeconds=1)
    nested = refused(
        "ecs",
        "RegisterTaskDefinition",
        family="site",
        containerDefinitions=[{"name": "web", "portMappings": [{"containerPort": 80, "protocol": "sctp"}]}],
    )
    assert "RegisterTaskDefinition.containerDefinitions[0].portMappings[0].protocol: not one of the enum" in nested
    assert "min length 1" in refused("logs", "CreateLogGroup", logGroupName="")
    assert "does not match pattern" in refused("logs", "CreateLogGroup", logGroupName="bad name!")
    assert violations("logs", "CreateLogGroup", logGroupName="/ecs/site") == []


def test_a_missing_required_member_is_named_by_the_contract_before_botocores_own_check(aws: AwsClients) -> None:
    """The hook runs at before-parameter-build, before botocore's ParamValidation: the contract names it first."""
    with pytest.raises(ContractViolation, match=r"CreateTargetGroup\.Name: required member missing"):
        aws.elbv2.create_target_group()  # type: ignore[call-arg]
    drain()
    bare: Any = botocore.session.get_session().create_client("elbv2", region_name=REGION)
    bare.meta.events.unregister("before-parameter-build", unique_id="aws-contract")
    with pytest.raises(ParamValidationError, match="Missing required parameter"):
        bare.create_target_group()


def test_java_patterns_compile_and_none_is_skipped_in_the_services_used() -> None:
    tag = compile_pattern(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")
    assert tag is not None
    assert tag.fullmatch("Grüße 1/2=+@") is not None
    assert tag.fullmatch("a#b") is None
    assert compile_pattern(r"[\w-_]*") is not None  # Java's literal '-' after \w
    astral = compile_pattern(r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*")
    assert astral is not None and astral.fullmatch("alarm \U0001f600") is not None
    for service in ("ec2", "elbv2", "ecs", "iam", "ecr", "logs", "sts", "cloudwatch", "application-autoscaling"):
        model = SESSION.get_service_model(service)
        for name in model.operation_names:
            check_request(service, model.operation_model(name), {})
    assert skipped_patterns() == {}


# --- the AWS rules table: each rule refuses one request and passes another -------------------------


def test_every_rule_names_a_public_source() -> None:
    for rule in RULES:
        assert rule.source.startswith("https://docs.aws.amazon.com/"), rule.name
        assert rule.operations


def rule_says(service: str, name: str, reader: Any = None, **params: Any) -> list[str]:
    request = Request(service, name, params, reader)
    return [problem for rule in rules_for(service, name) if (problem := rule.check(request)) is not None]


def test_security_group_name_must_not_start_with_sg() -> None:
    assert rule_says("ec2", "CreateSecurityGroup", GroupName="sg-web", Description="d")
    assert rule_says("ec2", "CreateSecurityGroup", GroupName="site-web", Description="d") == []


def test_modify_vpc_attribute_takes_exactly_one_attribute() -> None:
    both = {"EnableDnsSupport": {"Value": True}, "EnableDnsHostnames": {"Value": True}}
    assert rule_says("ec2", "ModifyVpcAttribute", VpcId="vpc-1", **both)
    assert rule_says("ec2", "ModifyVpcAttribute", VpcId="vpc-1")
    assert rule_says("ec2", "ModifyVpcAttribute", VpcId="vpc-1", EnableDnsSupport={"Value": True}) == []


@pytest.mark.parametrize(("cpu", "memory", "ok"), [
    ("256", "512", True), ("256", "4096", False), ("512", "3072", True), ("1024", "1024", False),
    ("2048", "16384", True), ("4096", "31744", False), ("8192", "20480", True), ("8192", "18432", False),
    ("16384", "122880", True), ("1 vCPU", "2 GB", True), ("300", "1024", False),
])  # fmt: skip
def test_fargate_cpu_and_memory_must_be_a_task_size(cpu: str, memory: str, ok: bool) -> None:
    said = rule_says("ecs", "RegisterTaskDefinition", requiresCompatibilities=["FARGATE"], cpu=cpu, memory=memory)
    assert (said == []) is ok, said


def test_fargate_rule_leaves_ec2_task_definitions_alone() -> None:
    assert rule_says("ecs", "RegisterTaskDefinition", requiresCompatibilities=["EC2"], cpu="300", memory="7") == []
    assert rule_says("ecs", "RegisterTaskDefinition", requiresCompatibilities=["FARGATE"])


def test_log_retention_must_be_an_allowed_day_count() -> None:
    assert rule_says("logs", "PutRetentionPolicy", logGroupName="/g", retentionInDays=10)
    assert rule_says("logs", "PutRetentionPolicy", logGroupName="/g", retentionInDays=14) == []


def test_elbv2_names() -> None:
    assert rule_says("elbv2", "CreateTargetGroup", Name="-web")
    assert rule_says("elbv2", "CreateLoadBalancer", Name="internal-site")
    assert rule_says("elbv2", "CreateTargetGroup", Name="site_web")
    assert rule_says("elbv2", "CreateTargetGroup", Name="n" * 32) == []


def test_tags_charset_count_and_reserved_prefix() -> None:
    assert rule_says("iam", "CreateRole", Tags=[{"Key": "team", "Value": "a#b"}])
    assert rule_says("ecs", "CreateCluster", tags=[{"key": "aws:owner", "value": "x"}])
    assert rule_says("logs", "CreateLogGroup", logGroupName="/g", tags={f"k{n}": "v" for n in range(51)})
    assert rule_says("elbv2", "AddTags", ResourceArns=["arn"], Tags=[{"Key": "Name", "Value": "Grüße site-1"}]) == []
    assert rule_says("logs", "CreateLogGroup", logGroupName="/g", tags={f"k{n}": "v" for n in range(50)}) == []


def test_health_check_timeout_must_not_exceed_interval(aws: AwsClients) -> None:
    longer = {"HealthCheckIntervalSeconds": 10, "HealthCheckTimeoutSeconds": 11}
    assert rule_says("elbv2", "CreateTargetGroup", Name="tg", **longer)
    assert (
        rule_says("elbv2", "CreateTargetGroup", Name="tg", HealthCheckIntervalSeconds=10, HealthCheckTimeoutSeconds=5)
        == []
    )
    vpc = aws.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    arn = aws.elbv2.create_target_group(
        Name="tg", Protocol="TCP", Port=80, VpcId=vpc, TargetType="ip",
        HealthCheckIntervalSeconds=30, HealthCheckTimeoutSeconds=10,
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    reader = reader_of(aws.elbv2)
    assert rule_says("elbv2", "ModifyTargetGroup", reader, TargetGroupArn=arn, HealthCheckTimeoutSeconds=31)
    assert rule_says("elbv2", "ModifyTargetGroup", reader, TargetGroupArn=arn, HealthCheckTimeoutSeconds=30) == []
    assert rule_says("elbv2", "ModifyTargetGroup", reader, TargetGroupArn=arn, HealthCheckIntervalSeconds=9)


def reader_of(client: Any) -> Any:
    return reader_for(client)


def test_dependency_rules_read_the_state_moto_does_not_check(aws: AwsClients) -> None:
    ec2 = aws.ec2
    reader = reader_of(ec2)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]["RouteTableId"]
    other = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    assert rule_says("ec2", "DeleteRouteTable", reader, RouteTableId=main)
    assert rule_says("ec2", "DeleteRouteTable", reader, RouteTableId=other) == []

    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    assert rule_says("ec2", "DeleteInternetGateway", reader, InternetGatewayId=gateway)
    assert any("igw-" in said for said in rule_says("ec2", "DeleteVpc", reader, VpcId=vpc))

    web = ec2.create_security_group(GroupName="web", Description="w", VpcId=vpc)["GroupId"]
    edge = ec2.create_security_group(GroupName="edge", Description="e", VpcId=vpc)["GroupId"]
    rule = {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": edge}]}
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[rule])  # type: ignore[list-item]
    assert rule_says("ec2", "DeleteSecurityGroup", reader, GroupId=edge)
    assert rule_says("ec2", "DeleteSecurityGroup", reader, GroupId=web) == []

    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    assert rule_says("ec2", "DeleteSubnet", reader, SubnetId=subnet) == []
    ec2.create_network_interface(SubnetId=subnet, Description="held")
    assert rule_says("ec2", "DeleteSubnet", reader, SubnetId=subnet)

    ec2.detach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    assert rule_says("ec2", "DeleteInternetGateway", reader, InternetGatewayId=gateway) == []


def test_the_rules_reads_are_not_recorded_as_the_tools_calls(aws: AwsClients, calls: Any) -> None:
    vpc = aws.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    calls.clear()
    aws.ec2.delete_vpc(VpcId=vpc)
    assert calls.calls == [("ec2", "DeleteVpc")]


# --- the hooks: every client, in this process and in the scripts' ---------------------------------


def test_any_client_created_in_the_test_process_is_hooked() -> None:
    client = boto3.Session(region_name=REGION).client("logs")
    with pytest.raises(ContractViolation, match="retentionInDays 10"):
        client.put_retention_policy(logGroupName="/g", retentionInDays=10)
    drain()
    assert install(client) is client  # idempotent


def test_a_swallowed_violation_still_fails_the_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_DIR))
    pytester.makeconftest('pytest_plugins = ["tests.contract.plugin"]')
    pytester.makepyfile(
        """
        import boto3, pytest
        from moto import mock_aws

        def send():
            try:
                boto3.client("logs", region_name="us-east-1").put_retention_policy(logGroupName="/g", retentionInDays=2)
            except Exception:
                pass

        def test_swallowing():
            with mock_aws():
                send()

        @pytest.mark.contract_exempt("checks the tool's handling of a refusal")
        def test_exempt():
            with mock_aws():
                send()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ContractViolation: AWS contract: logs PutRetentionPolicy would be refused*"])
    assert "retentionInDays 2 is not one of" in result.stdout.str()


def test_the_hook_is_active_in_a_script_the_tests_run(server: MotoServer, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "tests" / "contract" / "send_bad_request.py")],
        cwd=tmp_path,
        env=script_env(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 86, result.stderr
    assert "ContractViolation" in result.stderr
    assert "CreateTargetGroup.Name" in result.stderr
    assert "max length 32" in result.stderr

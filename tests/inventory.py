"""What exists in the (emulated) account, to compare before and after a run."""

from __future__ import annotations

from deployer.clients import AwsClients
from deployer.steps.dns import KEY_TYPES

# One of every kind the stack creates, counted over what a provision adds to an account.
EXPECTED_COUNTS = {
    "vpcs": 1,
    "subnets": 2,
    "internet_gateways": 1,
    "route_tables": 2,  # ours, and the VPC's original main table
    "security_groups": 3,  # NLB, tasks, and the VPC's default group
    "network_acls": 2,  # ours, and the VPC's default ACL
    "log_groups": 2,  # the tasks' and the flow logs'
    "roles": 3,  # execution, task, flow logs
    "flow_logs": 1,
    "repositories": 1,
    "target_groups": 1,
    "load_balancers": 1,
    "listeners": 1,
    "clusters": 1,
    "task_definitions": 1,
    "services": 1,
    "alarms": 2,  # the deployment alarms: unhealthy targets, and the task shortfall (Container Insights)
}


# With log_kms_key = "create": the stack's key and its alias too.
EXPECTED_WITH_LOG_KEY = {**EXPECTED_COUNTS, "kms_keys": 1, "aliases": 1}

# With a domain in the account's hosted zone: the certificate, its validation CNAME and the alias A record,
# the redirect target group and the TLS listener.
EXPECTED_WITH_DOMAIN = {
    **EXPECTED_COUNTS,
    "certificates": 1,
    "dns_records": 2,
    "target_groups": 2,
    "listeners": 2,
}


def certificates(clients: AwsClients) -> set[str]:
    """Every ACM certificate of the region, whatever its status or key type (ListCertificates' default
    filter leaves some out)."""
    paginator = clients.acm.get_paginator("list_certificates")
    pages = paginator.paginate(Includes={"keyTypes": list(KEY_TYPES)})
    return {summary["CertificateArn"] for page in pages for summary in page["CertificateSummaryList"]}


def dns_records(clients: AwsClients) -> set[str]:
    """Every record of every hosted zone but the zone's own NS and SOA, as "zone name type"."""
    route53 = clients.route53
    records = set()
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            for rr_page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"]):
                records |= {
                    f"{zone['Name']} {record['Name']} {record['Type']}"
                    for record in rr_page["ResourceRecordSets"]
                    if record["Type"] not in ("NS", "SOA")
                }
    return records


# With max_tasks above min_tasks: the scalable target, its CPU policy, and the two alarms target tracking makes.
EXPECTED_WITH_SCALING = {**EXPECTED_COUNTS, "scalable_targets": 1, "scaling_policies": 1, "alarms": 4}


def alarms(clients: AwsClients) -> set[str]:
    """Every CloudWatch alarm of the region, metric and composite: the stack's own and target tracking's."""
    names = set()
    for page in clients.cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    ):
        names |= {alarm["AlarmName"] for alarm in page.get("MetricAlarms", [])}
        names |= {alarm["AlarmName"] for alarm in page.get("CompositeAlarms", [])}
    return names


def scaling(clients: AwsClients) -> tuple[set[str], set[str]]:
    """ECS's scalable targets (by resource id) and their scaling policies (by ARN)."""
    autoscaling = clients.autoscaling
    targets = {
        target["ResourceId"]
        for page in autoscaling.get_paginator("describe_scalable_targets").paginate(ServiceNamespace="ecs")
        for target in page["ScalableTargets"]
    }
    policies = {
        policy["PolicyARN"]
        for page in autoscaling.get_paginator("describe_scaling_policies").paginate(ServiceNamespace="ecs")
        for policy in page["ScalingPolicies"]
    }
    return targets, policies


def kms_keys(clients: AwsClients) -> set[str]:
    """Customer keys that are not on their way out: a key pending deletion is as good as gone."""
    live = set()
    for key in clients.kms.list_keys()["Keys"]:
        meta = clients.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        if meta.get("KeyManager") == "CUSTOMER" and meta.get("KeyState") not in (
            "PendingDeletion",
            "PendingReplicaDeletion",
        ):
            live.add(meta["KeyId"])
    return live


def inventory(clients: AwsClients) -> dict[str, set[str]]:
    """Identifiers of every resource kind the stack creates, whoever created them."""
    ec2, elbv2, ecs = clients.ec2, clients.elbv2, clients.ecs
    balancers = {lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]}
    clusters = set(ecs.list_clusters()["clusterArns"])
    active_clusters = (
        {
            c["clusterArn"]
            for c in ecs.describe_clusters(clusters=sorted(clusters))["clusters"]
            if c.get("status") == "ACTIVE"
        }
        if clusters
        else set()
    )
    services = set()
    for cluster in active_clusters:
        arns = ecs.list_services(cluster=cluster)["serviceArns"]
        if arns:
            described = ecs.describe_services(cluster=cluster, services=arns)["services"]
            services |= {s["serviceArn"] for s in described if s.get("status") == "ACTIVE"}
    vpcs = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    scalable_targets, scaling_policies = scaling(clients)
    return {
        "vpcs": vpcs,
        "subnets": {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]},
        "internet_gateways": {g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]},
        "route_tables": {t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"]},
        "security_groups": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]},
        # moto keeps a deleted VPC's default network ACL; AWS deletes it with the VPC.
        "network_acls": {a["NetworkAclId"] for a in ec2.describe_network_acls()["NetworkAcls"] if a["VpcId"] in vpcs},
        # Private mode only (tests/test_private_network.py); a deleted gateway stays listed for an hour.
        "nat_gateways": {
            g.get("NatGatewayId", "")
            for g in ec2.describe_nat_gateways()["NatGateways"]
            if g.get("State") not in ("deleting", "deleted")
        },
        "addresses": {a.get("AllocationId", "") for a in ec2.describe_addresses()["Addresses"]},
        "log_groups": {g["logGroupName"] for g in clients.logs.describe_log_groups()["logGroups"]},
        "roles": {r["RoleName"] for r in clients.iam.list_roles()["Roles"]},
        "repositories": {r["repositoryName"] for r in clients.ecr.describe_repositories()["repositories"]},
        "target_groups": {t["TargetGroupArn"] for t in elbv2.describe_target_groups()["TargetGroups"]},
        "load_balancers": balancers,
        "listeners": {
            listener["ListenerArn"]
            for lb in balancers
            for listener in elbv2.describe_listeners(LoadBalancerArn=lb)["Listeners"]
        },
        "clusters": active_clusters,
        "task_definitions": set(ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"]),
        "services": services,
        "flow_logs": {f["FlowLogId"] for f in ec2.describe_flow_logs()["FlowLogs"]},
        "kms_keys": kms_keys(clients),
        "certificates": certificates(clients),
        "dns_records": dns_records(clients),
        "alarms": alarms(clients),
        "scalable_targets": scalable_targets,
        "scaling_policies": scaling_policies,
        "aliases": {
            a["AliasName"] for a in clients.kms.list_aliases()["Aliases"] if not a["AliasName"].startswith("alias/aws/")
        },
    }


def added(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, set[str]]:
    return {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}

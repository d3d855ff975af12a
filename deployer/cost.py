"""An estimate of what the stack costs per month, for the plan (`provision.py --dry-run`).

It is an estimate: on-demand list prices for us-east-1 (Linux/X86_64 Fargate), taken
from the AWS pricing pages for Elastic Load Balancing, Fargate, VPC public IPv4
addresses and NAT gateways, CloudWatch (Logs, and metrics for Container Insights) and ECR on
2026-11-01. Other regions cost somewhat more; data transfer, free tiers, savings plans and taxes
are left out. Usage-based items
assume a small site (stated with each line).
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.settings import CREATE_LOG_KEY, Settings

HOURS_PER_MONTH = 730
PRICES_SOURCE = "AWS on-demand list prices, us-east-1, read 2026-11-01"

NLB_HOUR = 0.0225  # per load balancer-hour
NLB_LCU_HOUR = 0.006  # per NLCU-hour; a small site stays within one
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
PUBLIC_IPV4_HOUR = 0.005  # every public IPv4 address, in use or not
# network = "private": one NAT gateway, per hour and per GB it processes
# (https://aws.amazon.com/vpc/pricing/, "NAT Gateway Pricing").
NAT_GATEWAY_HOUR = 0.045
NAT_GATEWAY_GB = 0.045
ASSUMED_NAT_GB_PER_TASK_MONTH = 1.0  # image pulls and log shipping of a small site
LOGS_INGEST_GB = 0.50
LOGS_STORE_GB_MONTH = 0.03
ECR_GB_MONTH = 0.10
# VPC flow logs to CloudWatch Logs are "vended logs": $0.50/GB delivered for the first 10 TB, plus storage
# (https://aws.amazon.com/cloudwatch/pricing/, Logs, "Vended Logs").
FLOW_LOGS_GB = 0.50
# Each customer managed key, $1/month; with automatic rotation each new backing key adds $1/month (from the
# first rotation, a year on; https://aws.amazon.com/kms/pricing/). Requests: 20,000 a month are free.
KMS_KEY_MONTH = 1.00

# CloudWatch pricing (https://aws.amazon.com/cloudwatch/pricing/): Container Insights' metrics are billed as
# custom metrics (first 10,000: $0.30 per metric-month) and its performance log events as log ingestion
# ("Monitor Amazon ECS containers using Container Insights", ECS developer guide).
CUSTOM_METRIC_MONTH = 0.30

ASSUMED_LOG_GB_PER_TASK_MONTH = 0.5  # gunicorn access log of a small site
ASSUMED_IMAGE_GB = 0.15  # the site's image; the lifecycle rule keeps untagged ones to 1
# Container Insights (standard level) on one cluster with one service: about 16 metrics by ClusterName and
# 14 by ClusterName and ServiceName (CloudWatch user guide, "Amazon ECS Container Insights metrics"), and a
# task and a container performance event (about 1 KB each) per task and minute, about 0.1 GB a month.
ASSUMED_CONTAINER_INSIGHTS_METRICS = 30
ASSUMED_PERFORMANCE_LOG_GB_PER_TASK_MONTH = 0.1
ASSUMED_REJECTED_GB_MONTH = 0.2  # rejected traffic of a small public site: mostly the internet's port scans


@dataclass(frozen=True)
class CostLine:
    item: str
    monthly_usd: float
    basis: str


# A domain (deployer/steps/certificates.py, dns.py): ACM's public certificates cost nothing (only exportable
# ones do, and the stack's are not: https://aws.amazon.com/certificate-manager/pricing/); Route 53 answers
# queries for alias records that point at an ELB load balancer for free, and the hosted zone ($0.50 a month)
# is the user's, not the stack's (https://aws.amazon.com/route53/pricing/). The TLS listener's traffic is
# metered in TLS NLCUs, apart from the TCP ones (https://aws.amazon.com/elasticloadbalancing/pricing/, "Network
# Load Balancer": an NLCU is measured per protocol): one more NLCU-hour for a small site.


def estimate(settings: Settings) -> list[CostLine]:
    return [*_base(settings), *_https(settings), *_logging(settings)]


def _https(settings: Settings) -> list[CostLine]:
    if not settings.https:
        return []
    lines = [
        CostLine(
            "NLB TLS listener",
            NLB_LCU_HOUR * HOURS_PER_MONTH,
            f"{HOURS_PER_MONTH} h x 1 TLS NLCU x ${NLB_LCU_HOUR}/h (TLS traffic is metered apart from TCP)",
        )
    ]
    if settings.managed_dns:
        lines.append(
            CostLine(
                "ACM certificate and Route 53 records",
                0.0,
                "public certificates are free; alias queries to the NLB are free; the hosted zone "
                "($0.50/month) is yours, not the stack's",
            )
        )
    return lines


def _logging(settings: Settings) -> list[CostLine]:
    """The flow logs (`flow_logs`) and the stack's own KMS key (`log_kms_key = "create"`)."""
    lines: list[CostLine] = []
    if settings.flow_logs:
        lines.append(
            CostLine(
                "VPC flow logs (rejected traffic)",
                ASSUMED_REJECTED_GB_MONTH * (FLOW_LOGS_GB + LOGS_STORE_GB_MONTH),
                f"assumes {ASSUMED_REJECTED_GB_MONTH:g} GB/month delivered x ${FLOW_LOGS_GB}/GB (+ storage)",
            )
        )
    if settings.log_kms_key == CREATE_LOG_KEY:
        lines.append(
            CostLine(
                "KMS key for the logs",
                KMS_KEY_MONTH,
                f"1 key x ${KMS_KEY_MONTH:.2f}/month (+ $1/month per yearly rotation); free once pending deletion",
            )
        )
    return lines


def _base(settings: Settings) -> list[CostLine]:
    tasks = settings.desired_count
    vcpu = settings.cpu / 1024
    memory_gb = settings.memory / 1024
    zones = 2  # one NLB node, hence one public address, per subnet
    log_gb = ASSUMED_LOG_GB_PER_TASK_MONTH * tasks
    private = settings.network == "private"
    # Private tasks have no public address; the NAT gateway's Elastic IP is one.
    addresses, whose = (
        (zones + 1, f"{zones} NLB nodes + 1 NAT gateway")
        if private
        else (
            tasks + zones,
            f"{tasks} task(s) + {zones} NLB nodes",
        )
    )
    lines = [
        CostLine(
            "Network Load Balancer",
            (NLB_HOUR + NLB_LCU_HOUR) * HOURS_PER_MONTH,
            f"{HOURS_PER_MONTH} h x (${NLB_HOUR}/h + 1 NLCU x ${NLB_LCU_HOUR}/h)",
        ),
        CostLine(
            "Fargate vCPU",
            tasks * vcpu * FARGATE_VCPU_HOUR * HOURS_PER_MONTH,
            f"{tasks} task(s) x {vcpu:g} vCPU x ${FARGATE_VCPU_HOUR}/h",
        ),
        CostLine(
            "Fargate memory",
            tasks * memory_gb * FARGATE_GB_HOUR * HOURS_PER_MONTH,
            f"{tasks} task(s) x {memory_gb:g} GB x ${FARGATE_GB_HOUR}/h",
        ),
        CostLine(
            "Public IPv4 addresses",
            addresses * PUBLIC_IPV4_HOUR * HOURS_PER_MONTH,
            f"{whose} x ${PUBLIC_IPV4_HOUR}/h",
        ),
        *_nat_gateway(tasks, private),
        CostLine(
            "CloudWatch Logs",
            log_gb * (LOGS_INGEST_GB + LOGS_STORE_GB_MONTH),
            f"assumes {log_gb:g} GB/month ingested x ${LOGS_INGEST_GB}/GB (+ storage)",
        ),
        CostLine(
            "ECR storage",
            ASSUMED_IMAGE_GB * ECR_GB_MONTH,
            f"assumes {ASSUMED_IMAGE_GB} GB of images x ${ECR_GB_MONTH}/GB-month",
        ),
    ]
    if settings.container_insights:
        lines.append(container_insights(tasks))
    return lines


def container_insights(tasks: int) -> CostLine:
    performance_gb = ASSUMED_PERFORMANCE_LOG_GB_PER_TASK_MONTH * tasks
    return CostLine(
        "Container Insights",
        ASSUMED_CONTAINER_INSIGHTS_METRICS * CUSTOM_METRIC_MONTH + performance_gb * LOGS_INGEST_GB,
        f"assumes {ASSUMED_CONTAINER_INSIGHTS_METRICS} metrics x ${CUSTOM_METRIC_MONTH}/month + "
        f"{performance_gb:g} GB of performance events x ${LOGS_INGEST_GB}/GB",
    )


def _nat_gateway(tasks: int, private: bool) -> list[CostLine]:
    if not private:
        return []
    nat_gb = ASSUMED_NAT_GB_PER_TASK_MONTH * tasks
    return [
        CostLine(
            "NAT gateway",
            NAT_GATEWAY_HOUR * HOURS_PER_MONTH + nat_gb * NAT_GATEWAY_GB,
            f"{HOURS_PER_MONTH} h x ${NAT_GATEWAY_HOUR}/h + assumes {nat_gb:g} GB x ${NAT_GATEWAY_GB}/GB processed",
        )
    ]


def total(lines: list[CostLine]) -> float:
    return sum(line.monthly_usd for line in lines)

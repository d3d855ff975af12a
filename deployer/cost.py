"""An estimate of what the stack costs per month, for the plan (`provision.py --dry-run`).

It is an estimate: on-demand list prices for us-east-1 (Linux/X86_64 Fargate), taken
from the AWS pricing pages for Elastic Load Balancing, Fargate, VPC public IPv4
addresses and NAT gateways, CloudWatch (Logs, alarms, and metrics for Container Insights) and ECR on
2026-11-01. Other regions cost somewhat more; data transfer, free tiers, savings plans and taxes
are left out. Usage-based items
assume a small site (stated with each line).

With autoscaling (`Settings.autoscaling`) the lines that grow with the number of tasks are a range:
`monthly_usd` at min_tasks, `monthly_usd_max` at max_tasks; what the month costs depends on how long
the scaler keeps how many tasks. Without it both are the fixed count's figure.
"""

from __future__ import annotations

from collections.abc import Callable
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
# CloudWatch alarms (same page, "Alarms"): a standard-resolution (60 s) alarm costs $0.10 a month per alarm
# metric, and an alarm on a metric math expression is billed for each metric the expression reads. The stack's
# deployment alarms (deployer/steps/alarms.py): UnHealthyHostCount of the target group (one metric) and, with
# Container Insights, running vs desired task count (metric math over two metrics).
ALARM_METRIC_MONTH = 0.10
UNHEALTHY_ALARM_METRICS = 1
SHORTFALL_ALARM_METRICS = 2
# A target-tracking policy's own alarms: Application Auto Scaling creates and manages them, an AlarmHigh to scale
# out and an AlarmLow to scale in (PutScalingPolicy's answer names both: API reference, PutScalingPolicy,
# examples: https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html; user guide:
# https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-target-tracking.html),
# each a standard alarm on one metric, in the account and billed like any other.
ALARMS_PER_TRACKING_POLICY = 2

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
    monthly_usd: float  # at min_tasks: the whole figure for a line that does not grow with the tasks
    basis: str
    monthly_usd_max: float | None = None  # at max_tasks, for a line that grows with them under autoscaling

    @property
    def high(self) -> float:
        """The figure at max_tasks (the only figure of a line without a range)."""
        return self.monthly_usd if self.monthly_usd_max is None else self.monthly_usd_max


class Tasks:
    """The task count the lines are priced at: min_tasks..max_tasks under autoscaling, else the fixed count."""

    def __init__(self, settings: Settings) -> None:
        self.low, self.high = settings.task_range if settings.autoscaling else (settings.task_count,) * 2

    @property
    def scaling(self) -> bool:
        return self.high > self.low

    def text(self, per: float = 1) -> str:
        """'1..4' or '2' (times `per`: GB of logs per task, ...)."""
        low, high = f"{self.low * per:g}", f"{self.high * per:g}"
        return f"{low}..{high}" if self.scaling else low

    def line(self, item: str, monthly: Callable[[int], float], basis: str) -> CostLine:
        """A line whose figure is `monthly(tasks)`: at min_tasks and, under autoscaling, at max_tasks."""
        return CostLine(item, monthly(self.low), basis, monthly(self.high) if self.scaling else None)


# A domain (deployer/steps/certificates.py, dns.py): ACM's public certificates cost nothing (only exportable
# ones do, and the stack's are not: https://aws.amazon.com/certificate-manager/pricing/); Route 53 answers
# queries for alias records that point at an ELB load balancer for free, and the hosted zone ($0.50 a month)
# is the user's, not the stack's (https://aws.amazon.com/route53/pricing/). The TLS listener's traffic is
# metered in TLS NLCUs, apart from the TCP ones (https://aws.amazon.com/elasticloadbalancing/pricing/, "Network
# Load Balancer": an NLCU is measured per protocol): one more NLCU-hour for a small site.


def estimate(settings: Settings) -> list[CostLine]:
    return [*_base(settings), *_https(settings), *_logging(settings), *_alarms(settings)]


def _alarms(settings: Settings) -> list[CostLine]:
    """The deployment alarms, and under autoscaling the alarms of the target-tracking policies."""
    metrics = UNHEALTHY_ALARM_METRICS + (SHORTFALL_ALARM_METRICS if settings.container_insights else 0)
    lines = [
        CostLine(
            "Deployment alarms",
            metrics * ALARM_METRIC_MONTH,
            f"{metrics} alarm metric(s) x ${ALARM_METRIC_MONTH:.2f}/month (a metric-math alarm counts each metric "
            "it reads)",
        )
    ]
    if settings.autoscaling:
        policies = 1 + (settings.scale_memory_percent is not None)
        alarms = policies * ALARMS_PER_TRACKING_POLICY
        lines.append(
            CostLine(
                "Scaling policies' alarms",
                alarms * ALARM_METRIC_MONTH,
                f"{policies} target-tracking policy(ies) x {ALARMS_PER_TRACKING_POLICY} alarms made by Application "
                f"Auto Scaling x ${ALARM_METRIC_MONTH:.2f}/month",
            )
        )
    return lines


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
    tasks = Tasks(settings)
    vcpu = settings.cpu / 1024
    memory_gb = settings.memory / 1024
    zones = 2  # one NLB node, hence one public address, per subnet
    private = settings.network == "private"
    lines = [
        CostLine(
            "Network Load Balancer",
            (NLB_HOUR + NLB_LCU_HOUR) * HOURS_PER_MONTH,
            f"{HOURS_PER_MONTH} h x (${NLB_HOUR}/h + 1 NLCU x ${NLB_LCU_HOUR}/h)",
        ),
        tasks.line(
            "Fargate vCPU",
            lambda count: count * vcpu * FARGATE_VCPU_HOUR * HOURS_PER_MONTH,
            f"{tasks.text()} task(s) x {vcpu:g} vCPU x ${FARGATE_VCPU_HOUR}/h",
        ),
        tasks.line(
            "Fargate memory",
            lambda count: count * memory_gb * FARGATE_GB_HOUR * HOURS_PER_MONTH,
            f"{tasks.text()} task(s) x {memory_gb:g} GB x ${FARGATE_GB_HOUR}/h",
        ),
        _addresses(tasks, zones, private),
        *_nat_gateway(tasks, private),
        tasks.line(
            "CloudWatch Logs",
            lambda count: ASSUMED_LOG_GB_PER_TASK_MONTH * count * (LOGS_INGEST_GB + LOGS_STORE_GB_MONTH),
            f"assumes {tasks.text(ASSUMED_LOG_GB_PER_TASK_MONTH)} GB/month ingested x ${LOGS_INGEST_GB}/GB (+ storage)",
        ),
        CostLine(
            "ECR storage",
            ASSUMED_IMAGE_GB * ECR_GB_MONTH,
            f"assumes {ASSUMED_IMAGE_GB} GB of images x ${ECR_GB_MONTH}/GB-month",
        ),
    ]
    if settings.container_insights:
        lines.append(_container_insights(tasks))
    return lines


def _addresses(tasks: Tasks, zones: int, private: bool) -> CostLine:
    """Every public IPv4 address: the NLB's, and each public task's; private tasks have none, and the NAT
    gateway's Elastic IP is one."""
    if private:
        return CostLine(
            "Public IPv4 addresses",
            (zones + 1) * PUBLIC_IPV4_HOUR * HOURS_PER_MONTH,
            f"{zones} NLB nodes + 1 NAT gateway x ${PUBLIC_IPV4_HOUR}/h",
        )
    return tasks.line(
        "Public IPv4 addresses",
        lambda count: (count + zones) * PUBLIC_IPV4_HOUR * HOURS_PER_MONTH,
        f"{tasks.text()} task(s) + {zones} NLB nodes x ${PUBLIC_IPV4_HOUR}/h",
    )


def _container_insights(tasks: Tasks) -> CostLine:
    return tasks.line(
        "Container Insights",
        lambda count: (
            ASSUMED_CONTAINER_INSIGHTS_METRICS * CUSTOM_METRIC_MONTH
            + ASSUMED_PERFORMANCE_LOG_GB_PER_TASK_MONTH * count * LOGS_INGEST_GB
        ),
        f"assumes {ASSUMED_CONTAINER_INSIGHTS_METRICS} metrics x ${CUSTOM_METRIC_MONTH}/month + "
        f"{tasks.text(ASSUMED_PERFORMANCE_LOG_GB_PER_TASK_MONTH)} GB of performance events x ${LOGS_INGEST_GB}/GB",
    )


def _nat_gateway(tasks: Tasks, private: bool) -> list[CostLine]:
    if not private:
        return []
    return [
        tasks.line(
            "NAT gateway",
            lambda count: NAT_GATEWAY_HOUR * HOURS_PER_MONTH + ASSUMED_NAT_GB_PER_TASK_MONTH * count * NAT_GATEWAY_GB,
            f"{HOURS_PER_MONTH} h x ${NAT_GATEWAY_HOUR}/h + assumes {tasks.text(ASSUMED_NAT_GB_PER_TASK_MONTH)} GB x "
            f"${NAT_GATEWAY_GB}/GB processed",
        )
    ]


def total(lines: list[CostLine]) -> float:
    """The month at min_tasks (the whole month without autoscaling)."""
    return sum(line.monthly_usd for line in lines)


def total_range(lines: list[CostLine]) -> tuple[float, float]:
    """The month at min_tasks and at max_tasks; equal without autoscaling."""
    return total(lines), sum(line.high for line in lines)

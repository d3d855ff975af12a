"""The VPC's flow log: rejected traffic, to the stack's log group, through the stack's role.

Only REJECT is captured: it is what a security review asks for (probes of closed ports,
traffic the security groups and network ACL turn away) at a fraction of the ingestion of
ALL. A flow log cannot be changed in place (no ModifyFlowLogs for these properties), so a
flow log that differs from the settings is deleted and made again.

EC2 deletes a VPC's flow logs with the VPC, but moto leaves them behind: teardown deletes
the flow log explicitly, before the VPC (its step comes after the VPC's in deployer/stack.py),
so no emulator or partial teardown can leave one writing to a deleted group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from deployer.errors import DeployerError
from deployer.retry import FLOW_LOGS_ROLE_NOT_ASSUMABLE
from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext, single

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FlowLogTypeDef, UnsuccessfulItemTypeDef

TRAFFIC: Final = "REJECT"
DESTINATION: Final = "cloud-watch-logs"
GROUP_STEP = "flow-log-group"
ROLE_STEP = "flow-logs-role"
# How long after the role's creation "Unable to assume given IAM role" means "not yet".
FRESH_ROLE_SECONDS = FLOW_LOGS_ROLE_NOT_ASSUMABLE.budget_seconds
GONE = "InvalidFlowLogId.NotFound"


class FlowLogStep(Step["FlowLogTypeDef"]):
    name = "flow-log"
    resource = "VPC flow log"
    needs = ("vpc", GROUP_STEP, ROLE_STEP)  # what it logs, where to, and the role that writes there

    def wanted(self, settings: Settings) -> bool:
        return settings.flow_logs

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[FlowLogTypeDef] | None:
        found = absent_if(lambda: ctx.clients.ec2.describe_flow_logs(FlowLogIds=[ids["id"]])["FlowLogs"], GONE)
        return _existing(found[0]) if found else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[FlowLogTypeDef] | None:
        vpc = ctx.recorded("vpc")
        if vpc is None:
            return None  # no VPC yet: no flow log of it
        # The request member is `Filter` (botocore's ec2 2016-11-15 model, DescribeFlowLogsRequest; the
        # API reference's "Filter.N"); mypy-boto3-ec2 spells it `Filters`, which botocore refuses.
        answer = ctx.clients.ec2.describe_flow_logs(  # type: ignore[call-arg]
            Filter=[{"Name": "resource-id", "Values": [vpc["id"]]}, *tags.ec2_tag_filters(ctx.settings, self.name)]
        )
        found = single(answer["FlowLogs"], self.resource, lambda log: log.get("FlowLogId", ""))
        return _existing(found) if found else None

    def create(self, ctx: StepContext) -> Ids:
        vpc_id = ctx.ids("vpc")["id"]
        group = ctx.ids(GROUP_STEP)["name"]
        role = ctx.ids(ROLE_STEP)["arn"]

        def call() -> list[str]:
            answer = ctx.clients.ec2.create_flow_logs(
                ResourceIds=[vpc_id],
                ResourceType="VPC",
                TrafficType=TRAFFIC,
                LogDestinationType=DESTINATION,
                LogGroupName=group,
                DeliverLogsPermissionArn=role,
                TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "vpc-flow-log"),
                ClientToken=ctx.client_token(self.name, vpc_id, role),
            )
            _refuse_unsuccessful(answer.get("Unsuccessful", []), "CreateFlowLogs")
            return answer["FlowLogIds"]

        # Retried only right after this run created the role: for an older role the answer is final.
        rules = (FLOW_LOGS_ROLE_NOT_ASSUMABLE,) if ctx.fresh(FRESH_ROLE_SECONDS, ROLE_STEP) else ()
        (flow_log_id,) = ctx.retry(call, *rules)
        return {"id": flow_log_id, "vpc_id": vpc_id}

    def converge(self, ctx: StepContext, existing: Existing[FlowLogTypeDef]) -> Converged:
        live = existing.live
        wanted = {
            "ResourceId": ctx.ids("vpc")["id"],
            "TrafficType": TRAFFIC,
            "LogDestinationType": DESTINATION,
            "LogGroupName": ctx.ids(GROUP_STEP)["name"],
            "DeliverLogsPermissionArn": ctx.ids(ROLE_STEP)["arn"],
        }
        differs = [key for key, value in wanted.items() if live.get(key) != value]
        if not differs:
            return Converged(existing.ids)
        changes: list[str] = []
        replaced: dict[str, Ids] = {}

        def replace() -> None:
            self.delete(ctx, existing.ids)
            ctx.ledger.forget(self.name)
            replaced["ids"] = self.create(ctx)

        ctx.change(changes, f"{', '.join(differs)} differed: flow log replaced", replace)
        return Converged(replaced.get("ids", existing.ids), changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        answer = absent_if(lambda: ctx.clients.ec2.delete_flow_logs(FlowLogIds=[ids["id"]]), GONE)
        items = answer.get("Unsuccessful", []) if answer else []
        failed = [item for item in items if item.get("Error", {}).get("Code") != GONE]
        _refuse_unsuccessful(failed, "DeleteFlowLogs")


def _existing(log: FlowLogTypeDef) -> Existing[FlowLogTypeDef]:
    return Existing({"id": log.get("FlowLogId", ""), "vpc_id": log.get("ResourceId", "")}, log)


def _refuse_unsuccessful(items: list[UnsuccessfulItemTypeDef], operation: str) -> None:
    """CreateFlowLogs and DeleteFlowLogs answer 200 with per-resource failures in `Unsuccessful`
    (EC2 API reference, CreateFlowLogs: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateFlowLogs.html)."""
    if not items:
        return
    errors = "; ".join(
        f"{item.get('ResourceId', '')}: {error.get('Code', '')} {error.get('Message', '')}"
        for item in items
        for error in (item.get("Error", {}),)
    )
    raise DeployerError(
        f"AWS refused the flow log ({operation}): {errors}",
        where=f"{operation}, the stack's VPC flow log",
        todo="Fix what AWS names (the role's trust policy, the log group), or set flow_logs = false, and run again",
    )

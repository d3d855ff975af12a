"""Command-line entry points behind provision.py, teardown.py, status.py and logs.py.

Each command parses its flags, builds one `Output` from them (the only thing that
writes to the terminal), assembles its collaborators (settings, state file, clients,
the step context) once, and hands over to the runner or to the read-only views.
`run_command` is the one wrapper: a `DeployerError` becomes its one-paragraph
message on stderr and its exit code, Ctrl-C exits 130, and nothing else is caught.
AWS calls live in the steps and in deployer/observe.py (status and logs read there, and
show through deployer/views.py), never here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from deployer import cost, local, observe, policy, runner, views
from deployer.clients import Connection, connect
from deployer.errors import EXIT_INTERRUPTED, DeployerError, SettingsError
from deployer.images import ImageBuilder
from deployer.ledger import Ledger
from deployer.output import Output
from deployer.parallel import Scheduler
from deployer.probe import Probe
from deployer.s3state import S3StateFile, is_s3_url, parse_s3_url
from deployer.settings import (
    CONFIG_FILE_NAME,
    DEFAULT_PARALLELISM,
    MAX_PARALLELISM,
    Settings,
    check_certificate_arn,
    check_log_kms_key,
    configured_value,
    load_settings,
    validate_stack,
)
from deployer.state import State, StateFile, StateStore, check_identity
from deployer.steps.base import StepContext
from deployer.steps.ecs import TaskDefinitionStep

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STATE_FILE = "state.json"

Command = Callable[[argparse.Namespace, Output], int]


def provision_main(argv: Sequence[str] | None = None) -> int:
    return run_command(_provision, provision_parser(), argv)


def teardown_main(argv: Sequence[str] | None = None) -> int:
    return run_command(_teardown, teardown_parser(), argv)


def status_main(argv: Sequence[str] | None = None, *, probe: Probe | None = None) -> int:
    """`probe` answers for the site URL; tests pass a fake or aim it at a loopback server."""
    return run_command(
        lambda args, output: views.show_status(*_reader(args, output), output, probe), status_parser(), argv
    )


def logs_main(
    argv: Sequence[str] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> int:
    """`sleep` runs between --follow polls, so a test can add events there and end the loop."""

    def command(args: argparse.Namespace, output: Output) -> int:
        store, aws = _reader(args, output)
        return views.show_logs(store, aws, args.since, args.follow, output, sleep=sleep, now=now)

    return run_command(command, logs_parser(), argv, interrupted=0)  # Ctrl-C is how --follow ends


def exit_process(code: int) -> NoReturn:
    """End a script with `code`. After Ctrl-C, skip the interpreter's clean-up (seconds of garbage
    collection on a busy machine) and leave at once: the state is saved and the lock released by then,
    and a background image build is abandoned by design (nothing is pushed after an interrupt)."""
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run_command(
    command: Command, parser: argparse.ArgumentParser, argv: Sequence[str] | None, interrupted: int = EXIT_INTERRUPTED
) -> int:
    """Parse, build the output, run; turn the expected failures into a message and an exit code."""
    args = parser.parse_args(argv)
    output = Output("quiet" if args.quiet else args.output, verbose=getattr(args, "verbose", False))
    try:
        return command(args, output)
    except DeployerError as exc:
        output.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        if interrupted:
            output.error("interrupted; the state file is saved. Run the same command again to continue.")
        return interrupted
    except BrokenPipeError:
        # The reader left (`logs.py | head`): stop quietly, and keep Python's final flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# ---------------------------------------------------------------- parsers


def provision_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provision.py",
        description="Deploy the website to ECS Fargate behind a Network Load Balancer; re-running changes "
        "only what differs.",
    )
    parser.add_argument("--stack", help="stack name, the prefix of every resource name")
    parser.add_argument("--region", help="AWS region (default: the standard AWS configuration)")
    parser.add_argument(
        "--config", type=Path, default=None, help=f"settings file (default: {CONFIG_FILE_NAME} beside provision.py)"
    )
    parser.add_argument("--image", help="deploy this existing image URI (no build, no push)")
    parser.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a build argument for the site's image, as with docker build (repeatable)",
    )
    parser.add_argument(
        "--domain",
        help="serve the site over HTTPS on this name (e.g. www.example.com): a certificate, its DNS validation "
        "and an alias record in the account's Route 53 hosted zone for it; port 80 redirects to https "
        "(deploy.toml: domain)",
    )
    parser.add_argument(
        "--min-tasks",
        type=int,
        help="the fewest tasks the service runs; with --max-tasks above it, ECS service autoscaling on average CPU "
        "(deploy.toml: min_tasks; default desired_count)",
    )
    parser.add_argument(
        "--max-tasks",
        type=int,
        help="the most tasks autoscaling may run (deploy.toml: max_tasks; equal to --min-tasks: no autoscaling)",
    )
    parser.add_argument(
        "--certificate-arn",
        help="with --domain: use this ISSUED ACM certificate of the stack's region and touch no hosted zone "
        "(DNS managed elsewhere: the record to create is printed; deploy.toml: certificate_arn)",
    )
    parser.add_argument(
        "--allow-broad-task-role",
        action="store_true",
        default=None,  # not given: deploy.toml's allow_broad_task_role decides
        help="accept an administrative policy (AdministratorAccess, PowerUserAccess, *FullAccess) in "
        "task_role_policy_arns: the site's code, and anyone who takes it over, gets those rights",
    )
    parser.add_argument(
        "--rollback",
        action="store_true",
        help="return the service to the last revision that was verified serving (by digest, nothing is built), "
        "and verify it",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be created, updated (with the differences) or left unchanged, and the estimated "
        "monthly cost; makes read calls only",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return once every resource exists, without waiting for the load balancer "
        "and the service (an emulator never runs tasks)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also show the Docker engine's raw build and push output"
    )
    parser.add_argument(
        "--print-policy",
        action="store_true",
        help="print the IAM policy (JSON) this stack's provision, redeploy, rollback, status, logs and teardown "
        "need, scoped to its names and tags; changes nothing (one read call: sts:GetCallerIdentity)",
    )
    parser.add_argument(
        "--import-state",
        type=Path,
        metavar="PATH",
        help="with an s3:// --state-file: move this local state file into S3 (once: refused if the key exists), "
        "then stop",
    )
    _lock_flags(parser)
    _parallelism_flag(parser)
    _local_flag(parser)
    parser.add_argument(
        "--local-port",
        type=int,
        default=None,
        help=f"with --local: the site's port on 127.0.0.1 (default: the recorded one, else {local.DEFAULT_PORT})",
    )
    _common_flags(parser, local_default=True)
    return parser


def teardown_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teardown.py", description="Delete every resource the state file records, in the stack's order reversed."
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="find every resource of the stack by its tags and names (for a lost state file) and delete them",
    )
    parser.add_argument("--stack", help="with --sweep: the stack to find (default: the state file's)")
    parser.add_argument("--region", help="with --sweep: the region to search (default: the state file's or AWS's)")
    parser.add_argument("--dry-run", action="store_true", help="with --sweep: only list what would be deleted")
    _lock_flags(parser)
    _parallelism_flag(parser)
    _local_flag(parser)
    _common_flags(parser, local_default=True)
    return parser


def status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="status.py",
        description="Show every recorded resource and how the service, its targets, the load balancer "
        "and the site are doing; read-only.",
    )
    _common_flags(parser, local_default=False)
    return parser


def logs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logs.py", description="Print the service's CloudWatch log events (timestamp, stream, message)."
    )
    parser.add_argument(
        "--since",
        default=observe.DEFAULT_SINCE,
        help="how far back: a duration such as 30s, 10m, 2h, 1d, 1w, or an ISO time such as "
        f"2025-01-31T09:00 (UTC unless it names an offset); default {observe.DEFAULT_SINCE}",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help=f"keep printing new events (every {observe.FOLLOW_SECONDS:.0f} s) until Ctrl-C; with --output json, "
        "one JSON object per line",
    )
    _common_flags(parser, local_default=False)
    return parser


def _parallelism_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parallelism",
        type=int,
        metavar="N",
        help=f"run at most N steps at once (deploy.toml: parallelism; default {DEFAULT_PARALLELISM}, "
        f"1 to {MAX_PARALLELISM}; 1: one after another)",
    )


def _lock_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for another run holding the state's lock (default 0: refuse at once)",
    )
    parser.add_argument(
        "--unlock",
        action="store_true",
        help="show the state's lock, ask, and remove it (for a run known to be gone); changes nothing else",
    )
    if parser.prog == "provision.py":  # teardown.py has its own --yes
        parser.add_argument("--yes", action="store_true", help="with --unlock: do not ask")


def _local_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local",
        action="store_true",
        help=f"against a local AWS emulator, with the site run in the local Docker engine "
        f"(state: ./{local.LOCAL_STATE_FILE})",
    )


def _common_flags(parser: argparse.ArgumentParser, *, local_default: bool) -> None:
    """--state-file, --output and --quiet: the same words and meaning in every command."""
    default = f"./{DEFAULT_STATE_FILE}" + (f", with --local ./{local.LOCAL_STATE_FILE}" if local_default else "")
    parser.add_argument(
        "--state-file",
        default=None,
        help=f"where identifiers are recorded: a path, or s3://BUCKET/KEY to share it (default: deploy.toml's "
        f"state_file, else {default})",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="json: stdout holds one JSON document (the result); progress goes to stderr",
    )
    parser.add_argument("--quiet", action="store_true", help="print errors only (provision: and the site URL)")


def _state_location(args: argparse.Namespace) -> str:
    """--state-file, else deploy.toml's state_file, else the default file."""
    if args.state_file:
        return str(args.state_file)
    config = getattr(args, "config", None) or PROJECT_DIR / CONFIG_FILE_NAME
    configured = configured_value(config, "state_file")
    if configured:
        return configured
    return local.LOCAL_STATE_FILE if getattr(args, "local", False) else DEFAULT_STATE_FILE


def open_store(
    args: argparse.Namespace, output: Output, region: Callable[[], str | None], *, create_bucket: bool = False
) -> tuple[StateStore, Connection | None]:
    """The state's store; for an S3 state also the connection it made (reused by the run, so one STS call).

    A malformed s3:// URL, and an S3 state with --local (whose emulator lives beside a local state file),
    are refused before any AWS call."""
    location = _state_location(args)
    timeout = getattr(args, "lock_timeout", 0.0)
    if timeout < 0:
        raise SettingsError(
            f"--lock-timeout {timeout:g} is negative", where="command line", todo="Pass 0 or more seconds"
        )
    if not is_s3_url(location):
        return StateFile(Path(location), lock_timeout=timeout), None
    s3_location = parse_s3_url(location, where="--state-file or deploy.toml's state_file")
    if getattr(args, "local", False):
        raise SettingsError(
            "--local keeps its state beside its emulator, on this machine: an s3:// state does not apply",
            where="--state-file or deploy.toml's state_file, with --local",
            todo="Leave out --state-file for --local (or pass a local path)",
        )
    aws = connect(region())
    store = S3StateFile(
        s3_location,
        aws.clients.s3,
        aws.account_id,
        aws.clients.region,
        output.line,
        create_bucket=create_bucket,
        lock_timeout=timeout,
    )
    return store, aws


def _connection_for(region: str | None, reusable: Connection | None) -> Connection:
    """`reusable` (the S3 state's connection) when it serves `region` (None: whatever the chain gives), else a new
    connection: a run in the state bucket's region makes one STS call, not two."""
    if reusable is not None and (region is None or region == reusable.clients.region):
        return reusable
    return connect(region)


def _reader(args: argparse.Namespace, output: Output) -> tuple[StateStore, Connection | None]:
    """status.py's and logs.py's store: they read without the lock, in deploy.toml's region (or AWS's)."""
    return open_store(args, output, lambda: configured_value(PROJECT_DIR / CONFIG_FILE_NAME, "region"))


def open_context(
    state_file: StateStore,
    settings: Settings,
    state: State | None,
    output: Output,
    *,
    dry_run: bool = False,
    images: ImageBuilder | None = None,
    local_mode: bool = False,
    aws: Connection | None = None,
) -> StepContext:
    """Connect (or reuse the S3 state's connection when it is in the stack's region), check that the state belongs
    to this stack, region and account, and build the run's context.

    A dry run gets a scratch ledger (nothing it records reaches the disk)."""
    aws = _connection_for(settings.region, aws)
    if state is None:
        state = State(stack=settings.stack, region=aws.clients.region, account_id=aws.account_id)
    check_identity(state, settings.stack, aws.clients.region, aws.account_id, state_file.where)
    check_log_kms_key(settings.log_kms_key, aws.partition, aws.clients.region)  # the region may come from AWS config
    check_certificate_arn(settings.certificate_arn, aws.partition, aws.clients.region, aws.account_id)
    ledger = Ledger.scratch(state) if dry_run else Ledger(state, state_file.save)
    return StepContext(
        clients=aws.clients,
        settings=settings,
        ledger=ledger,
        account_id=aws.account_id,
        partition=aws.partition,
        output=output,
        images=images,
        dry_run=dry_run,
        local=local_mode,
    )


# ---------------------------------------------------------------- provision


def _provision(args: argparse.Namespace, output: Output) -> int:
    _check_provision_flags(args)
    writes = not (args.dry_run or args.print_policy)
    store, aws = open_store(args, output, lambda: _settings(args, None).region, create_bucket=writes)
    if args.unlock:
        return _unlock(args, store, output)
    if args.import_state is not None:
        return _import_state(args.import_state, store, output)
    if args.print_policy:  # no lock, no emulator, no state written: it only reads who the credentials are
        return _print_policy(args, store, aws, output)
    if args.dry_run:  # no lock and no emulator start: a plan changes nothing
        return _plan(args, store, aws, output)
    with store.locked("provision.py", output.line):
        return _provision_locked(args, store, aws, output)


def _print_policy(args: argparse.Namespace, store: StateStore, aws: Connection | None, output: Output) -> int:
    """The identity policy for these settings on stdout (whatever --output says): a JSON array of
    documents, each small enough for one managed policy (see policy.documents). With a state file, what
    removing its resources that the settings no longer want needs is in it too (e.g. a domain's records);
    with an S3 state, the S3 actions on its bucket, object and lock."""
    state = store.load()
    settings = _settings(args, state)
    aws = _connection_for(settings.region, aws)
    documents = policy.documents(settings, aws.partition, aws.clients.region, aws.account_id, state)
    text = json.dumps(documents, indent=2)
    output.result(documents, [text], quiet=text)
    return 0


def _unlock(args: argparse.Namespace, store: StateStore, output: Output) -> int:
    """--unlock: show the lock, ask (unless --yes), remove it."""
    message = store.unlock(lambda question: args.yes or output.confirm(question, where=f"--unlock of {store.where}"))
    output.result({"unlock": message}, [f"Unlock: {message}."])
    return 0


def _import_state(path: Path, store: StateStore, output: Output) -> int:
    """--import-state: a local state becomes the S3 state's first version, once; the local file is renamed
    `<name>.imported` so that nobody goes on deploying from it."""
    if not isinstance(store, S3StateFile):
        raise SettingsError(
            "--import-state moves a local state into S3: it needs an s3:// --state-file",
            where="provision.py --import-state",
            todo="Pass --state-file s3://BUCKET/KEY with it",
        )
    source = StateFile(path)
    state = source.load()
    if state is None:
        raise SettingsError(
            "There is no state file to import", where=str(path), todo="Pass the path of the stack's state.json"
        )
    check_identity(state, state.stack, store.region, store.account_id, str(path))
    with source.locked("provision.py --import-state", output.line), store.locked("provision.py", output.line):
        store.import_state(state)
        moved = path.with_name(path.name + ".imported")
        path.replace(moved)
    lines = [
        f"Imported {path} into {store.where} ({len(state.resources)} resources); the local file is now {moved}.",
        f"From now on pass --state-file {store.where} (or set state_file in deploy.toml).",
    ]
    output.result({"imported": str(path), "state_file": store.where, "renamed": str(moved)}, lines)
    return 0


def _local_path(store: StateStore) -> Path:
    """--local's state file (open_store refuses an S3 state with --local)."""
    if not isinstance(store, StateFile):
        raise TypeError("--local runs with a local state file")
    return store.path


def _check_provision_flags(args: argparse.Namespace) -> None:
    """Refusals that need no AWS call and no state: before anything starts."""
    if args.local_port is not None and not 1 <= args.local_port <= 65535:
        raise SettingsError(
            f"--local-port {args.local_port} is outside 1-65535", where="command line", todo="Pass a valid TCP port"
        )
    if args.local_port is not None and not args.local:
        raise SettingsError("--local-port only applies to --local", where="command line", todo="Add --local")
    if args.local and args.rollback:
        raise SettingsError(
            "--rollback does not apply to --local", where="command line", todo="Re-run provision.py --local instead"
        )
    if args.rollback and (args.image or args.build_arg or args.dry_run):
        raise SettingsError(
            "--rollback takes no --image, --build-arg or --dry-run",
            where="command line",
            todo="Roll back alone: python provision.py --rollback",
        )


def _provision_locked(args: argparse.Namespace, state_file: StateStore, aws: Connection | None, output: Output) -> int:
    images = ImageBuilder(output)
    state = state_file.load()
    settings = _settings(args, state)
    if args.local:
        if settings.domain is not None:  # before anything starts
            raise SettingsError(
                f"--local serves the site at http://127.0.0.1 and has no DNS or certificates: domain "
                f"'{settings.domain}' applies on AWS only",
                where="--domain or deploy.toml's domain, with --local",
                todo="Leave out --domain (or use a --config without domain) for --local",
            )
        local.require_engine(images)  # nothing is started without an engine
        local.use_emulator(local.ensure_emulator(_local_path(state_file), output.line), args.region)
    if args.rollback:
        return _rollback(state_file, state, settings, aws, output)
    if settings.image is None:
        images.client()  # no engine: say so before anything is created
    ctx = open_context(state_file, settings, state, output, images=images, local_mode=args.local, aws=aws)
    output.line(f"Provisioning stack '{settings.stack}' in {ctx.clients.region} (account {ctx.account_id})")
    # Local: no AWS waits (the emulator runs no tasks, and its load balancer's address is not ours to probe).
    scheduler = Scheduler(slots=ctx.settings.parallelism)
    started = time.monotonic()
    report = runner.provision(ctx, wait=not args.no_wait and not args.local, scheduler=scheduler)
    wall = time.monotonic() - started
    if args.local:
        report.outputs["url"] = _run_local_site(ctx, images, args)
    timings = report.timings()
    output.line(  # steps run at once: their seconds add up to more than the run took
        "Time by phase: "
        + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in timings.items())
        + f" (steps {sum(timings.values()):.1f}s, overlapping; the run {wall:.1f}s)"
    )
    url = report.outputs["url"]
    lines = [f"Site URL: {url}"]
    if runner.DNS_RECORD in report.outputs:
        lines.insert(
            0, f"Create this DNS record where the domain's DNS is managed: {report.outputs[runner.DNS_RECORD]}"
        )
    output.result(report.to_json(), lines, quiet=url)
    return 0


def _run_local_site(ctx: StepContext, images: ImageBuilder, args: argparse.Namespace) -> str:
    """Run the registered task definition's container in the local engine; record and return its URL."""
    recorded = ctx.state.outputs.get("local_port", "")
    port = args.local_port or (int(recorded) if recorded.isdigit() else local.DEFAULT_PORT)
    definition = TaskDefinitionStep().registered(ctx)
    site = local.run_site(
        images.client(), definition, stack=ctx.settings.stack, port=port, wait=not args.no_wait, say=ctx.say
    )
    ctx.ledger.set_outputs(
        {
            **ctx.state.outputs,
            "local_url": site.url,
            "local_port": str(port),
            "local_container": local.container_name(ctx.settings.stack),
            "local_container_id": site.container_id,
        }
    )
    return site.url


def _rollback(
    state_file: StateStore, state: State | None, settings: Settings, aws: Connection | None, output: Output
) -> int:
    if state is None or state.get("service") is None:
        raise DeployerError(
            "There is no deployed service to roll back",
            where=state_file.where,
            todo="Deploy with provision.py first",
        )
    ctx = open_context(state_file, settings, state, output, aws=aws)
    report = runner.rollback(ctx)
    revision = report.outputs["serving_revision"].rsplit("/", 1)[-1]
    url = report.outputs["url"]
    output.result(report.to_json(), [f"Rolled back; serving {revision} at {url}"], quiet=url)
    return 0


def _plan(args: argparse.Namespace, state_file: StateStore, aws: Connection | None, output: Output) -> int:
    if args.local:
        emulator = local.running_emulator(_local_path(state_file))
        if emulator is None:  # nothing local exists yet, and a plan starts nothing
            raise DeployerError(
                "The local emulator is not running, so there is nothing to compare the plan with",
                where=f"--local --dry-run ({state_file.where})",
                todo="Run python provision.py --local: on an empty emulator every step is a create",
            )
        local.use_emulator(emulator, args.region)
    state = state_file.load()
    settings = _settings(args, state)
    ctx = open_context(
        state_file, settings, state, output, dry_run=True, images=ImageBuilder(output), local_mode=args.local, aws=aws
    )
    output.line(
        f"Plan for stack '{settings.stack}' in {ctx.clients.region} (account {ctx.account_id}); "
        "nothing will be changed:"
    )
    report = runner.plan(ctx)
    lines = cost.estimate(settings)
    document: dict[str, Any] = {
        "plan": [{"step": s.step, "outcome": s.outcome, "detail": s.detail} for s in report.steps],
        "cost": views.cost_document(settings, lines),
    }
    output.result(document, views.render_cost(settings, lines))
    return 0


def _settings(args: argparse.Namespace, state: State | None) -> Settings:
    """Flags over deploy.toml over the state's stack and region over defaults."""
    if args.config is not None and not args.config.is_file():
        raise SettingsError(
            "The settings file given with --config does not exist",
            where=str(args.config),
            todo=f"Check the path, or leave out --config to use {CONFIG_FILE_NAME} beside provision.py if present",
        )
    config = args.config if args.config is not None else PROJECT_DIR / CONFIG_FILE_NAME
    recorded = {"stack": state.stack, "region": state.region} if state else {}
    flags = {
        "stack": args.stack,
        "region": args.region,
        "image": args.image,
        "build_args": _build_args(args.build_arg),
        "allow_broad_task_role": args.allow_broad_task_role,
        "domain": getattr(args, "domain", None),
        "certificate_arn": getattr(args, "certificate_arn", None),
        "min_tasks": getattr(args, "min_tasks", None),
        "max_tasks": getattr(args, "max_tasks", None),
        "state_file": args.state_file,
        "parallelism": getattr(args, "parallelism", None),
    }
    return load_settings(config, flags, fallback=recorded)


def _build_args(pairs: list[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SettingsError(
                f"--build-arg '{pair}' is not KEY=VALUE", where="command line", todo="Write it as --build-arg KEY=VALUE"
            )
        parsed[key] = value
    return parsed


# ---------------------------------------------------------------- teardown


def _teardown(args: argparse.Namespace, output: Output) -> int:
    if not args.sweep and (args.stack or args.region or args.dry_run):
        raise SettingsError(
            "--stack, --region and --dry-run only apply to --sweep",
            where="teardown.py's command line",
            todo="Add --sweep to find resources by their tags, or leave them out to delete what the state file records",
        )
    if args.local and args.sweep:
        raise SettingsError(
            "--sweep does not apply to --local",
            where="teardown.py's command line",
            todo="Run teardown.py --local: it removes the container and stops the emulator with everything in it",
        )
    region = args.region or configured_value(PROJECT_DIR / CONFIG_FILE_NAME, "region")
    state_file, aws = open_store(args, output, lambda: region)
    if args.unlock:
        return _unlock(args, state_file, output)
    with state_file.locked("teardown.py", output.line):
        if args.local:
            return _teardown_local(state_file, output)
        if args.sweep:
            return _sweep(args, state_file, aws, output)
        return _teardown_recorded(args, state_file, aws, output)


def _teardown_recorded(args: argparse.Namespace, state_file: StateStore, aws: Connection | None, output: Output) -> int:
    state = state_file.load()
    if state is None:  # a second teardown finds nothing, and that is not an error
        return _nothing_deleted(
            output,
            f"there is no state file at {state_file.where} (if the stack exists, pass --state-file, or find it by "
            "its tags with --sweep --stack NAME)",
        )
    if not state.resources:
        state_file.delete()
        return _nothing_deleted(output, f"{state_file.where} records no resources; it is removed")
    if not args.yes:
        _confirm(output, state, state_file.where)
    ctx = open_context(state_file, _teardown_settings(args, state), state, output, aws=aws)
    return _delete_everything(ctx, state_file, output)


def _nothing_deleted(output: Output, why: str) -> int:
    output.result({"deleted": [], "message": f"Nothing to tear down: {why}"}, [f"Nothing to tear down: {why}."])
    return 0


def _teardown_local(state_file: StateStore, output: Output) -> int:
    """Container, then the recorded resources (from the emulator, if it still runs), then the emulator.

    No confirmation: everything local mode creates is local and disposable.
    """
    state = state_file.load()
    if state is not None:
        try:
            local.remove_site(local.require_engine(ImageBuilder(output)), state.stack, output.line)
        except DeployerError as exc:
            output.warn(f"the local container was not checked: {exc.message}")
    emulator = local.running_emulator(_local_path(state_file))
    code = 0
    if state is not None and state.resources and emulator is not None:
        local.use_emulator(emulator, state.region)
        ctx = open_context(state_file, Settings(stack=state.stack, region=state.region), state, output)
        code = _delete_everything(ctx, state_file, output)
    elif state is not None:
        state_file.delete()
        code = _nothing_deleted(output, "the local AWS emulator is not running, and the resources it held went with it")
    else:
        code = _nothing_deleted(output, f"{state_file.where} records no resources")
    local.stop_emulator(_local_path(state_file), output.line)
    return code


def _sweep(args: argparse.Namespace, state_file: StateStore, aws: Connection | None, output: Output) -> int:
    """Lost state: find every resource of the stack by its tags and names, and delete it in order."""
    recorded = state_file.load()
    stack = args.stack or (recorded.stack if recorded else None)
    if stack is None:
        raise SettingsError(
            "--sweep needs the stack whose resources to find",
            where="teardown.py --sweep without --stack and without a state file",
            todo="Pass --stack NAME (and --region REGION)",
        )
    validate_stack(stack)
    region = args.region or (recorded.region if recorded else None)
    ctx = open_context(state_file, Settings(stack=stack, region=region), recorded, output, aws=aws)
    runner.discover(ctx)
    found = [{"step": record.step, "id": runner.primary(record.ids)} for record in ctx.state.resources]
    if not found:
        return _nothing_deleted(output, f"nothing of stack '{stack}' was found in {ctx.clients.region}")
    output.line(f"Found {len(found)} resources of stack '{stack}' in {ctx.clients.region}:")
    for item in found:
        output.line(f"  {item['step']:<22} {item['id']}")
    if args.dry_run:
        output.result({"found": found, "deleted": []}, ["Dry run: nothing was deleted."])
        return 0
    if not args.yes:
        _confirm(output, ctx.state, state_file.where)
    ctx.ledger.save()
    return _delete_everything(ctx, state_file, output)


def _teardown_settings(args: argparse.Namespace, state: State) -> Settings:
    """Teardown needs only the stack, its region and how many steps may run at once (--parallelism)."""
    if args.parallelism is None:
        return Settings(stack=state.stack, region=state.region)
    if not 1 <= args.parallelism <= MAX_PARALLELISM:
        raise SettingsError(
            f"--parallelism {args.parallelism} is outside 1-{MAX_PARALLELISM}",
            where="command line",
            todo="Use a value in that range",
        )
    return Settings(stack=state.stack, region=state.region, parallelism=args.parallelism)


def _delete_everything(ctx: StepContext, state_file: StateStore, output: Output) -> int:
    output.line(f"Tearing down stack '{ctx.state.stack}' in {ctx.state.region} (account {ctx.account_id})")
    report = runner.teardown(ctx, Scheduler(slots=ctx.settings.parallelism))
    state_file.delete()
    done = f"Done: every recorded resource is deleted and {state_file.where} is removed."
    output.result({"deleted": [vars(line) for line in report.steps], "state_file": state_file.where}, [done])
    return 0


def _confirm(output: Output, state: State, where: str) -> None:
    question = (
        f"Delete all {len(state.resources)} resources of stack '{state.stack}' in {state.region} "
        f"(account {state.account_id})?"
    )
    if not output.confirm(question, where=f"teardown.py with {where}"):
        raise DeployerError(
            "Teardown cancelled; nothing was deleted",
            where="confirmation prompt",
            todo="Run again and type 'yes' to delete",
        )

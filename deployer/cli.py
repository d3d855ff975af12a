"""Command-line entry points behind provision.py and teardown.py.

They parse flags, assemble the pieces (settings, state file, session, clients,
step context) and hand over to the runner. A `DeployerError` becomes its
one-paragraph message on stderr and its exit code; nothing else is caught.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from deployer import cost, local, runner
from deployer.clients import AwsClients, account_id, build_clients, create_session
from deployer.errors import EXIT_INTERRUPTED, DeployerError, SettingsError
from deployer.images import ImageBuilder
from deployer.settings import CONFIG_FILE_NAME, Settings, load_settings, validate_stack
from deployer.state import State, StateFile, check_identity
from deployer.steps.base import StepContext

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STATE_FILE = "state.json"


def provision_main(argv: Sequence[str] | None = None) -> int:
    return _run(_provision, _provision_parser(), argv)


def teardown_main(argv: Sequence[str] | None = None) -> int:
    return _run(_teardown, _teardown_parser(), argv)


def _run(
    command: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> int:
    args = parser.parse_args(argv)
    try:
        return command(args)
    except DeployerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; the state file is saved. Run the same command again to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED


def _provision_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provision.py",
        description="Deploy the website to ECS Fargate behind a Network Load Balancer; re-running changes "
        "only what differs.",
    )
    parser.add_argument("--stack", help="stack name, the prefix of every resource name")
    parser.add_argument("--region", help="AWS region (default: the standard AWS configuration)")
    _state_file_flag(parser)
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
        "--output",
        choices=("text", "json"),
        default="text",
        help="json: print one JSON document (outcomes, outputs, timings) on stdout; progress goes to stderr",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the site URL")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return once every resource exists, without waiting for the load balancer "
        "and the service (an emulator never runs tasks)",
    )
    _local_flag(parser)
    parser.add_argument(
        "--local-port",
        type=int,
        default=None,
        help=f"with --local: the site's port on 127.0.0.1 (default: the recorded one, else {local.DEFAULT_PORT})",
    )
    return parser


def _teardown_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teardown.py", description="Delete every resource the state file records, newest first."
    )
    _state_file_flag(parser)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="find every resource of the stack by its tags and names (for a lost state file) and delete them",
    )
    parser.add_argument("--stack", help="with --sweep: the stack to find (default: the state file's)")
    parser.add_argument("--region", help="with --sweep: the region to search (default: the state file's or AWS's)")
    parser.add_argument("--dry-run", action="store_true", help="with --sweep: only list what would be deleted")
    _local_flag(parser)
    return parser


def _local_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local",
        action="store_true",
        help=f"against a local AWS emulator, with the site run in the local Docker engine "
        f"(state: ./{local.LOCAL_STATE_FILE})",
    )


def _state_file_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help=f"where identifiers are recorded (default: ./state.json, with --local ./{local.LOCAL_STATE_FILE})",
    )


def _state_path(args: argparse.Namespace) -> Path:
    if args.state_file is not None:
        return Path(args.state_file)
    return Path(local.LOCAL_STATE_FILE if args.local else DEFAULT_STATE_FILE)


class Console:
    """Where progress goes: lines on stdout (text), stderr (json, so stdout holds only the document),
    or nowhere (quiet); on a terminal, one line is rewritten in place during long waits."""

    def __init__(self, mode: str = "text") -> None:
        self.mode = mode
        self.terminal = mode == "text" and sys.stdout.isatty()

    def say(self, line: str) -> None:
        if self.mode == "text":
            print(("\r\033[K" if self.terminal else "") + line, flush=True)
        elif self.mode == "json":
            print(line, file=sys.stderr, flush=True)

    def live(self, line: str) -> None:
        sys.stdout.write("\r\033[K" + line)
        sys.stdout.flush()


def _provision(args: argparse.Namespace) -> int:
    console = Console("quiet" if args.quiet else args.output)
    state_file = StateFile(_state_path(args))
    with state_file.locked("provision.py", console.say):
        return _provision_locked(args, state_file, console)


def _provision_locked(args: argparse.Namespace, state_file: StateFile, console: Console) -> int:
    images = ImageBuilder(progress=console.say)
    if args.local:
        _start_local(args, state_file, images, console)
    state = state_file.load()
    settings = _settings(args, state)
    if args.rollback:
        return _rollback(args, state_file, state, settings)
    if settings.image is None:
        images.client()  # no engine: say so before anything is created
    session = create_session(settings.region)
    clients = build_clients(session)
    account = account_id(clients)
    if state is None:
        state = State(stack=settings.stack, region=clients.region, account_id=account)
    check_identity(state, settings.stack, clients.region, account, state_file.path)
    ctx = _context(
        clients, settings, state, account, state_file, partition=session.get_partition_for_region(clients.region)
    )
    ctx.images = images
    ctx.local = args.local
    ctx.say = console.say
    ctx.live = console.live if console.terminal else None
    if args.dry_run:
        return _plan(ctx)
    console.say(f"Provisioning stack '{settings.stack}' in {clients.region} (account {account})")
    # Local: no AWS waits (the emulator runs no tasks, and its load balancer's address is not ours to probe).
    report = runner.provision(ctx, wait=not args.no_wait and not args.local)
    if args.local:
        report.outputs["url"] = _run_local_site(ctx, images, args)
    _report(report, args, console)
    return 0


def _start_local(args: argparse.Namespace, state_file: StateFile, images: ImageBuilder, console: Console) -> None:
    """Local mode: check the engine first (nothing is started without one), then start or reuse the emulator."""
    if args.rollback:
        raise SettingsError(
            "--rollback does not apply to --local", where="command line", todo="Re-run provision.py --local instead"
        )
    if args.local_port is not None and not 1 <= args.local_port <= 65535:
        raise SettingsError(
            f"--local-port {args.local_port} is outside 1-65535", where="command line", todo="Pass a valid TCP port"
        )
    local.require_engine(images)
    local.use_emulator(local.ensure_emulator(state_file.path, console.say), args.region)


def _run_local_site(ctx: StepContext, images: ImageBuilder, args: argparse.Namespace) -> str:
    """Run the registered task definition's container in the local engine; record and return its URL."""
    recorded = ctx.state.outputs.get("local_port", "")
    port = args.local_port or (int(recorded) if recorded.isdigit() else local.DEFAULT_PORT)
    arn = ctx.ids("task-definition")["arn"]
    definition = ctx.clients.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    site = local.run_site(
        images.client(), definition, stack=ctx.settings.stack, port=port, wait=not args.no_wait, say=ctx.say
    )
    outputs = {
        **ctx.state.outputs,
        "local_url": site.url,
        "local_port": str(port),
        "local_container": local.container_name(ctx.settings.stack),
        "local_container_id": site.container_id,
    }
    if outputs != ctx.state.outputs:
        ctx.state.outputs = outputs
        ctx.save()
    return site.url


def _report(report: runner.RunReport, args: argparse.Namespace, console: Console) -> None:
    if args.output == "json" and not args.quiet:
        print(json.dumps(report.to_json(), indent=2))
        return
    timings = report.timings()
    console.say(
        "Time by phase: "
        + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in timings.items())
        + f" (total {sum(timings.values()):.1f}s)"
    )
    print(report.outputs["url"] if args.quiet else f"Site URL: {report.outputs['url']}")


def _rollback(args: argparse.Namespace, state_file: StateFile, state: State | None, settings: Settings) -> int:
    if state is None or state.get("service") is None:
        raise DeployerError(
            "There is no deployed service to roll back",
            where=str(state_file.path),
            todo="Deploy with provision.py first",
        )
    if args.image or args.build_arg or args.dry_run:
        raise SettingsError(
            "--rollback takes no --image, --build-arg or --dry-run",
            where="command line",
            todo="Roll back alone: python provision.py --rollback",
        )
    session = create_session(settings.region)
    clients = build_clients(session)
    account = account_id(clients)
    check_identity(state, settings.stack, clients.region, account, state_file.path)
    ctx = _context(
        clients, settings, state, account, state_file, partition=session.get_partition_for_region(clients.region)
    )
    report = runner.rollback(ctx)
    print(f"Rolled back; serving {report.outputs['serving_revision'].rsplit('/', 1)[-1]} at {report.outputs['url']}")
    return 0


def _plan(ctx: StepContext) -> int:
    print(
        f"Plan for stack '{ctx.settings.stack}' in {ctx.clients.region} (account {ctx.account_id}); "
        "nothing will be changed:"
    )
    ctx.state = copy.deepcopy(ctx.state)
    runner.plan(ctx)
    lines = cost.estimate(ctx.settings)
    print(
        f"\nEstimated monthly cost (an estimate: {cost.PRICES_SOURCE}; data transfer, free tiers and taxes left out):"
    )
    for line in lines:
        print(f"  {line.item:<24} ${line.monthly_usd:>8.2f}   {line.basis}")
    print(f"  {'total':<24} ${cost.total(lines):>8.2f}")
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
    flags = {"stack": args.stack, "region": args.region, "image": args.image, "build_args": _build_args(args.build_arg)}
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


def _teardown(args: argparse.Namespace) -> int:
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
    state_file = StateFile(_state_path(args))
    with state_file.locked("teardown.py", Console().say):
        if args.local:
            return _teardown_local(state_file)
        if args.sweep:
            return _sweep(args, state_file)
        return _teardown_recorded(args, state_file)


def _teardown_recorded(args: argparse.Namespace, state_file: StateFile) -> int:
    state = state_file.load()
    if state is None or not state.resources:
        print(f"Nothing to tear down: {state_file.path} records no resources.")
        state_file.delete()
        return 0
    if not args.yes:
        _confirm(state, state_file.path)
    ctx = _teardown_context(state_file, state.stack, state.region, state)
    _delete_everything(ctx, state_file)
    return 0


def _teardown_local(state_file: StateFile) -> int:
    """Container, then the recorded resources (from the emulator, if it still runs), then the emulator.

    No confirmation: everything local mode creates is local and disposable.
    """
    state = state_file.load()
    if state is not None:
        try:
            local.remove_site(local.require_engine(ImageBuilder()), state.stack, print)
        except DeployerError as exc:
            print(f"warning: the local container was not checked: {exc.message}", file=sys.stderr)
    emulator = local.running_emulator(state_file.path)
    if state is not None and state.resources and emulator is not None:
        local.use_emulator(emulator, state.region)
        _delete_everything(_teardown_context(state_file, state.stack, state.region, state), state_file)
    elif state is not None:
        print("The local AWS emulator is not running: the resources it held went with it.")
        state_file.delete()
    else:
        print(f"Nothing to tear down: {state_file.path} records no resources.")
    local.stop_emulator(state_file.path, print)
    return 0


def _sweep(args: argparse.Namespace, state_file: StateFile) -> int:
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
    ctx = _teardown_context(state_file, stack, args.region or (recorded.region if recorded else None), recorded)
    runner.discover(ctx)
    if not ctx.state.resources:
        print(f"Nothing of stack '{stack}' was found in {ctx.clients.region}.")
        return 0
    print(f"Found {len(ctx.state.resources)} resources of stack '{stack}' in {ctx.clients.region}:")
    for record in ctx.state.resources:
        print(f"  {record.step:<22} {runner.primary(record.ids)}")
    if args.dry_run:
        print("Dry run: nothing was deleted.")
        return 0
    if not args.yes:
        _confirm(ctx.state, state_file.path)
    ctx.save()
    _delete_everything(ctx, state_file)
    return 0


def _teardown_context(state_file: StateFile, stack: str, region: str | None, state: State | None) -> StepContext:
    """Teardown uses only recorded (or discovered) identifiers; settings give it the names."""
    session = create_session(region)
    clients = build_clients(session)
    account = account_id(clients)
    if state is None:
        state = State(stack=stack, region=clients.region, account_id=account)
    check_identity(state, stack, clients.region, account, state_file.path)
    settings = Settings(stack=stack, region=clients.region)
    return _context(
        clients, settings, state, account, state_file, partition=session.get_partition_for_region(clients.region)
    )


def _delete_everything(ctx: StepContext, state_file: StateFile) -> None:
    print(f"Tearing down stack '{ctx.state.stack}' in {ctx.state.region} (account {ctx.account_id})")
    runner.teardown(ctx)
    state_file.delete()
    print(f"Done: every recorded resource is deleted and {state_file.path} is removed.")


def _confirm(state: State, path: Path) -> None:
    if not sys.stdin.isatty():
        raise DeployerError(
            "Refusing to tear down without confirmation: there is no terminal to ask on",
            where=f"teardown.py with {path}",
            todo="Run it in a terminal, or pass --yes to confirm in advance",
        )
    answer = input(
        f"Delete all {len(state.resources)} resources of stack '{state.stack}' in {state.region} "
        f"(account {state.account_id})? Type 'yes' to confirm: "
    )
    if answer.strip().lower() != "yes":
        raise DeployerError(
            "Teardown cancelled; nothing was deleted",
            where="confirmation prompt",
            todo="Run again and type 'yes' to delete",
        )


def _context(
    clients: AwsClients, settings: Settings, state: State, account: str, state_file: StateFile, *, partition: str
) -> StepContext:
    return StepContext(
        clients=clients,
        settings=settings,
        state=state,
        account_id=account,
        partition=partition,
        save=lambda: state_file.save(state),
        say=Console().say,
    )

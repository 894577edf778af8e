"""``bedrock-assets``: run pipelines headless, serve the local stack, or start it with the Dagster UI."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_HOME = ".bedrock_assets_demo"
DEFAULT_STACK_PORT = 4566
SAMPLE_DEFS = Path(__file__).parent / "defs"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _dagster_home(home: Path) -> Path:
    path = home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        # the daemon takes queued runs every second instead of every 5 (one stage run follows another)
        config.write_text("telemetry:\n  enabled: false\nrun_queue:\n  dequeue_interval_seconds: 1\n")
    return path


def _instance():
    from dagster import DagsterInstance

    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def cmd_local_stack(args: argparse.Namespace) -> int:
    from bedrock_assets.local_stack.server import serve_forever

    serve_forever(args.host, args.port, Path(args.state_dir) if args.state_dir else None, args.time_scale)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """The environment ``make dev`` / ``bedrock-assets dev`` runs with, as export lines for a second terminal."""
    from bedrock_assets.local_stack import LocalStack

    home = Path(args.home).resolve()
    env = {"DAGSTER_HOME": str(_dagster_home(home)), **LocalStack(port=args.stack_port).env()}
    print("\n".join(f"export {k}={v}" for k, v in env.items()))
    return 0


def cmd_seed_sample(args: argparse.Namespace) -> int:
    import boto3

    from bedrock_assets.sample.seed import seed_sample

    print(f"sample dataset ({args.rows} rows) at {seed_sample(boto3.client('s3'), args.uri, args.rows)}")
    return 0


def _pipelines(path: Path, pipelines: Sequence[str] | None) -> tuple[list, Any]:
    """The selected pipelines (default: all) of a defs.yaml or folder, and their Definitions."""
    import dagster as dg

    from bedrock_assets.components.bedrock_batch_pipeline import build_pipeline_defs
    from bedrock_assets.components.loading import load_pipelines
    from bedrock_assets.resources import bedrock_resources

    specs = load_pipelines(path)
    names = [s.name for s in specs]
    unknown = [p for p in pipelines or [] if p not in names]
    if unknown:
        raise SystemExit(f"{path}: no pipeline named {unknown}; found {names}")
    specs = [s for s in specs if not pipelines or s.name in pipelines]
    logging.getLogger("dagster").setLevel(logging.WARNING)  # run and tick logs stay in the instance
    defs = dg.Definitions.merge(*(build_pipeline_defs(s) for s in specs), dg.Definitions(resources=bedrock_resources()))
    return specs, defs


def run_defs(path: Path, pipelines: Sequence[str] | None, poll_seconds: float, timeout: float) -> list:
    """Run the pipelines (default: all) of a defs.yaml or folder to completion; returns their summaries.

    SIGINT and SIGTERM stop it after the stage run in progress (RunInterrupted; a second one: at once)."""
    from bedrock_assets.interrupts import run_until_signalled
    from bedrock_assets.runner import run_pipelines

    specs, defs = _pipelines(path, pipelines)

    def work(stop: Any) -> list:
        with _instance() as instance:  # opened and closed in the worker thread (its SQLite connections too)
            return run_pipelines(defs, specs, instance, poll_seconds=poll_seconds, timeout_seconds=timeout, stop=stop)

    return run_until_signalled(work)


def stop_defs(
    path: Path, pipelines: Sequence[str] | None, shards: Sequence[str] | None, verb: str = "stop", orphans: bool = False
) -> list[str]:
    """Run each selected pipeline's __stop (or __resume) job; one report line per pipeline (``orphans``: stop
    only the jobs named like the pipeline's that its ledger does not hold)."""
    from bedrock_assets.keys import PipelineKeys
    from bedrock_assets.runner import QUIET, PipelineRunError

    specs, defs = _pipelines(path, pipelines)
    lines = []
    for spec in specs:
        op = f"{spec.name}__{verb}_jobs"
        settings = {"shards": list(shards or []), "orphans": orphans}
        config = {"ops": {op: {"config": settings}}} if verb == "stop" else {}
        result = defs.resolve_job_def(PipelineKeys(spec.name).job(verb)).execute_in_process(
            run_config={**QUIET, **config}, instance=_instance(), raise_on_error=False
        )
        if not result.success:
            raise PipelineRunError(f"{spec.name}: {verb} run {result.run_id} failed; see the run's logs")
        lines.append(result.output_for_node(op))
    return lines


EXIT_OK, EXIT_FAILED_ROWS, EXIT_USAGE, EXIT_NOT_FINISHED = 0, 1, 2, 3
EXIT_CODES = """exit codes:
  0  every pipeline finished, with failed rows within its max_error_rate
  1  every pipeline finished, but one has more failed rows than its max_error_rate allows
  2  wrong command-line usage
  3  could not finish: an invalid defs.yaml, a failed run, AWS unreachable for too long, or --timeout
  130, 143  stopped by SIGINT (Ctrl-C) or SIGTERM; the jobs keep running in Bedrock, and the same
            command re-attaches to them"""


def _describe(error: BaseException) -> str:
    """One or two lines on what went wrong and what to do (the traceback only with --verbose)."""
    from bedrock_assets.errors import hint
    from bedrock_assets.runner import PipelineRunError
    from bedrock_assets.spec import SpecError

    if isinstance(error, (SpecError, PipelineRunError)):
        return str(error)
    what_to_do = hint(type(error).__name__, str(error))
    return f"{type(error).__name__}: {error}" + (f"\n  {what_to_do}" if what_to_do else "")


def _or_explain(args: argparse.Namespace, action: Callable[[], Any]) -> Any:
    """The action's result; on any error, one readable message on stderr (traceback with --verbose) and None."""
    from bedrock_assets.runner import RunInterrupted

    try:
        return action()
    except Exception as error:  # noqa: BLE001 - every failure ends as one readable message and exit code 3
        if isinstance(error, RunInterrupted):
            raise
        if args.verbose:
            traceback.print_exc()
        print(f"error: {_describe(error)}", file=sys.stderr)
        return None


def _run_or_explain(args: argparse.Namespace, path: Path, pipelines, poll_seconds: float) -> list | int:
    """The summaries of a finished run, else the exit code (the reason is printed)."""
    from bedrock_assets.interrupts import StoppedAtOnce
    from bedrock_assets.runner import RunInterrupted

    try:
        summaries = _or_explain(args, lambda: run_defs(path, pipelines, poll_seconds, args.timeout))
    except RunInterrupted as stopped:
        print(f"\n{stopped}", file=sys.stderr)
        return stopped.exit_code
    except StoppedAtOnce as stopped:
        print(
            f"\nstopped by a second {stopped.signal} during a stage run; the jobs keep running in Bedrock. The next "
            "run marks the unfinished run failed, takes over what it held and re-attaches (no job is created twice).",
            file=sys.stderr,
        )
        return 128 + stopped.number
    return EXIT_NOT_FINISHED if summaries is None else summaries


def _exit_code(summaries: list) -> int:
    return EXIT_OK if all(s.within_error_limit for s in summaries) else EXIT_FAILED_ROWS


def cmd_run(args: argparse.Namespace) -> int:
    summaries = _run_or_explain(args, Path(args.path), args.pipeline, args.poll_seconds)
    if isinstance(summaries, int):
        return summaries
    print()
    for summary in summaries:
        print("\n".join(summary.lines()))
    return _exit_code(summaries)


def plan_defs(path: Path, pipelines: Sequence[str] | None) -> list[str]:
    """Each selected pipeline's plan (shards, records, tokens, cost range), with nothing written or submitted."""
    from bedrock_assets.chain import upstream_uri
    from bedrock_assets.graph.raw_dataset import prepare_dataset
    from bedrock_assets.pipeline import Pipeline
    from bedrock_assets.plan import PipelinePlan

    specs, defs = _pipelines(path, pipelines)
    lines = []
    for spec in specs:
        step = Pipeline.of(spec).step(defs.resources["s3"], defs.resources["bedrock"])
        upstream = spec.source.pipeline
        source_uri = upstream_uri(_instance(), upstream) if upstream else None
        lines += PipelinePlan.of(step, prepare_dataset(step, write_parts=False, source_uri=source_uri)).lines()
    return lines


def status_defs(path: Path, pipelines: Sequence[str] | None, refresh: bool = True) -> list[str]:
    """Each selected pipeline's status screen, from its ledger and Bedrock (nothing is written)."""
    from datetime import UTC, datetime

    from bedrock_assets.pipeline import Pipeline
    from bedrock_assets.status import screen

    specs, defs = _pipelines(path, pipelines)
    ledger = defs.resources["bedrock_ledger"].get_ledger()
    lines = []
    for spec in specs:
        step = Pipeline.of(spec).step(defs.resources["s3"], defs.resources["bedrock"])
        lines += screen(step, ledger, datetime.now(UTC), refresh)
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    lines = _or_explain(args, lambda: status_defs(Path(args.path), args.pipeline, not args.ledger_only))
    if lines is None:
        return EXIT_NOT_FINISHED
    print("\n".join(lines))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    lines = _or_explain(args, lambda: plan_defs(Path(args.path), args.pipeline))
    if lines is None:
        return EXIT_NOT_FINISHED
    print("\n".join(lines))
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    lines = _or_explain(args, lambda: stop_defs(Path(args.path), args.pipeline, args.shards, orphans=args.orphans))
    if lines is None:
        return EXIT_NOT_FINISHED
    print("\n".join(lines))
    if args.orphans:
        return EXIT_OK
    print("Stopped jobs become Stopped within minutes; what they produced is merged by the daemon or by the next run.")
    if not args.shards:
        print(f"To go on later: bedrock-assets resume {args.path}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from bedrock_assets.graph.merged_dataset import describe_record, find_record

    specs, _ = _or_explain(args, lambda: _pipelines(Path(args.path), args.pipeline)) or ([], None)
    if not specs:
        return EXIT_NOT_FINISHED
    for spec in specs:
        row = _or_explain(args, functools.partial(find_record, spec, args.record_id))
        if row is not None:
            print("\n".join([f"[{spec.name}]", *describe_record(row)]))
            return EXIT_OK
    print(f"error: no record {args.record_id!r} in the merged dataset of {[s.name for s in specs]}", file=sys.stderr)
    return EXIT_NOT_FINISHED


def cmd_resume(args: argparse.Namespace) -> int:
    lines = _or_explain(args, lambda: stop_defs(Path(args.path), args.pipeline, None, verb="resume"))
    if lines is None:
        return EXIT_NOT_FINISHED
    print("\n".join(lines))
    print(f"The daemon submits the queued shards, or: bedrock-assets run {args.path}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Local stack + sample data + the sample pipelines, end to end; results copied to --home."""
    import boto3

    from bedrock_assets.local_stack import FaultConfig, LocalStack
    from bedrock_assets.sample.seed import seed_sample
    from bedrock_assets.uris import parse_s3_uri

    home = Path(args.home).resolve()
    os.environ["DAGSTER_HOME"] = str(_dagster_home(home))
    faults = FaultConfig(record_error_rate=args.error_rate)
    stack = LocalStack(port=0, state_dir=home / "local_stack", time_scale=args.time_scale, faults=faults).start()
    try:
        os.environ.update(stack.env())
        s3 = boto3.client("s3")
        print(f"local stack on {stack.endpoint_url} (state in {home / 'local_stack'})")
        seed_sample(s3, rows=args.rows)
        summaries = _run_or_explain(args, SAMPLE_DEFS, None, poll_seconds=0.5)
        if isinstance(summaries, int):
            return summaries
        results = home / "results"
        results.mkdir(exist_ok=True)
        print()
        for summary in summaries:
            local = results / f"{summary.pipeline}.parquet"
            loc = parse_s3_uri(summary.merged_uri)
            s3.download_file(loc.bucket, loc.key, str(local))
            print("\n".join(summary.lines()))
            print(f"  local copy: {local}")
    finally:
        stack.stop()
    print(
        "\nModel outputs come from the local Bedrock emulator (marked [emulated]); no AWS account was used.\n"
        f"The emulator answered {args.error_rate:.0%} of records with a model error (429/500); the retry rounds "
        "sent those records again (see 'retried' above).\n"
        "Open the Dagster UI on the same data:  make dev"
        + ("" if args.home == DEFAULT_HOME else f"  (or: bedrock-assets dev --home {args.home})")
        + "\n"
        "Then browse http://127.0.0.1:3000 (Assets -> lineage, runs, sensor ticks)."
    )
    return _exit_code(summaries)


def cmd_dev(args: argparse.Namespace) -> int:
    """Local stack on a fixed port plus ``dg dev`` on the same DAGSTER_HOME."""
    import boto3

    from bedrock_assets.local_stack import FaultConfig, LocalStack
    from bedrock_assets.sample.seed import seed_sample

    home = Path(args.home).resolve()
    env = dict(os.environ, DAGSTER_HOME=str(_dagster_home(home)), VIRTUAL_ENV=sys.prefix)
    faults = FaultConfig(record_error_rate=args.error_rate)
    stack = LocalStack(
        port=args.stack_port, state_dir=home / "local_stack", time_scale=args.time_scale, faults=faults
    ).start()
    try:
        env.update(stack.env())
        os.environ.update(stack.env())
        seed_sample(boto3.client("s3"), rows=args.rows)  # no-op for the data if already there: same bytes
        dg = Path(sys.executable).parent / "dg"
        print(f"local stack on {stack.endpoint_url}; starting the Dagster UI on http://127.0.0.1:{args.port}")
        # SIGINT stops dg dev cleanly; a shell's background job would hand it down ignored
        ui = subprocess.Popen(
            [str(dg), "dev", "-p", str(args.port)],
            env=env,
            cwd=PROJECT_ROOT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        # on SIGTERM too, stop the UI and snapshot the stack (SIGINT arrives as KeyboardInterrupt)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            return ui.wait()
        finally:
            _stop(ui)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def _stop(process: subprocess.Popen) -> None:
    """Stop ``dg dev`` the way Ctrl-C does (it shuts its daemon and webserver down on SIGINT)."""
    for sig, wait in ((signal.SIGINT, 60), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bedrock_assets")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _pipeline_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    """What run, plan and stop take: the defs, which pipelines, and --verbose."""
    p.add_argument("path", help="a BedrockBatchPipeline defs.yaml, its folder, or a folder of pipeline folders")
    p.add_argument("--pipeline", action="append", help=f"{verb} only this pipeline (repeatable; default: all)")
    p.add_argument("--verbose", action="store_true", help="print the full traceback of an error")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written, and the default of every flag that has a value after its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bedrock-assets", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_HelpFormatter)  # type: ignore[method-assign]
    _local_stack_commands(sub)
    _pipeline_commands(sub)
    _demo_commands(sub)
    return parser


def _local_stack_commands(sub: Any) -> None:
    """local-stack, env, seed-sample."""
    p = sub.add_parser("local-stack", help="serve S3 + DynamoDB (moto) + the Bedrock batch emulator on loopback")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=DEFAULT_STACK_PORT, help="port for S3, DynamoDB and Bedrock")
    p.add_argument("--state-dir", help="persist jobs, S3 and DynamoDB here across restarts (default: in memory)")
    p.add_argument("--time-scale", type=float, default=0.5, help="real seconds per job status step")
    p.set_defaults(func=cmd_local_stack)

    p = sub.add_parser(
        "env", help="print the exports that point dg / dagster commands at `make dev`'s stack and instance"
    )
    p.add_argument("--home", default=DEFAULT_HOME, help="the --home of bedrock-assets dev")
    p.add_argument("--stack-port", type=int, default=DEFAULT_STACK_PORT, help="the --stack-port of bedrock-assets dev")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("seed-sample", help="upload the bundled sample dataset (to the configured S3 endpoint)")
    p.add_argument("--rows", type=int, default=3000, help="rows of the generated sample")
    p.add_argument("--uri", default="s3://bedrock-assets-demo/raw/simplecot_sample.parquet", help="where to write it")
    p.set_defaults(func=cmd_seed_sample)


def _pipeline_commands(sub: Any) -> None:
    """run, plan, stop: over the pipelines of a defs.yaml or folder."""
    p = sub.add_parser(
        "run",
        help="run pipelines to completion against the configured endpoints",
        description="Run pipelines to completion: the daemon's automation conditions and completion sensor, "
        "driven in this process.",
        epilog=EXIT_CODES,
        formatter_class=_HelpFormatter,
    )
    _pipeline_arguments(p, "run")
    p.add_argument("--poll-seconds", type=float, default=30.0, help="seconds between completion-sensor ticks")
    p.add_argument(
        "--timeout", type=float, default=7 * 24 * 3600, help="give up after this many seconds (default: 604800, 7 days)"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "plan",
        help="validate pipelines and print their shards, tokens and cost range, submitting and writing nothing",
        description="Validate each pipeline, read its source, plan its shards and render every request, then print "
        "shards, records, bytes, jobs, the estimated input tokens, the output tokens (expected and worst case) "
        "and the cost range at the batch price. Nothing is submitted or written.",
    )
    _pipeline_arguments(p, "plan")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "stop",
        help="stop a pipeline's jobs in flight, dequeue its queued shards, start no further retry rounds",
        description="Stop a pipeline: StopModelInvocationJob for every job in flight, queued shards dequeued, "
        "recorded in the ledger; stopped jobs are never resubmitted. What they produced is still merged.",
    )
    _pipeline_arguments(p, "stop")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--shards", nargs="+", help="stop only these shard partitions (e.g. s00003 r1-00000)")
    which.add_argument(
        "--orphans",
        action="store_true",
        help="stop only the jobs named like the pipeline's that its ledger does not hold (see bedrock-assets status)",
    )
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser(
        "status",
        help="where each pipeline stands: jobs by state and age, processed, rate, ETA, deadline, cost, stalls",
        description="One screen per pipeline from its ledger and Bedrock alone (works from any terminal and in "
        "cron; writes nothing): jobs by state with their age, records processed of the total, the rate and ETA, "
        "the deadline and batch cutoff, spent and in flight, stalled jobs, and what is queued and why.",
    )
    _pipeline_arguments(p, "status")
    p.add_argument("--ledger-only", action="store_true", help="do not ask Bedrock: the states the ledger holds")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "show",
        help="one record's outcome and lineage: source file and row, shard, the job that answered it, its columns",
    )
    _pipeline_arguments(p, "show")
    p.add_argument("record_id", help="the record's record_id (a column of the merged dataset)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "resume",
        help="after a stop: queue the dequeued shards again and allow retry rounds",
        description="Undo a stop's hold on new work: shards it dequeued are queued again (the completion sensor, or "
        "bedrock-assets run, submits them) and retry rounds may start. Jobs it stopped keep their outcome.",
    )
    _pipeline_arguments(p, "resume")
    p.set_defaults(func=cmd_resume)


def _demo_commands(sub: Any) -> None:
    """demo and dev: the sample pipelines on an embedded local stack."""
    for name, func, text in (
        ("demo", cmd_demo, "run the sample pipelines end to end on an embedded local stack"),
        ("dev", cmd_dev, "start the local stack and the Dagster UI (dg dev) on the same data"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--home", default=DEFAULT_HOME, help="local stack state, DAGSTER_HOME and results")
        p.add_argument("--rows", type=int, default=3000, help="rows of the sample dataset")
        p.add_argument(
            "--time-scale",
            type=float,
            default=0.2 if name == "demo" else 1.0,
            help="real seconds per emulated job status step",
        )
        p.set_defaults(func=func)
        p.add_argument(
            "--error-rate",
            type=float,
            default=0.01,
            help="fraction of records the emulator answers with a model error (429/500), which retry rounds send again",
        )
    sub.choices["demo"].add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    sub.choices["demo"].add_argument("--verbose", action="store_true", help="print the full traceback of an error")
    sub.choices["dev"].add_argument("--port", type=int, default=3000, help="Dagster UI port")
    sub.choices["dev"].add_argument(
        "--stack-port", type=int, default=DEFAULT_STACK_PORT, help="local stack port (bedrock-assets env uses it)"
    )


LOCAL_STACK_COMMANDS = ("local-stack", "env", "demo", "dev")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModuleNotFoundError as missing:
        if args.command not in LOCAL_STACK_COMMANDS or missing.name not in ("werkzeug", "moto"):
            raise
        print(
            f"error: `bedrock-assets {args.command}` runs the embedded local stack, which needs the local-stack "
            f"extra ({missing.name} is not installed): pip install 'bedrock_assets[local-stack]'",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())

"""``smoke``: start an image as SageMaker does and check it answers (smoke.py does it)."""

from __future__ import annotations

from ragbuild.commands.args import ArgumentParser, limit, limit_help, sub_parser
from ragbuild.errors import EXIT_OK


def smoke_parser() -> ArgumentParser:

    parser = sub_parser(
        "smoke",
        "Hold IMAGE to SageMaker's serving contract (docs/smoke-test.md): "
        "start it as SageMaker does (docker run IMAGE serve, /opt/ml/model "
        "read-only), GET /ping must answer 200, each answer within 2 s; "
        "check what /health reports; POST /invocations must answer below "
        "500 within 60 s; it must exit within 30 s of SIGTERM; started "
        "again with SAGEMAKER_BIND_TO_PORT it must listen there. The "
        "containers are always removed. Prints the figures as JSON; "
        "exit 1 naming the rule broken.",
    )
    parser.add_argument("image", help="image reference, e.g. rag-worker:dev")
    parser.add_argument("--expect-version", help="version /health must report")
    parser.add_argument("--expect-env", help="environment /health must report")
    parser.add_argument("--expect-commit", help="git commit /health must report")
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=limit("smoke-timeout"),
        help=limit_help("smoke-timeout"),
    )
    parser.add_argument(
        "--command",
        metavar="CMD",
        help="start the image as docker run IMAGE CMD (default: smoke-command in "
        "setup.cfg [ragbuild], else 'serve', SageMaker's)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only errors and the result line (the figures)",
    )
    return parser


def cmd_smoke(argv: list[str]) -> int:
    from ragbuild import smoke
    from ragbuild.reference import check_image_ref
    from ragbuild.config import load_config
    from ragbuild.config import check_start_command
    from ragbuild.run.dry import make_runner

    ns = smoke_parser().parse_args(argv)
    check_image_ref(ns.image)
    config = load_config()
    command = check_start_command(
        config.smoke_command if ns.command is None else ns.command, "--command"
    )
    expect = smoke.Expectation(
        ns.image, ns.expect_version, ns.expect_env, ns.expect_commit, command=command
    )
    timeout = config.limits.override(smoke_timeout=ns.timeout).smoke_timeout
    import json

    from ragbuild import sagemaker

    runner = make_runner(ns.dry_run, quiet=ns.quiet)
    result = sagemaker.run(runner, expect, timeout=timeout)
    if not ns.dry_run:
        runner.emit(json.dumps(result.figures(), sort_keys=True))  # the result line (stdout)
    return EXIT_OK

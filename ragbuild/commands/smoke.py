"""``smoke``: start an image as SageMaker does and check it answers (smoke.py does it)."""

from __future__ import annotations

from ragbuild.commands.build import ArgumentParser, _limit, _limit_help, sub_parser
from ragbuild.errors import EXIT_OK


def smoke_parser() -> ArgumentParser:

    parser = sub_parser("smoke", "Start IMAGE as SageMaker does (docker run IMAGE serve, port 8080) "
                                 "on a free local port, wait for GET /ping to answer 200, check "
                                 "what /health reports; the container is always removed. Exit 1 "
                                 "on failure.")
    parser.add_argument("image", help="image reference, e.g. rag-worker:dev")
    parser.add_argument("--expect-version", help="version /health must report")
    parser.add_argument("--expect-env", help="environment /health must report")
    parser.add_argument("--expect-commit", help="git commit /health must report")
    parser.add_argument("--timeout", metavar="SECONDS", type=_limit("smoke-timeout"),
                        help=_limit_help("smoke-timeout"))
    parser.add_argument("--command", metavar="CMD",
                        help="start the image as docker run IMAGE CMD (default: smoke-command in "
                             "setup.cfg [ragbuild], else 'serve', SageMaker's)")
    return parser


def cmd_smoke(argv: list[str]) -> int:
    from ragbuild import smoke
    from ragbuild.commands.local import check_image_ref
    from ragbuild.config import load_config
    from ragbuild.config import check_start_command
    from ragbuild.run.dry import make_runner

    ns = smoke_parser().parse_args(argv)
    check_image_ref(ns.image)
    config = load_config()
    command = check_start_command(config.smoke_command if ns.command is None else ns.command,
                                  "--command")
    expect = smoke.Expectation(ns.image, ns.expect_version, ns.expect_env, ns.expect_commit,
                               command=command)
    timeout = config.limits.override(smoke_timeout=ns.timeout).smoke_timeout
    smoke.run(make_runner(ns.dry_run), expect, timeout=timeout)
    return EXIT_OK

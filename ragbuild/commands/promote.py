"""The ``push IMAGE`` and ``promote SOURCE`` subcommands: their parsers and commands (the work is
in ragbuild/promote.py: ship a tested image without building it again)."""

from __future__ import annotations

from ragbuild.commands.args import ArgumentParser, sub_parser
from ragbuild.commands.build import add_tag_flags, latest_policy


def add_target_flags(parser: ArgumentParser) -> None:
    """The flags that decide the target tags, as a build has them (``add_tag_flags``: same
    names, same rules), and what a push of them takes."""
    add_tag_flags(parser, image_name=False)
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="allow --env prod for an image built from a dirty tree (GIT_COMMIT <sha>-dirty)",
    )
    parser.add_argument(
        "--replace-version-tags",
        action="store_true",
        help="move v<version> and <version> when the registry has them at "
        "another digest (by default the run stops: a version names one "
        "image for good)",
    )
    parser.add_argument(
        "--skip-existing-immutable",
        action="store_true",
        help="with an IMMUTABLE ECR repository, leave the tags it would refuse out",
    )
    parser.add_argument(
        "--not-for-sagemaker",
        action="store_true",
        help="the image is not for SageMaker: a single OCI manifest may be "
        "shipped (by default it must be a Docker v2 schema 2 manifest, the "
        "one shape SageMaker pulls; docs/smoke-test.md)",
    )
    parser.add_argument(
        "--platform",
        metavar="OS/ARCH",
        help="the platform the image must be, checked before anything is written "
        "(default: linux/amd64, SageMaker's; none with --not-for-sagemaker alone)",
    )
    parser.add_argument(
        "--metadata-file",
        metavar="PATH",
        help="write JSON with the refs, digests, the source and the gate, also "
        "when a step fails (docs/metadata.md)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only errors and the result line (the pinned <repository>@sha256:...)",
    )


def push_parser() -> ArgumentParser:
    parser = sub_parser(
        "push",
        "Push a local image that is already built (and tested) with "
        "the tags a build for --env/--version would push, no build: "
        "each tag is made from the image's ID (timestamp and commit "
        "from the image itself), then the push's pre-flight, version-tag "
        "rule and read-back (docs/promote.md).",
    )
    parser.add_argument("image", help="the local image: its ID (what prod-ready prints) or a ref")
    parser.add_argument(
        "-r",
        "--registry",
        metavar="URI",
        help="host[:port]/repository (default: $ECR_REGISTRY_URI)",
    )
    add_target_flags(parser)
    return parser


def cmd_push(argv: list[str]) -> int:
    from ragbuild import push_image
    from ragbuild.config import load_config
    from ragbuild.run.dry import make_runner

    ns = push_parser().parse_args(argv)
    ns.policy = latest_policy(ns.latest, ns.latest_policy)
    return push_image.push_image(make_runner(ns.dry_run, quiet=ns.quiet), ns, load_config())


def promote_parser() -> ArgumentParser:
    parser = sub_parser(
        "promote",
        "Give an image in a registry the tags a build for "
        "--env/--version would push, in the same repository, by "
        "writing its manifest byte for byte under each tag through "
        "the registry API: no build, no layer upload, every tag at "
        "SOURCE's digest (docs/promote.md).",
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="R:tag or R@sha256:<digest> (R: host[:port]/repository), or a bare "
        "tag or digest with --registry",
    )
    parser.add_argument(
        "-r",
        "--registry",
        metavar="URI",
        help="the repository of a bare SOURCE tag (default: $ECR_REGISTRY_URI)",
    )
    add_target_flags(parser)
    parser.add_argument(
        "--no-gate",
        metavar="REASON",
        help="promote without testing SOURCE's digest first (the reason is "
        "recorded in the metadata)",
    )
    return parser


def cmd_promote(argv: list[str]) -> int:
    from ragbuild import promote
    from ragbuild.config import load_config
    from ragbuild.run.dry import make_runner

    ns = promote_parser().parse_args(argv)
    ns.policy = latest_policy(ns.latest, ns.latest_policy)
    return promote.promote(make_runner(ns.dry_run, quiet=ns.quiet), ns, load_config())

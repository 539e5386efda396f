"""The build command: its parser (the flags doctor shares), the parsed ``Options``, the run of
the pipeline, and the command line that pushes what was built."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from ragbuild.commands.rerun import rerun_words
from ragbuild.commands import args
from ragbuild.commands.args import ArgumentParser, limit, limit_help
from ragbuild.errors import EXIT_OK, UsageError

if TYPE_CHECKING:  # imported when a build needs them (--help stays fast)
    from ragbuild.config import LatestPolicy, Options
    from ragbuild.plan import BuildPlan


#: The name usage lines and messages give this program; main() sets it from how it was started
#: (``program_name``): build-image.py for the script, ragbuild for the console script and -m.


DESCRIPTION = "Build, tag, push and verify the RAG worker's Docker image (port of build-image.sh)."


EPILOG = """\
other commands (each has --help; all but completion, which runs nothing, have --dry-run):
  %(prog)s smoke IMAGE [--expect-env dev ...]   hold IMAGE to SageMaker's serving contract, check /health
  %(prog)s run [IMAGE] [--port 8080]            run IMAGE (default rag-worker:dev) in the background
  %(prog)s logs [-f]                            logs of that container
  %(prog)s doctor [--registry URI ...]          check what a build (and push) needs, one line each
  %(prog)s shell [IMAGE]                        a shell in IMAGE (default rag-worker:dev), removed on exit
  %(prog)s clean                                remove only the tags ragbuild builds made
  %(prog)s push IMAGE --registry URI --env ENV  push a tested local image (ID or ref), no build
  %(prog)s promote SOURCE --env ENV [--version X]  give a pushed image (R:tag, R@sha256:...) an
                                                env's tags by its manifest, no build, no upload
  %(prog)s completion bash|zsh                  tab completion: source <(%(prog)s completion bash)

environment variables (what each one does: docs/configuration.md):
  ECR_REGISTRY_URI, ECR_URI, DOCKER, AWS_CLI, DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG, BUILDX_BUILDER,
  BUILD_NUMBER, GITHUB_RUN_NUMBER, CI_PIPELINE_IID, SOURCE_DATE_EPOCH, TZ, AWS_PROFILE,
  AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_ECR, GITHUB_OUTPUT

exit status (README.md, "Exit status"):
  0 success, 1 a command failed, 2 bad usage or input (nothing was run), 3 a bug in ragbuild
  (please report it), 141 stdout closed early (e.g. --dry-run | head -1); a signal: 128 + its
  number after the same cleanup (130 Ctrl-C/SIGINT, 143 SIGTERM, 129 SIGHUP): child stopped,
  container removed, metadata written as interrupted (docs/lifecycle.md)

examples:
  %(prog)s --env dev
      build rag-worker:dev, :dev-<timestamp>, :git-<sha> and :latest
  %(prog)s --env dev --no-cache
      the same, without the build cache
  %(prog)s --env dev --dry-run
      print the commands a real run would execute; run nothing
  %(prog)s --version 1.0.0 --env prod --smoke-test
      adds :v1.0.0 and :1.0.0 (prod needs a version); run the image and check /health
  %(prog)s --env staging --version 1.0.0-rc.1 --tag qa --no-latest
      a prerelease with a custom tag, leaving latest where it is
  %(prog)s --version 1.2.3 --env prod --registry 123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker --push
      ECR login and checks, the build, a push of every tag, the digests verified
  %(prog)s --version 1.4.1 --env prod --semver-tags --latest-policy auto --ci-tags
      adds :1.4, :1 and :build-<N>; latest only if 1.4.1 >= the highest v* git tag
  %(prog)s --env dev --builder remote --cache-from type=registry,ref=<uri>:cache
      build on the builder 'remote' (e.g. the docker context 'remote': the run uses that engine)
  %(prog)s --env dev --secret id=pip_token,env=PIP_TOKEN --ssh default -- --network host
      a build secret, SSH agent forwarding, and any other docker build option after --
"""


def add_tag_flags(tags: argparse._ActionsContainer, *, image_name: bool = True) -> None:
    """The flags that decide a build's tags (also ``push IMAGE`` and ``promote``'s, which
    compute the tags a build would push: commands/promote.py); ``image_name``: with
    ``--image-name`` (a build's local name)."""
    tags.add_argument(
        "-v",
        "--version",
        metavar="VERSION",
        help="semantic version, e.g. 1.2.3 (a leading v is dropped)",
    )
    tags.add_argument(
        "-e",
        "--env",
        metavar="ENV",
        help="environment: dev, staging, prod (from setup.cfg [ragbuild])",
    )
    tags.add_argument(
        "-t",
        "--tag",
        metavar="TAG",
        action="append",
        default=[],
        dest="tags",
        help="additional custom tag (repeatable)",
    )
    if image_name:
        tags.add_argument(
            "--image-name",
            default=None,
            help="local image name (default: rag-worker, or setup.cfg [ragbuild])",
        )
    tags.add_argument(
        "--latest",
        dest="latest",
        action="store_true",
        default=None,
        help="also tag 'latest' (default)",
    )
    tags.add_argument(
        "--no-latest",
        dest="latest",
        action="store_false",
        help="do not tag 'latest' (= --latest-policy never)",
    )
    tags.add_argument(
        "--semver-tags",
        action="store_true",
        help="also tag <major> and <major>.<minor> for a release version (not a prerelease)",
    )
    tags.add_argument(
        "--latest-policy",
        choices=("always", "auto", "never"),
        default=None,
        help="always: tag latest (default, as bash); never: = --no-latest; auto: only a "
        "release not lower than the highest v* git tag moves latest, <major>, "
        "<major>.<minor>",
    )
    tags.add_argument("--build-number", metavar="N", help="also tag build-N (N a positive integer)")
    tags.add_argument(
        "--ci-tags",
        action="store_true",
        help="tag build-N with N from BUILD_NUMBER, GITHUB_RUN_NUMBER or CI_PIPELINE_IID "
        "(first set wins)",
    )


def build_parser() -> ArgumentParser:
    """The build command's flags, each in one of the argument groups ``--help`` shows: tags,
    build, push, safety, output, builders."""
    parser = ArgumentParser(
        prog=args.PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tags = parser.add_argument_group(
        "tags",
        "bash's tags, in order: v<version>, <version>, <env>-<timestamp>, <env>, git-<sha>,\n"
        "each --tag, latest; the others opt in (docs/tags-and-policies.md)",
    )
    add_tag_flags(tags)

    build = parser.add_argument_group("build", "what docker builds, and how (docs/builders.md)")
    build.add_argument(
        "-f", "--file", default="Dockerfile", help="Dockerfile path (default: Dockerfile)"
    )
    build.add_argument("--context", default=".", help="build context directory (default: .)")
    build.add_argument(
        "--build-arg",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="build_args",
        help="extra build arg passed to docker (repeatable)",
    )
    build.add_argument("--no-cache", action="store_true", help="build without the cache")
    host_ca = build.add_mutually_exclusive_group()
    host_ca.add_argument(
        "--host-ca",
        metavar="PATH",
        help="the CA bundle the build's downloads trust, passed as build secret "
        "ragbuild-host-ca (default: the one the host's pip uses: PIP_CERT, "
        "pip's config cert, REQUESTS_CA_BUNDLE, SSL_CERT_FILE; setup.cfg "
        "host-ca; docs/troubleshooting.md)",
    )
    host_ca.add_argument(
        "--no-host-ca",
        action="store_true",
        help="pass no CA bundle: the build trusts only its base image's CAs",
    )
    build.add_argument(
        "--host-index",
        action="store_true",
        default=None,
        help="pass the host pip's index settings (index-url, extra-index-url, "
        "trusted-host; find-links and no-index when URLs) as build secret "
        "ragbuild-host-index; --build-arg PIP_* beats them (setup.cfg "
        "host-index = true)",
    )
    build.add_argument(
        "--pull", action="store_true", help="always pull a newer version of the FROM images"
    )

    push = parser.add_argument_group(
        "push", "where the tags go, and the push (docs/push-and-ecr.md)"
    )
    push.add_argument(
        "-r",
        "--registry",
        metavar="URI",
        help="registry URI host[:port]/repository: the tags go on it instead of the "
        "image name (default: $ECR_REGISTRY_URI)",
    )
    push.add_argument(
        "--push", action="store_true", help="push every tag to the registry and verify the digests"
    )
    push.add_argument(
        "--skip-existing-immutable",
        action="store_true",
        help="with an IMMUTABLE ECR repository, leave tags that cannot be overwritten "
        "out of the push",
    )
    push.add_argument(
        "--replace-version-tags",
        action="store_true",
        help="let a push move v<version> and <version> when the registry already "
        "has them (by default such a run stops before the build: a version "
        "names one image for good)",
    )
    push.add_argument(
        "--push-attempts",
        metavar="N",
        type=limit("push-attempts"),
        help=limit_help("push-attempts"),
    )
    push.add_argument(
        "--push-backoff",
        metavar="SECONDS",
        type=limit("push-backoff"),
        help=limit_help("push-backoff"),
    )

    safety = parser.add_argument_group(
        "safety",
        "checks that stop a run before anything is pushed (docs/context-guard.md, docs/scan.md)",
    )
    safety.add_argument(
        "--allow-dirty",
        action="store_true",
        help="allow a prod build from a tree with uncommitted changes",
    )
    safety.add_argument(
        "--git-commit",
        metavar="SHA",
        help="the commit of a tree without .git (an exported source tarball): "
        "GIT_COMMIT and the git-<sha> tag, where a release (--env prod or "
        "--push) needs a commit; refused inside a repository (docs/git-facts.md)",
    )
    safety.add_argument(
        "--smoke-test",
        action="store_true",
        help="after the build, start the image as SageMaker does (docker run IMAGE "
        "serve), wait for GET /ping on 8080, check /health, before anything "
        "is pushed (docs/lifecycle.md)",
    )
    safety.add_argument(
        "--smoke-command",
        metavar="CMD",
        help="what --smoke-test starts: docker run IMAGE CMD, then GET /ping on "
        "port 8080 (default: smoke-command in setup.cfg [ragbuild], else "
        "'serve', as SageMaker starts the image)",
    )
    safety.add_argument(
        "--smoke-timeout",
        metavar="SECONDS",
        type=limit("smoke-timeout"),
        help=limit_help("smoke-timeout"),
    )
    safety.add_argument(
        "--context-warn-mb",
        metavar="MB",
        type=limit("context-warn-mb"),
        help=limit_help("context-warn-mb"),
    )
    safety.add_argument(
        "--allow-secrets",
        action="store_true",
        help="send likely secrets (.env*, *.pem, id_rsa*, .aws/credentials, .npmrc "
        "or .pypirc with a token) in the build context instead of refusing",
    )
    safety.add_argument(
        "--scan",
        action="store_true",
        help="after the build (and smoke test), scan the image for vulnerabilities; "
        "findings stop the run before any push (default scanner: trivy image "
        "--exit-code 1 --severity HIGH,CRITICAL)",
    )
    safety.add_argument(
        "--scan-command",
        metavar="CMD",
        help="the scanner to run, with {image} in it (implies --scan), e.g. "
        "'grype {image} --fail-on high'; default: scan-command in setup.cfg "
        "[ragbuild], else trivy",
    )

    output = parser.add_argument_group(
        "output", "what the run prints and records (docs/dry-run.md, docs/metadata.md)"
    )
    output.add_argument(
        "--dry-run",
        action="store_true",
        help="print the commands a real run would execute; run nothing",
    )
    output.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only errors and the result lines (the pinned "
        "<repository>@sha256:... of a push), as docker's -q",
    )
    output.add_argument(
        "--metadata-file",
        metavar="PATH",
        help="write JSON with the refs, image id, pushed digests, build args, "
        "labels, timestamp and each step's wall time, also when a step fails "
        "(with $GITHUB_OUTPUT set, tags, digest and image-id go there too)",
    )

    builders = parser.add_argument_group(
        "builders",
        "plain docker build, or docker buildx build when one of these needs it (docs/builders.md)",
    )
    builders.add_argument(
        "--builder",
        metavar="NAME",
        help="buildx builder to build on (docker buildx build --builder NAME), e.g. "
        "another docker context's (the whole run then uses that context)",
    )
    builders.add_argument(
        "--platform",
        metavar="LIST",
        help="target platform(s), e.g. linux/amd64; more than one needs buildx, "
        "--push and an engine with the containerd image store: an image "
        "index, not for SageMaker",
    )
    builders.add_argument(
        "--not-for-sagemaker",
        action="store_true",
        help="the image is not for SageMaker: a single-platform push may be an "
        "OCI manifest (by default each pushed tag must be one Docker v2 "
        "schema 2 manifest of the planned platform, the one shape "
        "SageMaker takes; docs/smoke-test.md)",
    )
    builders.add_argument(
        "--cache-from",
        metavar="SPEC",
        action="append",
        default=[],
        help="build cache source, e.g. type=registry,ref=<registry>/<repo>:buildcache "
        "or an image (repeatable)",
    )
    builders.add_argument(
        "--cache-to",
        metavar="SPEC",
        action="append",
        default=[],
        help="build cache export: type=inline (plain docker build too) or "
        "type=registry,ref=...,mode=max (needs buildx and a builder that can, "
        "as --platform) (repeatable)",
    )

    passed = parser.add_argument_group(
        "docker build options passed through",
        "passed to docker build as given, and shown in the plan, the dry run and the metadata;\n"
        "refused after --: what ragbuild models or what would break its push\n"
        "(-t, --push, -o/--output, --load, -f, --build-arg, --platform, attestations;\n"
        "see docs/build-options.md)",
    )
    passed.add_argument(
        "--secret",
        metavar="SPEC",
        action="append",
        default=[],
        dest="secrets",
        help="a build secret, e.g. id=pip_token,env=PIP_TOKEN or "
        "id=npmrc,src=$HOME/.npmrc, for RUN --mount=type=secret,id=... "
        "(its value is never on a command line; repeatable)",
    )
    passed.add_argument(
        "--ssh",
        metavar="SPEC",
        action="append",
        default=[],
        help="an SSH agent socket or keys for RUN --mount=type=ssh, e.g. default (repeatable)",
    )
    passed.add_argument(
        "docker_options",
        nargs="*",
        metavar="DOCKER-BUILD-OPTION",
        help="given after --: every word after -- goes to docker build, e.g. "
        "-- --network host --target runtime --add-host mirror:10.0.0.5",
    )
    return parser


def latest_policy(latest: Optional[bool], policy: Optional[str]) -> LatestPolicy:
    """--latest / --no-latest and --latest-policy as one policy; contradictions are refused."""
    from ragbuild.config import LatestPolicy

    if policy is None:
        return LatestPolicy.NEVER if latest is False else LatestPolicy.ALWAYS
    if latest is not None and (latest and policy != "always" or not latest and policy != "never"):
        flag = "--latest" if latest else "--no-latest"
        raise UsageError(
            f"{flag} contradicts --latest-policy {policy}: give one of them "
            f"({flag} means --latest-policy {'always' if latest else 'never'})"
        )
    return LatestPolicy(policy)


def split_docker_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(ragbuild's words, the words after the first --)``: what follows -- is docker's."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def own_options(parser: argparse.ArgumentParser) -> frozenset[str]:
    """Every option string of ``parser`` (``--dry-run``, ``-q``...): after ``--`` they are
    ragbuild's, not docker's (``passthrough.check_extra``)."""
    return frozenset(option for action in parser._actions for option in action.option_strings)


def parse_build(argv: Sequence[str], parser: Optional[ArgumentParser] = None) -> Options:
    own, docker_options = split_docker_options(argv)
    parser = parser or build_parser()
    ns = parser.parse_args(own)  # --help exits here, before the plan's imports
    if ns.docker_options and ns.docker_options[0] in args.COMMANDS:
        word = ns.docker_options[0]
        raise UsageError(
            f"{word} is a command: name it first, then its options "
            f"(`{args.PROG} {word} ...`; see {args.PROG} {word} --help)"
        )
    if ns.docker_options:  # a word argparse took as positional: a typo, not a docker option
        raise UsageError(
            f"unrecognized arguments: {' '.join(ns.docker_options)} (docker build "
            f"options go after --; see {args.PROG} --help)"
        )
    from ragbuild import passthrough

    # before anything runs: ragbuild's own options after -- (passthrough.check_extra)
    passthrough.check_extra(docker_options, own_options(parser))
    from dataclasses import replace

    policy = latest_policy(ns.latest, ns.latest_policy)
    registry, registry_source = ns.registry, "--registry"
    if registry is None and os.environ.get("ECR_REGISTRY_URI"):
        registry, registry_source = os.environ["ECR_REGISTRY_URI"], "ECR_REGISTRY_URI"
    return replace(
        args.tag_options(ns, policy),
        registry=registry,
        registry_source=registry_source,
        no_cache=ns.no_cache,
        push=ns.push,
        dry_run=ns.dry_run,
        build_args=tuple(ns.build_args),
        file=ns.file,
        context=ns.context,
        image_name=ns.image_name,
        allow_dirty=ns.allow_dirty,
        git_commit=ns.git_commit,
        smoke_test=ns.smoke_test,
        skip_existing_immutable=ns.skip_existing_immutable,
        replace_version_tags=ns.replace_version_tags,
        context_warn_mb=ns.context_warn_mb,
        allow_secrets=ns.allow_secrets,
        scan=ns.scan or ns.scan_command is not None,
        scan_command=ns.scan_command,
        metadata_file=ns.metadata_file,
        builder=ns.builder,
        platform=ns.platform,
        cache_from=tuple(ns.cache_from),
        cache_to=tuple(ns.cache_to),
        pull=ns.pull,
        secrets=tuple(ns.secrets),
        ssh=tuple(ns.ssh),
        docker_options=tuple(docker_options),
        host_ca=ns.host_ca,
        no_host_ca=ns.no_host_ca,
        host_index=ns.host_index,
        smoke_command=ns.smoke_command,
        smoke_timeout=ns.smoke_timeout,
        quiet=getattr(ns, "quiet", False),
        not_for_sagemaker=getattr(ns, "not_for_sagemaker", False),
        push_attempts=ns.push_attempts,
        push_backoff=ns.push_backoff,
    )


def cmd_build(argv: list[str]) -> int:
    options = parse_build(argv)
    from ragbuild import steps
    from ragbuild.config import load_config
    from ragbuild.run.dry import make_runner

    config = load_config()
    runner = make_runner(options.dry_run, quiet=options.quiet)
    state = steps.run(runner, steps.gather(runner, options, config))
    if not options.push:
        if options.smoke_test and state.image_id and state.health is not None:
            from ragbuild.push_image import tested_push_hint

            runner.report(tested_push_hint(state.plan, state.image_id, rerun_words()))
        else:
            runner.report(push_hint(state.plan, argv))
    return EXIT_OK


def push_hint(plan: BuildPlan, argv: Sequence[str]) -> str:
    """The exact command that pushes what was just built: this program, as it was started, with
    the user's arguments and --push (a registry placeholder when none was given)."""
    from ragbuild.run.redaction import redact_argv

    own, docker_options = split_docker_options(argv)
    shown = list(redact_argv(own))  # a --build-arg's secret value is never echoed
    stars = " (put the *** values back)" if shown != list(own) else ""
    registry = [] if plan.registry else ["--registry", "<registry>/<repository>"]
    after = ["--", *redact_argv(docker_options)] if docker_options else []  # still docker's
    return f"push it: {shlex.join(rerun_words() + shown + registry + ['--push'] + after)}{stars}"

"""The context step: report the build context, warn when it is large, refuse likely secrets
(the matching rules are guard.py's)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ragbuild.describe import human_size
from ragbuild.errors import UsageError
from ragbuild.plan import BuildPlan
from ragbuild.run.redaction import is_secret_name, secret_build_args
from ragbuild.run.runner import Runner

if TYPE_CHECKING:  # scan.py is imported when --scan asks for it, guard.py by the context step
    from ragbuild.guard import ContextReport


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def check_context(runner: Runner, plan: BuildPlan) -> ContextReport:
    """Before the build: report the context, warn when it is large, refuse likely secrets."""
    from ragbuild.guard import (
        context_rules,
        scan_context,
    )  # the .dockerignore matcher: imported by this step

    options = plan.options
    for name in secret_build_args(plan.build_args):
        what = "looks like a secret" if is_secret_name(name) else "carries URL credentials"
        runner.log(
            f"warning: --build-arg {name} {what}: build args stay readable in the image's "
            "history (docker history) and in docker's build output wherever a RUN step "
            "names them; pass it with --secret id=NAME,env=VARIABLE and read it in the "
            "Dockerfile with `RUN --mount=type=secret,id=NAME` instead"
        )
    rules = context_rules(runner, options)  # the walk docker will use
    report = scan_context(options.context, options.file, rules)
    applied = f"after {report.ignore_file}" if report.ignore_file else "(no .dockerignore)"
    runner.log(
        f"build context {options.context}: {_files(report.files)}, "
        f"{human_size(report.bytes)} {applied}"
    )
    limit = plan.limits.context_warn_mb  # MB of 10^6 bytes, as human_size counts; 0: never
    if limit and report.bytes > limit * 1e6:
        runner.log(
            f"warning: the build context is {human_size(report.bytes)}, more than "
            f"{limit:g}MB (--context-warn-mb); docker sends all of it before building. "
            "Add what the image does not need to .dockerignore. Largest:"
        )
        for name, size, files in report.largest():
            count = f" ({_files(files)})" if name.endswith("/") else ""
            runner.log(f"  {human_size(size):>8}  {name}{count}")
    if report.secrets:
        listed = ", ".join(f"{path} ({why})" for path, why in report.secrets)
        if options.allow_secrets:
            runner.log(
                f"warning: sending likely secrets in the build context (--allow-secrets): {listed}"
            )
        else:
            raise UsageError(
                f"the build context would send likely secrets: {listed}; add them to "
                f"{report.ignore_file or os.path.join(options.context, '.dockerignore')}"
                ", or pass --allow-secrets if they belong in the image"
            )
    return report

"""Fakes of the registry, docker and aws calls that the push and ECR tests share
(pytest-subprocess registrations, plans, and the push steps' context)."""

import json

import fakes
import os
from datetime import datetime

import pytest

from ragbuild import cli, ecr, push
from ragbuild.builders import Credentials, DockerConfig, read_docker_config
from ragbuild.errors import CommandFailed, Interrupted, PushFailed, ToolMissing
from ragbuild.plan import (Config, GitInfo, Options, PushPlan, build_command, format_created,
                           make_plan, parse_registry)
from ragbuild.runner import DryRunner, Runner


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
PLAIN = "registry.example.com:5000"
PASSWORD = "eyJwYXlsb2FkIjoiU0VDUkVULVRPS0VOLTQyIn0="  # what get-login-password prints
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
MOMENT = datetime(2026, 1, 2, 3, 4, 5)
TS = "20260102-030405"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("DOCKER", "AWS_CLI", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR",
                 "ECR_REGISTRY_URI", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(name, raising=False)
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    return config_dir


class FakeSleep:
    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


def build_plan(registry=f"{ECR}/rag-worker", **options):
    values = dict(env="dev", registry=registry, push=True)
    values.update(options)
    return make_plan(Options(**values), Config(), GitInfo(sha="abc1234"), MOMENT)


def refs_of(base, tags=(f"dev-{TS}", "dev", "git-abc1234", "latest")):
    return [f"{base}:{tag}" for tag in tags]


def docker(fp, *args, **kw):
    fp.register([fp.program("docker"), *args], **kw)


def aws(fp, *args, **kw):
    fp.register([fp.program("aws"), "ecr", *args], **kw)


def register_preflight(fp):
    fakes.register_registry_config(fp)  # asked after the login and repository checks


def register_login(fp, host=ECR, seen=None):
    aws(fp, "get-login-password", "--region", "us-east-1", stdout=PASSWORD + "\n")

    def stdin(data):
        if seen is not None:
            seen.append(data)
        return {"stdout": "Login Succeeded\n"}

    docker(fp, "login", "--username", "AWS", "--password-stdin", host, stdin_callable=stdin)


def repository_json(name="rag-worker", mutability="MUTABLE", filters=()):
    repo = {"repositoryName": name, "imageTagMutability": mutability,
            "repositoryUri": f"{ECR}/{name}"}
    if filters:
        repo["imageTagMutabilityExclusionFilters"] = [
            {"filterType": "WILDCARD", "filter": f} for f in filters]
    return json.dumps({"repositories": [repo]})


def register_describe(fp, path="rag-worker", **kw):
    aws(fp, "describe-repositories", "--repository-names", path, "--region", "us-east-1",
        "--output", "json", **kw)


def register_list_images(fp, tags, path="rag-worker"):
    ids = [{"imageDigest": OTHER_DIGEST, "imageTag": t} for t in tags]
    aws(fp, "list-images", "--repository-name", path, "--region", "us-east-1", "--filter",
        "tagStatus=TAGGED", "--output", "json", stdout=json.dumps({"imageIds": ids}))


def push_ok(ref, digest=DIGEST):
    tag = ref.rsplit(":", 1)[1]
    return (f"The push refers to repository [{ref.rsplit(':', 1)[0]}]\n"
            f"5c1cc8fb3f8e: Pushed\n{tag}: digest: {digest} size: 528\n")


def register_push(fp, ref, stdout=None, returncode=0, digest=DIGEST):
    docker(fp, "push", ref, stdout=push_ok(ref, digest) if stdout is None else stdout,
           returncode=returncode)


def verbose_manifest(ref, digest=DIGEST, media_type=DOCKER_MANIFEST):
    return json.dumps({"Ref": ref, "Descriptor": {"mediaType": media_type, "digest": digest,
                                                  "size": 528},
                       "SchemaV2Manifest": {"schemaVersion": 2, "mediaType": media_type}})


def register_inspect(fp, ref, stdout=None, returncode=0, digest=DIGEST, insecure=False):
    args = ["manifest", "inspect"] + (["--insecure"] if insecure else []) + ["--verbose", ref]
    docker(fp, *args, stdout=verbose_manifest(ref, digest) if stdout is None else stdout,
           returncode=returncode)


def prepared(plan, sleep=None, helper=None, origin="credHelpers"):
    """The push and verify steps' context for a plain registry, without prepare's probes;
    ``helper``: the credential helper docker resolved for the host (from ``origin``)."""
    config = read_docker_config()
    creds = Credentials(plan.registry.host, helper=helper, origin=origin if helper else "",
                        config_path=config.path)
    return push.Context(plan, PushPlan(plan.refs, credentials=creds), config, os.environ,
                        sleep or FakeSleep())


def push_and_verify(context, runner, digests=None):
    """What the pipeline does after the build (timing each as its own step)."""
    digests = {} if digests is None else digests
    push.push(runner, context, digests)
    return push.verify(runner, context, digests)



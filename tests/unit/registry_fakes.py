"""Fakes of the registry, docker and aws calls that the push and ECR tests share
(pytest-subprocess registrations, plans, and the push steps' context)."""

import dataclasses
import hashlib
import json
import re
import threading
import urllib.parse
from email.message import Message

import fakes
import os
from datetime import datetime

import pytest

from ragbuild import cli, ecr, manifest, push, push_preflight, registry, verify
from ragbuild.docker_config import Credentials, DockerConfig, DockerTarget, read_docker_config
from ragbuild.errors import CommandFailed, Interrupted, PushFailed, ToolMissing
from ragbuild.config import Config, Options
from ragbuild.git import GitInfo
from ragbuild.plan import PushPlan, build_command, format_created, make_plan
from ragbuild.reference import parse_registry
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ACCOUNT = "123456789012"  # the account in the ECR host name
PLAIN = "registry.example.com:5000"
PASSWORD = "eyJwYXlsb2FkIjoiU0VDUkVULVRPS0VOLTQyIn0="  # what get-login-password prints
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def manifest_body(config="11"):
    """A single image manifest's bytes, as a registry serves them."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": "sha256:" + config * 32,
                "size": 1,
            },
            "layers": [],
        },
        indent=3,
    ).encode()


def index_body(platforms=("linux/amd64", "linux/arm64"), media_type=OCI_INDEX, attestations=0):
    manifests = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + f"{i:02d}" * 32,
            "size": 1,
            "platform": dict(zip(("os", "architecture", "variant"), p.split("/"))),
        }
        for i, p in enumerate(platforms)
    ]
    manifests += [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "ee" * 32,
            "size": 1,
            "platform": {"os": "unknown", "architecture": "unknown"},
        }
    ] * attestations
    return json.dumps(
        {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    ).encode()


def digest_of(body):
    return "sha256:" + hashlib.sha256(body).hexdigest()


MANIFEST = manifest_body("11")
OTHER_MANIFEST = manifest_body("22")
DIGEST = digest_of(MANIFEST)  # what the registry serves: the sha256 of the bytes
OTHER_DIGEST = digest_of(OTHER_MANIFEST)
BODIES = {DIGEST: MANIFEST, OTHER_DIGEST: OTHER_MANIFEST}


class FakeRegistry:
    """``registry.send`` for the unit tests (conftest installs one for every test): the registry
    API of every host, ``GET /v2/`` answering 200 and ``GET /v2/<name>/manifests/<tag>`` the
    manifests ``serve`` put there (404 MANIFEST_UNKNOWN for others). ``requests``: (url,
    headers) of each request, ``proxies`` (url, the ``ProxySettings`` it was sent with);
    ``fail[ref]``: statuses (or exceptions) answered first."""

    current = None

    def __init__(self):
        self.manifests = {}
        self.fail = {}
        self.requests = []
        self.proxies = []  # (url, the daemon's proxy settings the request was sent with)
        self.lock = threading.Lock()
        self.blobs = {}  # digest -> bytes, for GET /v2/<name>/blobs/<digest>
        self.writes = []  # (ref, body, headers) of each PUT of a manifest
        self.store_as = None  # bytes the registry stores instead of a PUT's (a re-encoding one)

    def __call__(self, url, context, headers, data=None, settings=None, method=None):
        with self.lock:
            self.requests.append((url, dict(headers)))
            self.proxies.append((url, settings))
        parts = urllib.parse.urlsplit(url)
        if parts.path == "/v2/":
            return registry.Answer(200)
        blob = re.fullmatch(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)", parts.path)
        if blob:
            if blob["digest"] not in self.blobs:
                return registry.Answer(404, Message(), b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            return registry.Answer(200, Message(), self.blobs[blob["digest"]])
        match = re.fullmatch(r"/v2/(?P<name>.+)/manifests/(?P<tag>[^/]+)", parts.path)
        if not match:
            return registry.Answer(404)
        ref = f"{parts.netloc}/{match['name']}:{match['tag']}"
        if method == "PUT":
            with self.lock:
                failures = self.fail.get(ref) or []
                failure = failures.pop(0) if failures else None
                if failure is None:
                    self.writes.append((ref, data, dict(headers)))
                    body = data if self.store_as is None else self.store_as
                    self.manifests[ref] = (body, headers.get("Content-Type"), None)
            if isinstance(failure, Exception):
                raise failure
            if failure is not None:
                return registry.Answer(failure, Message(), b"")
            answer = Message()
            answer["Docker-Content-Digest"] = digest_of(body)
            return registry.Answer(201, answer, b"")
        if match["tag"].startswith("sha256:"):  # by digest: any manifest of the repository
            for known, (body, media_type, _) in list(self.manifests.items()):
                if (
                    known.rsplit(":", 1)[0] == ref.split(":sha256:")[0]
                    and digest_of(body) == match["tag"]
                ):
                    answer = Message()
                    answer["Content-Type"] = media_type
                    return registry.Answer(200, answer, body)
        with self.lock:
            failures = self.fail.get(ref) or []
            failure = failures.pop(0) if failures else None
        if isinstance(failure, Exception):
            raise failure
        if failure is not None:
            return registry.Answer(failure, Message(), b"")
        if ref not in self.manifests:
            body = json.dumps(
                {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
            ).encode()
            return registry.Answer(404, Message(), body)
        body, media_type, said = self.manifests[ref]
        answer = Message()
        answer["Content-Type"] = media_type
        answer["Docker-Content-Digest"] = said or digest_of(body)
        return registry.Answer(200, answer, body)

    def manifest_requests(self):
        return [(url, headers) for url, headers in self.requests if "/manifests/" in url]


def serve(ref, digest=DIGEST, body=None, media_type=DOCKER_MANIFEST, said=None):
    """Put a manifest at ``ref`` in the fake registry: the one whose digest is ``digest``, or
    ``body``; ``said``: a Docker-Content-Digest header other than the body's sha256."""
    body = BODIES[digest] if body is None else body
    FakeRegistry.current.manifests[ref] = (body, media_type, said)


def serve_index(ref, platforms=("linux/amd64", "linux/arm64"), **kw):
    body = index_body(platforms, **kw)
    serve(ref, body=body, media_type=json.loads(body)["mediaType"])
    return digest_of(body)


MOMENT = datetime(2026, 1, 2, 3, 4, 5)
TS = "20260102-030405"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in (
        "DOCKER",
        "AWS_CLI",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "ECR_REGISTRY_URI",
        "SOURCE_DATE_EPOCH",
    ):
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


def pushing_plan(**options):
    """A plan that pushes to localhost:5000/rag-worker from its build, and its PushPlan."""
    plan = build_plan(registry="localhost:5000/rag-worker", **options)
    plan = dataclasses.replace(plan, docker=DockerTarget())
    return plan, PushPlan(plan.refs, by_build=True)


def register_local_image(fp, plan, created, refs=None):
    """What ``docker image inspect`` says of the plan's primary ref after a build."""
    labels = {"org.opencontainers.image.created": created}
    fp.register(
        [fp.program("docker"), "image", "inspect", "--format", fp.any(), plan.primary],
        stdout=f"sha256:{'0e' * 32} 1000 {json.dumps(list(refs or plan.refs))} "
        f"{json.dumps(labels)}\n",
    )


def refs_of(base, tags=(f"dev-{TS}", "dev", "git-abc1234", "latest")):
    return [f"{base}:{tag}" for tag in tags]


def docker(fp, *args, **kw):
    fp.register([fp.program("docker"), *args], **kw)


def aws(fp, *args, **kw):
    fp.register([fp.program("aws"), "ecr", *args], **kw)


def register_preflight(fp):
    fakes.register_proxy_info(fp)  # the daemon's proxy settings, before the registry requests
    fakes.register_registry_config(fp)  # asked after the login and repository checks


def register_login(fp, host=ECR, seen=None):
    aws(fp, "get-login-password", "--region", "us-east-1", stdout=PASSWORD + "\n")

    def stdin(data):
        if seen is not None:
            seen.append(data)
        return {"stdout": "Login Succeeded\n"}

    docker(fp, "login", "--username", "AWS", "--password-stdin", host, stdin_callable=stdin)


def repository_json(name="rag-worker", mutability="MUTABLE", filters=()):
    repo = {
        "repositoryName": name,
        "imageTagMutability": mutability,
        "repositoryUri": f"{ECR}/{name}",
    }
    if filters:
        repo["imageTagMutabilityExclusionFilters"] = [
            {"filterType": "WILDCARD", "filter": f} for f in filters
        ]
    return json.dumps({"repositories": [repo]})


def register_describe(fp, path="rag-worker", **kw):
    aws(
        fp,
        "describe-repositories",
        "--repository-names",
        path,
        "--registry-id",
        ACCOUNT,
        "--region",
        "us-east-1",
        "--output",
        "json",
        **kw,
    )


def register_list_images(fp, tags, path="rag-worker"):
    ids = [{"imageDigest": OTHER_DIGEST, "imageTag": t} for t in tags]
    aws(
        fp,
        "list-images",
        "--repository-name",
        path,
        "--registry-id",
        ACCOUNT,
        "--region",
        "us-east-1",
        "--filter",
        "tagStatus=TAGGED",
        "--output",
        "json",
        stdout=json.dumps({"imageIds": ids}),
    )


def push_ok(ref, digest=DIGEST):
    tag = ref.rsplit(":", 1)[1]
    return (
        f"The push refers to repository [{ref.rsplit(':', 1)[0]}]\n"
        f"5c1cc8fb3f8e: Pushed\n{tag}: digest: {digest} size: 528\n"
    )


def register_push(fp, ref, stdout=None, returncode=0, digest=DIGEST):
    docker(
        fp,
        "push",
        ref,
        stdout=push_ok(ref, digest) if stdout is None else stdout,
        returncode=returncode,
    )


def prepared(plan, sleep=None, helper=None, origin="credHelpers"):
    """The push and verify steps' context for a plain registry, without prepare's probes;
    ``helper``: the credential helper docker resolved for the host (from ``origin``)."""
    config = read_docker_config()
    creds = Credentials(
        plan.registry.host, helper=helper, origin=origin if helper else "", config_path=config.path
    )
    session = registry.Session(plan.registry, creds, None)
    return push.Context(
        plan,
        PushPlan(plan.refs, credentials=creds, session=session),
        config,
        os.environ,
        sleep or FakeSleep(),
    )


def push_and_verify(context, runner):
    """What the pipeline does after the build (timing each as its own step): the pinned ref."""
    return verify.verify(runner, context, push.push(runner, context)).pinned


#: the config digest of OTHER_MANIFEST: another build's image on the classic store
OTHER_IMAGE = "sha256:" + "22" * 32


def ctx_for(plan, before=None, image_id=fakes.FAKE_IMAGE_ID):
    """``prepared(plan)`` following the image ``image_id``, with ``before``: what the registry
    had under each ref before the push."""
    ctx = prepared(plan)
    return dataclasses.replace(
        ctx, image_id=image_id, push=dataclasses.replace(ctx.push, before=before or {})
    )

"""Issue 20 on the real engines: a build trusts the CA the host's pip trusts and installs from the
host's private index, and neither the CA nor the index's token leaves a trace.

Hermetic: the harness serves its wheel mirror over https (``E2E_TLS_MIRROR``) with a certificate
from a test CA that only the host side knows (``E2E_TLS_MIRROR_CA``: in no system store, no
image), and the same wheels under ``/private/`` behind basic auth (``E2E_TLS_MIRROR_USER``, token
``E2E_TLS_MIRROR_TOKEN``). Every build installs from that mirror alone (no index), and the
mirror's access log (``E2E_TLS_MIRROR_LOG``: path, status, user, client) shows what pip and uv
fetched, so a build cannot pass by reaching anything else.

Each leg builds the worker a few times (``--no-cache``: BuildKit keys no step on a secret, so a
cached step would prove nothing) and shares those builds between the cases (module fixtures):

* with the CA named as a host names it (``PIP_CERT``), its builder, lock and final stages;
* with ``--host-ca`` over a ``PIP_CERT`` naming another CA;
* with ``--no-host-ca``: fails, its last line naming the cause;
* with the private index and the CA in a ``pip.conf`` (``PIP_CONFIG_FILE``) and ``--host-index``,
  its three stages too;
* with the private index as ``--build-arg PIP_FIND_LINKS=https://user:token@...``, its three
  stages too.

Where nothing may hold the CA's bytes (its PEM lines, DER bytes and its name) or the token (and
its basic-auth form): every file of every layer of the three stages (``docker save``, gzip blobs
opened), the images' configs (env, labels), ``docker history --no-trunc``, a ``mode=max`` local
cache export (the multiplatform leg: the engines with the classic image store cannot export a
cache), ragbuild's and docker's output, the dry run, the ``--metadata-file`` and the files a run
leaves in its ``TMPDIR``.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import subprocess
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from .conftest import harness_env
from .support import HARNESS, Images, Result

pytestmark = [pytest.mark.e2e, pytest.mark.every_leg]

STAGES = ("builder", "lock")  # built with `-- --target STAGE` after the final stage


# --- the https mirror --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    url: str  # https://172.17.0.1:PORT/
    ca: Path
    user: str
    token: str
    log: Path

    def private_url(self) -> str:
        """``/private/`` with the user and token in the URL, as a host's pip settings hold it."""
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{self.user}:{self.token}@{rest}private/"

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def requests_since(self, offset: int) -> list:
        """The access log's lines after ``offset``: ``addr "user" "GET /path HTTP/1.1" status "UA"``."""
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace").splitlines()


LOG_RE = re.compile(
    r'^\S+ "(?P<user>[^"]*)" "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) '
    r'"(?P<agent>[^"]*)"$'
)


def fetched(lines, *, prefix: str, agent: str, user: str = "-") -> list:
    """Paths under ``prefix`` the client ``agent`` (``pip/``, ``uv/``) got (200, 206) as ``user``."""
    got = []
    for line in lines:
        m = LOG_RE.match(line)
        if (
            m
            and m["path"].startswith(prefix)
            and m["agent"].startswith(agent)
            and m["user"] == user
            and m["status"] in ("200", "206")
        ):
            got.append(m["path"])
    return got


@pytest.fixture(scope="module")
def mirror(e2e_env) -> Mirror:
    """The harness's https mirror; a harness brought up before it existed is brought up again
    (``up`` is idempotent: it starts only what is missing)."""
    env = e2e_env
    if "E2E_TLS_MIRROR" not in env:
        up = subprocess.run(
            ["bash", str(HARNESS), "up"], capture_output=True, text=True, timeout=1800
        )
        assert up.returncode == 0, f"harness.sh up failed:\n{up.stderr[-3000:]}"
        env = harness_env()
    ca = Path(env["E2E_TLS_MIRROR_CA"])
    assert ca.is_file(), ca
    return Mirror(
        url=env["E2E_TLS_MIRROR"],
        ca=ca,
        user=env["E2E_TLS_MIRROR_USER"],
        token=env["E2E_TLS_MIRROR_TOKEN"],
        log=Path(env["E2E_TLS_MIRROR_LOG"]),
    )


# --- where a secret could hide -----------------------------------------------------------------


def ca_needles(ca: Path) -> dict:
    """What would give the CA away: each full line of its PEM body, a run of its DER bytes, and
    its subject name (random per harness state: ``ragbuild e2e mirror test CA <hex>``) as the
    DER holds it."""
    body = [line for line in ca.read_text().splitlines() if line and not line.startswith("-----")]
    der = base64.b64decode("".join(body))
    name = re.search(rb"mirror test CA [0-9a-f]{16}", der)
    assert name, f"{ca} is not the harness's test CA"
    needles = {
        f"the CA's PEM line {i + 1}": line.encode()
        for i, line in enumerate(body)
        if len(line) == 64
    }
    needles["the CA's name"] = name[0]
    needles["the CA's DER bytes"] = der[len(der) // 2 : len(der) // 2 + 32]
    return needles


def token_needles(mirror: Mirror) -> dict:
    basic = base64.b64encode(f"{mirror.user}:{mirror.token}".encode())
    return {"the token": mirror.token.encode(), "the token's basic-auth header": basic}


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def is_tar(data: bytes) -> bool:
    return len(data) > 262 and data[257:262] == b"ustar"


def scan(data: bytes, needles: dict, where: str, depth: int = 0) -> list:
    """``"<needle> in <where>"`` for each needle in ``data``, looking into gzip streams and into
    the gzipped files of a tar (a tar holds the other files' bytes as they are). A zstd blob
    fails the case: it could not be read, and unread is not clean."""
    found = [f"{name} in {where}" for name, needle in needles.items() if needle in data]
    if depth > 4:
        return found
    if data[:2] == GZIP_MAGIC:
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return found
        return found + scan(inner, needles, f"{where} (gunzipped)", depth + 1)
    if data[:4] == ZSTD_MAGIC:
        pytest.fail(f"{where} is zstd-compressed: this case cannot look into it")
    if is_tar(data):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                content = tar.extractfile(member).read()
                if content[:2] == GZIP_MAGIC or is_tar(content):
                    found += scan(content, needles, f"{where}:{member.name}", depth + 1)
    return found


def scan_files(root: Path, needles: dict) -> list:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        found += scan(path.read_bytes(), needles, str(path.relative_to(root)))
    return found


def scan_saved_images(docker, refs, dest: Path, needles: dict) -> list:
    """``docker save`` of ``refs`` into ``dest``; each member of the archive (layer tars, blobs,
    configs, manifests) scanned."""
    saved = docker("save", "-o", dest, *refs, timeout=600)
    assert saved.returncode == 0, saved.describe()
    found = []
    with tarfile.open(dest) as archive:
        members = [m for m in archive if m.isfile()]
        assert any(m.size > 1024 * 1024 for m in members), f"no layer in {dest}"
        for member in members:
            found += scan(archive.extractfile(member).read(), needles, f"docker save:{member.name}")
    dest.unlink()
    return found


# --- the shared builds -------------------------------------------------------------------------


@dataclass
class Build:
    """One ragbuild build of the worker (with the builder and lock stages built after it)."""

    name: str
    results: dict  # "dry-run", "final", "builder", "lock" -> Result
    refs: dict  # stage -> image ref (a tag ragbuild made)
    metadata: list  # the --metadata-file paths
    tmpdir: Path  # the runs' TMPDIR
    requests: list  # the mirror's access log lines during the final build
    cache: Optional[Path] = None  # the mode=max local cache export, where the leg has one

    @property
    def final(self) -> Result:
        return self.results["final"]

    def assert_built(self) -> Build:
        """Every stage built (else the leak cases would look at nothing)."""
        self.final.assert_ok()
        assert set(self.refs) == {"final", *STAGES}, self.refs
        return self

    def outputs(self) -> str:
        return "\n".join(r.stdout + "\n" + r.stderr for r in self.results.values())


def exports_cache(leg) -> bool:
    """Only the containerd image store's docker driver exports a cache (test_legs.py)."""
    return "multi-platform" in leg.can


def build_stages(
    project,
    docker,
    images: Images,
    leg,
    mirror: Mirror,
    tmp: Path,
    name: str,
    flags: list,
    env: dict,
    *,
    stages: bool = True,
) -> Build:
    """The dry run, the final stage (``--no-cache``; with a ``mode=max`` local cache export where
    the leg can), then the builder and lock stages (``-- --target``, from the cache just made)."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir()
    env = {**env, "TMPDIR": tmpdir}
    common = ["--env", "dev", "--no-latest", *flags]
    results, refs, metadata = {}, {}, []
    results["dry-run"] = project.script(
        *common, "--image-name", name, "--no-cache", "--dry-run", env=env
    ).assert_ok()
    cache = tmp / "cache" if exports_cache(leg) else None
    extra = ["--cache-to", f"type=local,dest={cache},mode=max"] if cache else []
    metadata.append(tmp / "final.json")
    offset = mirror.log_size()
    final = project.script(
        *common,
        "--image-name",
        name,
        "--no-cache",
        *extra,
        "--metadata-file",
        metadata[-1],
        env=env,
    )
    requests = mirror.requests_since(offset)
    results["final"] = final
    if final.returncode == 0:
        refs["final"] = f"{name}:dev"
        images.track_result(final)
        for stage in STAGES if stages else ():
            metadata.append(tmp / f"{stage}.json")
            result = project.script(
                *common,
                "--image-name",
                f"{name}-{stage}",
                "--metadata-file",
                metadata[-1],
                "--",
                "--target",
                stage,
                env=env,
            ).assert_ok()
            images.track_result(result)
            results[stage] = result
            refs[stage] = f"{name}-{stage}:dev"
    return Build(
        name=name,
        results=results,
        refs=refs,
        metadata=metadata,
        tmpdir=tmpdir,
        requests=requests,
        cache=cache,
    )


@pytest.fixture(scope="module")
def module_images(docker):
    tracked = Images(docker)
    yield tracked
    tracked.cleanup()


@pytest.fixture(scope="module")
def mirror_args(mirror) -> list:
    """The https mirror as the only place to install from (no trusted-host: verification on)."""
    return ["--build-arg", f"PIP_FIND_LINKS={mirror.url}", "--build-arg", "PIP_NO_INDEX=1"]


@pytest.fixture(scope="module")
def ca_build(
    new_project, docker, module_images, leg, mirror, mirror_args, token, tmp_path_factory
) -> Build:
    """The CA named as a host names it: ``PIP_CERT`` (beside the machine's ``SSL_CERT_FILE`` and
    ``REQUESTS_CA_BUNDLE``, which pip's order puts after it)."""
    tmp = tmp_path_factory.mktemp(f"host-ca-{leg.name}")
    return build_stages(
        new_project("host-ca"),
        docker,
        module_images,
        leg,
        mirror,
        tmp,
        f"ragbuild-e2e-{token}-host-ca",
        mirror_args,
        {"PIP_CERT": mirror.ca},
    )


#: the host's pip variables, cleared where a case gives pip's settings in a file of its own
PIP_VARIABLES = (
    "PIP_CERT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_TRUSTED_HOST",
    "PIP_CONFIG_FILE",
)


@pytest.fixture(scope="module")
def index_build(new_project, docker, module_images, leg, mirror, token, tmp_path_factory) -> Build:
    """The private index (user and token in its URL) and the CA in the host's pip.conf
    (``PIP_CONFIG_FILE``), passed with ``--host-index``; no ``--build-arg PIP_*``."""
    tmp = tmp_path_factory.mktemp(f"host-index-{leg.name}")
    conf = tmp / "pip.conf"
    conf.write_text(
        f"[global]\ncert = {mirror.ca}\nfind-links = {mirror.private_url()}\nno-index = true\n"
    )
    env = {name: None for name in PIP_VARIABLES}
    env["PIP_CONFIG_FILE"] = conf
    return build_stages(
        new_project("host-index"),
        docker,
        module_images,
        leg,
        mirror,
        tmp,
        f"ragbuild-e2e-{token}-host-index",
        ["--host-index"],
        env,
    )


@pytest.fixture(scope="module")
def arg_index_build(
    new_project, docker, module_images, leg, mirror, token, tmp_path_factory
) -> Build:
    """The private index given as ``--build-arg PIP_FIND_LINKS=https://user:token@...`` (the
    issue's leak: the builder stage wrote it to /opt/uv/index-args), the CA in ``PIP_CERT``."""
    tmp = tmp_path_factory.mktemp(f"arg-index-{leg.name}")
    flags = [
        "--build-arg",
        f"PIP_FIND_LINKS={mirror.private_url()}",
        "--build-arg",
        "PIP_NO_INDEX=1",
    ]
    return build_stages(
        new_project("arg-index"),
        docker,
        module_images,
        leg,
        mirror,
        tmp,
        f"ragbuild-e2e-{token}-arg-index",
        flags,
        {"PIP_CERT": mirror.ca},
    )


#: the parametrized cases' builds (they take ``leg`` too: getfixturevalue alone does not
#: parametrize a case over the legs)
BUILDS = {"host-ca": "ca_build", "host-index": "index_build", "build-arg-index": "arg_index_build"}
#: the builds from the private index
INDEX_BUILDS = ("host-index", "build-arg-index")


def needles_of(which: str, mirror: Mirror) -> dict:
    """The CA in every build (the host-index build's pip.conf names it as ``cert``), the token in
    the index builds."""
    found = ca_needles(mirror.ca)
    if which in INDEX_BUILDS:
        found.update(token_needles(mirror))
    return found


# --- (a) the build trusts the host's CA --------------------------------------------------------


def test_the_build_trusts_the_ca_the_host_names_in_pip_cert(ca_build, mirror, docker):
    for stage in ("final", *STAGES):
        ca_build.results[stage].assert_ok()
        assert docker.image_id(ca_build.refs[stage]), stage
    # pip (installing uv) and uv (resolving, installing) both fetched from the https mirror
    assert fetched(ca_build.requests, prefix="/uv-", agent="pip/"), ca_build.requests
    assert fetched(ca_build.requests, prefix="/", agent="uv/"), ca_build.requests
    # the worker's packages are in the image
    done = docker.quiet(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        ca_build.refs["final"],
        "-c",
        "import fastapi, uvicorn",
    )
    assert done.returncode == 0, done.stderr


def test_host_ca_beats_the_ca_pip_cert_names(
    new_project, docker, module_images, leg, mirror, mirror_args, token, tmp_path, e2e_env
):
    """``PIP_CERT`` names another CA (the ECR registry's test CA, which did not sign the mirror);
    ``--host-ca`` names the mirror's: the build trusts the one given."""
    build = build_stages(
        new_project("host-ca-flag"),
        docker,
        module_images,
        leg,
        mirror,
        tmp_path,
        f"ragbuild-e2e-{token}-host-ca-flag",
        [*mirror_args, "--host-ca", mirror.ca],
        {"PIP_CERT": e2e_env["E2E_ECR_CA"]},
        stages=False,
    )
    build.final.assert_ok()
    assert fetched(build.requests, prefix="/uv-", agent="pip/"), build.requests
    found = scan(build.outputs().encode(), ca_needles(mirror.ca), "the output")
    assert not found, "\n".join(found)


# --- (b) --no-host-ca fails, and says why in one line ------------------------------------------


def test_no_host_ca_fails_and_the_last_line_names_the_cause(
    new_project, docker, module_images, leg, mirror, mirror_args, token, tmp_path
):
    name = f"ragbuild-e2e-{token}-no-host-ca"
    result = new_project("no-host-ca").script(
        "--env",
        "dev",
        "--no-latest",
        "--image-name",
        name,
        "--no-cache",
        *mirror_args,
        "--no-host-ca",
        env={"PIP_CERT": mirror.ca},
    )
    assert result.returncode != 0, result.describe()
    assert "Traceback" not in result.text
    # it failed where it should: pip, verifying the mirror's certificate (docker's output)
    assert re.search(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed", result.stderr), (
        result.describe()
    )
    build_lines = [
        line for line in result.stderr.splitlines() if line.startswith("+ ") and " build " in line
    ]
    assert build_lines and not any("ragbuild-host-ca" in line for line in build_lines), build_lines
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: ") and result.error_lines() == [last], result.describe()
    # the cause, not only "docker build failed": TLS verification, the CA
    assert re.search(r"\bCA\b|certificate", last, re.I), last
    assert docker.refs(name) == []


# --- (c), (d) nothing holds the CA or the token ------------------------------------------------


@pytest.mark.parametrize("which", list(BUILDS))
def test_no_layer_of_any_stage_holds_them(which, request, leg, mirror, docker, tmp_path):
    build = request.getfixturevalue(BUILDS[which]).assert_built()
    found = scan_saved_images(
        docker, list(build.refs.values()), tmp_path / "saved.tar", needles_of(which, mirror)
    )
    assert not found, "\n".join(found)


@pytest.mark.parametrize("which", list(BUILDS))
def test_no_image_config_env_or_history_holds_them(which, request, leg, mirror, docker):
    build = request.getfixturevalue(BUILDS[which]).assert_built()
    needles = needles_of(which, mirror)
    found = []
    for ref in build.refs.values():
        config = docker.inspect(ref)
        assert config["Config"]["Env"], ref
        found += scan(json.dumps(config).encode(), needles, f"docker image inspect {ref}")
        history = docker.quiet("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref)
        assert history.returncode == 0 and "RUN" in history.stdout, history.stderr
        found += scan(history.stdout.encode(), needles, f"docker history {ref}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("which", list(BUILDS))
def test_no_output_dry_run_metadata_or_temporary_file_holds_them(which, request, leg, mirror):
    build = request.getfixturevalue(BUILDS[which]).assert_built()
    needles = needles_of(which, mirror)
    found = []
    for what, result in build.results.items():
        found += scan(result.stdout.encode(), needles, f"the {what} run's stdout")
        found += scan(result.stderr.encode(), needles, f"the {what} run's stderr")
    assert re.search(r"^#\d+ ", build.final.stderr, re.M), "docker's progress is not in the output"
    for path in build.metadata:
        found += scan(path.read_bytes(), needles, path.name)
    found += scan_files(build.tmpdir, needles)  # what the runs left in their TMPDIR
    assert not found, "\n".join(found)


@pytest.mark.legs("multiplatform")
@pytest.mark.parametrize("which", list(BUILDS))
def test_no_mode_max_cache_export_holds_them(which, request, leg, mirror):
    build = request.getfixturevalue(BUILDS[which]).assert_built()
    assert build.cache is not None and (build.cache / "index.json").is_file(), (
        build.final.describe()
    )
    blobs = list((build.cache / "blobs").rglob("*"))
    assert len(blobs) > 5, "the cache export holds no layers"
    found = scan_files(build.cache, needles_of(which, mirror))
    assert not found, "\n".join(found)


# --- (d) a private index with a token ----------------------------------------------------------


@pytest.mark.parametrize("which", INDEX_BUILDS)
def test_a_private_index_with_a_token_builds(which, request, leg, mirror, docker):
    """From the host's pip.conf with --host-index, or from a build arg."""
    build = request.getfixturevalue(BUILDS[which]).assert_built()
    for stage in ("final", *STAGES):
        assert docker.image_id(build.refs[stage]), stage
    # the credentials reached pip and uv: /private/ answers 401 without them
    assert fetched(build.requests, prefix="/private/uv-", agent="pip/", user=mirror.user), (
        build.requests
    )
    assert fetched(build.requests, prefix="/private/", agent="uv/", user=mirror.user), (
        build.requests
    )


@pytest.mark.parametrize("which", INDEX_BUILDS)
def test_the_builder_stages_index_args_hold_no_token(which, request, leg, mirror, docker):
    ref = request.getfixturevalue(BUILDS[which]).assert_built().refs["builder"]
    done = docker.quiet("run", "--rm", "--entrypoint", "cat", ref, "/opt/uv/index-args")
    assert done.returncode == 0, done.stderr
    assert mirror.token not in done.stdout and mirror.user not in done.stdout, done.stdout


# --- (e) what --host-index cannot pass is listed -----------------------------------------------


def test_host_index_lists_the_local_paths_it_does_not_pass(project, tiny_context, unique, images):
    """A host like this machine: find-links a directory, extra indexes ``file://`` URLs."""
    dockerfile = tiny_context()
    local = ["/opt/wheels", "file:///opt/pypi/simple", "file:///opt/pypi-more/simple"]
    env = {name: None for name in PIP_VARIABLES}
    env.update(
        {
            "PIP_CONFIG_FILE": "/dev/null",
            "PIP_FIND_LINKS": local[0],
            "PIP_EXTRA_INDEX_URL": " ".join(local[1:]),
        }
    )
    result = project.script(
        "--env",
        "dev",
        "--no-latest",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--image-name",
        unique("host-index-local"),
        "--host-index",
        env=env,
    ).assert_ok()
    images.track_result(result)
    # listed together, in a warning (the plan's summary may say it again, never piecemeal)
    lines = [line for line in result.stderr.splitlines() if any(value in line for value in local)]
    assert any(line.startswith("warning: ") for line in lines), result.describe()
    for line in lines:
        assert all(value in line for value in local), line
    assert not re.search(r"^\+ .*(/opt/wheels|file://)", result.stderr, re.M), "passed to docker"

"""The host's pip settings (pip_config.py): the reader against pip's own parser on generated
configurations (a differential test: pip is the oracle), the CA lookup order, the index
mapping, and what a build gets of them (flags, setup.cfg, the plan, the secrets)."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys

import pytest

from fakes import register_git
from ragbuild import cli, pip_config
from ragbuild.pip_config import HostCA, Setting

#: pip's resolution of ``pip install``'s options, run in a fresh interpreter once for many cases
#: (each: the files to write, the environment): pip's own ConfigOptionParser, the truth.
ORACLE = r"""
import json, os, sys
from pip._internal.commands import create_command
cases = json.load(sys.stdin)
answers = []
base = dict(os.environ)
for case in cases:
    os.environ.clear()
    os.environ.update(base)
    os.environ.update(case["env"])
    opts, _ = create_command("install").parse_args([])
    answers.append({"cert": opts.cert, "index-url": opts.index_url,
                    "extra-index-url": opts.extra_index_urls, "trusted-host": opts.trusted_hosts,
                    "find-links": opts.find_links, "no-index": opts.no_index})
print(json.dumps(answers))
"""
DEFAULTS = {
    "cert": None,
    "index-url": "https://pypi.org/simple",
    "extra-index-url": [],
    "trusted-host": [],
    "find-links": [],
    "no-index": False,
}
SEED = int(os.environ.get("RAGBUILD_PIP_CONFIG_SEED", "20261207"))
CASES = int(os.environ.get("RAGBUILD_PIP_CONFIG_CASES", "60"))


def predicted(environ: dict) -> dict:
    """pip_config.read's answer in the oracle's shape."""
    found = pip_config.read(environ, prefix=sys.prefix)
    answer = dict(DEFAULTS)
    for key in answer:
        if key in found:
            value = found[key].value
            if key in ("extra-index-url", "trusted-host", "find-links"):
                answer[key] = value.split()
            elif key == "no-index":
                answer[key] = value.strip().lower() in pip_config.TRUE
            elif key == "cert":
                answer[key] = pip_config.expand_user(value, environ)
            else:
                answer[key] = value
    return answer


def generate(rng: random.Random, root) -> dict:
    """One configuration: files in some of pip's places, ``PIP_*`` variables, and the
    environment that points pip at them."""
    home, xdg_home, xdg_dir = root / "home", root / "xdg-home", root / "xdg-dir"
    env_file = root / "env.conf"
    places = {
        "legacy": home / ".pip" / "pip.conf",
        "user": xdg_home / "pip" / "pip.conf",
        "global": xdg_dir / "pip" / "pip.conf",
        "env": env_file,
    }
    values = {
        "cert": ["/ca/a.pem", "/ca/b.pem", "~/ca.pem", ""],
        "index-url": ["https://a.example/simple", "https://u:t@b.example/simple", ""],
        "extra-index-url": [
            "https://x.example/simple file:///opt/pypi/simple",
            "https://y.example/simple",
            "",
        ],
        "trusted-host": ["a.example", "b.example c.example:8443", ""],
        "find-links": ["/opt/wheels", "https://w.example/links /srv/w", ""],
        "no-index": ["true", "0", "yes", "off", ""],
    }
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg_home), "XDG_CONFIG_DIRS": str(xdg_dir)}
    for name, path in places.items():
        if rng.random() < 0.5:
            continue
        lines = []
        for section in ("global", "install"):
            keys = [k for k in values if rng.random() < 0.4]
            if keys:
                lines.append(f"[{section}]")
                for key in keys:
                    spelled = key.replace("-", "_") if rng.random() < 0.2 else key
                    lines.append(f"{spelled} = {rng.choice(values[key])}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        if name == "env":
            env["PIP_CONFIG_FILE"] = str(env_file)
    for key in values:
        if rng.random() < 0.25:
            env["PIP_" + key.upper().replace("-", "_")] = rng.choice(values[key])
    if rng.random() < 0.1:
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def generate_cases(tmp_path) -> list:
    """The CASES configurations of SEED, each in its own folder ``tmp_path/case<i>``."""
    rng = random.Random(SEED)
    cases = []
    for i in range(CASES):
        root = tmp_path / f"case{i}"
        root.mkdir()
        cases.append(generate(rng, root))
    return cases


def test_the_reader_agrees_with_pip_on_generated_configurations(tmp_path):
    """Seeded cases (RAGBUILD_PIP_CONFIG_SEED and _CASES override): files in the global, user
    and PIP_CONFIG_FILE places, [global] and [install], PIP_* variables, empty values,
    /dev/null; each case's answer compared with pip's own option parser."""
    cases = generate_cases(tmp_path)
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "XDG_")) and k != "HOME"
    }
    done = subprocess.run(
        [sys.executable, "-c", ORACLE],
        input=json.dumps([{"env": c} for c in cases]),
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    for i, (case, pip_says) in enumerate(zip(cases, answers)):
        environ = {**clean, **case}
        assert predicted(environ) == pip_says, (
            f"case {i} (seed {SEED}): {case}\nfiles: "
            + "; ".join(f"{p}: {p.read_text()!r}" for p in (tmp_path / f"case{i}").rglob("*.conf"))
        )


def test_pip_cert_beats_the_config_files_and_install_beats_global(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\ncert = /g.pem\n[install]\ncert = /i.pem\n")
    environ = {"PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path)}
    assert pip_config.host_ca(environ) == HostCA("/i.pem", f"pip's config ({conf} [install] cert)")
    assert pip_config.host_ca({**environ, "PIP_CERT": "/e.pem"}) == HostCA("/e.pem", "PIP_CERT")


@pytest.mark.parametrize(
    "environ, expected",
    [
        (
            {"REQUESTS_CA_BUNDLE": "/r.pem", "SSL_CERT_FILE": "/s.pem"},
            HostCA("/r.pem", "REQUESTS_CA_BUNDLE"),
        ),
        ({"SSL_CERT_FILE": "/s.pem"}, HostCA("/s.pem", "SSL_CERT_FILE")),
        (
            {"PIP_CERT": "", "SSL_CERT_FILE": "/s.pem"},
            HostCA("/s.pem", "SSL_CERT_FILE"),
        ),  # empty: unset
        ({"PIP_CERT": "/p.pem", "REQUESTS_CA_BUNDLE": "/r.pem"}, HostCA("/p.pem", "PIP_CERT")),
        ({}, None),
    ],
)
def test_the_ca_lookup_order_after_pips_own_cert(environ, expected):
    assert pip_config.host_ca({"PIP_CONFIG_FILE": os.devnull, **environ}) == expected


def test_a_given_bundle_beats_the_hosts():
    environ = {"PIP_CONFIG_FILE": os.devnull, "PIP_CERT": "/p.pem"}
    assert pip_config.host_ca(environ, given="/x.pem") == HostCA("/x.pem", "--host-ca")


def test_check_ca_refuses_a_missing_file_and_one_over_buildkits_limit(tmp_path):
    missing = pip_config.check_ca(HostCA(str(tmp_path / "nope.pem"), "PIP_CERT"))
    assert missing is not None and "nope.pem (from PIP_CERT) cannot be read" in missing.message
    assert not missing.too_big
    directory = pip_config.check_ca(HostCA(str(tmp_path), "--host-ca"))
    assert directory is not None and "is not a file" in directory.message
    at_limit = tmp_path / "at.pem"
    at_limit.write_bytes(b"a" * pip_config.SECRET_MAX_BYTES)  # docker's client takes 512000 bytes
    assert pip_config.check_ca(HostCA(str(at_limit), "x")) is None
    over = tmp_path / "over.pem"
    over.write_bytes(b"a" * (pip_config.SECRET_MAX_BYTES + 1))  # and refuses one more
    too_big = pip_config.check_ca(HostCA(str(over), "x"))
    assert (
        too_big is not None
        and too_big.too_big
        and "over BuildKit's 500 KiB limit" in too_big.message
    )


def settings(**values) -> dict:
    return {
        key.replace("_", "-"): Setting(value, f"PIP_{key.upper()}") for key, value in values.items()
    }


def test_the_index_passes_urls_and_lists_what_a_build_cannot_see():
    index = pip_config.host_index(
        settings(
            index_url="https://u:t@idx.example/simple",
            extra_index_url="file:///opt/pypi/simple https://x.example/simple",
            trusted_host="idx.example",
            find_links="/opt/wheels",
            no_index="1",
        )
    )
    assert index.env == (
        ("PIP_INDEX_URL", "https://u:t@idx.example/simple"),
        ("PIP_EXTRA_INDEX_URL", "https://x.example/simple"),
        ("PIP_TRUSTED_HOST", "idx.example"),
    )
    # no-index without a find-links URL would leave the build nothing to install from
    assert index.dropped == (
        "extra-index-url file:///opt/pypi/simple",
        "find-links /opt/wheels",
        "no-index (no find-links URL to install from)",
    )
    assert index.secret_text() == (
        "PIP_INDEX_URL=https://u:t@idx.example/simple\n"
        "PIP_EXTRA_INDEX_URL=https://x.example/simple\n"
        "PIP_TRUSTED_HOST=idx.example\n"
    )


def test_no_index_passes_with_find_links_urls_and_a_build_arg_beats_the_host():
    index = pip_config.host_index(
        settings(
            find_links="https://w.example/links",
            no_index="TRUE",
            index_url="https://idx.example/simple",
        ),
        overridden=("PIP_INDEX_URL",),
    )
    assert index.env == (("PIP_FIND_LINKS", "https://w.example/links"), ("PIP_NO_INDEX", "1"))
    assert index.dropped == ()
    assert pip_config.host_index(settings(no_index="off")).env == ()


# --- what the build gets: flags, setup.cfg, the plan and the secrets -----------------------------


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def build_words(out: str) -> list:
    return shlex.split(out.splitlines()[0])


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "corp-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n")
    return path


def test_the_hosts_ca_reaches_the_build_as_a_secret(
    project, strict_fp, capsys, monkeypatch, bundle
):
    monkeypatch.setenv("PIP_CERT", str(bundle))
    code, out, err = run(capsys, "--env", "dev", "--dry-run")
    assert code == 0, err
    words = build_words(out)
    assert words[words.index("--secret") : words.index("--secret") + 2] == [
        "--secret",
        f"id=ragbuild-host-ca,src={bundle}",
    ]
    assert f"host CA: {bundle} (from PIP_CERT), passed as build secret ragbuild-host-ca" in err
    assert "MIIBtest" not in out + err  # its path, never its bytes


def test_no_host_ca_and_host_ca(project, strict_fp, capsys, monkeypatch, bundle, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    code, out, err = run(capsys, "--env", "dev", "--dry-run", "--no-host-ca")
    assert code == 0, err
    assert "ragbuild-host-ca" not in out and "host CA: none (--no-host-ca)" in err
    other = tmp_path / "other.pem"
    other.write_text("x")
    register_git(strict_fp)
    code, out, err = run(capsys, "--env", "dev", "--dry-run", "--host-ca", str(other))
    assert code == 0, err
    assert f"id=ragbuild-host-ca,src={other}" in out
    code, out, err = run(
        capsys, "--env", "dev", "--dry-run", "--host-ca", str(other), "--no-host-ca"
    )
    assert code == 2 and "--no-host-ca: not allowed with argument --host-ca" in err


def test_a_missing_given_bundle_stops_and_a_missing_hosts_one_warns(
    project, strict_fp, capsys, monkeypatch, tmp_path
):
    gone = tmp_path / "gone.pem"
    code, out, err = run(capsys, "--env", "dev", "--dry-run", "--host-ca", str(gone))
    assert code == 2 and out == ""
    assert err.strip() == (
        f"error: the host CA bundle {gone} (from --host-ca) cannot be read: "
        "No such file or directory"
    )
    monkeypatch.setenv("PIP_CERT", str(gone))
    register_git(strict_fp)
    code, out, err = run(capsys, "--env", "dev", "--dry-run")
    assert code == 0, err
    assert f"warning: the host CA bundle {gone} (from PIP_CERT) cannot be read" in err
    assert "ragbuild-host-ca" not in out


def test_a_bundle_over_the_secret_limit_stops_before_docker(
    project, strict_fp, capsys, monkeypatch, tmp_path
):
    big = tmp_path / "big.pem"
    big.write_bytes(b"a" * (pip_config.SECRET_MAX_BYTES + 1))
    monkeypatch.setenv("PIP_CERT", str(big))
    code, out, err = run(capsys, "--env", "dev")  # strict_fp: any docker call would fail
    assert code == 2 and "over BuildKit's 500 KiB limit for a build secret" in err
    assert len(err.strip().splitlines()) == 1


def test_setup_cfg_names_the_bundle_and_turns_host_index_on(
    project, strict_fp, capsys, monkeypatch, bundle
):
    (project / "setup.cfg").write_text(f"[ragbuild]\nhost-ca = {bundle}\nhost-index = true\n")
    monkeypatch.setenv("PIP_INDEX_URL", "https://u:s3cret@idx.example/simple")
    code, out, err = run(capsys, "--env", "dev", "--dry-run")
    assert code == 0, err
    assert f"host CA: {bundle} (from setup.cfg host-ca)" in err
    assert "id=ragbuild-host-index,env=RAGBUILD_HOST_INDEX_SECRET" in out
    assert "RAGBUILD_HOST_INDEX_SECRET='***'" in out
    assert (
        "package index, as build secret ragbuild-host-index: "
        "PIP_INDEX_URL=https://***@idx.example/simple (from PIP_INDEX_URL)"
    ) in err
    assert "s3cret" not in out + err
    (project / "setup.cfg").write_text("[ragbuild]\nhost-index = maybe\n")
    register_git(strict_fp)
    code, out, err = run(capsys, "--env", "dev", "--dry-run")
    assert code == 2 and "host-index: 'maybe' is not true or false" in err


def test_an_index_build_arg_with_credentials_goes_in_the_secret_not_a_build_arg(
    project, strict_fp, capsys
):
    """The builder stage writes its build args' flags into a layer (/opt/uv/index-args), so a
    token in one would stay there: ragbuild passes it in the index secret instead."""
    code, out, err = run(
        capsys,
        "--env",
        "dev",
        "--dry-run",
        "--build-arg",
        "PIP_INDEX_URL=https://u:s3cret@idx.example/simple",
        "--build-arg",
        "PIP_TRUSTED_HOST=idx.example",
    )
    assert code == 0, err
    words = build_words(out)
    assert "--build-arg" in words and "PIP_TRUSTED_HOST=idx.example" in words
    assert not [w for w in words if w.startswith("PIP_INDEX_URL")]
    assert "id=ragbuild-host-index,env=RAGBUILD_HOST_INDEX_SECRET" in words
    assert (
        "package index, as build secret ragbuild-host-index: "
        "PIP_INDEX_URL=https://***@idx.example/simple (from --build-arg PIP_INDEX_URL)"
    ) in err
    assert "s3cret" not in out + err


def test_host_index_reaches_the_build_through_the_clients_environment(
    project, strict_fp, capsys, monkeypatch
):
    """The real docker call gets the settings in RAGBUILD_HOST_INDEX_SECRET (docker's client
    reads it for --secret env=), a --build-arg PIP_* wins over the host's, and what a build
    cannot see is listed in one warning."""
    monkeypatch.setenv("PIP_INDEX_URL", "https://u:s3cret@idx.example/simple")
    monkeypatch.setenv("PIP_TRUSTED_HOST", "idx.example")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    seen = {}

    def record(process):
        seen.update(process.kwargs.get("env") or {})

    strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()], callback=record)
    listed = json.dumps(
        [f"rag-worker:{t}" for t in ("dev-20231203-143022", "dev", "git-a1b2c3d", "latest")]
    )
    strict_fp.register(
        [strict_fp.program("docker"), "image", "inspect", strict_fp.any()],
        stdout=f"sha256:0123 151234567 {listed} null\n",
    )
    code, out, err = run(
        capsys, "--env", "dev", "--host-index", "--build-arg", "PIP_TRUSTED_HOST=mirror.example"
    )
    assert code == 0, err
    assert (
        seen["RAGBUILD_HOST_INDEX_SECRET"] == "PIP_INDEX_URL=https://u:s3cret@idx.example/simple\n"
    )
    assert (
        "warning: --host-index passes no local path or file:// URL (a build cannot read the "
        "host's files): find-links /opt/wheels"
    ) in err
    assert "s3cret" not in out + err


@pytest.mark.parametrize(
    "spec",
    [
        "id=ragbuild-host-ca,src=/etc/hosts",
        "ID=ragbuild-host-index,env=HOME",
        "src=ragbuild-host-ca",
    ],
)
def test_a_users_secret_may_not_take_ragbuilds_ids(project, strict_fp, capsys, spec):
    (project / "ragbuild-host-ca").write_text("x")  # the id docker gives src=: its base name
    code, out, err = run(capsys, "--env", "dev", "--dry-run", "--secret", spec)
    assert code == 2 and out == ""
    assert "is ragbuild's own (the host's CA bundle or index settings)" in err


def test_host_index_with_nothing_a_build_can_use_says_so_once(
    project, strict_fp, capsys, monkeypatch
):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    code, out, err = run(capsys, "--env", "dev", "--dry-run", "--host-index")
    assert code == 0, err
    assert err.count("/opt/wheels") == 1  # the warning; the plan does not list it again
    assert "package index (--host-index): nothing a build can use, no secret" in err
    assert "ragbuild-host-index" not in out

"""Docker's credentials for a registry, got the way ``docker push`` gets them: the credential
helper docker resolves for the host asked (``docker-credential-<helper> get``, the host on
stdin), else config.json's ``auths``; they only ever live in a ``Secret``."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Optional

from ragbuild.docker_config import Credentials, DockerConfig
from ragbuild.errors import PushFailed
from ragbuild.run.command import Command, Kind, Secret
from ragbuild.run.runner import Runner, tail

#: What a credential helper prints when it has nothing for the host: the protocol's fixed
#: message (docker-credential-helpers credentials/error.go ``errCredentialsNotFoundMessage``).
CREDENTIALS_NOT_FOUND = "credentials not found in native keychain"


@dataclass(frozen=True)
class Login:
    """The user and secret docker would send (``username`` may be empty for a token)."""

    username: str
    secret: Secret
    identity_token: bool = False  # an OAuth refresh token (docker login via a browser)


def helper_get_command(helper: str) -> Command:
    """``docker-credential-<helper> get``: the host on stdin, JSON with the secret on stdout."""
    return Command(
        (f"docker-credential-{helper}", "get"),
        stdin="<registry host>",
        check=False,
        kind=Kind.PROBE,
        assume=json.dumps({"Username": "", "Secret": ""}),
    )


def client_version_command() -> Command:
    return Command(
        ("docker", "version", "--format", "{{.Client.Version}}"),
        check=False,
        kind=Kind.PROBE,
        assume="",
    )


def docker_credentials(runner: Runner, config: DockerConfig, host: str) -> Credentials:
    """``config.credentials(host)`` as the docker client that will push reads it. The docker
    28 client matches ``auths`` keys another way (``docker_config._hostname``); its version is
    asked only when that changes the answer for this config (a key like ``HTTPS://host``), so
    the usual run starts no process here. An unreadable version: the older clients' rule.
    The result carries the rule (``Credentials.client_major``) to ``resolve_login``, which
    reads the ``auths`` entry when a helper fails."""
    if config.auths_key(host) == config.auths_key(host, 28):
        return config.credentials(host)
    said = runner.run(client_version_command()).stdout.strip()
    try:
        major = int(said.split(".")[0])
    except ValueError:
        return config.credentials(host)
    return config.credentials(host, major)


def docker_login(runner: Runner, creds: Credentials, config: DockerConfig) -> Optional[Login]:
    """The credentials docker would send for ``creds.host``, or None when it has none
    (``resolve_login``)."""
    return resolve_login(runner, creds, config)[1]


def resolve_login(
    runner: Runner, creds: Credentials, config: DockerConfig
) -> tuple[Credentials, Optional[Login]]:
    """(where docker's credentials for ``creds.host`` come from, what it sends: None for
    nothing). A helper that fails (other than "not found", which means none) is what docker
    push ignores: it sends the config's ``auths`` entry for the host instead, or nothing
    (docker cli ``ResolveAuthConfig`` drops the helper's error and the native store returns
    the file's entry with it: cli/config/credentials/native_store.go ``Get``,
    https://github.com/docker/cli/blob/v28.0.0/cli/config/credentials/native_store.go); a
    warning says so, and the source returned is that entry (or none)."""
    if creds.helper:
        result = runner.run(helper_get_command(creds.helper), stdin=Secret(creds.host))
        said = (result.stdout + result.stderr).strip()
        if not result.ok:
            if CREDENTIALS_NOT_FOUND in said:
                return creds, None
            key = config.auths_key(creds.host, creds.client_major)
            instead = replace(creds, helper=None, origin="auths" if key else "", auth_key=key)
            runner.log(
                f"warning: docker-credential-{creds.helper} failed for {creds.host} "
                f"({creds.origin} in {creds.config_path}): {tail(said, 1) or 'no output'}; "
                f"docker push ignores that and sends what it has without the helper "
                f"({instead.describe()})"
            )
            return instead, _from_auths(key, config)
        try:
            data = json.loads(result.stdout)
            user, secret = str(data.get("Username") or ""), str(data.get("Secret") or "")
        except (ValueError, AttributeError):
            raise PushFailed(
                f"docker-credential-{creds.helper} answered `get` for {creds.host} "
                "with something that is not its JSON"
            ) from None
        if not secret:
            return creds, None
        return creds, Login(user, Secret(secret), identity_token=user == "<token>")
    return creds, _from_auths(creds.auth_key, config)


def _from_auths(key: Optional[str], config: DockerConfig) -> Optional[Login]:
    """The login of ``config.auths[key]`` (None: no entry, or one without credentials)."""
    if key is None:
        return None
    entry = config.auths.get(key) or {}
    if entry.get("identitytoken"):
        return Login("", Secret(str(entry["identitytoken"])), identity_token=True)
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeError):
            raise PushFailed(
                f"auths[{key!r}] in {config.path} is not base64 of "
                "user:password; run `docker login` again"
            ) from None
        return Login(user, Secret(password))
    if entry.get("username") and entry.get("password"):
        return Login(str(entry["username"]), Secret(str(entry["password"])))
    return None

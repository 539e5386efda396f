"""passthrough.py's pure rules, each answer and each message whole: how docker's client reads a
``--secret`` and ``--ssh`` spec (buildx build/secrets.go, ssh.go), which word after ``--`` is an
option, and what is refused. Written against the survivors of ``make mutation``: a message
checked only by its start let a changed word through."""

from __future__ import annotations

import pytest

from ragbuild import passthrough
from ragbuild.errors import UsageError

UNKNOWN_FIELD = (
    "(docker takes id=NAME with env=VARIABLE or src=PATH, and type=env|file); the "
    "value itself never goes on the command line"
)


@pytest.mark.parametrize(
    "spec, fields",
    [
        ("id=a,src=/run/a", {"id": "a", "src": "/run/a"}),
        ("ID=a,Source=/x=y", {"id": "a", "src": "/x=y"}),  # keys any case; a value keeps its '='
        (" id =a", {"id": "a"}),
        ("id=a,bare", {"id": "a", "": ""}),  # a part without '=' has the key ""
    ],
)
def test_secret_fields_as_docker_reads_them(spec, fields):
    assert passthrough.secret_fields(spec) == fields


@pytest.mark.parametrize(
    "spec, message",
    [
        ("id=a,colour=red", f"--secret: unknown field 'colour' {UNKNOWN_FIELD}"),
        ("id=a,bare", f"--secret: unknown field {UNKNOWN_FIELD}"),  # no '=': no name to show
        ("id=a,2x=1", f"--secret: unknown field {UNKNOWN_FIELD}"),  # not an identifier: not shown
        ("id=a,type=socket", "--secret: type must be env or file"),
        (
            "type=file",
            "--secret needs id=NAME (the RUN --mount=type=secret,id=NAME it serves) with "
            "env=VARIABLE or src=PATH",
        ),
        (
            "id=ragbuild-host-ca,src=/x",
            "--secret id=ragbuild-host-ca is ragbuild's own (the host's "
            "CA bundle or index settings): use --host-ca PATH or "
            "--host-index, or give your secret another id",
        ),
    ],
)
def test_check_secret_refuses_with_its_reason(spec, message):
    with pytest.raises(UsageError) as refused:
        passthrough.check_secret(spec)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "spec", ["id=token", "src=/run/token", "env=TOKEN", "type=env,id=T", "id=a,src=/x=y"]
)
def test_check_secret_takes_any_one_of_id_src_env(spec):
    """docker needs only one of them: an id alone is read from the variable or file of that
    name (https://docs.docker.com/reference/cli/docker/buildx/build/#secret)."""
    assert passthrough.check_secret(spec) == spec


@pytest.mark.parametrize(
    "fields, ident",
    [
        ({"id": "a", "src": "/run/b", "env": "C"}, "a"),
        ({"src": "/run/b", "env": "C"}, "b"),  # the base name of src
        ({"src": "/run/", "env": "C"}, "C"),  # no base name: env
        ({"env": "C"}, "C"),
        ({}, ""),
    ],
)
def test_secret_id_is_the_one_docker_gives(fields, ident):
    assert passthrough.secret_id(fields) == ident


@pytest.mark.parametrize(
    "spec", ["default", "github=/run/agent.sock", "key=/a,/b", "id=path=with=equals", "k=/a=b,/c=d"]
)
def test_check_ssh_takes_docker_forms(spec):
    assert passthrough.check_ssh(spec) == spec


@pytest.mark.parametrize("spec", ["", "=/run/agent.sock", "my key=/a", "a,b=/x", "a\tb"])
def test_check_ssh_refuses_an_id_docker_cannot_read(spec):
    with pytest.raises(UsageError) as refused:
        passthrough.check_ssh(spec)
    assert str(refused.value) == f"--ssh {spec!r} is not default or ID[=SOCKET|KEY[,KEY...]]"


def test_missing_inputs_names_the_first_missing_thing_whole():
    def exists(path):
        return path in {"/run/ok", "/keys/a"}

    assert passthrough.missing_inputs(["id=a,src=/run/ok"], ["k=/keys/a"], {}, exists) is None
    assert passthrough.missing_inputs(["src=/run/gone"], [], {}, exists) == (
        "--secret id=?: src /run/gone does not exist (docker's client reads it before the build)"
    )
    assert passthrough.missing_inputs([], ["default"], {}, exists) == (
        "--ssh default: SSH_AUTH_SOCK is not set, so there is no agent to forward; start one "
        '(eval "$(ssh-agent)"; ssh-add), or give --ssh default=PATH to a key'
    )
    # an agent forward that is fine does not end the check: the next spec is still read
    assert passthrough.missing_inputs(
        [], ["default", "k=/keys/a,/keys/b"], {"SSH_AUTH_SOCK": "/run/agent"}, exists
    ) == ("--ssh k: /keys/b does not exist (an agent socket or a key file)")


@pytest.mark.parametrize(
    "word, name",
    [
        ("--network=host", "--network"),
        ("--a=b=c", "--a"),
        ("--", "--"),
        ("--x", "--x"),
        ("-", None),
        ("-t", "--tag"),
        ("-tname", "--tag"),
        ("-fx", "--file"),
        ("-q", "--quiet"),
        ("-m", "-m"),
        ("-mfoo", "-m"),
        ("-1", None),
        ("value", None),
    ],
)
def test_option_name_as_docker_spells_it(word, name):
    assert passthrough.option_name(word) == name


@pytest.mark.parametrize(
    "words, message",
    [
        (
            ("--network", "host", "--", "x"),
            "a second -- after -- would end docker's options: give "
            "the docker build options once, after one --",
        ),
        (
            ("other-context",),
            "a word after -- that is no option's value is refused: ragbuild gives "
            "the build context (its own --context, before --); docker build takes "
            "exactly one",
        ),
        (
            ("--network=host", "ctx"),
            "a word after -- that is no option's value is refused: ragbuild "
            "gives the build context (its own --context, before --); docker "
            "build takes exactly one",
        ),
        (
            ("--tag=x:y=z",),
            "--tag after -- is refused: ragbuild sets the tags (add one with its own "
            "--tag, before --)",
        ),
        (
            ("-tname",),
            "-t after -- is refused: ragbuild sets the tags (add one with its own --tag, "
            "before --)",
        ),
        (
            ("--label=org.ragbuild.repository=x",),
            "--label org.ragbuild.repository after -- is refused: ragbuild sets that label itself",
        ),
        (
            ("--label", "org.opencontainers.image.created=now"),
            "--label org.opencontainers.image.created after -- is refused: ragbuild sets that label "
            "itself",
        ),
        (
            ("--dry-run=yes",),
            "--dry-run after -- is refused: it is ragbuild's own option, and every "
            "word after -- goes to docker build; give it before --",
        ),
        (
            ("--dry-run=a=b",),
            "--dry-run after -- is refused: it is ragbuild's own option, and every "
            "word after -- goes to docker build; give it before --",
        ),
        (
            ("-nx",),
            "-n after -- is refused: it is ragbuild's own option, and every word after -- "
            "goes to docker build; give it before --",
        ),
        # the first word is no option's value, whatever the last word is
        (
            ("ctx", "--network"),
            "a word after -- that is no option's value is refused: ragbuild gives "
            "the build context (its own --context, before --); docker build takes "
            "exactly one",
        ),
        # the value of a --label is the word after it, not the one before
        (
            ("--label", "org.ragbuild.repository=x", "--rm"),
            "--label org.ragbuild.repository after -- is refused: ragbuild sets that label itself",
        ),
        # a label's key ends at its first '='
        (
            ("--label=org.ragbuild.repository=a=b",),
            "--label org.ragbuild.repository after -- is refused: ragbuild sets that label itself",
        ),
    ],
)
def test_check_extra_refuses_with_its_reason(words, message):
    with pytest.raises(UsageError) as refused:
        passthrough.check_extra(words, own=("--dry-run", "-n"))
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "words",
    [
        ("--network", "host"),
        ("--label", "team=a=b"),
        ("--label=team=a", "--rm"),
        ("--quiet-not", "v"),
        ("--label",),
    ],
)
def test_check_extra_passes_what_docker_takes(words):
    assert passthrough.check_extra(words) == words


def test_describe_says_where_each_secret_comes_from_never_its_value():
    assert passthrough.describe(
        ["id=a,env=TOKEN", "src=/run/b", "id=c"], ["default"], ["--network", "host"]
    ) == [
        "secret: a from $TOKEN (value never printed; mount it with RUN --mount=type=secret)",
        "secret: (from src) from file /run/b (value never printed; mount it with RUN "
        "--mount=type=secret)",
        "secret: c from $c or file c (value never printed; mount it with RUN --mount=type=secret)",
        "ssh: default (RUN --mount=type=ssh)",
        "docker build options (after --): --network host",
    ]


# Survivors of `make mutation` that are equivalent (no input tells them from the code):
# - ``word.split("=", 1)[0]`` as ``split("=")[0]`` or ``split("=", 2)[0]`` (check_ssh,
#   option_name, check_extra): the part before the first "=" is the same however many splits
#   follow it; likewise the label value ``word.split("=", 1)[1]`` cut at its next "=" as
#   ``split("=")[1]`` or ``split("=", 2)[1]``: only its key, before that "=", is compared.
# - option_name's ``len(word) > 2`` as ``>= 2``: "--" then takes the first branch and gives "--",
#   as the second branch does.
# - check_extra's ``before = ... else ""`` as ``else "XXXX"`` and the label value's ``else ""``
#   as ``else "XXXX"``: neither is an option nor a label ragbuild sets, so both decide alike.

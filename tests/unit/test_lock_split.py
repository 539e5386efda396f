"""The Dockerfile's lock stage: the inline Python that splits ``uv pip compile``'s list into
/lock/direct.txt (the packages requirements.txt names) and /lock/transitive.txt (the rest).

The program is taken from the Dockerfile as BuildKit hands it to the shell (the instruction's
``\\``-newlines joined) and run with the interpreter of the tests, deprecations as errors: the base
image's Python may be newer than the one the Dockerfile was written with (``PYTHON_IMAGE``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from fakes import REPO


def split_program() -> str:
    dockerfile = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", "", dockerfile)  # the Dockerfile's line continuations
    found = re.findall(r"python -c '([^']*)'", joined)
    assert len(found) == 1, found
    return found[0]


def split(tmp_path: Path, requirements: str, compiled: str) -> tuple:
    (tmp_path / "requirements.txt").write_text(requirements)
    (tmp_path / "all.txt").write_text(compiled)
    program = (
        split_program()
        .replace("/tmp/requirements.txt", str(tmp_path / "requirements.txt"))
        .replace("/lock/", f"{tmp_path}/")
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", program],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return (
        (tmp_path / "direct.txt").read_text().splitlines(),
        (tmp_path / "transitive.txt").read_text().splitlines(),
    )


#: What ``uv pip compile --no-header --no-annotate`` wrote for the requirements below (the
#: mirror's wheels, Python 3.11): normalized names, extras stripped, markers evaluated.
COMPILED = """\
anyio==4.16.0
certifi==2026.10.19.post1
fastapi==0.165.0
greenlet==3.5.6
h2==4.4.1
httpx==0.28.1
python-dateutil==2.9.0.post0
pyyaml==6.0.4
six==1.17.0
sqlalchemy==2.0.58
starlette==1.10.0
typing-extensions==4.16.0
uvicorn==0.54.0
"""


def test_the_packages_requirements_txt_names_are_direct_whatever_their_spelling(tmp_path):
    """Comments, blank lines, options lines, extras, markers, CRLF, PEP 503 spellings
    (case, ``_``, ``.``), and a requirement that another one also depends on (anyio)."""
    requirements = (
        "# the service's pins\r\n\r\n"
        "FastAPI==0.165.0   # inline comment\r\n"
        '  uvicorn==0.54.0 ; python_version >= "3.8"\r\n'
        "httpx[http2]==0.28.1\r\n"
        "SQLAlchemy[asyncio] >=2\r\n"
        "--find-links http://172.17.0.1:18631/\r\n"
        "Typing.Extensions>=4\r\n"
        "anyio\r\n"
        "python_dateutil~=2.9\r\n"
        'colorama==0.4.6 ; sys_platform == "win32"\r\n'
        "PyYAML\r\n"
    )
    direct, transitive = split(tmp_path, requirements, COMPILED)
    assert direct == [
        "anyio==4.16.0",
        "fastapi==0.165.0",
        "httpx==0.28.1",
        "python-dateutil==2.9.0.post0",
        "pyyaml==6.0.4",
        "sqlalchemy==2.0.58",
        "typing-extensions==4.16.0",
        "uvicorn==0.54.0",
    ]
    assert transitive == [
        "certifi==2026.10.19.post1",
        "greenlet==3.5.6",
        "h2==4.4.1",
        "six==1.17.0",
        "starlette==1.10.0",
    ]


def test_no_requirements_make_two_empty_lists(tmp_path):
    assert split(tmp_path, "# nothing yet\n\n", "") == ([], [])

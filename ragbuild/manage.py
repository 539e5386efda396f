"""Day-to-day commands behind make run-local, logs and clean: each a plan of docker calls."""

from __future__ import annotations

from ragbuild.plan import PROJECT_LABEL, Command

LOCAL_CONTAINER = "rag-worker-local"


def run_local(runner, image: str, *, port: int, name: str = LOCAL_CONTAINER) -> None:
    """Replace the local container with a fresh one of IMAGE on PORT (detached)."""
    runner.run(Command(("docker", "rm", "-f", name), check=False, quiet=True))
    runner.run(Command(("docker", "run", "-d", "--name", name, "-p", f"{port}:8080", image)))
    if not runner.dry_run:
        runner.log(f"{image} is running as {name}: curl http://localhost:{port}/health; "
                   "logs: make logs; stop: docker rm -f " + name)


def logs(runner, *, name: str = LOCAL_CONTAINER, follow: bool = False, lines: int = 200) -> None:
    argv = ["docker", "logs", "--tail", str(lines)]
    if follow:
        argv.append("--follow")
    runner.run(Command(tuple(argv + [name]), mode="stream"))


def list_images_command(project: str) -> Command:
    return Command(("docker", "image", "ls", "--quiet", "--no-trunc",
                    "--filter", f"label={PROJECT_LABEL}={project}"))


def clean(runner, project: str, *, name: str = LOCAL_CONTAINER) -> list:
    """Remove the images carrying this project's label, and only those."""
    listed = runner.run(list_images_command(project))
    ids = ["IMAGE_IDS"] if listed.dry else list(dict.fromkeys(listed.stdout.split()))
    if not ids:
        runner.log(f"nothing to clean: no image has label {PROJECT_LABEL}={project}")
        return []
    runner.run(Command(("docker", "rm", "-f", name), check=False, quiet=True))
    runner.run(Command(("docker", "image", "rm", "--force", *ids)))
    if not runner.dry_run:
        runner.log(f"removed {len(ids)} image(s) labelled {PROJECT_LABEL}={project}")
    return ids

from ragbuild.cli import run

run()

import sys

from ragbuild.cli import main

sys.exit(main())

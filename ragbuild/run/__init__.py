"""The only place a process starts: commands as data (``command``), the runner and the dry
runner (``runner``), the console's colour (``console``), termination signals (``signals``) and
what a printout never shows (``redaction``). Nothing here imports the domain; ``errors`` sits
below it."""

"""The rules of recovery, in pure standard library. Nothing here imports the rest of bounceback."""

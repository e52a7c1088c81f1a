"""``rsprep build``: recipes, the build plan and the orchestration of the stages (docs/build.md).

The layer between the stages and the CLI: it adds orchestration only; every pixel is written by
the stage functions of :mod:`rsprep.stages`.
"""

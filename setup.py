"""The summary's hot loop in C (``pipeline/traces/_summary_native.c``); the rest of the package is in
pyproject.toml. The extension is optional: without a C compiler the package installs, and the summary runs its
Python path (the same results, slower)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pipeline.traces._summary_native",
            ["pipeline/traces/_summary_native.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)

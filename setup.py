"""Build hook for the optional C extension; everything else is in pyproject.toml.

``aitrados.bus._fastzmq`` (core/bus/_fastzmq.c) moves multipart messages on pyzmq sockets in one C
call each (core/bus/fastio.py). It is optional: without a C compiler the install still succeeds and
the bus uses the pure-Python versions of the same functions.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("aitrados.bus._fastzmq", ["core/bus/_fastzmq.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"])])

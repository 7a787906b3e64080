from setuptools import setup

setup(cffi_modules=["pysock/_build.py:ffibuilder"])

from setuptools import setup

# The extension is built against the stable ABI (cffi's default on CPython:
# _pysock.abi3.so), so the wheel says so: cp39-abi3, one wheel for 3.9 and later.
setup(
    cffi_modules=["pysock/_build.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)

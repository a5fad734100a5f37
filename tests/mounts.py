"""Small tmpfs mounts for the disk-full and read-only tests. Mounting needs
root (or CAP_SYS_ADMIN); where it fails (CI containers, macOS) the tests
that use these fixtures are skipped, with the reason."""
import os
import subprocess
import sys

import pytest


def tmpfs(path, options: str):
    """Mount a tmpfs at ``path`` with ``options`` for the duration of a fixture."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A directory on a 256 KiB tmpfs: a larger write fails with ENOSPC."""
    yield from tmpfs(tmp_path / "small_disk", "size=256k")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody, root included, can write to (a read-only tmpfs)."""
    yield from tmpfs(tmp_path / "read_only", "ro,size=64k")

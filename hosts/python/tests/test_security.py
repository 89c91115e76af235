"""Issue 28 (security, second pass), the Python host's part of finding 1: the compile cache
holds native code that is mapped and run, so it lives in a per-user folder, and a cache
folder another user owns or others can write is not used (compiled in memory, with a warning)."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from scim_provisioner_host import Runtime


def _plant(runtime_cache: Runtime, folder) -> None:
    """What another local user could put there: a .cwasm under the name the host looks for."""
    # Any bytes will do to prove the file is never opened: a real planted file would be code.
    name = runtime_cache.cache_path().name
    (folder / name).write_bytes(b"planted native code")


def test_the_default_cache_is_per_user_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv("SCIM_PROVISIONER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    runtime = Runtime()
    cached = runtime.cache_path()
    assert cached is not None and cached.is_file()
    assert not str(cached).startswith(tempfile.gettempdir() + "/scim-provisioner-py-cache")
    assert cached.parent == tmp_path / "xdg-cache" / "scim-provisioner"
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(cached.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_cache_folder_others_can_write_is_not_used(tmp_path, mode):
    good = Runtime(cache_dir=tmp_path / "good")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    _plant(good, shared)
    with pytest.warns(RuntimeWarning, match="writable by"):
        runtime = Runtime(cache_dir=shared)
    assert runtime.loaded_from_cache is False
    assert runtime.cache_path() is None, "compiled in memory instead"
    assert sorted(p.name for p in shared.iterdir()) == [good.cache_path().name], "nothing written there"
    assert runtime.info()["cache"] is None


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_cache_folder_of_another_user_is_not_used(tmp_path):
    good = Runtime(cache_dir=tmp_path / "good")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    _plant(good, foreign)
    os.chown(foreign, 65534, 65534)
    with pytest.warns(RuntimeWarning, match="belongs to user 65534"):
        runtime = Runtime(cache_dir=foreign)
    assert runtime.loaded_from_cache is False and runtime.cache_path() is None

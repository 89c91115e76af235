"""Fixtures for the WordPress plugin's suite, over harness.py:

- ``mariadb`` (session): a MariaDB of the suite's own (``.create_database``, ``.query``,
  ``.stop()``, ``.start()``);
- ``wp_site`` (factory): ``wp_site(name="a", activate=True, plugin_zip=None, ...)`` returns a
  fresh WordPress site served by Apache + mod_php; every site it made is stopped when the test
  ends;
- ``wordpress`` (module): one such site shared by a test module;
- ``scim2_server``: a real scim2-server of the test's own.

Set SCIM_WP_PLUGIN_ZIP to install the plugin from a built zip (hosts/wordpress/run-tests does),
and SCIM_WP_KEEP=1 to keep the temporary directory (logs, databases) after the run.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    PLUGIN_SOURCE,
    PLUGIN_SLUG,
    MariaDB,
    Scim2Server,
    WordPressSite,
    check_prerequisites,
    make_temp_root,
)


def plugin_available() -> bool:
    """The plugin can be installed: a zip was given, or the repository has its main file."""
    return bool(os.environ.get("SCIM_WP_PLUGIN_ZIP")) or (PLUGIN_SOURCE / f"{PLUGIN_SLUG}.php").exists()


@pytest.fixture(scope="session")
def wp_temp_root() -> Iterator[Path]:
    missing = check_prerequisites()
    if missing:
        pytest.fail("missing: " + "; ".join(missing) + " (hosts/wordpress/run-tests checks and says how to install)")
    root = make_temp_root("scim-wp-tests-")
    yield root
    if os.environ.get("SCIM_WP_KEEP") == "1":
        print(f"\nkept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(wp_temp_root: Path) -> Iterator[MariaDB]:
    db = MariaDB(wp_temp_root)
    yield db
    db.stop()


_site_counter = [0]


def _new_site(mariadb: MariaDB, root: Path, name: str | None, **kwargs) -> WordPressSite:
    _site_counter[0] += 1
    kwargs.setdefault("install_plugin", plugin_available())
    return WordPressSite(mariadb=mariadb, root=root, name=name or f"s{_site_counter[0]}", **kwargs)


@pytest.fixture()
def wp_site(mariadb: MariaDB, wp_temp_root: Path) -> Iterator[Callable[..., WordPressSite]]:
    made: list[WordPressSite] = []

    def factory(name: str | None = None, **kwargs) -> WordPressSite:
        if name is not None:
            name = f"{name}{_site_counter[0] + 1}"
        site = _new_site(mariadb, wp_temp_root, name, **kwargs)
        made.append(site)
        return site

    yield factory
    for site in made:
        site.stop()


@pytest.fixture(scope="module")
def wordpress(mariadb: MariaDB, wp_temp_root: Path) -> Iterator[WordPressSite]:
    site = _new_site(mariadb, wp_temp_root, None)
    yield site
    site.stop()


@pytest.fixture()
def scim2_server(wp_temp_root: Path) -> Iterator[Scim2Server]:
    server = Scim2Server(wp_temp_root)
    yield server
    server.stop()

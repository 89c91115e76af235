"""The WordPress plugin's test harness: a MariaDB, WordPress sites served by Apache with mod_php,
and a scim2-server, each a process of its own on a free loopback port with its data in a
temporary directory, stopped at the end.

No pytest here: conftest.py wraps these classes as fixtures, and hosts/wordpress/demo and
hosts/wordpress/bench import them as they are.

Run as root (as CI does), Apache's children and the PHP command line run as www-data and
MariaDB as mysql, the way a Debian site runs; run as another user, everything runs as that
user. Nothing waits a fixed time: every wait polls a condition, bounded, and a process that
dies ends its wait at once.
"""

from __future__ import annotations

import atexit
import html.parser
import http.cookiejar
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

REPO = Path(__file__).resolve().parents[3]
PLUGIN_SLUG = "scim-provisioner"
PLUGIN_SOURCE = REPO / "hosts" / "wordpress" / PLUGIN_SLUG
PLUGIN_MAIN = f"{PLUGIN_SLUG}/{PLUGIN_SLUG}.php"
WORDPRESS_SOURCE = Path(os.environ.get("SCIM_WP_SOURCE", "/usr/share/wordpress"))
VENV = Path(os.environ.get("SCIM_PEERS_VENV") or REPO / "target" / "peers" / "venv")
APACHE_MODULES = Path("/usr/lib/apache2/modules")

IS_ROOT = os.geteuid() == 0
# Who runs what: as root, the users a Debian site uses; otherwise the current user.
WEB_USER = "www-data" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
DB_USER = "mysql" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name


class HarnessError(RuntimeError):
    """A service of the harness did not start, stop or answer as it should."""


# Every service process still running: stopped at interpreter exit too, so a run that ends
# early (an exception in set-up, a SIGTERM turned into SystemExit) leaves nothing behind.
_LIVE: set[subprocess.Popen] = set()


def _stop_all_live() -> None:
    for proc in list(_LIVE):
        stop_process(proc, limit=30)


atexit.register(_stop_all_live)


def spawn(argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen:
    """A service process in a session of its own (Apache's prefork parent signals its whole
    process group when it stops; a session of its own keeps the caller out of that), its
    output appended to ``log``, stopped at exit at the latest."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    _LIVE.add(proc)
    return proc


# ----------------------------------------------------------------------------- utilities

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], what: str, limit: float = 60,
             process: Optional[subprocess.Popen] = None, log: Optional[Path] = None) -> None:
    """Polls ``condition`` until it holds; raises after ``limit`` seconds, or at once when
    ``process`` has exited (with the tail of ``log``)."""
    end = time.monotonic() + limit
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise HarnessError(f"{what}: the process exited with {process.returncode}{_tail(log)}")
        if time.monotonic() > end:
            raise HarnessError(f"{what}: not within {limit:.0f} s{_tail(log)}")
        if process is not None:
            try:
                process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(0.05)


def _tail(log: Optional[Path], lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {log} (last {len(text)} lines) ---\n" + "\n".join(text)


def chown(path: Path, user: str, mode: Optional[int] = None) -> None:
    if IS_ROOT:
        shutil.chown(path, user, user if user != "mysql" else "mysql")
    if mode is not None:
        os.chmod(path, mode)


def as_user(user: str, argv: list[str]) -> list[str]:
    """The command run as ``user`` (through runuser when root, as it is otherwise)."""
    if IS_ROOT and user != "root":
        return ["runuser", "-u", user, "--"] + argv
    return argv


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, limit: float = 60) -> None:
    _LIVE.discard(proc)
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_temp_root(prefix: str) -> Path:
    """A temporary directory that www-data and mysql may enter (each service's own
    subdirectory is then owned by that service, mode 0700 where it holds data). Its name
    carries the process id, so concurrent runs can tell their directories apart."""
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    os.chmod(root, 0o755)
    return root


# ----------------------------------------------------------------------------- HTTP

@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib's hook
        return None


class HttpClient:
    """Plain HTTP with urllib (never the component): keeps cookies, follows no redirects unless
    asked, and returns every status (4xx/5xx included) as a Response."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self._plain = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect)
        self._following = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + "/" + path.lstrip("/")

    def request(self, method: str, path: str, body: Any = None, headers: Optional[Mapping[str, str]] = None,
                follow: bool = False, timeout: float = 60) -> Response:
        """``body``: bytes as they are, a dict or list as JSON (application/json unless a
        Content-Type is given), a ``form(...)`` result as a urlencoded form."""
        hdrs = dict(headers or {})
        data: Optional[bytes]
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, _Form):
            data = urllib.parse.urlencode(body.fields, doseq=True).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=hdrs)
        opener = self._following if follow else self._plain
        try:
            with opener.open(req, timeout=timeout) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read(), resp.url)
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers.items()), e.read(), e.url or req.full_url)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def cookie(self, name_prefix: str) -> Optional[str]:
        for c in self.cookies:
            if c.name.startswith(name_prefix):
                return c.value
        return None


@dataclass
class _Form:
    fields: Mapping[str, Any]


def form(**fields: Any) -> _Form:
    """A urlencoded form body for HttpClient.request (lists become repeated fields)."""
    return _Form(fields)


def scim_request(method: str, url: str, token: Optional[str], body: Any = None,
                 timeout: float = 60) -> tuple[int, Any]:
    """One SCIM call over plain HTTP: the status and the JSON body (None when empty)."""
    headers = {"Accept": "application/scim+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/scim+json"
    resp = HttpClient(url).request(method, url, body, headers=headers, timeout=timeout)
    try:
        return resp.status, resp.json()
    except ValueError:
        return resp.status, resp.text


# ----------------------------------------------------------------------------- wp-admin forms

class FormFields(html.parser.HTMLParser):
    """The fields one form of a page submits, as a browser would (checked boxes only, the
    selected option, textareas' text; no buttons)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.fields: dict[str, str] = {}
        self.found = False
        self._in_form = False
        self._select: Optional[str] = None
        self._textarea: Optional[str] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form" and a.get("id") == self.form_id:
            self._in_form = self.found = True
        if not self._in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields[name] = a.get("value", "on")
            elif kind not in ("submit", "button", "image", "reset"):
                self.fields[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.fields.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.fields[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data


def form_fields(page_html: str, form_id: str) -> dict[str, str]:
    parser = FormFields(form_id)
    parser.feed(page_html)
    if not parser.found:
        raise HarnessError(f"no form#{form_id} on the page")
    return parser.fields


def edit_user_in_admin(session: HttpClient, user_id: int, **changes: str) -> tuple[float, Response]:
    """wp-admin's "Update User": opens user-edit.php, changes the given fields (first_name,
    email, role, ...), posts the form as the browser would. Returns the POST's milliseconds
    (until its response arrived) and the response (a 302 back to the form when saved)."""
    page = session.get(f"/wp-admin/user-edit.php?user_id={user_id}")
    if page.status != 200:
        raise HarnessError(f"user-edit.php answered {page.status}")
    fields = form_fields(page.text, "your-profile")
    fields.update(changes)
    fields["submit"] = "Update User"
    started = time.perf_counter()
    resp = session.post(f"/wp-admin/user-edit.php?user_id={user_id}", form(**fields))
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status != 302 or "updated=1" not in resp.headers.get("Location", ""):
        raise HarnessError(f"the save answered {resp.status} {resp.headers.get('Location')}: {resp.text[:300]}")
    return elapsed, resp


# ----------------------------------------------------------------------------- MariaDB

class MariaDB:
    """A MariaDB of the harness's own: a fresh datadir (mariadb-install-db), mariadbd on a free
    loopback port and a Unix socket, root over the socket. ``stop()`` and ``start()`` keep the
    datadir and the port, so a test can take the database away mid-run and bring it back."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "mariadb"
        self.datadir = self.dir / "data"
        self.socket = self.dir / "mariadb.sock"
        self.log = self.dir / "mariadbd.log"
        self.dir.mkdir()
        chown(self.dir, DB_USER, 0o700 if not IS_ROOT else 0o711)
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self._databases: dict[str, tuple[str, str]] = {}
        out = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", f"--user={DB_USER}",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if out.returncode != 0:
            raise HarnessError(f"mariadb-install-db failed:\n{out.stdout}")
        self.start()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = spawn(
            ["mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--user={DB_USER}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
             f"--pid-file={self.dir / 'mariadbd.pid'}", "--skip-name-resolve",
             "--innodb-buffer-pool-size=64M", "--max-connections=200"],
            self.log)
        wait_for(lambda: self._ping(), "MariaDB accepting connections", limit=120,
                 process=self.proc, log=self.log)

    def _ping(self) -> bool:
        return subprocess.run(self._client() + ["-e", "select 1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0

    def _client(self, database: Optional[str] = None) -> list[str]:
        argv = ["mariadb", "--no-defaults", "-S", str(self.socket), "-uroot", "-N", "-B"]
        return argv + ([database] if database else [])

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waited for."""
        if self.proc is not None:
            stop_process(self.proc, limit=120)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def query(self, database: Optional[str], sql: str) -> list[list[str]]:
        """Runs SQL as root; the rows of the last statement, each a list of strings (NULL as
        None)."""
        out = subprocess.run(self._client(database) + ["-e", sql], capture_output=True, text=True)
        if out.returncode != 0:
            raise HarnessError(f"mariadb: {out.stderr.strip()}\nSQL: {sql}")
        rows = []
        for line in out.stdout.splitlines():
            rows.append([None if v == "NULL" else v for v in line.split("\t")])
        return rows

    def dump(self, database: str) -> str:
        """mariadb-dump of one database (every table, as SQL text): for a test that looks for
        a secret stored as sent."""
        out = subprocess.run(["mariadb-dump", "--no-defaults", "-S", str(self.socket), "-uroot",
                              "--skip-extended-insert", database], capture_output=True, text=True)
        if out.returncode != 0:
            raise HarnessError(f"mariadb-dump: {out.stderr.strip()}")
        return out.stdout

    def create_database(self, name: str) -> tuple[str, str]:
        """A database and a user of its own for 127.0.0.1: returns (user, password)."""
        if not name.replace("_", "").isalnum():
            raise HarnessError(f"database name {name!r}: letters, digits and _ only")
        user, password = name[:32], secrets.token_hex(16)
        self.query(None, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
                         f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';"
                         f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'127.0.0.1';")
        self._databases[name] = (user, password)
        return user, password


# ----------------------------------------------------------------------------- WordPress

def _default_binaries() -> tuple[Optional[Path], Optional[Path]]:
    """The repository's bridge (the newer of release and debug; env SCIM_BRIDGE_LIB first) and
    component (env SCIM_PROVISIONER_WASM first), for a plugin installed from the repository."""
    lib = os.environ.get("SCIM_BRIDGE_LIB")
    if not lib:
        builds = [p for p in (REPO / "target" / "release" / "libscim_bridge.so",
                              REPO / "target" / "debug" / "libscim_bridge.so") if p.exists()]
        lib = str(max(builds, key=lambda p: p.stat().st_mtime)) if builds else None
    wasm = os.environ.get("SCIM_PROVISIONER_WASM")
    if not wasm:
        for candidate in (REPO / "target" / "component" / "wasm32-wasip2" / "component" / "scim_provisioner.wasm",
                          REPO / "target" / "component" / "wasm32-wasip2" / "release" / "scim_provisioner.wasm"):
            if candidate.exists():
                wasm = str(candidate)
                break
    return (Path(lib) if lib else None), (Path(wasm) if wasm else None)


HTACCESS = """# BEGIN WordPress
<IfModule mod_rewrite.c>
RewriteEngine On
RewriteRule .* - [E=HTTP_AUTHORIZATION:%{HTTP:Authorization}]
RewriteBase /
RewriteRule ^index\\.php$ - [L]
RewriteCond %{REQUEST_FILENAME} !-f
RewriteCond %{REQUEST_FILENAME} !-d
RewriteRule . /index.php [L]
</IfModule>
# END WordPress
"""


@dataclass
class WordPressSite:
    """A fresh WordPress (a copy of Debian's /usr/share/wordpress) with a wp-config.php of its
    own on a database of the harness's MariaDB, installed with ``wp_install``, pretty
    permalinks, the plugin installed and (by default) activated, served by Apache 2.4 + mod_php
    8.2 on a free loopback port (FFI allowed for this site only: ``php_admin_value ffi.enable 1``),
    or with ``sapi="fpm"`` by Apache in front of a PHP-FPM 8.2 pool of its own
    (``php_admin_value[ffi.enable] = true``); ``ffi=False`` leaves FFI at PHP's default, which
    a web request cannot use.

    The plugin comes from ``plugin_zip`` (or env SCIM_WP_PLUGIN_ZIP), unzipped into
    wp-content/plugins as a site owner would; otherwise it is a symlink to the repository's
    hosts/wordpress/scim-provisioner, with SCIM_PROVISIONER_BRIDGE_LIB and SCIM_PROVISIONER_WASM
    defined in wp-config.php (the repository's builds)."""

    mariadb: MariaDB
    root: Path
    name: str = "site"
    plugin_zip: Optional[Path] = None
    activate: bool = True
    install_plugin: bool = True
    wp_config_extra: str = ""
    # "mod_php" (Apache prefork + mod_php) or "fpm" (Apache event + mod_proxy_fcgi + PHP-FPM).
    sapi: str = "mod_php"
    # FFI for the web server's PHP: True allows it (php_admin_value); False leaves PHP's default
    # ffi.enable=preload, under which a web request cannot load the bridge; "preload" (FPM
    # only) keeps that default and preloads the bridge's declarations and the PHP library
    # (ffi.preload, opcache.preload, opcache.preload_user), as the README's FPM lines say.
    ffi: bool | str = True
    path: Path = field(init=False)
    url: str = field(init=False)
    port: int = field(init=False)
    db_name: str = field(init=False)
    admin_user: str = field(init=False, default="admin")
    admin_password: str = field(init=False)
    admin_email: str = field(init=False, default="admin@example.test")
    http: HttpClient = field(init=False)
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.dir = self.root / f"wp-{self.name}"
        self.dir.mkdir()
        os.chmod(self.dir, 0o755)
        self.path = self.dir / "wordpress"
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        chown(self.logs, WEB_USER, 0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = HttpClient(self.url)
        self.db_name = f"wp_{self.name}_{secrets.token_hex(3)}".replace("-", "_")
        self.admin_password = "Adm-" + secrets.token_urlsafe(12)
        self.apache: Optional[subprocess.Popen] = None
        self.fpm: Optional[subprocess.Popen] = None
        if self.sapi not in ("mod_php", "fpm"):
            raise HarnessError(f"sapi is mod_php or fpm, not {self.sapi!r}")
        if self.ffi not in (True, False, "preload") or (self.ffi == "preload" and self.sapi != "fpm"):
            raise HarnessError(f"ffi is True, False or (with sapi='fpm') 'preload', not {self.ffi!r}")
        if self.plugin_zip is None and os.environ.get("SCIM_WP_PLUGIN_ZIP"):
            self.plugin_zip = Path(os.environ["SCIM_WP_PLUGIN_ZIP"])
        try:
            self._copy_wordpress()
            self._write_config()
            self._install()
            if self.install_plugin:
                self._install_plugin()
            self.start()
            if self.install_plugin and self.activate:
                self.activate_plugin()
        except BaseException:
            self.stop()
            raise

    # -- set-up

    def _copy_wordpress(self) -> None:
        # Debian's copy: .htaccess and wp-config.php are symlinks into /etc/wordpress; ours
        # are written below.
        shutil.copytree(WORDPRESS_SOURCE, self.path, symlinks=True,
                        ignore=shutil.ignore_patterns(".htaccess", "wp-config.php"))
        content = self.path / "wp-content"
        for sub in ("uploads", "cache", "upgrade"):
            (content / sub).mkdir(exist_ok=True)
            chown(content / sub, WEB_USER, 0o755)
        (self.path / ".htaccess").write_text(HTACCESS)
        # WP_DEBUG is on (the plugin's notices and warnings reach wp-debug.log), but WordPress
        # 6.1's own PHP 8.2 deprecations would bury them: PHP's E_DEPRECATED is muted once
        # WordPress has set its error level (WordPress's _deprecated_* notices stay).
        mu = content / "mu-plugins"
        mu.mkdir(exist_ok=True)
        (mu / "harness-quiet-php-deprecations.php").write_text(
            "<?php\n// Written by hosts/wordpress/tests/harness.py.\n"
            "error_reporting(error_reporting() & ~E_DEPRECATED);\n"
            "// A test site is offline: no update checks against wordpress.org (WP_HTTP_BLOCK_EXTERNAL\n"
            "// refuses them, and WordPress then logs a warning for each).\n"
            "remove_action('init', 'wp_schedule_update_checks');\n"
            "foreach (['wp_version_check', 'wp_update_plugins', 'wp_update_themes', 'wp_maybe_auto_update'] as $hook) {\n"
            "    remove_action($hook, $hook);\n"
            "}\n"
            "foreach (['_maybe_update_core', '_maybe_update_plugins', '_maybe_update_themes'] as $check) {\n"
            "    remove_action('admin_init', $check);\n"
            "}\n")
        (self.logs / "php-error.log").touch()
        chown(self.logs / "php-error.log", WEB_USER, 0o644)
        (self.logs / "wp-debug.log").touch()
        chown(self.logs / "wp-debug.log", WEB_USER, 0o644)

    def _write_config(self) -> None:
        db_user, db_password = self.mariadb.create_database(self.db_name)
        salts = "\n".join(f"define('{k}', '{secrets.token_hex(32)}');" for k in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
            "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT"))
        binaries = ""
        if self.plugin_zip is None:
            lib, wasm = _default_binaries()
            if lib is not None:
                binaries += f"define('SCIM_PROVISIONER_BRIDGE_LIB', {json.dumps(str(lib))});\n"
            if wasm is not None:
                binaries += f"define('SCIM_PROVISIONER_WASM', {json.dumps(str(wasm))});\n"
        config = f"""<?php
// Written by hosts/wordpress/tests/harness.py for a test site.
define('DB_NAME', '{self.db_name}');
define('DB_USER', '{db_user}');
define('DB_PASSWORD', '{db_password}');
define('DB_HOST', '127.0.0.1:{self.mariadb.port}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
$table_prefix = 'wp_';
define('WP_HOME', '{self.url}');
define('WP_SITEURL', '{self.url}');
define('WP_CONTENT_DIR', __DIR__ . '/wp-content');
define('WP_CONTENT_URL', '{self.url}/wp-content');
define('WP_DEBUG', true);
define('WP_DEBUG_LOG', {json.dumps(str(self.logs / 'wp-debug.log'))});
define('WP_DEBUG_DISPLAY', false);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_AUTO_UPDATE_CORE', false);
define('DISABLE_WP_CRON', false);
// No calls to wordpress.org (update checks): loopback only.
define('WP_HTTP_BLOCK_EXTERNAL', true);
{binaries}{self.wp_config_extra}
if (!defined('ABSPATH')) {{
    define('ABSPATH', __DIR__ . '/');
}}
require_once ABSPATH . 'wp-settings.php';
"""
        cfg = self.path / "wp-config.php"
        cfg.write_text(config)
        chown(cfg, "root" if IS_ROOT else WEB_USER, 0o644)
        if IS_ROOT:
            shutil.chown(cfg, "root", WEB_USER)
            os.chmod(cfg, 0o640)

    def _install(self) -> None:
        code = f"""
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = '127.0.0.1:{self.port}';
require {json.dumps(str(self.path / 'wp-load.php'))};
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
$result = wp_install('SCIM test site {self.name}', {json.dumps(self.admin_user)}, {json.dumps(self.admin_email)},
    false, '', {json.dumps(self.admin_password)});
if (empty($result['user_id'])) {{ fwrite(STDERR, 'wp_install failed'); exit(1); }}
update_option('siteurl', {json.dumps(self.url)});
update_option('home', {json.dumps(self.url)});
update_option('permalink_structure', '/%postname%/');
"""
        self._run_php(code, bootstrap=False)

    def _install_plugin(self) -> None:
        plugins = self.path / "wp-content" / "plugins"
        target = plugins / PLUGIN_SLUG
        if self.plugin_zip is not None:
            with zipfile.ZipFile(self.plugin_zip) as z:
                for info in z.infolist():
                    if not info.filename.startswith(PLUGIN_SLUG + "/") or ".." in Path(info.filename).parts:
                        raise HarnessError(f"{self.plugin_zip}: unexpected entry {info.filename}")
                    z.extract(info, plugins)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode:
                        os.chmod(plugins / info.filename, mode)
        else:
            if not PLUGIN_SOURCE.is_dir():
                raise HarnessError(f"{PLUGIN_SOURCE} does not exist yet")
            target.symlink_to(PLUGIN_SOURCE, target_is_directory=True)

    def start(self) -> None:
        """Starts (or restarts) the site's web server and waits until it answers: Apache with
        mod_php (prefork), or with ``sapi="fpm"`` Apache (event) in front of a PHP-FPM pool
        of the site's own through mod_proxy_fcgi."""
        if self.apache is not None and self.apache.poll() is None:
            return
        run = self.dir / "run"
        run.mkdir(exist_ok=True)
        chown(run, "root" if IS_ROOT else WEB_USER, 0o755)
        if self.sapi == "fpm":
            self._start_fpm(run)
        conf = self.dir / "apache2.conf"
        user_lines = f"User {WEB_USER}\nGroup {WEB_USER}\n" if IS_ROOT else ""
        common = ["authz_core", "dir", "mime", "rewrite", "env", "setenvif", "alias"]
        if self.sapi == "fpm":
            modules = ["mpm_event"] + common + ["proxy", "proxy_fcgi"]
            php = f"""<FilesMatch \\.php$>
    SetHandler "proxy:unix:{run / 'php-fpm.sock'}|fcgi://localhost"
</FilesMatch>
"""
        else:
            modules = ["mpm_prefork"] + common
            php = f"""LoadModule php_module {APACHE_MODULES / 'libphp8.2.so'}
<FilesMatch \\.php$>
    SetHandler application/x-httpd-php
</FilesMatch>
{"php_admin_value ffi.enable 1" if self.ffi is True else "# FFI left at PHP's default (ffi.enable=preload): not allowed here"}
php_admin_value error_log {self.logs / 'php-error.log'}
php_admin_value log_errors 1
php_admin_value display_errors 0
"""
        loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES / f'mod_{m}.so'}" for m in modules)
        conf.write_text(f"""# Written by hosts/wordpress/tests/harness.py: one WordPress site, loopback only.
ServerRoot /etc/apache2
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile {run / 'apache2.pid'}
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {self.logs / 'apache-error.log'}
LogLevel warn
LogFormat "%h %t \\"%r\\" %>s %b %D" timed
CustomLog {self.logs / 'apache-access.log'} timed
{loads}
TypesConfig /etc/mime.types
{user_lines}
StartServers 2
MaxRequestWorkers 16
<IfModule mpm_prefork_module>
    MinSpareServers 2
    MaxSpareServers 4
</IfModule>
<IfModule mpm_event_module>
    ThreadsPerChild 8
</IfModule>
KeepAlive On
Timeout 120
DocumentRoot {self.path}
DirectoryIndex index.php index.html
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory {self.path}>
    Options FollowSymLinks
    AllowOverride All
    Require all granted
</Directory>
<Directory {PLUGIN_SOURCE}>
    Require all granted
</Directory>
{php}""")
        self.apache = spawn(["apache2", "-f", str(conf), "-DFOREGROUND"], self.logs / "apache-stdout.log")
        wait_for(lambda: self.http.get("/wp-login.php", timeout=10).status == 200,
                 f"Apache for site {self.name} answering {self.url}/wp-login.php", limit=120,
                 process=self.apache, log=self.logs / "apache-error.log")

    def _start_fpm(self, run: Path) -> None:
        if self.fpm is not None and self.fpm.poll() is None:
            return
        binary = shutil.which("php-fpm8.2") or "/usr/sbin/php-fpm8.2"
        if not Path(binary).exists():
            raise HarnessError("php-fpm8.2 is not installed (Debian: php8.2-fpm)")
        socket_path = run / "php-fpm.sock"
        owner = f"user = {WEB_USER}\ngroup = {WEB_USER}\nlisten.owner = {WEB_USER}\nlisten.group = {WEB_USER}\n" \
            if IS_ROOT else ""
        conf = self.dir / "php-fpm.conf"
        conf.write_text(f"""; Written by hosts/wordpress/tests/harness.py: the site's own PHP-FPM pool.
[global]
pid = {run / 'php-fpm.pid'}
error_log = {self.logs / 'php-fpm.log'}
daemonize = no

[site]
{owner}listen = {socket_path}
listen.mode = 0660
pm = static
pm.max_children = 4
catch_workers_output = yes
php_admin_value[error_log] = {self.logs / 'php-error.log'}
php_admin_flag[log_errors] = on
php_admin_flag[display_errors] = off
{"php_admin_value[ffi.enable] = true" if self.ffi is True else "; ffi.enable left at PHP's default (preload)"}
""")
        argv = [binary, "--nodaemonize", "--fpm-config", str(conf)]
        if self.ffi == "preload":
            argv += [f"-d{k}={v}" for k, v in self._preload_settings(run).items()]
        self.fpm = spawn(argv, self.logs / "php-fpm-stdout.log")
        wait_for(socket_path.exists, f"PHP-FPM for site {self.name}", limit=60, process=self.fpm,
                 log=self.logs / "php-fpm.log")

    def _preload_settings(self, run: Path) -> dict[str, str]:
        """The php.ini settings that preload the bridge for FPM under ffi.enable=preload (master
        settings: opcache.preload runs when FPM starts, before any pool): the declarations file
        written by the library's bin/ffi-preload-header, and the library's preload.php."""
        lib_dir = self.plugin_dir / "lib"
        if not (lib_dir / "preload.php").exists():  # the repository's plugin: the library beside it
            lib_dir = REPO / "hosts" / "php" / "lib"
        native = self.plugin_dir / "native"
        library, header = native / "libscim_bridge.so", native / "scim_bridge.h"
        if not library.exists():
            library = _default_binaries()[0] or library
            header = REPO / "hosts" / "php" / "bridge" / "include" / "scim_bridge.h"
        declarations = run / "scim_bridge.preload.h"
        out = subprocess.run(["php", str(lib_dir / "bin" / "ffi-preload-header"), str(declarations),
                              "--library", str(library), "--header", str(header)], capture_output=True, text=True)
        if out.returncode != 0:
            raise HarnessError(f"ffi-preload-header failed: {out.stderr}{out.stdout}")
        os.chmod(declarations, 0o644)
        settings = {"opcache.enable": "1", "opcache.preload": str(lib_dir / "preload.php"),
                    "ffi.preload": str(declarations)}
        if IS_ROOT:
            settings["opcache.preload_user"] = WEB_USER
        return settings

    def stop(self) -> None:
        """Stops the web server (Apache and its children; PHP-FPM too) and waits."""
        if self.apache is not None:
            stop_process(self.apache)
            self.apache = None
        if self.fpm is not None:
            stop_process(self.fpm)
            self.fpm = None

    # -- running PHP inside WordPress

    def _run_php(self, code: str, bootstrap: bool = True, env: Optional[Mapping[str, str]] = None,
                 timeout: float = 600) -> str:
        prologue = "<?php\n"
        if bootstrap:
            prologue += (f"$_SERVER['HTTP_HOST'] = '127.0.0.1:{self.port}';\n"
                         f"require {json.dumps(str(self.path / 'wp-load.php'))};\n")
        debug_log = self.logs / "wp-debug.log"
        before = debug_log.stat().st_size if debug_log.exists() else 0
        full_env = dict(os.environ)
        full_env.update(env or {})
        out = subprocess.run(as_user(WEB_USER, ["php", "-d", "display_errors=stderr"]),
                             input=prologue + code, capture_output=True, text=True, cwd=self.path,
                             env=full_env, timeout=timeout)
        if out.returncode != 0:
            new_log = ""
            if debug_log.exists():
                with open(debug_log, errors="replace") as f:
                    f.seek(before)
                    new_log = f.read()[-4000:]
            raise HarnessError(f"PHP in site {self.name} exited with {out.returncode}\n"
                               f"--- stdout ---\n{out.stdout[-4000:]}\n--- stderr ---\n{out.stderr[-4000:]}"
                               + (f"\n--- wp-debug.log ---\n{new_log}" if new_log else ""))
        return out.stdout

    def php(self, code: str, env: Optional[Mapping[str, str]] = None, timeout: float = 600) -> str:
        """Runs PHP code inside WordPress (the command-line PHP as the web server's user, after
        ``require wp-load.php``) and returns its stdout; raises HarnessError with stderr and the
        new lines of the debug log when PHP exits non-zero."""
        return self._run_php(code, env=env, timeout=timeout)

    def php_json(self, expression: str) -> Any:
        """The value of a PHP expression, through json_encode."""
        return json.loads(self.php(f"echo json_encode({expression});"))

    def worker(self, *args: str, check: bool = True, env: Optional[Mapping[str, str]] = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
        """Runs the plugin's bin/worker (``--path`` set to this site) as the web server's user."""
        script = self.path / "wp-content" / "plugins" / PLUGIN_SLUG / "bin" / "worker"
        full_env = dict(os.environ)
        full_env.update(env or {})
        out = subprocess.run(as_user(WEB_USER, ["php", str(script), f"--path={self.path}", *args]),
                             capture_output=True, text=True, cwd=self.path, env=full_env, timeout=timeout)
        if check and out.returncode != 0:
            raise HarnessError(f"bin/worker {' '.join(args)} exited with {out.returncode}\n"
                               f"--- stdout ---\n{out.stdout[-4000:]}\n--- stderr ---\n{out.stderr[-4000:]}")
        return out

    def activate_plugin(self) -> None:
        self.php(f"""
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$result = activate_plugin({json.dumps(PLUGIN_MAIN)});
if (is_wp_error($result)) {{ fwrite(STDERR, $result->get_error_message()); exit(1); }}
if (!is_plugin_active({json.dumps(PLUGIN_MAIN)})) {{ fwrite(STDERR, 'not active after activate_plugin'); exit(1); }}
""")

    def deactivate_plugin(self) -> None:
        self.php(f"require_once ABSPATH . 'wp-admin/includes/plugin.php'; "
                 f"deactivate_plugins({json.dumps(PLUGIN_MAIN)});")

    # -- conveniences

    @property
    def plugin_dir(self) -> Path:
        return self.path / "wp-content" / "plugins" / PLUGIN_SLUG

    @property
    def scim_base(self) -> str:
        """The plugin's SCIM server base (pretty permalinks)."""
        return f"{self.url}/wp-json/scim/v2"

    def scim(self, method: str, path: str, token: Optional[str], body: Any = None) -> tuple[int, Any]:
        """A SCIM call to this site's /wp-json/scim/v2 over plain HTTP."""
        return scim_request(method, self.scim_base + "/" + path.lstrip("/"), token, body)

    def create_user(self, login: str, email: Optional[str] = None, role: str = "subscriber",
                    password: Optional[str] = None, **fields: str) -> int:
        """``wp_insert_user`` (so the plugin's hooks run); returns the user id."""
        data = {"user_login": login, "user_email": email or f"{login}@example.test", "role": role,
                "user_pass": password or secrets.token_urlsafe(12), **fields}
        return int(self.php(f"""
$id = wp_insert_user(json_decode({json.dumps(json.dumps(data))}, true));
if (is_wp_error($id)) {{ fwrite(STDERR, $id->get_error_message()); exit(1); }}
echo $id;
"""))

    def login(self, user: str, password: str) -> HttpClient:
        """A new cookie session logged in through wp-login.php's form."""
        client = HttpClient(self.url)
        client.get("/wp-login.php")  # sets wordpress_test_cookie
        resp = client.post("/wp-login.php", form(log=user, pwd=password, rememberme="forever",
                                                 **{"wp-submit": "Log In", "testcookie": "1",
                                                    "redirect_to": self.url + "/wp-admin/"}))
        if resp.status != 302 or client.cookie("wordpress_logged_in_") is None:
            raise HarnessError(f"login as {user} failed: HTTP {resp.status}")
        return client

    def run_cron(self) -> Response:
        """A request to wp-cron.php, as a visitor's page load or a system cron would make."""
        return self.http.get("/wp-cron.php?doing_wp_cron")

    def log_text(self) -> str:
        """Everything this site logged: Apache's error log, PHP's, and WordPress's debug log."""
        parts = []
        for name in ("apache-error.log", "php-error.log", "wp-debug.log"):
            p = self.logs / name
            if p.exists():
                parts.append(f"--- {name} ---\n" + p.read_text(errors="replace"))
        return "\n".join(parts)


# ----------------------------------------------------------------------------- scim2-server

class Scim2Server:
    """A real scim2-server (PyPI) on a free loopback port with a bearer token; base
    ``http://127.0.0.1:P/v2``."""

    def __init__(self, log_dir: Path) -> None:
        script = VENV / "bin" / "scim2-server"
        if not script.exists():
            raise HarnessError(f"{script} is missing: run scripts/install-peers")
        self.token = "tok" + secrets.token_hex(20)
        self.proc: Optional[subprocess.Popen] = None
        last = None
        for _ in range(5):
            self.port = free_port()
            self.base_url = f"http://127.0.0.1:{self.port}/v2"
            self.log = log_dir / f"scim2-server-{self.port}.log"
            self.proc = spawn([str(VENV / "bin" / "python"), str(script), "--hostname", "127.0.0.1",
                               "--port", str(self.port), "--bearer-token", self.token], self.log)
            try:
                wait_for(lambda: self.get("/ServiceProviderConfig")[0] == 200, "scim2-server ready",
                         process=self.proc, log=self.log)
                return
            except HarnessError as e:
                last = e
                self.stop()
        raise HarnessError(f"scim2-server did not start: {last}")

    def get(self, path: str) -> tuple[int, Any]:
        return scim_request("GET", self.base_url + path, self.token, timeout=10)

    def users(self) -> list[dict]:
        """Every user on the server, read over plain HTTP (paged)."""
        found: list[dict] = []
        start = 1
        while True:
            status, body = self.get(f"/Users?startIndex={start}&count=500")
            if status != 200:
                raise HarnessError(f"scim2-server GET /Users: {status} {body}")
            page = body.get("Resources") or []
            found.extend(page)
            if not page or len(found) >= int(body.get("totalResults", 0)):
                return found
            start += len(page)

    def user_by_name(self, user_name: str) -> Optional[dict]:
        status, body = self.get("/Users?filter=" + urllib.parse.quote(f'userName eq "{user_name}"'))
        if status != 200:
            raise HarnessError(f"scim2-server filter: {status} {body}")
        found = body.get("Resources") or []
        return found[0] if found else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, limit=10)
            self.proc = None


# ----------------------------------------------------------------------------- checks

def check_prerequisites() -> list[str]:
    """What is missing for the harness (empty when nothing is)."""
    missing = []
    for tool in ("mariadb-install-db", "mariadbd", "mariadb", "apache2", "php"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (Debian packages: scripts/debian-packages)")
    if not (APACHE_MODULES / "libphp8.2.so").exists():
        missing.append("mod_php (libapache2-mod-php8.2)")
    if not (WORDPRESS_SOURCE / "wp-settings.php").exists():
        missing.append(f"WordPress in {WORDPRESS_SOURCE} (the wordpress package)")
    if shutil.which("php"):
        mods = subprocess.run(["php", "-m"], capture_output=True, text=True).stdout.lower().split()
        for ext in ("mysqli", "ffi", "mbstring", "curl"):
            if ext not in mods:
                missing.append(f"the PHP extension {ext}")
    return missing

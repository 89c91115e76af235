"""WordPress (and so the plugin, which uses $wpdb) to MariaDB over verified TLS, with the
drop-in hosts/wordpress/db-tls/db.php and MYSQL_SSL_CA in wp-config.php, as the README's "The
database over TLS" says. A MariaDB of this test's own serves a certificate made here with
openssl (a CA, a server certificate for 127.0.0.1, a CA that signed nothing), and the site's
database user may connect over TLS only (REQUIRE SSL):
- with the right CA, WordPress and the plugin's SCIM endpoint answer, and the session is
  encrypted;
- with MYSQL_CLIENT_FLAGS alone (WordPress's own switch) the session is encrypted too, but a
  certificate from an unknown CA is accepted: what the drop-in is for;
- with the wrong CA the site is refused its database, and no password is shown."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import plugin_available
from harness import DB_USER, REPO, HarnessError, MariaDB, WordPressSite, chown, spawn, wait_for
from plugin_calls import PLUGIN, call

DROP_IN = REPO / "hosts" / "wordpress" / "db-tls" / "db.php"


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(out: Path) -> Path:
    """ca.pem, other-ca.pem, server.pem and server.key in `out` (P-256, 2 days)."""
    out.mkdir(mode=0o755)
    for name, cn in (("ca", "scim test CA"), ("other-ca", "scim other CA")):
        _openssl(out, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-days", "2", "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.pem")
    _openssl(out, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (out / "server.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                                    "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(out, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
    for pem in ("ca.pem", "other-ca.pem"):
        (out / pem).chmod(0o644)  # the web server's user reads the CA
    return out


class TlsMariaDB(MariaDB):
    """The harness's MariaDB with TLS on (--ssl-cert, --ssl-key)."""

    def __init__(self, root: Path, certs: Path) -> None:
        self.certs = certs
        super().__init__(root)

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        for name in ("server.pem", "server.key"):
            target = self.dir / name
            if not target.exists():
                shutil.copy(self.certs / name, target)
                chown(target, DB_USER, 0o600)
        self.proc = spawn(
            ["mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--user={DB_USER}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
             f"--pid-file={self.dir / 'mariadbd.pid'}", "--skip-name-resolve",
             "--innodb-buffer-pool-size=64M", "--max-connections=50",
             f"--ssl-cert={self.dir / 'server.pem'}", f"--ssl-key={self.dir / 'server.key'}"],
            self.log)
        wait_for(lambda: self._ping(), "MariaDB accepting connections", limit=120,
                 process=self.proc, log=self.log)


def _set_config(site: WordPressSite, old: str, new: str) -> None:
    cfg = site.path / "wp-config.php"
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new))


def _db_password(site: WordPressSite) -> str:
    text = (site.path / "wp-config.php").read_text()
    return text.split("define('DB_PASSWORD', '", 1)[1].split("'", 1)[0]


CIPHER = "$GLOBALS['wpdb']->get_row(\"SHOW SESSION STATUS LIKE 'Ssl_cipher'\", ARRAY_N)[1]"


@pytest.mark.skipif(not plugin_available(), reason="the plugin is not built")
def test_wordpress_reaches_mariadb_over_verified_tls(wp_temp_root: Path) -> None:
    root = wp_temp_root / "tls"
    root.mkdir()
    root.chmod(0o755)
    certs = make_certificates(root / "certs")
    db = TlsMariaDB(root, certs)
    site = None
    try:
        ca = json.dumps(str(certs / "ca.pem"))
        site = WordPressSite(mariadb=db, root=root, name="tls",
                             wp_config_extra="define('MYSQL_CLIENT_FLAGS', MYSQLI_CLIENT_SSL);\n")
        db.query(None, f"ALTER USER '{site.db_name[:32]}'@'127.0.0.1' REQUIRE SSL")

        # WordPress's own switch: encrypted, but nothing is verified (this CA is known to no one).
        assert call(site, CIPHER), "MYSQL_CLIENT_FLAGS encrypts"

        # The drop-in and the CA: verified, and the site and the plugin work over it.
        shutil.copy(DROP_IN, site.path / "wp-content" / "db.php")
        (site.path / "wp-content" / "db.php").chmod(0o644)
        _set_config(site, "define('MYSQL_CLIENT_FLAGS', MYSQLI_CLIENT_SSL);",
                    f"define('MYSQL_SSL_CA', {ca});")
        assert call(site, "get_class($GLOBALS['wpdb'])") == "Scim_Verified_Tls_Wpdb"
        assert call(site, CIPHER), "the session is encrypted"
        token = call(site, f"{PLUGIN}->server()->rotateToken()")
        status, body = site.scim("GET", "/Users", token)
        assert status == 200, body
        assert site.http.get("/").status == 200

        # The wrong CA: refused, with the reason and without the password.
        _set_config(site, ca, json.dumps(str(certs / "other-ca.pem")))
        try:  # WordPress's wp_die() page; PHP's exit status says nothing either way
            said = site.php("echo 'connected over ' . " + CIPHER + ";")
        except HarnessError as e:
            said = str(e)
        assert "connected over" not in said, said
        assert "Error establishing a database connection" in said
        assert _db_password(site) not in said
        log = (site.logs / "wp-debug.log").read_text()
        assert "the TLS connection to the database failed" in log and "MYSQL_SSL_CA" in log
        assert _db_password(site) not in log
        # Apache's PHP reads the changed wp-config.php once opcache revalidates it (2 s).
        wait_for(lambda: site.http.get("/").status == 500, "the site refused its database", limit=30)
        resp = site.http.get("/")
        assert "Error establishing a database connection" in resp.text
        assert _db_password(site) not in resp.text
        status, _ = site.scim("GET", "/Users", token)
        assert status == 500
    finally:
        if site is not None:
            site.stop()
        db.stop()

<?php
/**
 * A WordPress database drop-in (copy it to wp-content/db.php) that makes every connection
 * WordPress opens to MySQL/MariaDB verify the server's certificate.
 *
 * WordPress's own switch, MYSQL_CLIENT_FLAGS = MYSQLI_CLIENT_SSL, encrypts the connection but
 * checks no certificate (PHP's mysqlnd verifies only when a CA is set, and WordPress core has
 * no setting for one). With this file, wp-config.php names the CA:
 *
 *     define( 'MYSQL_SSL_CA', '/etc/mysql/db-ca.pem' );   // PEM; the CA that signed the server's certificate
 *
 * and each connection is TLS with the chain checked against that CA and the host name in
 * DB_HOST checked against the certificate; a server without TLS, an unknown CA or another
 * host name is refused ("Error establishing a database connection"), never plain text.
 * Without MYSQL_SSL_CA the file changes nothing. The SCIM plugin uses $wpdb, so its outbox,
 * links and workers (bin/worker) use this connection too.
 *
 * Part of scim-provisioner's WordPress host (hosts/wordpress/README.md, "The database over
 * TLS"); tested by hosts/wordpress/tests/test_database_tls.py.
 */

defined( 'ABSPATH' ) || exit;

/**
 * wpdb whose connection is opened with a CA and server-certificate verification on. Only
 * db_connect() differs: core builds its mysqli and connects in one method, with no hook in
 * between, so this one does the same steps with the TLS options set before connecting.
 */
class Scim_Verified_Tls_Wpdb extends wpdb {

	public function db_connect( $allow_bail = true ) {
		if ( ! defined( 'MYSQL_SSL_CA' ) ) {
			return parent::db_connect( $allow_bail );
		}
		$this->is_mysql = true;
		mysqli_report( MYSQLI_REPORT_OFF );
		$this->dbh = mysqli_init();

		$host      = $this->dbhost;
		$port      = null;
		$socket    = null;
		$host_data = $this->parse_db_host( $this->dbhost );
		if ( $host_data ) {
			list( $host, $port, $socket, $is_ipv6 ) = $host_data;
			if ( $is_ipv6 ) {
				$host = "[$host]";
			}
		}
		$ca = (string) MYSQL_SSL_CA;
		$connected = false;
		if ( '' !== $ca && is_readable( $ca ) ) {
			// Both are needed: a CA without verification encrypts and accepts any certificate;
			// verification without a CA does not even encrypt.
			$this->dbh->ssl_set( null, null, $ca, null, null );
			$this->dbh->options( MYSQLI_OPT_SSL_VERIFY_SERVER_CERT, true );
			$flags     = ( defined( 'MYSQL_CLIENT_FLAGS' ) ? MYSQL_CLIENT_FLAGS : 0 ) | MYSQLI_CLIENT_SSL;
			$flags    &= ~MYSQLI_CLIENT_SSL_DONT_VERIFY_SERVER_CERT;
			// phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged
			$connected = @mysqli_real_connect( $this->dbh, $host, $this->dbuser, $this->dbpassword, null, $port, $socket, $flags );
		}
		if ( ! $connected ) {
			// The reason for the site's logs (WordPress shows only "Error establishing a database
			// connection" unless errors are displayed); mysqlnd's words hold no password.
			error_log(
				'wpdb: the TLS connection to the database failed ('
				. ( '' !== $ca && is_readable( $ca ) ? (string) $this->dbh->connect_error : 'MYSQL_SSL_CA names no readable file' )
				. '): check MYSQL_SSL_CA (the CA that signed the server\'s certificate), that the certificate names the host in DB_HOST, and that the server offers TLS'
			);
			$this->dbh = null;
			if ( $allow_bail ) {
				wp_load_translations_early();
				$this->bail(
					'<h1>' . __( 'Error establishing a database connection' ) . "</h1>\n<p>"
					. 'The connection to the database over TLS failed: the CA in MYSQL_SSL_CA is missing or did not sign '
					. 'the server&#8217;s certificate, the certificate does not name the host in DB_HOST, the server '
					. 'offers no TLS, or the user name or password is wrong.</p>',
					'db_connect_fail'
				);
			}
			return false;
		}
		if ( ! $this->has_connected ) {
			$this->init_charset();
		}
		$this->has_connected = true;
		$this->set_charset( $this->dbh );
		$this->ready = true;
		$this->set_sql_mode();
		$this->select( $this->dbname, $this->dbh );
		return true;
	}
}

// phpcs:ignore WordPress.WP.GlobalVariablesOverride.Prohibited
$wpdb = new Scim_Verified_Tls_Wpdb( DB_USER, DB_PASSWORD, DB_NAME, DB_HOST );
